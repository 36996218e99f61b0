// Single-precision GEMM, C[M, N] = alpha * A[M, K] · B[K, N] + beta * C + epilogue, for every
// matrix product in cnnkit. GotoBLAS/BLIS structure: the driver blocks K (KC) and N (NC) and M
// (MC), packs A and B into micro-panels, and an MR x NR register-blocked microkernel of the
// active SIMD tier does the arithmetic.
//
// The driver reads A and B only through GemmOperand::pack, so an operand need not exist as a
// matrix: convolution packs its input image in im2col order straight from NCHW (implicit
// GEMM). A dense strided matrix is the DenseOperand.
#pragma once

#include <cstdint>

#include "kernels/simd.hpp"

namespace cnnkit {

// One GEMM operand seen from the driver: a matrix X(o, k) with an outer index o (the M index
// of A, the N index of B) and the shared K index.
class GemmOperand {
 public:
  virtual ~GemmOperand() = default;
  // Packs X(o0 .. o0+no-1, k0 .. k0+nk-1) into ceil(no / width) panels; panel p holds nk
  // groups of `width` consecutive floats:
  //   dst[(p * nk + k) * width + r] = X(o0 + p * width + r, k0 + k),
  // and 0 where p * width + r >= no (edge tiles go through zero padding, not a slow path).
  // May be called concurrently from several threads on disjoint dst.
  virtual void pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
                    float* dst) const = 0;
};

// A dense strided matrix: X(o, k) = data[o * outer_stride + k * k_stride].
class DenseOperand final : public GemmOperand {
 public:
  DenseOperand(const float* data, int64_t outer_stride, int64_t k_stride)
      : data_(data), so_(outer_stride), sk_(k_stride) {}
  void pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
            float* dst) const override;

 private:
  const float* data_;
  int64_t so_, sk_;
};

// Row-major A (M x K, or K x M stored when trans) and B (K x N, or N x K stored when trans),
// with their leading dimensions, as operands.
inline DenseOperand gemm_a(const float* a, int64_t lda, bool trans) {
  return trans ? DenseOperand(a, 1, lda) : DenseOperand(a, lda, 1);
}
inline DenseOperand gemm_b(const float* b, int64_t ldb, bool trans) {
  return trans ? DenseOperand(b, ldb, 1) : DenseOperand(b, 1, ldb);
}

// Added to the finished C: C[i, j] += row_bias[i] (if set) + col_bias[j] (if set); then
// C = max(C, 0) when relu. Applied once per element, after all of K.
struct GemmEpilogue {
  const float* row_bias = nullptr;  // [M]
  const float* col_bias = nullptr;  // [N]
  bool relu = false;
};

// C [M, N] (row stride ldc) = alpha * A · B + beta * C, then the epilogue. A is M x K, B is
// K x N (seen as its N x K transpose through the operand). beta == 0 makes C write-only: it is
// never read, so garbage or NaN in it does not propagate (BLAS convention). K == 0 gives
// beta * C + epilogue. Threads: up to num_threads(), each computing a disjoint block of C with
// the same K order, so the result does not depend on the thread count; 1 thread when called
// inside a parallel region. Runs the active SIMD tier unless one is given.
void gemm(int64_t M, int64_t N, int64_t K, float alpha, const GemmOperand& A,
          const GemmOperand& B, float beta, float* C, int64_t ldc,
          const GemmEpilogue& epilogue = {});
void gemm(SimdTier tier, int64_t M, int64_t N, int64_t K, float alpha, const GemmOperand& A,
          const GemmOperand& B, float beta, float* C, int64_t ldc,
          const GemmEpilogue& epilogue = {});

// BLAS-like convenience over row-major arrays.
inline void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                  int64_t ldc) {
  gemm(M, N, K, alpha, gemm_a(A, lda, trans_a), gemm_b(B, ldb, trans_b), beta, C, ldc);
}

// The truth the other tiers are tested against: the textbook triple loop (K innermost, in
// order, float accumulation), reading the operands through pack() one element at a time.
void gemm__ref(int64_t M, int64_t N, int64_t K, float alpha, const GemmOperand& A,
               const GemmOperand& B, float beta, float* C, int64_t ldc,
               const GemmEpilogue& epilogue);

}  // namespace cnnkit
