// Softmax and fused softmax cross-entropy, row by row: subtract the row maximum, exponentiate,
// normalise. Rows are independent, so threads take contiguous blocks of rows; the loss sums
// per-chunk partials in chunk order (deterministic for a fixed thread count).
#include "ops/softmax_xent.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include "ops/vmath.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {
// y = softmax(x) for one row of `cols`; returns sum(exp(x - max)) and sets m to the max
// subtracted (0 when every x is -inf). A NaN anywhere makes the row NaN, as in torch.
inline float softmax_row(float* y, const float* x, int64_t cols, float& m) {
  // The maximum as an omp simd reduction (vectorised; which of -0 and +0 it returns does not
  // matter, exp(x - m) is the same), NaN tracked apart, as max reductions do not order it.
  float mx = -std::numeric_limits<float>::infinity();
  int nan = 0;
#pragma omp simd reduction(max : mx) reduction(| : nan)
  for (int64_t j = 0; j < cols; ++j) {
    mx = x[j] > mx ? x[j] : mx;
    nan |= x[j] != x[j];
  }
  m = nan ? std::numeric_limits<float>::quiet_NaN() : mx;
  if (std::isinf(m) && m < 0) m = 0.0f;  // all -inf: exp(-inf - 0) = 0, sum 0, NaN as torch
  // x - m <= 0 (or NaN, which propagates): the vectorised exp, then a plain sum in order
#pragma omp simd
  for (int64_t j = 0; j < cols; ++j) y[j] = vmath::exp_nonpositive(x[j] - m);
  float sum = 0.0f;
  for (int64_t j = 0; j < cols; ++j) sum += y[j];
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int64_t j = 0; j < cols; ++j) y[j] *= inv;
  return sum;
}

// softmax_row, returning logsumexp(x) = log(sum(exp(x - max))) + max.
inline double softmax_row_lse(float* y, const float* x, int64_t cols) {
  float m;
  const float sum = softmax_row(y, x, cols, m);
  return std::log(static_cast<double>(sum)) + m;
}

// Rows [b, e) of softmax_xent_backward; by value, so that the loops vectorise in the
// OpenMP-outlined function too (see activation.cpp).
void xent_backward_rows(float* dlogits, const float* probs, const int64_t* labels, int64_t K,
                        float scale, int64_t b, int64_t e) {
  for (int64_t n = b; n < e; ++n) {
#pragma omp simd
    for (int64_t j = 0; j < K; ++j) dlogits[n * K + j] = probs[n * K + j] * scale;
    dlogits[n * K + labels[n]] -= scale;
  }
}

void xent_soft_backward_rows(float* dlogits, const float* probs, const float* targets, int64_t K,
                             float scale, int64_t b, int64_t e) {
  for (int64_t n = b; n < e; ++n) {
    const float* tn = targets + n * K;
    float sum_t = 0.0f;
    for (int64_t k = 0; k < K; ++k) sum_t += tn[k];
    // d/dx_k of sum_j t_j * (lse - x_j) = p_k * sum_j t_j - t_k
#pragma omp simd
    for (int64_t k = 0; k < K; ++k) dlogits[n * K + k] = (probs[n * K + k] * sum_t - tn[k]) * scale;
  }
}

void softmax_backward_rows(float* dx, const float* dy, const float* y, int64_t cols, int64_t b,
                           int64_t e) {
  for (int64_t r = b; r < e; ++r) {
    const float* yr = y + r * cols;
    const float* dyr = dy + r * cols;
    float* dxr = dx + r * cols;
    float dot = 0.0f;
    for (int64_t j = 0; j < cols; ++j) dot += dyr[j] * yr[j];
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) dxr[j] = yr[j] * (dyr[j] - dot);
  }
}
}  // namespace

void softmax_forward(float* y, const float* x, int64_t rows, int64_t cols) {
  parallel_for(rows, rows * cols * 8, [=](int64_t b, int64_t e, int) {
    float m;
    for (int64_t r = b; r < e; ++r) softmax_row(y + r * cols, x + r * cols, cols, m);
  });
}

void softmax_backward(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols) {
  parallel_for(rows, rows * cols * 3, [=](int64_t b, int64_t e, int) {
    softmax_backward_rows(dx, dy, y, cols, b, e);
  });
}

double softmax_xent_forward(float* probs, const float* logits, const int64_t* labels, int64_t N,
                            int64_t K) {
  if (N == 0) return std::numeric_limits<double>::quiet_NaN();
  const int nt = threads_for(N, N * K * 8);
  std::vector<double> partial(nt, 0.0);
  parallel_chunks(N, nt, [&](int64_t b, int64_t e, int t) {
    double acc = 0.0;
    for (int64_t n = b; n < e; ++n) {
      const double lse = softmax_row_lse(probs + n * K, logits + n * K, K);
      acc += lse - static_cast<double>(logits[n * K + labels[n]]);
    }
    partial[t] = acc;
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total / static_cast<double>(N);
}


void softmax_xent_backward(float* dlogits, const float* probs, const int64_t* labels, int64_t N,
                           int64_t K, float dloss) {
  if (N == 0) return;
  const float scale = dloss / static_cast<float>(N);
  parallel_for(N, N * K, [=](int64_t b, int64_t e, int) {
    xent_backward_rows(dlogits, probs, labels, K, scale, b, e);
  });
}

double softmax_xent_soft_forward(float* probs, const float* logits, const float* targets,
                                 int64_t N, int64_t K) {
  if (N == 0) return std::numeric_limits<double>::quiet_NaN();
  const int nt = threads_for(N, N * K * 10);
  std::vector<double> partial(nt, 0.0);
  parallel_chunks(N, nt, [&](int64_t b, int64_t e, int t) {
    double acc = 0.0;
    for (int64_t n = b; n < e; ++n) {
      const double lse = softmax_row_lse(probs + n * K, logits + n * K, K);
      const float* x = logits + n * K;
      const float* tn = targets + n * K;
      // -log_softmax = lse - x >= 0 for every class, so with targets >= 0 the sum has no
      // cancellation (sum(t) * lse - sum(t * x) would cancel badly for large logits).
      for (int64_t k = 0; k < K; ++k)
        acc += static_cast<double>(tn[k]) * (lse - static_cast<double>(x[k]));
    }
    partial[t] = acc;
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total / static_cast<double>(N);
}

void softmax_xent_soft_backward(float* dlogits, const float* probs, const float* targets,
                                int64_t N, int64_t K, float dloss) {
  if (N == 0) return;
  const float scale = dloss / static_cast<float>(N);
  parallel_for(N, N * K * 3, [=](int64_t b, int64_t e, int) {
    xent_soft_backward_rows(dlogits, probs, targets, K, scale, b, e);
  });
}

}  // namespace cnnkit
