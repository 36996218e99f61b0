// Pooling on NCHW float32: max pooling (argmax recorded in forward, gradient routed to it in
// backward), average pooling, global average pooling. 1-D pooling is the H = KH = 1 case.
#pragma once

#include <cstdint>

namespace cnnkit {

// x [N, C, H, W] -> y [N, C, OH, OW]; kernel KH KW, stride SH SW, padding PT PB PL PR.
struct Pool2dShape {
  int64_t N, C, H, W;
  int64_t KH, KW;
  int64_t SH, SW;
  int64_t PT, PB, PL, PR;
  int64_t OH, OW;
};

// OH = (H + PT + PB - KH) / SH + 1. Validates: kernel and stride >= 1, padding >= 0 and each
// side at most half the kernel (PyTorch's rule: every window then holds a real element), the
// kernel no larger than the padded input, H * W < 2^31. Throws ShapeError naming the sizes.
Pool2dShape pool2d_shape(int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW,
                         int64_t SH, int64_t SW, int64_t PT, int64_t PB, int64_t PL,
                         int64_t PR);

// 1-D pooling of x [N, C, L] (kernel K, stride S, padding PL PR): validates in 1-D terms,
// then returns the equivalent 2-D shape with H = KH = 1.
Pool2dShape pool1d_shape(int64_t N, int64_t C, int64_t L, int64_t K, int64_t S, int64_t PL,
                         int64_t PR);

// y [N, C, OH, OW] overwritten; argmax [N, C, OH, OW] overwritten with the flat index
// h * W + w of each window's maximum within its (n, c) plane (PyTorch's indices; padding
// counts as -inf; the first maximum wins on ties; a NaN wins and propagates).
void max_pool2d_forward(float* y, int64_t* argmax, const float* x, const Pool2dShape& s);
// dx [N, C, H, W] overwritten: dy summed into the positions argmax names.
void max_pool2d_backward(float* dx, const float* dy, const int64_t* argmax, const Pool2dShape& s);

// Average over each window; the divisor is KH * KW when count_include_pad (PyTorch's
// default), else the number of real (unpadded) elements in the window.
void avg_pool2d_forward(float* y, const float* x, const Pool2dShape& s, bool count_include_pad);
void avg_pool2d_backward(float* dx, const float* dy, const Pool2dShape& s,
                         bool count_include_pad);

// Direct loops testing every tap for padding: the truth the fast paths are held to.
void max_pool2d_forward__ref(float* y, int64_t* argmax, const float* x, const Pool2dShape& s);
void avg_pool2d_forward__ref(float* y, const float* x, const Pool2dShape& s, bool count_include_pad);

// y [NC] = mean of each plane of x [NC, HW]; backward spreads dy / HW over the plane.
void global_avg_pool2d_forward(float* y, const float* x, int64_t NC, int64_t HW);
void global_avg_pool2d_backward(float* dx, const float* dy, int64_t NC, int64_t HW);

}  // namespace cnnkit
