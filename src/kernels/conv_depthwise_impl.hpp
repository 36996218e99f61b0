// The kernels of conv_depthwise.hpp as templates on a tier's vector type V (the operations of
// conv_direct_impl.hpp's V). Included only by the per-tier files (conv_depthwise_portable.cpp,
// _avx2.cpp, _avx512.cpp), each instantiating ConvDepthwise<V> on its own V; everything here is
// a template on V, so every instantiated name carries the tier's.
//
// The blocks keep a 2-D array of accumulators indexed only by compile-time constants (RB rows
// x NV vectors, or TB taps), so they stay in registers; the block sizes are template
// parameters, picked per call from tables. Tap positions are stepped, never divided for: a
// running (phase, offset) pair per kernel column and a running (residue, row) pair per kernel
// row cost an add and a compare where a division would cost more than the block's FMAs.
#pragma once

#include <cstdint>
#include <utility>

#include "kernels/conv_depthwise.hpp"
#include "kernels/kernel_tables.hpp"

namespace cnnkit {
namespace conv_depthwise_impl {

#define CNNKIT_UNROLL _Pragma("GCC unroll 32")

constexpr int kMaxRB = 4;   // rows of a forward / input block
constexpr int kMaxNV = 4;   // vectors of a row in a forward / input block
constexpr int kMaxTB = 24;  // taps of a weight block

// --- forward --------------------------------------------------------------------------------
// Output rows oh0 .. oh0+RB-1, NV vectors of each from column col (the last one stored masked
// to `last` lanes; its dead lanes read the row's tail or xq's slack and are never stored).
// Per tap: one weight broadcast, RB*NV loads of xq, RB*NV FMAs.
template <class V, int RB, int NV>
struct Forward {
  static constexpr bool ok = RB * NV <= V::kAcc;
  static void run(float* y, const float* xq, const float* w, float bias,
                  const ConvDepthwiseShape& s, int64_t oh0, int64_t col, int64_t last) {
    using T = typename V::T;
    const int64_t rs = s.SH * s.SW * s.Wq;  // xq floats from one output row to the next
    T acc[RB][NV];
    const T b = V::bcast(&bias);
    CNNKIT_UNROLL for (int i = 0; i < RB; ++i) {
      CNNKIT_UNROLL for (int v = 0; v < NV; ++v) acc[i][v] = b;
    }
    const float* xr = xq + oh0 * rs + col;
    const float* wt = w;
    for (int64_t kh = 0; kh < s.KH; ++kh, xr += s.DH * s.SW * s.Wq) {
      int64_t p = 0, q = 0;  // phase and offset of tap kw: kw*DW = q*SW + p
      for (int64_t kw = 0; kw < s.KW; ++kw, ++wt) {
        const float* xt = xr + p * s.Wq + q;
        const T wv = V::bcast(wt);
        CNNKIT_UNROLL for (int i = 0; i < RB; ++i) {
          CNNKIT_UNROLL for (int v = 0; v < NV; ++v)
            acc[i][v] = V::fma(wv, V::load(xt + i * rs + v * V::L), acc[i][v]);
        }
        for (p += s.DW; p >= s.SW; p -= s.SW) ++q;
      }
    }
    const typename V::M m = V::mask(last);
    CNNKIT_UNROLL for (int i = 0; i < RB; ++i) {
      float* yr = y + (oh0 + i) * s.OW + col;
      CNNKIT_UNROLL for (int v = 0; v < NV - 1; ++v) V::store(yr + v * V::L, acc[i][v]);
      V::store(yr + (NV - 1) * V::L, acc[i][NV - 1], m);
    }
  }
};

// --- weight gradient ------------------------------------------------------------------------
// Taps t0 .. t0+TB-1, lane partials over every (oh, ow): per vector of a dy row, one load of
// dy, TB loads of xq, TB FMAs. The last vector of a row is masked in dy and in xq alike, so
// its dead lanes multiply 0 by 0 (a NaN or Inf of the plane outside the taps' reach must not
// enter dw).
template <class V, int TB>
struct Weight {
  static constexpr bool ok = TB + 2 <= V::kRegs;
  using T = typename V::T;

