// 1-D convolution on (N, C, L) signals: a 2-D convolution with H = KH = 1, sharing its
// machinery (conv2d_forward / conv2d_backward take the shape built here).
#pragma once

#include "ops/conv2d.hpp"

namespace cnnkit {

// x [N, C, L], w [OC, C/G, K], y [N, OC, OL]; stride S, padding PL PR, dilation D, G groups.
// Validates in 1-D terms (ShapeError naming L, K, ...), then returns the equivalent 2-D shape.
Conv2dShape conv1d_shape(int64_t N, int64_t C, int64_t L, int64_t OC, int64_t K, int64_t S,
                         int64_t PL, int64_t PR, int64_t D = 1, int64_t G = 1);

}  // namespace cnnkit
