// Power-average pooling (PyTorch's lp_pool2d): y = (Σ_window x^p)^(1/p) over unpadded windows
// of x [N, C, H, W]; p = 2 is L2 pooling, p = 1 sum pooling. Negative values follow pow:
// x^p is NaN for a fractional p, and so is the root of a negative sum.
#pragma once

#include "ops/pool.hpp"

namespace cnnkit {

// y [N, C, OH, OW] overwritten; the shape is pool2d_shape's with zero padding; p > 0.
void lp_pool2d_forward(float* y, const float* x, const Pool2dShape& s, float p);

// dx [N, C, H, W] overwritten from dy [N, C, OH, OW] and the forward's input x: each input
// gets x^(p - 1) times the sum of dy * S^(1/p - 1) over the windows (sums S) covering it; a
// window with S = 0 passes nothing (what PyTorch's autograd gives through its formula's
// sign(S) * relu(|S|): an all-zero window has a zero gradient, not an infinite one).
void lp_pool2d_backward(float* dx, const float* dy, const float* x, const Pool2dShape& s,
                        float p);

}  // namespace cnnkit
