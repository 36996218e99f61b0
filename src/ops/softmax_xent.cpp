// Softmax and fused softmax cross-entropy, row by row: subtract the row maximum, exponentiate,
// normalise. Rows are independent, so threads take contiguous blocks of rows; the loss sums
// per-chunk partials in chunk order (deterministic for a fixed thread count).
#include "ops/softmax_xent.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include "parallel.hpp"

namespace cnnkit {

namespace {
// y = softmax(x) for one row of `cols`; returns log(sum(exp(x - max))) + max = logsumexp(x).
inline double softmax_row(float* y, const float* x, int64_t cols) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < cols; ++j) m = x[j] > m || x[j] != x[j] ? x[j] : m;
  if (std::isinf(m) && m < 0) m = 0.0f;  // all -inf: exp(-inf - 0) = 0, sum 0, NaN as torch
  float sum = 0.0f;
  for (int64_t j = 0; j < cols; ++j) {
    y[j] = std::exp(x[j] - m);
    sum += y[j];
  }
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int64_t j = 0; j < cols; ++j) y[j] *= inv;
  return std::log(static_cast<double>(sum)) + m;
}
}  // namespace

void softmax_forward(float* y, const float* x, int64_t rows, int64_t cols) {
  parallel_for(rows, rows * cols * 8, [=](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) softmax_row(y + r * cols, x + r * cols, cols);
  });
}

void softmax_backward(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols) {
  parallel_for(rows, rows * cols * 3, [=](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      const float* yr = y + r * cols;
      const float* dyr = dy + r * cols;
      float* dxr = dx + r * cols;
      float dot = 0.0f;
      for (int64_t j = 0; j < cols; ++j) dot += dyr[j] * yr[j];
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) dxr[j] = yr[j] * (dyr[j] - dot);
    }
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
      const double lse = softmax_row(probs + n * K, logits + n * K, K);
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
    for (int64_t n = b; n < e; ++n) {
#pragma omp simd
      for (int64_t j = 0; j < K; ++j) dlogits[n * K + j] = probs[n * K + j] * scale;
      dlogits[n * K + labels[n]] -= scale;
    }
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
      const double lse = softmax_row(probs + n * K, logits + n * K, K);
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
    for (int64_t n = b; n < e; ++n) {
      const float* tn = targets + n * K;
      float sum_t = 0.0f;
      for (int64_t k = 0; k < K; ++k) sum_t += tn[k];
      // d/dx_k of sum_j t_j * (lse - x_j) = p_k * sum_j t_j - t_k
#pragma omp simd
      for (int64_t k = 0; k < K; ++k)
        dlogits[n * K + k] = (probs[n * K + k] * sum_t - tn[k]) * scale;
    }
  });
}

}  // namespace cnnkit
