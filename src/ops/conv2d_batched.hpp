// conv2d on small output maps (ResNet's late stages: 4x4, 2x2) with the batch folded into the
// GEMM's N dimension. Lowered one image at a time, such a layer is a GEMM with N = OH*OW = 4 or
// 16 columns, which the register tiles (up to 32 columns wide) mostly waste; folded, it is one
// GEMM of N*OH*OW columns per group:
//   forward  y[OC, N*OH*OW]  = w[OC, C*KH*KW] · col[C*KH*KW, N*OH*OW] + b, scattered to NCHW
//   weight   dw[OC, C*KH*KW] = dy[OC, N*OH*OW] · colᵀ: one GEMM with K = N*OH*OW
//   input    dcol = wᵀ · dy[OC, N*OH*OW], then col2im image by image
// col (and dy in [OC, N*OH*OW] order) are materialised: at these sizes they are a few MiB.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ops/conv2d.hpp"

namespace cnnkit {

// Whether the batched path runs convolution s (one group's shape: G == 1): small output maps.
bool conv2d_batched_applies(const Conv2dShape& s);

// Floats of scratch the batched forward and backward of s (the whole convolution) need.
std::size_t conv2d_batched_scratch(const Conv2dShape& s);

// As conv2d_forward, for a convolution conv2d_batched_applies admits (per group); scratch:
// conv2d_batched_scratch(s) floats.
void conv2d_forward_batched(float* y, const float* x, const float* w, const float* b,
                            const Conv2dShape& s, float* scratch);

// As conv2d_backward for dx and dw (each overwritten, or null when not needed); db is left to
// the caller.
void conv2d_backward_batched(float* dx, float* dw, const float* dy, const float* x,
                             const float* w, const Conv2dShape& s, float* scratch);

}  // namespace cnnkit
