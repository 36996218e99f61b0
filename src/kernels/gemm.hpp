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
  // The packed panels of pack(o0, no, k0, nk, width, ...) already in memory, if the operand
  // holds them: panel p (its nk groups of `width` floats, zero padding included) starts at
  // the result + p * *panel_stride. Null (the default) when the driver must call pack().
  virtual const float* panels(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
                              int64_t* panel_stride) const {
    (void)o0, (void)no, (void)k0, (void)nk, (void)width, (void)panel_stride;
    return nullptr;
  }
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

// An operand packed once whole, for one re-used by many GEMMs (a convolution's weights across
// its images): `packed` holds src.pack(0, no, 0, K, width, packed), panels over all of K.
// For requests at that width that start on a panel and end on one or at no (what the driver
// asks of A), panels() points the driver into `packed` (panel stride K * width: no copy) and
// pack() copies those panels; any other request goes to src.
class PrepackedOperand final : public GemmOperand {
 public:
  PrepackedOperand(const float* packed, int64_t no, int64_t K, int width,
                   const GemmOperand& src)
      : packed_(packed), no_(no), K_(K), width_(width), src_(src) {}
  static int64_t floats(int64_t no, int64_t K, int width) {
    return (no + width - 1) / width * width * K;
  }
  void pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
            float* dst) const override;
  const float* panels(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
                      int64_t* panel_stride) const override;

 private:
  bool holds(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width) const;
  const float* packed_;
  int64_t no_, K_;
  int width_;
  const GemmOperand& src_;
};

// packed [PrepackedOperand::floats(no, K, width)] = src.pack(0, no, 0, K, width, packed),
// its panels split over the threads (each writes its own panels: the same floats for any
// thread count).
void gemm_prepack(const GemmOperand& src, int64_t no, int64_t K, int width, float* packed);

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
// inside a parallel region. Runs the active SIMD tier unless one is given (a tier this build
// or CPU cannot run falls back to gemm__ref); tiers round differently from each other.
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

// --- the blocked driver and its microkernels (the tiers' contract) --------------------------
//
// The driver (gemm.cpp) calls the operands' pack() once per block, never per element:
//   A.pack(i0, mc, p0, kc, MR, buf)  mc <= MC, kc <= KC: an MC x KC block of A, once per
//                                    (NC panel, KC slice, MC block), unless A.panels() gives
//                                    that block's panels in place;
//   B.pack(j0, nc, p0, kc, NR, buf)  nc <= 4 * NR, kc <= KC: 4 micro-panels of B at a time,
//                                    each packed once per (NC panel, KC slice), just before
//                                    the first MC block's tiles use them;
// with absolute offsets i0, j0, p0 (a thread's part of C starts at any multiple of MR or NR;
// kc is K split into equal slices of at most KC). buf is 64-byte aligned; pack() writes all
// ceil(no / width) panels, zero padding included. A 1024^3 GEMM on the AVX2 tier makes 24 A
// calls and 48 B calls of 22-49 K floats each, so a virtual call per block is noise.

// What a microkernel does with the product P[MR, NR] of one packed A micro-panel and one
// packed B micro-panel over a KC slice: c = alpha * P + beta * c (beta == 0: c is not read),
// then, on the last slice only, + row_bias[i] + col_bias[j] and max(., 0) when relu.
struct GemmTileArgs {
  float alpha;
  float beta;
  const float* row_bias;  // [m] or null
  const float* col_bias;  // [n] or null
  bool relu;
};

// c [m, n] (row stride ldc; 1 <= m <= MR, 1 <= n <= NR: an edge tile is partial) updated from
// a [kc, MR] (a[k * MR + i]) and b [kc, NR] (b[k * NR + j], 64-byte aligned), kc >= 1; nothing
// outside c [m, n], row_bias [m], col_bias [n] is read or written. Each c[i, j] sums its kc
// products in k order with the same instructions whether its tile is full or partial, so a
// result does not depend on where tiles fall (thread-count independence rests on this).
using GemmMicrokernel = void (*)(int64_t kc, const float* a, const float* b, float* c,
                                 int64_t ldc, int m, int n, const GemmTileArgs& args);

// One SIMD tier's GEMM: its microkernel and the block sizes tuned for it. MC is a multiple of
// MR and NC of NR; a KC x NR micro-panel of B should fit in L1, an MC x KC block of A in L2.
struct GemmKernel {
  const char* name;
  int MR, NR;
  int64_t MC, KC, NC;
  GemmMicrokernel micro;
};

// The blocked kernel of a tier (portable; avx2, avx512 when built and supported); null for ref
// and for a tier this build or CPU cannot run.
const GemmKernel* gemm_kernel(SimdTier tier);

// How gemm_blocked splits C [M, N] over the threads (when called outside a parallel region):
// `threads` ranges of columns (each thread then packs all of A) or of rows (all of B).
struct GemmSplit {
  int threads;
  bool columns;
};
GemmSplit gemm_split(const GemmKernel& kernel, int64_t M, int64_t N, int64_t K);

// The blocked driver on an explicit kernel (benchmarks tune block sizes through it); gemm()
// is this with gemm_kernel(tier).
void gemm_blocked(const GemmKernel& kernel, int64_t M, int64_t N, int64_t K, float alpha,
                  const GemmOperand& A, const GemmOperand& B, float beta, float* C,
                  int64_t ldc, const GemmEpilogue& epilogue = {});

// Per-tier kernels, defined beside their microkernels (gemm_portable.cpp, gemm_avx2.cpp,
// gemm_avx512.cpp).
extern const GemmKernel gemm_kernel__portable;
extern const GemmKernel gemm_kernel__avx2;
extern const GemmKernel gemm_kernel__avx512;

// The truth the other tiers are tested against: the textbook triple loop (K innermost, in
// order, float accumulation), reading the operands through pack() one element at a time.
void gemm__ref(int64_t M, int64_t N, int64_t K, float alpha, const GemmOperand& A,
               const GemmOperand& B, float beta, float* C, int64_t ldc,
               const GemmEpilogue& epilogue);

}  // namespace cnnkit
