// Softmax over the last axis, and softmax cross-entropy fused for stability: log-sum-exp with
// the row maximum subtracted, so no exp overflows and log never sees 0.
#pragma once

#include <cstdint>

namespace cnnkit {

// y [rows, cols] = softmax of each row of x [rows, cols]; y may alias x.
void softmax_forward(float* y, const float* x, int64_t rows, int64_t cols);
// dx [rows, cols] = y * (dy - sum(dy * y) over the row); dx may alias dy.
void softmax_backward(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols);

// Returns mean over n of (logsumexp(logits[n]) - logits[n, labels[n]]) (accumulated in double);
// probs [N, K] overwritten with softmax(logits) for the backward pass. labels in [0, K),
// checked by the caller. N == 0 returns NaN (the mean of nothing), as PyTorch does.
double softmax_xent_forward(float* probs, const float* logits, const int64_t* labels, int64_t N,
                            int64_t K);
// dlogits [N, K] = (probs - onehot(labels)) * dloss / N; may alias probs.
void softmax_xent_backward(float* dlogits, const float* probs, const int64_t* labels, int64_t N,
                           int64_t K, float dloss);

// Soft labels (torch.nn.functional.cross_entropy with class-probability targets): returns
// mean over n of sum_k targets[n, k] * (logsumexp(logits[n]) - logits[n, k]), accumulated in
// double; probs [N, K] overwritten with softmax(logits). targets [N, K] are not checked
// (rows need not sum to 1). N == 0 returns NaN.
double softmax_xent_soft_forward(float* probs, const float* logits, const float* targets,
                                 int64_t N, int64_t K);
// dlogits [N, K] = (probs * sum_k targets[n, k] - targets) * dloss / N, which is
// probs - targets when the rows of targets sum to 1; may alias probs.
void softmax_xent_soft_backward(float* dlogits, const float* probs, const float* targets,
                                int64_t N, int64_t K, float dloss);

}  // namespace cnnkit