  template <bool Masked>
  static inline __attribute__((always_inline)) void step(T (&acc)[TB], const float* dyr,
                                                         const float* xr, const int64_t* off,
                                                         typename V::M m) {
    const T d = Masked ? V::loadz(dyr, m) : V::load(dyr);
    CNNKIT_UNROLL for (int t = 0; t < TB; ++t) {
      const T xv = Masked ? V::loadz(xr + off[t], m) : V::load(xr + off[t]);
      acc[t] = V::fma(d, xv, acc[t]);
    }
  }

  static void run(float* dwv, const float* xq, const float* dy, const ConvDepthwiseShape& s,
                  int64_t t0) {
    int64_t off[TB];
    for (int t = 0; t < TB; ++t) {
      const int64_t kh = (t0 + t) / s.KW, kw = (t0 + t) % s.KW;
      off[t] = (kh * s.DH * s.SW + kw * s.DW % s.SW) * s.Wq + kw * s.DW / s.SW;
    }
    T acc[TB];
    CNNKIT_UNROLL for (int t = 0; t < TB; ++t)
      acc[t] = V::load(dwv + (t0 + t) * kConvDepthwiseLanes);
    const int64_t full = (s.OW - 1) / V::L;  // vectors before the last, which may be partial
    const typename V::M m = V::mask(s.OW - full * V::L);
    const int64_t rs = s.SH * s.SW * s.Wq;
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const float* dyr = dy + oh * s.OW;
      const float* xr = xq + oh * rs;
      for (int64_t j = 0; j < full; ++j) step<false>(acc, dyr + j * V::L, xr + j * V::L, off, m);
      step<true>(acc, dyr + full * V::L, xr + full * V::L, off, m);
    }
    CNNKIT_UNROLL for (int t = 0; t < TB; ++t)
      V::store(dwv + (t0 + t) * kConvDepthwiseLanes, acc[t]);
  }
};

// --- input gradient -------------------------------------------------------------------------
// The padded dx rows R0, R0 + SH, ... (RB of them, one residue mod SH, so the same kernel rows
// reach each, from dy rows one apart), NV vectors of their phase-p columns j from jcol: acc =
// sum over m, the kernel rows kh with (R0 - kh*DH) % SH == 0 and the kernel columns kw of
// phase p of w[m, kh, kw] * dyq[m, (R - kh*DH) / SH, j - (kw*DW) / SW]; stored to
// out[i*ldo + v*L] (the last vector masked to `last` lanes). Per tap: one weight broadcast,
// RB*NV loads of dyq, RB*NV FMAs.
template <class V, int RB, int NV>
struct Input {
  static constexpr bool ok = RB * NV <= V::kAcc;
  static void run(float* out, int64_t ldo, const float* dyq, const float* w, int64_t M,
                  const ConvDepthwiseShape& s, int64_t R0, int64_t p, int64_t jcol,
                  int64_t last) {
    using T = typename V::T;
    T acc[RB][NV];
    CNNKIT_UNROLL for (int i = 0; i < RB; ++i) {
      CNNKIT_UNROLL for (int v = 0; v < NV; ++v) acc[i][v] = V::zero();
    }
    const float* dm = dyq + (s.A * s.Wd + s.Q + jcol);
    const float* wm = w;
    for (int64_t m = 0; m < M; ++m, dm += s.Hd * s.Wd, wm += s.KH * s.KW) {
      int64_t rem = R0 % s.SH, oh = R0 / s.SH;  // R0 - kh*DH = oh*SH + rem, 0 <= rem < SH
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        if (rem == 0) {
          const float* dr = dm + oh * s.Wd;
          int64_t pk = 0, q = 0;  // kw*DW = q*SW + pk
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            if (pk == p) {
              const T wv = V::bcast(wm + kh * s.KW + kw);
              const float* d = dr - q;
              CNNKIT_UNROLL for (int i = 0; i < RB; ++i) {
                CNNKIT_UNROLL for (int v = 0; v < NV; ++v)
                  acc[i][v] = V::fma(wv, V::load(d + i * s.Wd + v * V::L), acc[i][v]);
              }
            }
            for (pk += s.DW; pk >= s.SW; pk -= s.SW) ++q;
          }
        }
        for (rem -= s.DH; rem < 0; rem += s.SH) --oh;
      }
    }
    const typename V::M mk = V::mask(last);
    CNNKIT_UNROLL for (int i = 0; i < RB; ++i) {
      float* o = out + i * ldo;
      CNNKIT_UNROLL for (int v = 0; v < NV - 1; ++v) V::store(o + v * V::L, acc[i][v]);
      V::store(o + (NV - 1) * V::L, acc[i][NV - 1], mk);
    }
  }
};

