// Pooling on NCHW float32: max pooling (argmax recorded in forward, gradient routed to it in
// backward), average pooling, global average pooling. 1-D pooling is the H = KH = 1 case.
#pragma once

#include <cstdint>

#include "kernels/simd.hpp"

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

// Each op below runs the active SIMD tier; the overloads taking a tier run that one (tests
// hold every tier to the __ref loops bit for bit): ref runs the __ref loops, portable the
// plain loops, avx2 / avx512 the vector kernels of kernels/pool.hpp where they take the shape
// (else the plain loops). A tier this build or CPU cannot run falls back to portable.

// y [N, C, OH, OW] overwritten; argmax [N, C, OH, OW] overwritten with the flat index
// h * W + w of each window's maximum within its (n, c) plane (PyTorch's indices; padding
// counts as -inf; the first maximum wins on ties; a NaN wins and propagates).
void max_pool2d_forward(float* y, int64_t* argmax, const float* x, const Pool2dShape& s);
void max_pool2d_forward(SimdTier tier, float* y, int64_t* argmax, const float* x,
                        const Pool2dShape& s);
// dx [N, C, H, W] overwritten: dy summed into the positions argmax names, which must lie in
// [0, H * W). Indices that are not in their own window are honoured too (the vector kernels
// then redo the plane with the scatter).
void max_pool2d_backward(float* dx, const float* dy, const int64_t* argmax, const Pool2dShape& s);
void max_pool2d_backward(SimdTier tier, float* dx, const float* dy, const int64_t* argmax,
                         const Pool2dShape& s);
// max_pool2d_backward for indices from anywhere, checked as it goes (on data it is reading
// anyway, instead of a separate pass): returns -1, or the position in argmax of the first
// index outside [0, H * W), leaving dx partly written.
int64_t max_pool2d_backward_checked(SimdTier tier, float* dx, const float* dy,
                                    const int64_t* argmax, const Pool2dShape& s);

// ReLU then max pooling in one pass, as a model runs a ReLU layer followed by a MaxPool2d:
// y and argmax of max_pool2d_forward on relu(x), bit for bit, without writing relu(x).
void max_pool2d_relu_forward(SimdTier tier, float* y, int64_t* argmax, const float* x,
                             const Pool2dShape& s);
// Their gradient: max_pool2d_backward_checked's dx where the pooled y [N, C, OH, OW] (from
// max_pool2d_relu_forward) is > 0, else 0 (the input's relu is y itself at an argmax), bit
// for bit what relu_backward gives after max_pool2d_backward.
int64_t max_pool2d_relu_backward_checked(SimdTier tier, float* dx, const float* dy,
                                         const int64_t* argmax, const float* y,
                                         const Pool2dShape& s);

// Average over each window; the divisor is KH * KW when count_include_pad (PyTorch's
// default), else the number of real (unpadded) elements in the window.
void avg_pool2d_forward(float* y, const float* x, const Pool2dShape& s, bool count_include_pad);
void avg_pool2d_forward(SimdTier tier, float* y, const float* x, const Pool2dShape& s,
                        bool count_include_pad);
void avg_pool2d_backward(float* dx, const float* dy, const Pool2dShape& s,
                         bool count_include_pad);
void avg_pool2d_backward(SimdTier tier, float* dx, const float* dy, const Pool2dShape& s,
                         bool count_include_pad);

// Direct loops testing every tap for padding, and backward as zero fill then scatter-add:
// the truth the fast paths are held to.
void max_pool2d_forward__ref(float* y, int64_t* argmax, const float* x, const Pool2dShape& s);
void max_pool2d_backward__ref(float* dx, const float* dy, const int64_t* argmax,
                              const Pool2dShape& s);
void avg_pool2d_forward__ref(float* y, const float* x, const Pool2dShape& s, bool count_include_pad);
void avg_pool2d_backward__ref(float* dx, const float* dy, const Pool2dShape& s,
                              bool count_include_pad);

// y [NC] = mean of each plane of x [NC, HW]; backward spreads dy / HW over the plane.
void global_avg_pool2d_forward(float* y, const float* x, int64_t NC, int64_t HW);
void global_avg_pool2d_backward(float* dx, const float* dy, int64_t NC, int64_t HW);

}  // namespace cnnkit
