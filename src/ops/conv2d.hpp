// 2-D convolution (cross-correlation, as every framework computes it) on NCHW float32
// minibatches: forward, and backward for the input, weight and bias gradients. Lowered to the
// packed GEMM, Y[OC, OH*OW] = W[OC, C*KH*KW] · col[C*KH*KW, OH*OW] per image, except small
// stride-1 layers with few input channels (LeNet-class), which run direct-convolution kernels
// (kernels/conv_direct.hpp; the rule is conv_direct_plan). A grouped convolution runs each
// group that way on its slice of channels; a depthwise one (groups == C) runs the per-channel
// kernels of kernels/conv_depthwise.hpp.
#pragma once

#include <cstdint>

#include "common.hpp"

namespace cnnkit {

// Sizes of one convolution, in the vocabulary used everywhere: input x [N, C, H, W], weight
// w [OC, C/G, KH, KW], output y [N, OC, OH, OW]; stride SH SW; zero padding PT PB (top,
// bottom) and PL PR (left, right), unequal for "same" with an odd total; dilation DH DW;
// G groups: output channels [g*OC/G, (g+1)*OC/G) see only input channels [g*C/G, (g+1)*C/G).
struct Conv2dShape {
  int64_t N, C, H, W;
  int64_t OC, KH, KW;
  int64_t SH, SW;
  int64_t PT, PB, PL, PR;
  int64_t DH, DW;
  int64_t OH, OW;
  int64_t G = 1;
};

// The one owner of the output-size formula
//   OH = (H + PT + PB - DH * (KH - 1) - 1) / SH + 1   (and likewise OW),
// validating as it goes: sizes >= 1 (N >= 0), stride and dilation >= 1, padding >= 0, the
// dilated kernel no larger than the padded input, and G >= 1 dividing C and OC. Throws
// ShapeError naming the sizes.
Conv2dShape conv2d_shape(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OC, int64_t KH,
                         int64_t KW, int64_t SH, int64_t SW, int64_t PT, int64_t PB, int64_t PL,
                         int64_t PR, int64_t DH = 1, int64_t DW = 1, int64_t G = 1);

// y [N, OC, OH, OW] overwritten; x [N, C, H, W]; w [OC, C/G, KH, KW]; b [OC] or null.
void conv2d_forward(float* y, const float* x, const float* w, const float* b,
                    const Conv2dShape& s, Workspace& ws);

// dx [N, C, H, W], dw [OC, C/G, KH, KW], db [OC]: each overwritten, or null when not needed;
// dy [N, OC, OH, OW]; x and w as in forward (x is read only for dw, w only for dx).
void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, const Conv2dShape& s, Workspace& ws);

// Direct seven-loop versions, the truth the fast paths are held to (benchmarks, tier tests).
void conv2d_forward__ref(float* y, const float* x, const float* w, const float* b,
                         const Conv2dShape& s);
void conv2d_backward__ref(float* dx, float* dw, float* db, const float* dy, const float* x,
                          const float* w, const Conv2dShape& s);

}  // namespace cnnkit
