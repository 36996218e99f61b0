// The direct kernels' shape function, operand packing, path rule and tier dispatch, and the
// __ref kernels: the same contracts as the tiers' (conv_direct.hpp) in plain loops, one output
// element at a time with its terms in the reference order (taps for the forward, pixels for
// dw, dy rows then (oc, kw) for dx). The ref tier runs these.
#include "kernels/conv_direct.hpp"

#include <algorithm>

namespace cnnkit {

ConvDirectShape conv_direct_shape(int64_t C, int64_t H, int64_t W, int64_t OC, int64_t KH,
                                  int64_t KW, int64_t PT, int64_t PB, int64_t PL, int64_t PR) {
  ConvDirectShape s{};
  s.C = C, s.H = H, s.W = W, s.OC = OC, s.KH = KH, s.KW = KW, s.PT = PT, s.PL = PL;
  s.Hp = PT + H + PB, s.Wp = PL + W + PR;
  s.OH = s.Hp - KH + 1, s.OW = s.Wp - KW + 1;
  s.OCs = (OC + kConvDirectLanes - 1) / kConvDirectLanes * kConvDirectLanes;
  s.Wv = (W + kConvDirectLanes - 1) / kConvDirectLanes * kConvDirectLanes;
  s.Wd = s.Wv + PL + KW - 1;
  return s;
}

void conv_direct_pad(float* xp, const float* x, const ConvDirectShape& s) {
  for (int64_t c = 0; c < s.C; ++c) {
    float* p = xp + c * s.Hp * s.Wp;
    std::fill(p, p + s.PT * s.Wp, 0.0f);
    for (int64_t h = 0; h < s.H; ++h) {
      float* row = p + (s.PT + h) * s.Wp;
      std::fill(row, row + s.PL, 0.0f);
      std::copy(x + (c * s.H + h) * s.W, x + (c * s.H + h + 1) * s.W, row + s.PL);
      std::fill(row + s.PL + s.W, row + s.Wp, 0.0f);
    }
    std::fill(p + (s.PT + s.H) * s.Wp, p + s.Hp * s.Wp, 0.0f);
  }
}

void conv_direct_pack_forward(float* wk, const float* w, const float* b,
                              const ConvDirectShape& s) {
  const int64_t K = s.C * s.KH * s.KW;
  std::fill(wk, wk + (K + 1) * s.OCs, 0.0f);
  for (int64_t oc = 0; oc < s.OC; ++oc) {
    for (int64_t k = 0; k < K; ++k) wk[k * s.OCs + oc] = w[oc * K + k];
    if (b) wk[K * s.OCs + oc] = b[oc];
  }
}

void conv_direct_pack_input(float* wt, const float* w, const ConvDirectShape& s) {
  for (int64_t oc = 0; oc < s.OC; ++oc)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t kh = 0; kh < s.KH; ++kh)
        for (int64_t kw = 0; kw < s.KW; ++kw)
          wt[(oc * s.KW + kw) * s.C * s.KH + c * s.KH + kh] =
              w[((oc * s.C + c) * s.KH + kh) * s.KW + kw];
}

// Which direct kernel a pass runs, if any: vectorised over output width or output channels.
// The direct path (conv2d asks per call) takes every pass of a convolution with few input
// channels on a small image:
//   C <= 64, K = C*KH*KW <= kConvDirectMaxTaps, stride 1, no dilation, KH and KW <= 7, and an
//   output plane of at most 64 x 64 (so that an image, its dy and the kernels' scratch stay in
//   L2 across a block's passes).
// There the GEMM path spends much of its time packing (M = OC is small, so each packed
// column of im2col feeds few FMAs), while the direct kernels read the image in place. Measured
// (1 thread, N = 64) on the bench shapes with C <= 16, every pass ran faster than on the GEMM
// path, on every tier: AVX-512 LeNet conv1 3.1-4.4x, conv2 2.5-3x, CIFAR's 3 -> 32 stem
// 1.5-1.8x, conv1d k3/k5 1.5-1.8x; AVX2 1.04x (conv1d k3's dx) to 3.5x; portable 1.4-5.6x.
// From C = 17 to 64 every pass runs over channels (over width, the 32 -> 64 dw ran 1.9x
// slower than the GEMM path): AVX-512 VGG 64 -> 64 at 56 x 56, forward 1.15x, dw 1.5x, dx
// 1.5x (forward+backward 38 -> 27 ms); CIFAR 32 -> 64 at 16 x 16 about even (forward and dx
// ~1.05-1.15x faster, dw ~1.1x slower); AlexNet conv2's groups (48 -> 128, 5x5: K = 1200) at
// 27 x 27 forward 1.13x, dw even, dx 1.2x. A 1x1 of 256 channels ran 3x slower: C stays <= 64.
// For C <= 16, forward and dw vectorise over output width or over output channels, whichever
// fills more of 16 lanes (a tie goes to width, which needs no transpose); dx always over input
// width. dw over width keeps 16 lane partials per weight in each of up to 8 image groups, so it
// is taken only while those stay within 16 MiB (OC*K <= 32768; LeNet's conv2 has 2400), else
// dw runs over channels.
ConvDirectPlan conv_direct_plan(int64_t C, int64_t OC, int64_t KH, int64_t KW, int64_t SH,
                                int64_t SW, int64_t DH, int64_t DW, int64_t OH, int64_t OW) {
  if (C > 64 || C * KH * KW > kConvDirectMaxTaps || SH != 1 || SW != 1 || DH != 1 ||
      DW != 1 || KH > kConvDirectMaxKernel || KW > kConvDirectMaxKernel || OH * OW > 64 * 64)
    return {ConvDirectKind::none, ConvDirectKind::none, false};
  auto fill = [](int64_t n) { return static_cast<double>(n) / ((n + 15) / 16 * 16); };
  const ConvDirectKind kind =
      C <= 16 && fill(OW) >= fill(OC) ? ConvDirectKind::width : ConvDirectKind::channels;
  const bool small_partials = OC * C * KH * KW <= 32768;
  return {kind, small_partials ? kind : ConvDirectKind::channels, true};
}

