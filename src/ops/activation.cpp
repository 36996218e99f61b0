// Elementwise activations: flat loops the compiler vectorises (omp simd; sigmoid and tanh,
// compute-bound, per ISA in kernels/elementwise*.cpp), threaded over contiguous chunks when
// the array is large enough to pay for a parallel region.
#include "ops/activation.hpp"

#include "kernels/elementwise.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {
// Runs f(begin, end) over [0, n) in parallel chunks; `cost` is work per element. Each f
// calls a loop function that takes its pointers by value: a loop written in the lambda reads
// them through the closure in the OpenMP-outlined function, and GCC does not vectorise it
// when a float store might alias the captured data (dropout ran 3.5x slower on 2 threads).
template <class F>
void elementwise(int64_t n, int64_t cost, F&& f) {
  parallel_for(n, n * cost, [&](int64_t b, int64_t e, int) { f(b, e); });
}

void relu_range(float* y, const float* x, int64_t b, int64_t e) {
#pragma omp simd
  for (int64_t i = b; i < e; ++i) y[i] = x[i] > 0.0f ? x[i] : (x[i] != x[i] ? x[i] : 0.0f);
}

void relu_backward_range(float* dx, const float* dy, const float* y, int64_t b, int64_t e) {
#pragma omp simd
  for (int64_t i = b; i < e; ++i) {
    // Load dy unconditionally: as a conditional load inside the ?: GCC would neither
    // vectorise nor if-convert it, and the branch mispredicts on random signs (4.5 ns per
    // element measured, 25x the blend).
    const float g = dy[i];
    dx[i] = y[i] > 0.0f ? g : 0.0f;
  }
}

void sigmoid_backward_range(float* dx, const float* dy, const float* y, int64_t b, int64_t e) {
#pragma omp simd
  for (int64_t i = b; i < e; ++i) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

void tanh_backward_range(float* dx, const float* dy, const float* y, int64_t b, int64_t e) {
#pragma omp simd
  for (int64_t i = b; i < e; ++i) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}
}  // namespace

void relu_forward(float* y, const float* x, int64_t n) {
  elementwise(n, 1, [=](int64_t b, int64_t e) { relu_range(y, x, b, e); });
}

void relu_backward(float* dx, const float* dy, const float* y, int64_t n) {
  elementwise(n, 1, [=](int64_t b, int64_t e) { relu_backward_range(dx, dy, y, b, e); });
}

// sigmoid and tanh run the active tier's loops (kernels/elementwise.hpp): the same bits at any
// vector width.
void sigmoid_forward(float* y, const float* x, int64_t n) {
  const auto f = elementwise_kernels(active_simd_tier()).sigmoid;
  elementwise(n, 4, [=](int64_t b, int64_t e) { f(y, x, b, e); });
}

void sigmoid_backward(float* dx, const float* dy, const float* y, int64_t n) {
  elementwise(n, 2, [=](int64_t b, int64_t e) { sigmoid_backward_range(dx, dy, y, b, e); });
}

void tanh_forward(float* y, const float* x, int64_t n) {
  const auto f = elementwise_kernels(active_simd_tier()).tanh;
  elementwise(n, 4, [=](int64_t b, int64_t e) { f(y, x, b, e); });
}

void tanh_backward(float* dx, const float* dy, const float* y, int64_t n) {
  elementwise(n, 2, [=](int64_t b, int64_t e) { tanh_backward_range(dx, dy, y, b, e); });
}

}  // namespace cnnkit
