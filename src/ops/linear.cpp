// Linear layer as three GEMMs: forward y = x · W^T (+ b via the epilogue), input gradient
// dx = dy · W, weight gradient dW = dy^T · x; the bias gradient is the column sum of dy. A
// forward on a few rows (inference on one image) runs dot products instead (kernels/gemv.hpp):
// the GEMM would pack all of W for them.
#include "ops/linear.hpp"

#include <vector>

#include "kernels/gemm.hpp"
#include "kernels/gemv.hpp"
#include "parallel.hpp"

namespace cnnkit {

void linear_forward(float* y, const float* x, const float* w, const float* b, int64_t N,
                    int64_t IN, int64_t OUT) {
  if (N <= kGemvMaxRows && IN > 0) {
    if (const GemvKernels* k = gemv_kernels(active_simd_tier())) {
      // Threads own disjoint ranges of outputs, each computed alone: the same bits for any
      // thread count.
      parallel_for(OUT, 2 * N * IN * OUT, [=](int64_t o0, int64_t o1, int) {
        k->linear_rows(y, x, w, b, N, IN, OUT, o0, o1);
      });
      return;
    }
  }
  GemmEpilogue ep;
  ep.col_bias = b;
  // y [N, OUT] = x [N, IN] · (w [OUT, IN])^T
  gemm(N, OUT, IN, 1.0f, gemm_a(x, IN, false), gemm_b(w, IN, true), 0.0f, y, OUT, ep);
}

void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int64_t N, int64_t IN, int64_t OUT) {
  if (dx)  // dx [N, IN] = dy [N, OUT] · w [OUT, IN]
    gemm(N, IN, OUT, 1.0f, gemm_a(dy, OUT, false), gemm_b(w, IN, false), 0.0f, dx, IN);
  if (dw)  // dw [OUT, IN] = (dy [N, OUT])^T · x [N, IN]
    gemm(OUT, IN, N, 1.0f, gemm_a(dy, OUT, true), gemm_b(x, IN, false), 0.0f, dw, IN);
  if (db) {
    // Column sums of dy: threads own disjoint column ranges and add rows in order, so the
    // result does not depend on the thread count.
    parallel_for(OUT, N * OUT, [=](int64_t j0, int64_t j1, int) {
      for (int64_t j = j0; j < j1; ++j) db[j] = 0.0f;
      for (int64_t n = 0; n < N; ++n) {
        const float* row = dy + n * OUT;
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) db[j] += row[j];
      }
    });
  }
}

}  // namespace cnnkit
