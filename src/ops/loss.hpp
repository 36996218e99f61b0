// Elementwise losses, mean over all elements (torch's reduction="mean"): binary cross-entropy
// on logits (multi-label) and mean squared error. Each forward returns the loss, accumulated in
// double; each backward writes the gradient of dloss * loss. N == 0 gives NaN, as torch does.
// Softmax cross-entropy lives in softmax_xent.hpp.
#pragma once

#include <cstdint>

namespace cnnkit {

// Returns mean over n of max(x, 0) - x * t + log1p(exp(-|x|)) for logits x [n] and targets
// t [n] (probabilities in [0, 1]): -[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))] without
// overflow for any x.
double bce_logits_forward(const float* x, const float* t, int64_t n);
// dx [n] = (sigmoid(x) - t) * dloss / n; dx may alias x or t.
void bce_logits_backward(float* dx, const float* x, const float* t, int64_t n, float dloss);

// Returns mean over n of (x - t)^2 for predictions x [n] and targets t [n].
double mse_forward(const float* x, const float* t, int64_t n);
// dx [n] = 2 * (x - t) * dloss / n; dx may alias x or t.
void mse_backward(float* dx, const float* x, const float* t, int64_t n, float dloss);

}  // namespace cnnkit
