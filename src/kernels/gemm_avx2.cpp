// The AVX2+FMA tier: a 6 x 16 microkernel (BLIS's shape for this class of core). 12 ymm
// accumulators, 2 ymm for the row of B, 1 for the broadcast of A: 15 of the 16 registers;
// per k, 2 loads + 6 broadcasts feed 12 FMAs. Built with -mavx2 -mfma and only ever run when
// the CPU has both: this file holds intrinsics and plain code only (no std:: templates or
// header inlines that a baseline file could share, which the linker might then pick from here).
#include <immintrin.h>

#include "kernels/gemm.hpp"

namespace cnnkit {

namespace {

constexpr int kMR = 6, kNR = 16;

// One k step: B row k (2 vectors) times the 6 values of A column k, into the accumulators.
#define CNNKIT_GEMM_6X16_STEP(K)                                                     \
  do {                                                                               \
    const __m256 b0 = _mm256_load_ps(b + (K) * kNR), b1 = _mm256_load_ps(b + (K) * kNR + 8); \
    __m256 ai = _mm256_broadcast_ss(a + (K) * kMR + 0);                              \
    c00 = _mm256_fmadd_ps(ai, b0, c00);                                              \
    c01 = _mm256_fmadd_ps(ai, b1, c01);                                              \
    ai = _mm256_broadcast_ss(a + (K) * kMR + 1);                                     \
    c10 = _mm256_fmadd_ps(ai, b0, c10);                                              \
    c11 = _mm256_fmadd_ps(ai, b1, c11);                                              \
    ai = _mm256_broadcast_ss(a + (K) * kMR + 2);                                     \
    c20 = _mm256_fmadd_ps(ai, b0, c20);                                              \
    c21 = _mm256_fmadd_ps(ai, b1, c21);                                              \
    ai = _mm256_broadcast_ss(a + (K) * kMR + 3);                                     \
    c30 = _mm256_fmadd_ps(ai, b0, c30);                                              \
    c31 = _mm256_fmadd_ps(ai, b1, c31);                                              \
    ai = _mm256_broadcast_ss(a + (K) * kMR + 4);                                     \
    c40 = _mm256_fmadd_ps(ai, b0, c40);                                              \
    c41 = _mm256_fmadd_ps(ai, b1, c41);                                              \
    ai = _mm256_broadcast_ss(a + (K) * kMR + 5);                                     \
    c50 = _mm256_fmadd_ps(ai, b0, c50);                                              \
    c51 = _mm256_fmadd_ps(ai, b1, c51);                                              \
  } while (0)

void gemm_micro_6x16__avx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                           int m, int n, const GemmTileArgs& t) {
  // Named accumulators, not an array: GCC keeps these in registers, an array it spills.
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
         c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int i = 0; i < m; ++i) {  // the tile of C, needed after the loop
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + n - 1), _MM_HINT_T0);
  }
  int64_t k = 0;
  for (; k + 4 <= kc; k += 4, a += 4 * kMR, b += 4 * kNR) {
    CNNKIT_GEMM_6X16_STEP(0);
    CNNKIT_GEMM_6X16_STEP(1);
    CNNKIT_GEMM_6X16_STEP(2);
    CNNKIT_GEMM_6X16_STEP(3);
  }
  for (; k < kc; ++k, a += kMR, b += kNR) CNNKIT_GEMM_6X16_STEP(0);
  const __m256 acc[kMR][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                              {c30, c31}, {c40, c41}, {c50, c51}};

  // Lanes j < n of the two halves: full tiles use plain loads and stores, partial ones the
  // masked forms, with the same arithmetic in between.
  const bool full = n == kNR;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i mask0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
  const __m256i mask1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8), lane);
  const __m256 alpha = _mm256_set1_ps(t.alpha), beta = _mm256_set1_ps(t.beta);
  const __m256 zero = _mm256_setzero_ps();
  __m256 cb0 = zero, cb1 = zero;
  if (t.col_bias) {
    cb0 = full ? _mm256_loadu_ps(t.col_bias) : _mm256_maskload_ps(t.col_bias, mask0);
    cb1 = full ? _mm256_loadu_ps(t.col_bias + 8) : _mm256_maskload_ps(t.col_bias + 8, mask1);
  }
  for (int i = 0; i < kMR; ++i) {
    if (i == m) break;
    float* ci = c + i * ldc;
    __m256 v0 = _mm256_mul_ps(alpha, acc[i][0]), v1 = _mm256_mul_ps(alpha, acc[i][1]);
    if (t.beta != 0.0f) {
      v0 = _mm256_fmadd_ps(beta, full ? _mm256_loadu_ps(ci) : _mm256_maskload_ps(ci, mask0), v0);
      v1 = _mm256_fmadd_ps(beta, full ? _mm256_loadu_ps(ci + 8) : _mm256_maskload_ps(ci + 8, mask1),
                           v1);
    }
    if (t.row_bias) {
      const __m256 rb = _mm256_broadcast_ss(t.row_bias + i);
      v0 = _mm256_add_ps(v0, rb);
      v1 = _mm256_add_ps(v1, rb);
    }
    if (t.col_bias) {
      v0 = _mm256_add_ps(v0, cb0);
      v1 = _mm256_add_ps(v1, cb1);
    }
    if (t.relu) {  // max(0, v) returns v when v is NaN, as std::max(v, 0) in gemm__ref
      v0 = _mm256_max_ps(zero, v0);
      v1 = _mm256_max_ps(zero, v1);
    }
    if (full) {
      _mm256_storeu_ps(ci, v0);
      _mm256_storeu_ps(ci + 8, v1);
    } else {
      _mm256_maskstore_ps(ci, mask0, v0);
      _mm256_maskstore_ps(ci + 8, mask1, v1);
    }
  }
}

#undef CNNKIT_GEMM_6X16_STEP

}  // namespace

// KC x NR of B = 24 KiB at KC 384 (half the 48 KiB L1 of Zen 5; KC 256 and 512 measured the
// same within noise); MC x KC of A = 216 KiB (L2: 1 MiB); NC is BLIS's for Zen.
const GemmKernel gemm_kernel__avx2 = {"6x16 avx2", kMR, kNR, 144, 384, 4080,
                                      &gemm_micro_6x16__avx2};

}  // namespace cnnkit
