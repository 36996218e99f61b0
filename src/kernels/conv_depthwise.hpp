// Depthwise convolution (groups == input channels), one channel plane at a time: output
// channel oc = c*M + m (M = OC / C, the channel multiplier) is the 2-D correlation of input
// plane c with its own KH x KW kernel, at any stride, padding and dilation. Per-group GEMMs
// would have K = KH*KW (9) and M = 1 row: all packing, no arithmetic. These kernels vectorise
// over output width instead, reading the plane from a zero-padded copy:
//   forward  y[oh, ow]  = bias + sum over taps (kh, kw) of w[kh, kw] * x at the tap
//   weight   dw[kh, kw] = sum over pixels (oh, ow) of dy[oh, ow] * x at the tap, in lane
//                         partials (one per vector lane) that the caller adds up
//   input    dx[ih, iw] = sum over the (m, kh, kw) that reach it of w[m, kh, kw] * dy[m, ...]
//                         (gather form: each dx vector is summed in registers, stored once)
// Strided columns are made contiguous by splitting each padded row into SW phases: phase p
// holds the padded columns p, p + SW, p + 2*SW ..., so tap kw of output columns ow .. ow+L-1
// reads phase (kw*DW) % SW at ow + (kw*DW) / SW .. onward, one vector load. The input gradient
// splits the dx columns the same way (a dx column iw with (PL + iw) % SW == p gathers only the
// taps of phase p) and, at stride SH > 1, its rows by residue mod SH (the rows of one residue
// see the same kernel rows, so blocks of them share every load pattern).
//
// Each SIMD tier has its kernels (conv_depthwise_portable.cpp, _avx2, _avx512: one template
// body, conv_depthwise_impl.hpp, on the tier's vector type); __ref holds plain loops with the
// same contracts, the truth the tiers are tested against (and the ref tier's path).
#pragma once

#include <cstdint>

#include "kernels/simd.hpp"

namespace cnnkit {

// One channel plane's geometry (built by conv_depthwise_shape only):
//   x [H, W]; a kernel w [KH, KW] (w [M, KH, KW] for the input gradient); y, dy [OH, OW];
//   stride SH SW, top/left padding PT PL, dilation DH DW.
//   xq [Hp, SW, Wq] (+ kConvDepthwiseLanes floats of slack): the padded plane, Hp = PT + H + PB
//     rows, each split into SW phase rows of Wq = ceil((PL + W + PR) / SW) floats, zeros outside
//     the image; tap (kh, kw) of output pixel (oh, ow) is
//       xq[((oh*SH + kh*DH) * SW + (kw*DW) % SW) * Wq + ow + (kw*DW) / SW].
//   dyq [M, Hd, Wd]: the input gradient's zero-padded copy of dy, row oh of plane m at row
//     A + oh, column Q + ow, where Q = ((KW-1)*DW) / SW is the largest column offset of a tap
//     and A = ((KH-1)*DH) / SH the most rows above dy a dx row reaches.
struct ConvDepthwiseShape {
  int64_t H, W;
  int64_t KH, KW;
  int64_t SH, SW;
  int64_t PT, PL;
  int64_t DH, DW;
  int64_t OH, OW;
  int64_t Hp, Wq;
  int64_t Q, A, Hd, Wd;
};

ConvDepthwiseShape conv_depthwise_shape(int64_t H, int64_t W, int64_t KH, int64_t KW,
                                        int64_t SH, int64_t SW, int64_t PT, int64_t PB,
                                        int64_t PL, int64_t PR, int64_t DH, int64_t DW);

// Lanes per weight-gradient partial (the widest vector); a tier uses its first L.
constexpr int64_t kConvDepthwiseLanes = 16;

// Floats of xq (with its slack), and of the input kernel's scratch for M planes of dy.
int64_t conv_depthwise_xq_size(const ConvDepthwiseShape& s);
int64_t conv_depthwise_input_scratch(const ConvDepthwiseShape& s, int64_t M);

// xq = x [H, W] padded and split into phases (see ConvDepthwiseShape).
void conv_depthwise_pad(float* xq, const float* x, const ConvDepthwiseShape& s);

// One tier's kernels. Every output element is a sum in a fixed order that depends only on the
// shape (taps in (kh, kw) order for the forward; (m, kh, kw) for dx; pixels in row order per
// lane for dw), so each kernel is deterministic; tiers round differently from each other.
struct ConvDepthwiseKernels {
  const char* name;
  // y [OH, OW] overwritten = bias + correlation of xq with w [KH, KW].
  void (*forward)(float* y, const float* xq, const float* w, float bias,
                  const ConvDepthwiseShape& s);
  // dwv [KH*KW, kConvDepthwiseLanes] += lane partials over this plane: the sum over lanes l of
  // dwv[t*16 + l] grows by sum over (oh, ow) of dy[oh, ow] * (x at tap t of (oh, ow)). Lanes a
  // tier does not use are left untouched (the caller zeroes dwv).
  void (*weight)(float* dwv, const float* xq, const float* dy, const ConvDepthwiseShape& s);
  // dx [H, W] overwritten = the input gradient of the M planes dy [M, OH, OW] through the
  // kernels w [M, KH, KW]; scratch: conv_depthwise_input_scratch(s, M) floats.
  void (*input)(float* dx, const float* dy, const float* w, int64_t M, float* scratch,
                const ConvDepthwiseShape& s);
};

extern const ConvDepthwiseKernels conv_depthwise_kernels__ref;
extern const ConvDepthwiseKernels conv_depthwise_kernels__portable;
extern const ConvDepthwiseKernels conv_depthwise_kernels__avx2;
extern const ConvDepthwiseKernels conv_depthwise_kernels__avx512;

// The kernels of a tier (a tier this build or CPU cannot run gives the best one it can).
const ConvDepthwiseKernels& conv_depthwise_kernels(SimdTier tier);

}  // namespace cnnkit
