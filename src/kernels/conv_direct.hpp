// Direct convolution of one image at stride 1, for layers of at most 64 input channels on
// small images (LeNet, CIFAR, VGG's 64 -> 64), where the im2col + GEMM lowering spends much of
// its time packing. The kernels read the (zero-padded) image in place and keep register blocks
// of outputs, vectorised one of two ways:
//   over output width ("w"): a vector holds L consecutive pixels of one row; weights are
//     broadcast. Suits few output channels (LeNet conv1: 6).
//   over output channels ("oc"): a vector holds L channels of one pixel; input taps are
//     broadcast. Suits OC a multiple of L on narrow images (LeNet conv2: 16 channels, 10 wide);
//     the outputs pass through a channels-last scratch and one transpose per image.
// The input gradient is the scatter form of the transposed convolution, vectorised over input
// width: each row of dy adds into the KH rows of dx it reaches, so no row of zero padding is
// ever multiplied (the gather form over a padded dy would spend ~40% of LeNet conv2's FMAs on
// zeros). The weight gradient accumulates into per-group partials that the caller sums.
//
// Each SIMD tier has its kernels (conv_direct_portable.cpp, _avx2, _avx512: one template body,
// conv_direct_impl.hpp, on each tier's vector type); __ref holds plain loops with the same
// contracts, the truth the tiers are tested against (and the ref tier's path).
#pragma once

#include <cstdint>

#include "kernels/simd.hpp"

