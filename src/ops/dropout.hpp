// Inverted dropout: in training each element is kept with probability 1 - p and scaled by
// 1 / (1 - p), so evaluation needs no rescaling. The keep decision for element i is a hash of
// (seed, i), so the mask depends only on the seed, not on the thread count or chunking.
#pragma once

#include <cstdint>

namespace cnnkit {

// y [n] = x * mask, mask [n] overwritten with 0 or 1 / (1 - p); 0 <= p < 1. y may alias x.
void dropout_forward(float* y, float* mask, const float* x, int64_t n, float p, uint64_t seed);
// dx [n] = dy * mask; dx may alias dy.
void dropout_backward(float* dx, const float* dy, const float* mask, int64_t n);

}  // namespace cnnkit
