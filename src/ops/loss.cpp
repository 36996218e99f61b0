// Binary cross-entropy with logits and mean squared error: flat elementwise loops over
// contiguous chunks. A forward keeps one double partial sum per chunk and adds them in chunk
// order, so the loss is deterministic for a fixed thread count.
#include "ops/loss.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include "parallel.hpp"

namespace cnnkit {

namespace {
// Mean over [0, n) of term(i), summed in double.
template <class Term>
double mean_of(int64_t n, int64_t cost, Term term) {
  if (n == 0) return std::numeric_limits<double>::quiet_NaN();
  const int nt = threads_for(n, n * cost);
  std::vector<double> partial(nt, 0.0);
  parallel_chunks(n, nt, [&](int64_t b, int64_t e, int t) {
    // A local copy: read through the closure in the OpenMP-outlined function, term's captured
    // pointers would be re-loaded every iteration and the loop not vectorised.
    const Term f = term;
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = b; i < e; ++i) acc += static_cast<double>(f(i));
    partial[t] = acc;
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total / static_cast<double>(n);
}

// max(x, 0) - x * t + log1p(exp(-|x|)). The linear part is written as x * (1 - t) for x > 0
// and -x * t otherwise: for t in [0, 1] both parts are then >= 0 and nothing cancels, where
// max(x, 0) - x * t loses every digit of a small x * (1 - t) when x is large and t near 1.
inline float bce1(float x, float t) {
  const float linear = x > 0.0f ? x * (1.0f - t) : -x * t;
  return linear + std::log1p(std::exp(-std::fabs(x)));
}

// exp(-|x|) keeps the argument non-positive, so sigmoid never overflows for large |x|.
inline float sigmoid1(float x) {
  const float z = std::exp(-std::fabs(x));
  const float s = 1.0f / (1.0f + z);
  return x >= 0.0f ? s : z * s;
}
}  // namespace

double bce_logits_forward(const float* x, const float* t, int64_t n) {
  return mean_of(n, 32, [=](int64_t i) { return bce1(x[i], t[i]); });
}

void bce_logits_backward(float* dx, const float* x, const float* t, int64_t n, float dloss) {
  if (n == 0) return;
  const float scale = dloss / static_cast<float>(n);
  parallel_for(n, n * 16, [=](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) dx[i] = (sigmoid1(x[i]) - t[i]) * scale;
  });
}

double mse_forward(const float* x, const float* t, int64_t n) {
  return mean_of(n, 8, [=](int64_t i) {
    const float d = x[i] - t[i];
    return static_cast<double>(d) * d;  // exact in double: the square of a float
  });
}

void mse_backward(float* dx, const float* x, const float* t, int64_t n, float dloss) {
  if (n == 0) return;
  const float scale = 2.0f * dloss / static_cast<float>(n);
  parallel_for(n, n * 12, [=](int64_t b, int64_t e, int) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) dx[i] = (x[i] - t[i]) * scale;
  });
}

}  // namespace cnnkit
