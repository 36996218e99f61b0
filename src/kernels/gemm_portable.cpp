// The portable tier: the blocked driver with a microkernel in plain loops that the compiler
// vectorises at the baseline ISA (on x86-64, SSE2: 4 lanes, 16 registers). 6 x 8 keeps the
// 12 four-wide accumulators, 2 vectors of B and a broadcast of A in the 16 registers.
#include "kernels/gemm.hpp"

namespace cnnkit {

namespace {

constexpr int kMR = 6, kNR = 8;

void gemm_micro_6x8__portable(int64_t kc, const float* a, const float* b, float* c,
                              int64_t ldc, int m, int n, const GemmTileArgs& t) {
  float acc[kMR][kNR] = {};
  for (int64_t k = 0; k < kc; ++k, a += kMR, b += kNR)
    for (int i = 0; i < kMR; ++i) {
#pragma omp simd
      for (int j = 0; j < kNR; ++j) acc[i][j] += a[i] * b[j];
    }
  for (int i = 0; i < m; ++i) {
    float* ci = c + i * ldc;
    const float rb = t.row_bias ? t.row_bias[i] : 0.0f;
    for (int j = 0; j < n; ++j) {
      float v = t.alpha * acc[i][j];
      if (t.beta != 0.0f) v += t.beta * ci[j];
      if (t.row_bias) v += rb;
      if (t.col_bias) v += t.col_bias[j];
      if (t.relu) v = v < 0.0f ? 0.0f : v;  // NaN stays NaN, as std::max(v, 0) in gemm__ref
      ci[j] = v;
    }
  }
}

}  // namespace

// KC x NR of B = 8 KiB at KC 256 (L1); MC x KC of A = 144 KiB (L2).
const GemmKernel gemm_kernel__portable = {"6x8 portable", kMR, kNR, 144, 256, 4096,
                                          &gemm_micro_6x8__portable};

}  // namespace cnnkit
