// The direct kernels' shape function, their tier dispatch, and the __ref kernels: the same
// contracts as the tiers' (conv_direct.hpp) in plain loops, one output element at a time with
// its terms in the reference order (taps for the forward, pixels for dw, dy rows then (oc, kw)
// for dx). The ref tier runs these.
#include "kernels/conv_direct.hpp"

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