namespace cnnkit {

// The geometry the kernels see, stride 1 and dilation 1:
//   x [C, H, W], zero-padded by the caller to xp [C, Hp, Wp] (Hp = PT + H + PB, Wp likewise);
//   w [OC, C, KH, KW]; y and dy [OC, OH, OW] with OH = Hp - KH + 1, OW = Wp - KW + 1.
// K = C*KH*KW taps, tap k = (c*KH + kh)*KW + kw. Built by conv_direct_shape only.
struct ConvDirectShape {
  int64_t C, H, W;
  int64_t OC, KH, KW;
  int64_t PT, PL;
  int64_t Hp, Wp;
  int64_t OH, OW;
  // OC rounded up to 16, the widest vector: the row length of the packed forward weights, of
  // the channels-last scratch and of the channels-last weight-gradient partials, one layout
  // for every tier (zeros in the padding).
  int64_t OCs;
  // Row length of the input-gradient kernel's zero-padded copy of dy: dy row oh sits at
  // columns KW-1 .. KW-1+OW-1, and a vector of input columns iw .. iw+L-1 (iw < W rounded up
  // to 16) reads columns iw + PL + KW-1 - kw .. + L-1.
  int64_t Wd;
  // W rounded up to 16: the row length of the input-gradient kernel's private dx, which it
  // accumulates in whole vectors (a masked store does not forward to the next row's load).
  int64_t Wv;
};

ConvDirectShape conv_direct_shape(int64_t C, int64_t H, int64_t W, int64_t OC, int64_t KH,
                                  int64_t KW, int64_t PT, int64_t PB, int64_t PL, int64_t PR);

// Scratch floats each kernel needs per call (per thread).
inline int64_t conv_direct_forward_oc_scratch(const ConvDirectShape& s) {
  return s.OH * s.OW * s.OCs;
}
inline int64_t conv_direct_weight_oc_scratch(const ConvDirectShape& s) {
  return s.OH * s.OW * s.OCs;
}
inline int64_t conv_direct_input_scratch(const ConvDirectShape& s) {
  return s.OC * s.OH * s.Wd + s.C * s.H * s.Wv;
}

// Lanes per weight_w partial (the widest vector).
constexpr int64_t kConvDirectLanes = 16;

// Limits of the kernels, which conv_direct_plan respects: KH, KW <= 7 and K <= this.
constexpr int64_t kConvDirectMaxKernel = 7;
constexpr int64_t kConvDirectMaxTaps = 2048;

// One tier's kernels. Shared operands:
//   xp  [C, Hp, Wp]  the zero-padded image (x itself when there is no padding); read only at
//                    the positions the convolution reads (no over-reads past a row).
//   wk  [K, OCs]     forward weights, wk[k*OCs + oc] = w[oc, k] (zeros past OC); bias [OCs]
//                    likewise, or null.
//   wt  [OC*KW, C*KH] input-gradient weights, wt[(oc*KW + kw)*C*KH + c*KH + kh] = w[oc,c,kh,kw].
// (The ISA files read sizes from the shape's fields only, never through an inline function of
// this header, which the linker could otherwise take from an ISA file for baseline code.)
// Every output element is a sum in a fixed order that depends only on the shape, so each
// kernel is deterministic; tiers round differently from each other (FMA, lane order).
struct ConvDirectKernels {
  const char* name;
  // y [OC, OH, OW] overwritten = bias + sum over taps of xp * w; vectorised over width.
  void (*forward_w)(float* y, const float* xp, const float* wk, const float* bias,
                    const ConvDirectShape& s);
  // The same result, vectorised over output channels; scratch: conv_direct_forward_oc_scratch.
  void (*forward_oc)(float* y, const float* xp, const float* wk, const float* bias,
                     float* scratch, const ConvDirectShape& s);
  // dwv [OC*K, 16] += lane partials of dw over this image: the sum over lanes l of
  // dwv[(oc*K + k)*16 + l] grows by sum over (oh, ow) of dy[oc, oh, ow] * xp[tap k at (oh, ow)].
  // Lanes a tier does not use are left untouched (the caller zeroes dwv once per group).
  void (*weight_w)(float* dwv, const float* xp, const float* dy, const ConvDirectShape& s);
  // dwt [K, OCs] += that sum, channels-last (dwt[k*OCs + oc]); scratch:
  // conv_direct_weight_oc_scratch.
  void (*weight_oc)(float* dwt, const float* xp, const float* dy, float* scratch,
                    const ConvDirectShape& s);
  // dx [C, H, W] overwritten = the input gradient of dy [OC, OH, OW] (zero-padded forward
  // with padding PT, PL at the top and left); scratch: conv_direct_input_scratch.
  void (*input)(float* dx, const float* dy, const float* wt, float* scratch,
                const ConvDirectShape& s);
};

// Operands as the kernels take them (see ConvDirectKernels):
// xp [C, Hp, Wp] = x [C, H, W] inside its zero padding.
void conv_direct_pad(float* xp, const float* x, const ConvDirectShape& s);
// wk [K + 1, OCs]: the forward weights, then the bias row (zeros when b is null).
void conv_direct_pack_forward(float* wk, const float* w, const float* b,
                              const ConvDirectShape& s);
// wt [OC*KW, C*KH]: the input-gradient weights.
void conv_direct_pack_input(float* wt, const float* w, const ConvDirectShape& s);

// Which direct kernel runs a pass of a convolution, if any (conv2d asks once per call).
enum class ConvDirectKind { none, width, channels };
struct ConvDirectPlan {
  ConvDirectKind forward, weight;  // forward_w / weight_w, or forward_oc / weight_oc
  bool input;                      // input
};
ConvDirectPlan conv_direct_plan(int64_t C, int64_t OC, int64_t KH, int64_t KW, int64_t SH,
                                int64_t SW, int64_t DH, int64_t DW, int64_t OH, int64_t OW);
const char* conv_direct_kind_name(ConvDirectKind kind);  // "gemm", "width", "channels"

extern const ConvDirectKernels conv_direct_kernels__ref;
extern const ConvDirectKernels conv_direct_kernels__portable;
extern const ConvDirectKernels conv_direct_kernels__avx2;
extern const ConvDirectKernels conv_direct_kernels__avx512;

// The kernels of a tier (a tier this build or CPU cannot run gives the best one it can).
const ConvDirectKernels& conv_direct_kernels(SimdTier tier);


}  // namespace cnnkit