// --- tables of the instantiations ------------------------------------------------------------

using kernel_tables::fill;  // table[A][B] = &Kernel<V, A, B>::run, or null
template <class V, class Fn, int B>
constexpr Fn weight_entry() {
  if constexpr (B >= 1 && Weight<V, B>::ok)
    return &Weight<V, B>::run;
  else
    return nullptr;
}
template <class V, class Fn, int... B>
constexpr void fill_weight(Fn* row, std::integer_sequence<int, B...>) {
  ((row[B] = weight_entry<V, Fn, B>()), ...);
}

template <class V>
struct Tables {
  using ForwardFn = void (*)(float*, const float*, const float*, float,
                             const ConvDepthwiseShape&, int64_t, int64_t, int64_t);
  using WeightFn = void (*)(float*, const float*, const float*, const ConvDepthwiseShape&,
                            int64_t);
  using InputFn = void (*)(float*, int64_t, const float*, const float*, int64_t,
                           const ConvDepthwiseShape&, int64_t, int64_t, int64_t, int64_t);

  ForwardFn forward[kMaxRB + 1][kMaxNV + 1] = {};  // [RB][NV]
  WeightFn weight[kMaxTB + 1] = {};                // [TB]
  InputFn input[kMaxRB + 1][kMaxNV + 1] = {};      // [RB][NV]

  constexpr Tables() {
    fill<Forward, V>(forward, std::make_integer_sequence<int, kMaxRB + 1>());
    fill_weight<V>(weight, std::make_integer_sequence<int, kMaxTB + 1>());
    fill<Input, V>(input, std::make_integer_sequence<int, kMaxRB + 1>());
  }
};

template <class V>
inline constexpr Tables<V> kTables{};

// The entry points of one tier (ConvDepthwiseKernels), which split the work into blocks.
template <class V>
struct ConvDepthwise {
  static constexpr const Tables<V>& tables = kTables<V>;

