// The inner loop of the 512-bit FMA peak (bench_gemm.cpp times it): 16 independent chains of
// 16-wide FMAs, enough to cover the FMA latency on both pipes, so the loop is bound by FMA
// throughput alone. Built with -mavx512f; intrinsics only, the timing lives in baseline code.
#include <immintrin.h>

#include "peak_isa.hpp"

namespace bench {

float fma_chains__avx512(int64_t iters) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  for (int i = 1; i < 16; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
  return _mm512_reduce_add_ps(acc[0]);  // keeps the chains alive
}

}  // namespace bench
