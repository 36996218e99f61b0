// One source for every tier's matrix-vector kernel (gemv.hpp), on a vector type V of L floats
// (vec_avx2.hpp, vec_avx512.hpp): for each output o, the rows x[n] (n < N) are multiplied by
// w[o] L floats at a time into U independent accumulators per row (U chains keep both FMA
// pipes busy; w[o]'s vector is loaded once for all N rows), then the U accumulators are added
// in order, the L lanes summed left to right, and the bias added last.
#pragma once

#include <cstdint>

#include "kernels/gemv.hpp"

namespace cnnkit {

namespace gemv_impl {

template <class V>
struct Gemv {
  using T = typename V::T;
  static constexpr int L = V::L;

  template <int NR>
  static void rows(float* y, const float* x, const float* w, const float* b, int64_t IN,
                   int64_t OUT, int64_t o0, int64_t o1) {
    constexpr int U = NR == 1 ? 4 : 2;  // NR * U accumulators, within the register file
    const int64_t body = IN / (U * L) * (U * L), full = IN / L * L;
    for (int64_t o = o0; o < o1; ++o) {
      const float* wo = w + o * IN;
      T acc[NR][U];
      for (int n = 0; n < NR; ++n)
        for (int u = 0; u < U; ++u) acc[n][u] = V::zero();
      int64_t k = 0;
      for (; k < body; k += U * L)
        for (int u = 0; u < U; ++u) {
          const T wv = V::load(wo + k + u * L);
          for (int n = 0; n < NR; ++n) acc[n][u] = V::fma(V::load(x + n * IN + k + u * L), wv, acc[n][u]);
        }
      for (; k < full; k += L) {
        const T wv = V::load(wo + k);
        for (int n = 0; n < NR; ++n) acc[n][0] = V::fma(V::load(x + n * IN + k), wv, acc[n][0]);
      }
      if (k < IN) {  // masked tail: lanes past IN read as zeros and add nothing
        const auto m = V::mask(IN - k);
        const T wv = V::loadz(wo + k, m);
        for (int n = 0; n < NR; ++n) acc[n][0] = V::fma(V::loadz(x + n * IN + k, m), wv, acc[n][0]);
      }
      for (int n = 0; n < NR; ++n) {
        T s = acc[n][0];
        for (int u = 1; u < U; ++u) s = V::add(s, acc[n][u]);
        alignas(64) float lanes[L];
        V::store(lanes, s);
        float sum = lanes[0];
        for (int i = 1; i < L; ++i) sum += lanes[i];
        y[n * OUT + o] = b ? sum + b[o] : sum;
      }
    }
  }

  static void linear_rows(float* y, const float* x, const float* w, const float* b, int64_t N,
                          int64_t IN, int64_t OUT, int64_t o0, int64_t o1) {
    switch (N) {
      case 1: return rows<1>(y, x, w, b, IN, OUT, o0, o1);
      case 2: return rows<2>(y, x, w, b, IN, OUT, o0, o1);
      case 3: return rows<3>(y, x, w, b, IN, OUT, o0, o1);
      case 4: return rows<4>(y, x, w, b, IN, OUT, o0, o1);
      default: return;
    }
  }
};

}  // namespace gemv_impl

}  // namespace cnnkit