const char* conv_direct_kind_name(ConvDirectKind kind) {
  switch (kind) {
    case ConvDirectKind::none: return "gemm";
    case ConvDirectKind::width: return "width";
    case ConvDirectKind::channels: return "channels";
  }
  return "?";
}

namespace {

// xp's offset of tap (c, kh, kw) at output pixel (oh, ow).
int64_t xp_at(const ConvDirectShape& s, int64_t c, int64_t kh, int64_t kw, int64_t oh,
              int64_t ow) {
  return (c * s.Hp + oh + kh) * s.Wp + ow + kw;
}

void forward__ref(float* y, const float* xp, const float* wk, const float* bias,
                  const ConvDirectShape& s) {
  for (int64_t oc = 0; oc < s.OC; ++oc)
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        float acc = bias ? bias[oc] : 0.0f;
        int64_t k = 0;
        for (int64_t c = 0; c < s.C; ++c)
          for (int64_t kh = 0; kh < s.KH; ++kh)
            for (int64_t kw = 0; kw < s.KW; ++kw, ++k)
              acc += xp[xp_at(s, c, kh, kw, oh, ow)] * wk[k * s.OCs + oc];
        y[(oc * s.OH + oh) * s.OW + ow] = acc;
      }
}

void forward_oc__ref(float* y, const float* xp, const float* wk, const float* bias, float*,
                     const ConvDirectShape& s) {
  forward__ref(y, xp, wk, bias, s);
}

// The sum over pixels of dy[oc] * xp at tap (c, kh, kw).
float weight_sum__ref(const float* xp, const float* dy, const ConvDirectShape& s, int64_t oc,
                      int64_t c, int64_t kh, int64_t kw) {
  float acc = 0.0f;
  for (int64_t oh = 0; oh < s.OH; ++oh)
    for (int64_t ow = 0; ow < s.OW; ++ow)
      acc += dy[(oc * s.OH + oh) * s.OW + ow] * xp[xp_at(s, c, kh, kw, oh, ow)];
  return acc;
}

void weight_w__ref(float* dwv, const float* xp, const float* dy, const ConvDirectShape& s) {
  const int64_t K = s.C * s.KH * s.KW;
  for (int64_t oc = 0; oc < s.OC; ++oc)
    for (int64_t k = 0; k < K; ++k)  // lane 0 holds the whole sum
      dwv[(oc * K + k) * kConvDirectLanes] +=
          weight_sum__ref(xp, dy, s, oc, k / (s.KH * s.KW), k / s.KW % s.KH, k % s.KW);
}

void weight_oc__ref(float* dwt, const float* xp, const float* dy, float*,
                    const ConvDirectShape& s) {
  const int64_t K = s.C * s.KH * s.KW;
  for (int64_t oc = 0; oc < s.OC; ++oc)
    for (int64_t k = 0; k < K; ++k)
      dwt[k * s.OCs + oc] +=
          weight_sum__ref(xp, dy, s, oc, k / (s.KH * s.KW), k / s.KW % s.KH, k % s.KW);
}

void input__ref(float* dx, const float* dy, const float* wt, float*, const ConvDirectShape& s) {
  // dx[c, ih, iw] = sum over (oh, oc, kw) of dy[oc, oh, ow] * w[oc, c, kh, kw] with
  // ih = oh - PT + kh and iw = ow - PL + kw.
  const int64_t CKH = s.C * s.KH;
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t ih = 0; ih < s.H; ++ih)
      for (int64_t iw = 0; iw < s.W; ++iw) {
        float acc = 0.0f;
        for (int64_t oh = 0; oh < s.OH; ++oh) {
          const int64_t kh = ih + s.PT - oh;
          if (kh < 0 || kh >= s.KH) continue;
          for (int64_t oc = 0; oc < s.OC; ++oc)
            for (int64_t kw = 0; kw < s.KW; ++kw) {
              const int64_t ow = iw + s.PL - kw;
              if (ow < 0 || ow >= s.OW) continue;
              acc += dy[(oc * s.OH + oh) * s.OW + ow] * wt[(oc * s.KW + kw) * CKH + c * s.KH + kh];
            }
        }
        dx[(c * s.H + ih) * s.W + iw] = acc;
      }
}

}  // namespace

const ConvDirectKernels conv_direct_kernels__ref = {
    "ref", &forward__ref, &forward_oc__ref, &weight_w__ref, &weight_oc__ref, &input__ref};

const ConvDirectKernels& conv_direct_kernels(SimdTier tier) {
  switch (tier) {
    case SimdTier::ref: return conv_direct_kernels__ref;
    case SimdTier::avx512:
#ifdef CNNKIT_HAVE_AVX512
      if (simd_tier_supported(SimdTier::avx512)) return conv_direct_kernels__avx512;
#endif
      [[fallthrough]];
    case SimdTier::avx2:
#ifdef CNNKIT_HAVE_AVX2
      if (simd_tier_supported(SimdTier::avx2)) return conv_direct_kernels__avx2;
#endif
      [[fallthrough]];
    case SimdTier::portable: break;
  }
  return conv_direct_kernels__portable;
}

}  // namespace cnnkit
