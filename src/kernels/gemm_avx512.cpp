// The AVX-512 tier: an 8 x 32 microkernel. 16 zmm accumulators (8 rows x 2 vectors of 16),
// 2 zmm for the row of B, the 8 values of A broadcast from memory: per k, 2 loads + 8
// broadcasts feed 16 FMAs, and 16 independent chains cover the FMA latency of both pipes.
// MR 8 divides the usual channel counts (16, 32, 64 ...), so conv GEMMs waste no rows.
// Built with -mavx512f and only ever run when the CPU has it: this file holds intrinsics and
// plain code only (no std:: templates or header inlines that a baseline file could share,
// which the linker might then pick from here).
#include <immintrin.h>

#include "kernels/gemm.hpp"

namespace cnnkit {

namespace {

constexpr int kMR = 8, kNR = 32;

// One k step: B row k (2 vectors) times the 8 values of A column k, into the accumulators.
#define CNNKIT_GEMM_8X32_ROW(I)                                     \
  do {                                                              \
    const __m512 ai = _mm512_set1_ps(a[(K) * kMR + (I)]);           \
    c##I##0 = _mm512_fmadd_ps(ai, b0, c##I##0);                     \
    c##I##1 = _mm512_fmadd_ps(ai, b1, c##I##1);                     \
  } while (0)
#define CNNKIT_GEMM_8X32_STEP(KK)                                                        \
  do {                                                                                   \
    constexpr int K = (KK);                                                              \
    const __m512 b0 = _mm512_load_ps(b + K * kNR), b1 = _mm512_load_ps(b + K * kNR + 16); \
    CNNKIT_GEMM_8X32_ROW(0);                                                             \
    CNNKIT_GEMM_8X32_ROW(1);                                                             \
    CNNKIT_GEMM_8X32_ROW(2);                                                             \
    CNNKIT_GEMM_8X32_ROW(3);                                                             \
    CNNKIT_GEMM_8X32_ROW(4);                                                             \
    CNNKIT_GEMM_8X32_ROW(5);                                                             \
    CNNKIT_GEMM_8X32_ROW(6);                                                             \
    CNNKIT_GEMM_8X32_ROW(7);                                                             \
  } while (0)

void gemm_micro_8x32__avx512(int64_t kc, const float* a, const float* b, float* c,
                             int64_t ldc, int m, int n, const GemmTileArgs& t) {
  // Named accumulators, not an array: GCC keeps these in registers, an array it may spill.
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
         c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00,
         c61 = c00, c70 = c00, c71 = c00;
  for (int i = 0; i < m; ++i) {  // the tile of C, needed after the loop
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + n - 1), _MM_HINT_T0);
  }
  int64_t k = 0;
  for (; k + 4 <= kc; k += 4, a += 4 * kMR, b += 4 * kNR) {
    CNNKIT_GEMM_8X32_STEP(0);
    CNNKIT_GEMM_8X32_STEP(1);
    CNNKIT_GEMM_8X32_STEP(2);
    CNNKIT_GEMM_8X32_STEP(3);
  }
  for (; k < kc; ++k, a += kMR, b += kNR) CNNKIT_GEMM_8X32_STEP(0);
  const __m512 acc[kMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},
                              {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};

  // Lanes j < n of the two halves: full tiles use plain loads and stores (masked ones made
  // the 1024^3 GEMM ~15% slower on Zen 5), partial ones the masked forms, with the same
  // arithmetic in between.
  const __mmask16 mask0 = n >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << n) - 1);
  const __mmask16 mask1 = n >= 32 ? 0xFFFF
                          : n > 16 ? static_cast<__mmask16>((1u << (n - 16)) - 1)
                                   : 0;
  const bool full = n == kNR;
  const __m512 alpha = _mm512_set1_ps(t.alpha), beta = _mm512_set1_ps(t.beta);
  const __m512 zero = _mm512_setzero_ps();
  __m512 cb0 = zero, cb1 = zero;
  if (t.col_bias) {
    cb0 = _mm512_maskz_loadu_ps(mask0, t.col_bias);
    cb1 = _mm512_maskz_loadu_ps(mask1, t.col_bias + 16);
  }
  for (int i = 0; i < kMR; ++i) {
    if (i == m) break;
    float* ci = c + i * ldc;
    __m512 v0 = _mm512_mul_ps(alpha, acc[i][0]), v1 = _mm512_mul_ps(alpha, acc[i][1]);
    if (t.beta != 0.0f) {
      v0 = _mm512_fmadd_ps(beta, full ? _mm512_loadu_ps(ci) : _mm512_maskz_loadu_ps(mask0, ci),
                           v0);
      v1 = _mm512_fmadd_ps(
          beta, full ? _mm512_loadu_ps(ci + 16) : _mm512_maskz_loadu_ps(mask1, ci + 16), v1);
    }
    if (t.row_bias) {
      const __m512 rb = _mm512_set1_ps(t.row_bias[i]);
      v0 = _mm512_add_ps(v0, rb);
      v1 = _mm512_add_ps(v1, rb);
    }
    if (t.col_bias) {
      v0 = _mm512_add_ps(v0, cb0);
      v1 = _mm512_add_ps(v1, cb1);
    }
    if (t.relu) {  // v < 0 ? 0 : v, std::max(v, 0) of gemm__ref: NaN stays NaN
      v0 = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v0, zero, _CMP_LT_OQ), v0, zero);
      v1 = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v1, zero, _CMP_LT_OQ), v1, zero);
    }
    if (full) {
      _mm512_storeu_ps(ci, v0);
      _mm512_storeu_ps(ci + 16, v1);
    } else {
      _mm512_mask_storeu_ps(ci, mask0, v0);
      _mm512_mask_storeu_ps(ci + 16, mask1, v1);
    }
  }
}

#undef CNNKIT_GEMM_8X32_STEP
#undef CNNKIT_GEMM_8X32_ROW

}  // namespace

// KC 512: the B micro-panel (64 KiB) outgrows L1 but streams well from L2, and fewer K slices
// mean fewer passes over C (KC 256 -> 512: 2048^3 ~225 -> ~232 GFLOP/s; 256 and 512 tie on
// the smaller shapes). MC x KC of A = 288 KiB (L2: 1 MiB).
const GemmKernel gemm_kernel__avx512 = {"8x32 avx512", kMR, kNR, 144, 512, 4096,
                                        &gemm_micro_8x32__avx512};

}  // namespace cnnkit
