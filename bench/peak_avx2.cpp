// The FP32 FMA peak, measured: each thread runs 12 independent chains of 8-wide FMAs (enough
// to cover the FMA latency on both pipes), so the loop is bound by FMA throughput alone.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "bench_common.hpp"
#include "kernels/simd.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace bench {

namespace {
float fma_chains(int64_t iters) {
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
}  // namespace

double fma_peak_gflops(int threads) {
  if (!cnnkit::simd_tier_supported(cnnkit::SimdTier::avx2)) return 0.0;
  const int64_t iters = 20'000'000;  // ~0.1 s per run at ~3 GHz
  std::vector<double> runs;
  volatile float sink = 0.0f;
  for (int r = 0; r < 5; ++r) {
    auto t0 = std::chrono::steady_clock::now();
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    { sink = sink + fma_chains(iters); }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    runs.push_back(2.0 * 8 * 12 * iters * threads / s * 1e-9);
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

}  // namespace bench
