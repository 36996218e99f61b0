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
  // At two threads, half the rows each with single-threaded GEMMs: the GEMM keeps a layer as
  // small as LeNet-5's fc2 (64 x 120 -> 84, 1.3 MFLOP) on one thread (9.0 -> 6.7 us), and
  // splits larger ones no better (fc1: 23.6 / 23.5 us). Each row's result is computed alike
  // either way: the same bits for any thread count.
  const int64_t flops = 2 * N * IN * OUT;
  if (num_threads() == 2 && N >= 16 && flops >= 4 * kMinWorkPerThread &&
      threads_for(2, flops) == 2) {
    parallel_chunks(N, 2, [&](int64_t n0, int64_t n1, int) {
      gemm(n1 - n0, OUT, IN, 1.0f, gemm_a(x + n0 * IN, IN, false), gemm_b(w, IN, true), 0.0f,
           y + n0 * OUT, OUT, ep);
    });
    return;
  }
  gemm(N, OUT, IN, 1.0f, gemm_a(x, IN, false), gemm_b(w, IN, true), 0.0f, y, OUT, ep);
}

namespace {

// db [OUT] = column sums of dy [N, OUT]: threads own disjoint column ranges and add rows in
// order, so the result does not depend on the thread count.
void bias_grad(float* db, const float* dy, int64_t N, int64_t OUT) {
  parallel_for(OUT, N * OUT, [=](int64_t j0, int64_t j1, int) {
    for (int64_t j = j0; j < j1; ++j) db[j] = 0.0f;
    for (int64_t n = 0; n < N; ++n) {
      const float* row = dy + n * OUT;
#pragma omp simd
      for (int64_t j = j0; j < j1; ++j) db[j] += row[j];
    }
  });
}

}  // namespace

void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int64_t N, int64_t IN, int64_t OUT) {
  // dx [N, IN] = dy [N, OUT] · w [OUT, IN]
  auto input_grad = [=] {
    gemm(N, IN, OUT, 1.0f, gemm_a(dy, OUT, false), gemm_b(w, IN, false), 0.0f, dx, IN);
  };
  // dw [OUT, IN] = (dy [N, OUT])^T · x [N, IN]; db
  auto param_grads = [=] {
    if (dw) gemm(OUT, IN, N, 1.0f, gemm_a(dy, OUT, true), gemm_b(x, IN, false), 0.0f, dw, IN);
    if (db) bias_grad(db, dy, N, OUT);
  };
  // At two threads (more: the GEMMs split themselves), when both products are worth a
  // thread: one product per thread, each GEMM single-threaded inside the region, instead of
  // both splitting every small GEMM's blocks (LeNet-5 fc1 backward at batch 64: 43 -> 36 us).
  // A GEMM's result does not depend on its thread count, so neither does this.
  const int64_t flops = 2 * N * IN * OUT;
  if (dx && dw && num_threads() == 2 && threads_for(2, 2 * flops) == 2 &&
      flops >= 4 * kMinWorkPerThread) {
    parallel_chunks(2, 2, [&](int64_t b, int64_t, int) { b == 0 ? input_grad() : param_grads(); });
    return;
  }
  if (dx) input_grad();
  param_grads();
}

}  // namespace cnnkit
