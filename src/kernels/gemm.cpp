// GEMM dispatch. Placeholder until the blocked driver lands: every tier runs gemm__ref.
#include "kernels/gemm.hpp"

namespace cnnkit {

void gemm(SimdTier, int64_t M, int64_t N, int64_t K, float alpha, const GemmOperand& A,
          const GemmOperand& B, float beta, float* C, int64_t ldc, const GemmEpilogue& ep) {
  gemm__ref(M, N, K, alpha, A, B, beta, C, ldc, ep);
}

void gemm(int64_t M, int64_t N, int64_t K, float alpha, const GemmOperand& A,
          const GemmOperand& B, float beta, float* C, int64_t ldc, const GemmEpilogue& ep) {
  gemm(active_simd_tier(), M, N, K, alpha, A, B, beta, C, ldc, ep);
}

}  // namespace cnnkit