  static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
  static int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }
  // [begin, end) of part i of n near-equal parts of [0, total).
  static int64_t part(int64_t total, int64_t n, int64_t i) { return total * i / n; }

  // A row of `n` floats in vectors: groups of at most kMaxNV near-equal vector counts, and the
  // rows per block that the accumulators allow for the widest group.
  struct RowSplit {
    int64_t vecs, groups, rb;
  };
  static RowSplit row_split(int64_t n) {
    const int64_t vecs = ceil_div(n, V::L), groups = ceil_div(vecs, kMaxNV);
    return {vecs, groups, min(kMaxRB, V::kAcc / ceil_div(vecs, groups))};
  }

  static void forward(float* y, const float* xq, const float* w, float bias,
                      const ConvDepthwiseShape& s) {
    const RowSplit r = row_split(s.OW);
    for (int64_t g = 0; g < r.groups; ++g) {
      const int64_t v0 = part(r.vecs, r.groups, g), v1 = part(r.vecs, r.groups, g + 1);
      const int64_t last = min(V::L, s.OW - (v1 - 1) * V::L);
      for (int64_t oh = 0; oh < s.OH; oh += r.rb)
        tables.forward[min(r.rb, s.OH - oh)][v1 - v0](y, xq, w, bias, s, oh, v0 * V::L, last);
    }
  }

  static void weight(float* dwv, const float* xq, const float* dy, const ConvDepthwiseShape& s) {
    const int64_t KK = s.KH * s.KW, nb = ceil_div(KK, min(kMaxTB, V::kRegs - 2));
    for (int64_t i = 0; i < nb; ++i) {
      const int64_t t0 = part(KK, nb, i), t1 = part(KK, nb, i + 1);
      tables.weight[t1 - t0](dwv, xq, dy, s, t0);
    }
  }

  static void input(float* dx, const float* dy, const float* w, int64_t M, float* scratch,
                    const ConvDepthwiseShape& s) {
    // dyq [M, Hd, Wd]: each dy row at column Q of row A + oh, zeros around it.
    float* dyq = scratch;
    for (int64_t m = 0; m < M; ++m) {
      float* plane = dyq + m * s.Hd * s.Wd;
      zero(plane, s.A * s.Wd);
      for (int64_t oh = 0; oh < s.OH; ++oh) {
        float* row = plane + (s.A + oh) * s.Wd;
        zero(row, s.Q);
        copy(row + s.Q, dy + (m * s.OH + oh) * s.OW, s.OW);
        zero(row + s.Q + s.OW, s.Wd - s.Q - s.OW);
      }
      zero(plane + (s.A + s.OH) * s.Wd, (s.Hd - s.A - s.OH) * s.Wd);
    }
    // At SW > 1 a block's phase-p columns go to a row buffer [kMaxRB, Wd], then to every
    // SW-th column of dx.
    float* rows = dyq + M * s.Hd * s.Wd;
    for (int64_t p = 0; p < s.SW; ++p) {
      // dx columns iw = iw0 + e*SW (e < n) have (PL + iw) % SW == p: phase position j0 + e.
      const int64_t iw0 = ((p - s.PL) % s.SW + s.SW) % s.SW;
      if (iw0 >= s.W) continue;
      const int64_t n = (s.W - 1 - iw0) / s.SW + 1, j0 = (s.PL + iw0) / s.SW;
      const RowSplit r = row_split(n);
      for (int64_t res = 0; res < s.SH; ++res) {
        // Padded rows R = R0 + i*SH of dx (ih = R - PT in [0, H)) with R % SH == res.
        const int64_t R0 = s.PT + ((res - s.PT) % s.SH + s.SH) % s.SH;
        if (R0 >= s.PT + s.H) continue;
        const int64_t nr = (s.PT + s.H - 1 - R0) / s.SH + 1;
        for (int64_t i0 = 0; i0 < nr; i0 += r.rb) {
          const int64_t rb = min(r.rb, nr - i0), R = R0 + i0 * s.SH;
          for (int64_t g = 0; g < r.groups; ++g) {
            const int64_t v0 = part(r.vecs, r.groups, g), v1 = part(r.vecs, r.groups, g + 1);
            const int64_t last = min(V::L, n - (v1 - 1) * V::L);
            float* out = s.SW == 1 ? dx + (R - s.PT) * s.W + v0 * V::L : rows + v0 * V::L;
            const int64_t ldo = s.SW == 1 ? s.SH * s.W : s.Wd;
            tables.input[rb][v1 - v0](out, ldo, dyq, w, M, s, R, p, j0 + v0 * V::L, last);
          }
          if (s.SW > 1)
            for (int64_t i = 0; i < rb; ++i) {
              float* dr = dx + (R + i * s.SH - s.PT) * s.W + iw0;
              const float* src = rows + i * s.Wd;
              for (int64_t e = 0; e < n; ++e) dr[e * s.SW] = src[e];
            }
        }
      }
    }
  }

  // dst [n] = 0 / = src [n], in vectors (the last one masked: nothing past either is touched).
  static void zero(float* dst, int64_t n) {
    for (int64_t j = 0; j < n; j += V::L) V::store(dst + j, V::zero(), V::mask(n - j));
  }
  static void copy(float* dst, const float* src, int64_t n) {
    for (int64_t j = 0; j < n; j += V::L) {
      const typename V::M m = V::mask(n - j);
      V::store(dst + j, V::loadz(src + j, m), m);
    }
  }
};

#undef CNNKIT_UNROLL

}  // namespace conv_depthwise_impl
}  // namespace cnnkit
