// The depthwise kernels' shape function, the padded plane xq, tier dispatch, and the __ref
// kernels: the same contracts as the tiers' (conv_depthwise.hpp) in plain loops, one output
// element at a time with its terms in the reference order (taps for the forward, pixels for
// dw, (m, kh, kw) for dx, skipping the taps that fall outside dy). The ref tier runs these.
#include "kernels/conv_depthwise.hpp"

#include <algorithm>

namespace cnnkit {

ConvDepthwiseShape conv_depthwise_shape(int64_t H, int64_t W, int64_t KH, int64_t KW,
                                        int64_t SH, int64_t SW, int64_t PT, int64_t PB,
                                        int64_t PL, int64_t PR, int64_t DH, int64_t DW) {
  ConvDepthwiseShape s{};
  s.H = H, s.W = W, s.KH = KH, s.KW = KW, s.SH = SH, s.SW = SW, s.PT = PT, s.PL = PL;
  s.DH = DH, s.DW = DW;
  s.Hp = PT + H + PB;
  const int64_t Wp = PL + W + PR;
  s.Wq = (Wp + SW - 1) / SW;
  s.OH = (s.Hp - DH * (KH - 1) - 1) / SH + 1;
  s.OW = (Wp - DW * (KW - 1) - 1) / SW + 1;
  s.Q = (KW - 1) * DW / SW;
  s.A = (KH - 1) * DH / SH;
  // The lowest dy row a dx row reaches is (PT + H - 1) / SH; rows past OH - 1 read zeros.
  s.Hd = s.A + std::max(s.OH, (PT + H - 1) / SH + 1);
  // dx's phase columns j < J = (PL + W - 1) / SW + 1 read dyq columns up to Q + j, and a
  // vector of them up to a further kConvDepthwiseLanes - 1.
  s.Wd = s.Q + std::max(s.OW, (PL + W - 1) / SW + 1) + kConvDepthwiseLanes;
  return s;
}

int64_t conv_depthwise_xq_size(const ConvDepthwiseShape& s) {
  return s.Hp * s.SW * s.Wq + kConvDepthwiseLanes;
}

int64_t conv_depthwise_input_scratch(const ConvDepthwiseShape& s, int64_t M) {
  constexpr int64_t kRowBlock = 4;  // conv_depthwise_impl::kMaxRB
  return M * s.Hd * s.Wd + (s.SW > 1 ? kRowBlock * s.Wd : 0);
}

// Padded rows up to this many floats take conv_depthwise_pad's stride-2 split.
constexpr int64_t kPadRowMax = 4096;

void conv_depthwise_pad(float* xq, const float* x, const ConvDepthwiseShape& s) {
  for (int64_t r = 0; r < s.Hp; ++r) {
    const int64_t ih = r - s.PT;
    float* row = xq + r * s.SW * s.Wq;
    if (ih < 0 || ih >= s.H) {
      std::fill(row, row + s.SW * s.Wq, 0.0f);
      continue;
    }
    const float* xr = x + ih * s.W;
    if (s.SW == 1) {
      std::fill(row, row + s.PL, 0.0f);
      std::copy(xr, xr + s.W, row + s.PL);
      std::fill(row + s.PL + s.W, row + s.Wq, 0.0f);
      continue;
    }
    // At stride 2 (the common strided case): the padded row made contiguous, then split into
    // its two phases by one pass of paired loads and stores, which the compiler vectorises
    // (with a bounds test per element, mobilenet_dw3x3_s2 spent 2/3 of its forward here).
    if (s.SW == 2 && 2 * s.Wq <= kPadRowMax) {
      float padded[kPadRowMax];
      std::fill(padded, padded + s.PL, 0.0f);
      std::copy(xr, xr + s.W, padded + s.PL);
      std::fill(padded + s.PL + s.W, padded + 2 * s.Wq, 0.0f);
      float* even = row;
      float* odd = row + s.Wq;
      for (int64_t j = 0; j < s.Wq; ++j) {
        even[j] = padded[2 * j];
        odd[j] = padded[2 * j + 1];
      }
      continue;
    }
    for (int64_t p = 0; p < s.SW; ++p)
      for (int64_t j = 0; j < s.Wq; ++j) {
        const int64_t iw = j * s.SW + p - s.PL;
        row[p * s.Wq + j] = iw >= 0 && iw < s.W ? xr[iw] : 0.0f;
      }
  }
  std::fill(xq + s.Hp * s.SW * s.Wq, xq + conv_depthwise_xq_size(s), 0.0f);
}

namespace {

// xq's offset of tap (kh, kw) at output pixel (oh, ow).
int64_t xq_at(const ConvDepthwiseShape& s, int64_t kh, int64_t kw, int64_t oh, int64_t ow) {
  const int64_t c = ow * s.SW + kw * s.DW;  // padded column
  return ((oh * s.SH + kh * s.DH) * s.SW + c % s.SW) * s.Wq + c / s.SW;
}

void forward__ref(float* y, const float* xq, const float* w, float bias,
                  const ConvDepthwiseShape& s) {
  for (int64_t oh = 0; oh < s.OH; ++oh)
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      float acc = bias;
      for (int64_t kh = 0; kh < s.KH; ++kh)
        for (int64_t kw = 0; kw < s.KW; ++kw)
          acc += xq[xq_at(s, kh, kw, oh, ow)] * w[kh * s.KW + kw];
      y[oh * s.OW + ow] = acc;
    }
}

void weight__ref(float* dwv, const float* xq, const float* dy, const ConvDepthwiseShape& s) {
  for (int64_t kh = 0; kh < s.KH; ++kh)
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      float acc = 0.0f;
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t ow = 0; ow < s.OW; ++ow)
          acc += dy[oh * s.OW + ow] * xq[xq_at(s, kh, kw, oh, ow)];
      dwv[(kh * s.KW + kw) * kConvDepthwiseLanes] += acc;  // lane 0 holds the whole sum
    }
}

