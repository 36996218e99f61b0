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

// Whether the batched backward of s (one group's shape) should take the rotated input
// gradient (when the caller's rules allow it at all: stride 1, padding within the kernel): only
// with enough GEMM columns (images per chunk x H*W) to pay for packing the rotated kernel.
bool conv2d_batched_rotated_pays(const Conv2dShape& s);

// Floats of rscratch the rotated input gradient of s needs (sr: as for conv2d_backward_batched).
std::size_t conv2d_batched_rotated_scratch(const Conv2dShape& s, const Conv2dShape& sr);

// As conv2d_backward for dx and dw (each overwritten, or null when not needed); db is left to
// the caller. With sr, dx is the batched forward convolution of dy with the rotated,
// transposed kernel (per group [C/G, OC/G, KH, KW], packed from w: conv2d_rotated.hpp) in the
// shape sr (one group's, G == 1: stride 1, OC/G -> C/G channels, OH x OW -> H x W), packed
// straight from dy, in rscratch (conv2d_batched_rotated_scratch(s, sr) floats, s the whole
// convolution's shape), instead of col2im of wᵀ · dy.
void conv2d_backward_batched(float* dx, float* dw, const float* dy, const float* x,
                             const float* w, const Conv2dShape& s, float* scratch,
                             const Conv2dShape* sr = nullptr, float* rscratch = nullptr);

}  // namespace cnnkit
