// The inner loop of the 256-bit FMA peak (bench_common.cpp times it): 12 independent chains of
// 8-wide FMAs, enough to cover the FMA latency on both pipes, so the loop is bound by FMA
// throughput alone. Built with -mavx2 -mfma; intrinsics only, the timing lives in baseline code.
#include <immintrin.h>

#include "peak_isa.hpp"

namespace bench {

float fma_chains__avx2(int64_t iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(0.001f * i);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  for (int i = 1; i < 12; ++i) acc[0] = _mm256_add_ps(acc[0], acc[i]);
  float out[8];
  _mm256_storeu_ps(out, acc[0]);
  return out[0];  // keeps the chains alive
}

}  // namespace bench
