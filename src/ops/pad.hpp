// Constant padding of the last two dimensions (PyTorch's F.pad in constant mode, ZeroPad2d):
// x [planes, H, W] -> y [planes, OH, OW] with OH = H + PT + PB, OW = W + PL + PR. A negative
// pad crops that side instead, as in PyTorch.
#pragma once

#include <cstdint>

namespace cnnkit {

struct Pad2dShape {
  int64_t planes, H, W;
  int64_t PT, PB, PL, PR;
  int64_t OH, OW;
};

// Validates planes, H, W >= 0 and that the crops fit: H - max(-PT, 0) - max(-PB, 0) >= 0 (and
// likewise for W), so OH, OW >= 0. Throws ShapeError naming the sizes.
Pad2dShape pad2d_shape(int64_t planes, int64_t H, int64_t W, int64_t PT, int64_t PB,
                       int64_t PL, int64_t PR);

// y [planes, OH, OW] overwritten: y[oh, ow] = x[oh - PT, ow - PL] where that is inside x,
// else value.
void pad2d_forward(float* y, const float* x, const Pad2dShape& s, float value);
// dx [planes, H, W] overwritten: dx[h, w] = dy[h + PT, w + PL] where that is inside y, else 0
// (a cropped element).
void pad2d_backward(float* dx, const float* dy, const Pad2dShape& s);

}  // namespace cnnkit