void input__ref(float* dx, const float* dy, const float* w, int64_t M, float*,
                const ConvDepthwiseShape& s) {
  // dx[ih, iw] = sum over (m, kh, kw) of dy[m, oh, ow] * w[m, kh, kw] where the padded
  // position (PT + ih, PL + iw) = (oh*SH + kh*DH, ow*SW + kw*DW).
  for (int64_t ih = 0; ih < s.H; ++ih)
    for (int64_t iw = 0; iw < s.W; ++iw) {
      float acc = 0.0f;
      for (int64_t m = 0; m < M; ++m)
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t rh = s.PT + ih - kh * s.DH;
          if (rh < 0 || rh % s.SH || rh / s.SH >= s.OH) continue;
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t rw = s.PL + iw - kw * s.DW;
            if (rw < 0 || rw % s.SW || rw / s.SW >= s.OW) continue;
            acc += dy[(m * s.OH + rh / s.SH) * s.OW + rw / s.SW] * w[(m * s.KH + kh) * s.KW + kw];
          }
        }
      dx[ih * s.W + iw] = acc;
    }
}

}  // namespace

const ConvDepthwiseKernels conv_depthwise_kernels__ref = {"ref", &forward__ref, &weight__ref,
                                                          &input__ref};

const ConvDepthwiseKernels& conv_depthwise_kernels(SimdTier tier) {
  switch (tier) {
    case SimdTier::ref: return conv_depthwise_kernels__ref;
    case SimdTier::avx512:
#ifdef CNNKIT_HAVE_AVX512
      if (simd_tier_supported(SimdTier::avx512)) return conv_depthwise_kernels__avx512;
#endif
      [[fallthrough]];
    case SimdTier::avx2:
#ifdef CNNKIT_HAVE_AVX2
      if (simd_tier_supported(SimdTier::avx2)) return conv_depthwise_kernels__avx2;
#endif
      [[fallthrough]];
    case SimdTier::portable: break;
  }
  return conv_depthwise_kernels__portable;
}

}  // namespace cnnkit
