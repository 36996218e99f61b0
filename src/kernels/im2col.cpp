// im2col operands (portable packs and the dispatch to the AVX2 ones), the materialised im2col
// and col2im. The portable packs walk the pixels one output row at a time: within a row, the
// input columns a kernel tap (kh, kw) reads are a clipped arithmetic progression.
#include "kernels/im2col.hpp"

#include <algorithm>
#include <cstring>

namespace cnnkit {

namespace {

// A kernel tap of row r: the input plane it reads and its offsets from (oh*SH, ow*SW).
struct Tap {
  const float* plane;  // x + c*H*W
  int64_t dh, dw;      // ih = oh*SH + dh, iw = ow*SW + dw
  int64_t ow_lo, ow_hi;  // the output columns whose iw lies inside [0, W)
};

Tap tap(const float* x, const Im2colShape& g, int64_t r) {
  const int64_t kk = g.KH * g.KW, c = r / kk, kh = r % kk / g.KW, kw = r % g.KW;
  Tap t;
  t.plane = x + c * g.H * g.W;
  t.dh = kh * g.DH - g.PT;
  t.dw = kw * g.DW - g.PL;
  // iw = ow*SW + dw >= 0  <=>  ow >= ceil(-dw / SW);  iw <= W-1  <=>  ow <= floor((W-1-dw) / SW)
  t.ow_lo = t.dw >= 0 ? 0 : (-t.dw + g.SW - 1) / g.SW;
  t.ow_hi = t.dw > g.W - 1 ? 0 : std::min(g.OW, (g.W - 1 - t.dw) / g.SW + 1);
  return t;
}

// The input row tap t reads for output row oh, or null when it lies in the padding.
const float* tap_row(const Tap& t, const Im2colShape& g, int64_t oh) {
  const int64_t ih = oh * g.SH + t.dh;
  return ih >= 0 && ih < g.H ? t.plane + ih * g.W : nullptr;
}

float tap_value(const Tap& t, const float* row, const Im2colShape& g, int64_t ow) {
  return row && ow >= t.ow_lo && ow < t.ow_hi ? row[ow * g.SW + t.dw] : 0.0f;
}

void im2col_pack__portable(const float* x, const Im2colShape& g, int64_t o0, int64_t no,
                           int64_t k0, int64_t nk, int width, float* dst) {
  const int64_t panels = (no + width - 1) / width;
  for (int64_t k = 0; k < nk; ++k) {
    const Tap t = tap(x, g, k0 + k);
    int64_t oh = o0 / g.OW, ow = o0 % g.OW;
    for (int64_t i = 0; i < no;) {
      // One output row's worth of pixels, cut where a panel ends.
      const float* row = tap_row(t, g, oh);
      const int64_t len = std::min({g.OW - ow, no - i, width - i % width});
      float* d = dst + (i / width * nk + k) * width + i % width;
      for (int64_t e = 0; e < len; ++e) d[e] = tap_value(t, row, g, ow + e);
      i += len;
      ow += len;
      if (ow == g.OW) ow = 0, ++oh;
    }
    for (int64_t i = no; i < panels * width; ++i)  // zero padding of the last panel
      dst[((panels - 1) * nk + k) * width + i % width] = 0.0f;
  }
}

void im2col_transposed_pack__portable(const float* x, const Im2colShape& g, int64_t o0,
                                      int64_t no, int64_t k0, int64_t nk, int width,
                                      float* dst) {
  const int64_t panels = (no + width - 1) / width;
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t i = 0; i < width; ++i) {
      float* d = dst + p * nk * width + i;
      const int64_t r = p * width + i;
      if (r >= no) {
        for (int64_t k = 0; k < nk; ++k) d[k * width] = 0.0f;
        continue;
      }
      const Tap t = tap(x, g, o0 + r);
      int64_t oh = k0 / g.OW, ow = k0 % g.OW;
      const float* row = tap_row(t, g, oh);
      for (int64_t k = 0; k < nk; ++k) {
        d[k * width] = tap_value(t, row, g, ow);
        if (++ow == g.OW) ow = 0, row = tap_row(t, g, ++oh);
      }
    }
}

// The AVX2 packs run under the avx2 tier and any wider one added after it.
bool use_avx2() {
  return static_cast<int>(active_simd_tier()) >= static_cast<int>(SimdTier::avx2) &&
         simd_tier_supported(SimdTier::avx2);
}

}  // namespace

Im2colOperand::Im2colOperand(const float* x, const Im2colShape& g)
    : x_(x), g_(g), tier_(active_simd_tier()) {}

void Im2colOperand::pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
                         float* dst) const {
#ifdef CNNKIT_HAVE_AVX512
  if (tier_ == SimdTier::avx512 && im2col_pack__avx512(x_, g_, o0, no, k0, nk, width, dst))
    return;
#endif
#ifdef CNNKIT_HAVE_AVX2
  if (tier_ >= SimdTier::avx2 && im2col_pack__avx2(x_, g_, o0, no, k0, nk, width, dst)) return;
#endif
  im2col_pack__portable(x_, g_, o0, no, k0, nk, width, dst);
}

Im2colTransposedOperand::Im2colTransposedOperand(const float* x, const Im2colShape& g)
    : x_(x), g_(g), avx2_(use_avx2()) {}

void Im2colTransposedOperand::pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
                                   float* dst) const {
#ifdef CNNKIT_HAVE_AVX2
  if (avx2_ && im2col_transposed_pack__avx2(x_, g_, o0, no, k0, nk, width, dst)) return;
#endif
  im2col_transposed_pack__portable(x_, g_, o0, no, k0, nk, width, dst);
}

namespace {

// One panel of Im2colHwcOperand in groups of GS rows, each group channels c .. c+GS-1 of one
// tap (C, the panel start and `rows` multiples of GS) or past the operand's end (zeros): each
// pixel copies GS contiguous floats of xt per group.
template <int GS>
void hwc_panel_groups(const float* xt, const Im2colShape& g, int64_t r0, int64_t rows, int width,
                      int64_t k0, int64_t nk, float* d) {
  constexpr int kMaxGroups = 64 / GS;
  int64_t c[kMaxGroups], dh[kMaxGroups], dw[kMaxGroups];
  const int groups = width / GS, live = static_cast<int>(rows / GS);
  for (int q = 0; q < live; ++q) {
    const int64_t r = r0 + GS * q, t = r / g.C;
    c[q] = r % g.C;
    dh[q] = t / g.KW * g.DH - g.PT;
    dw[q] = t % g.KW * g.DW - g.PL;
  }
  int64_t oh = k0 / g.OW, ow = k0 % g.OW;
  for (int64_t k = 0; k < nk; ++k, d += width) {
    for (int q = 0; q < live; ++q) {
      const int64_t ih = oh * g.SH + dh[q], iw = ow * g.SW + dw[q];
      if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W)
        std::memcpy(d + GS * q, xt + (ih * g.W + iw) * g.C + c[q], GS * sizeof(float));
      else
        std::memset(d + GS * q, 0, GS * sizeof(float));
    }
    if (live < groups) std::memset(d + GS * live, 0, (groups - live) * GS * sizeof(float));
    if (++ow == g.OW) ow = 0, ++oh;
  }
}

}  // namespace

void Im2colHwcOperand::pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
                            float* dst) const {
  const Im2colShape& g = g_;
  const int64_t panels = (no + width - 1) / width;
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t r0 = o0 + p * width, rows = std::min<int64_t>(width, no - p * width);
    float* d = dst + p * nk * width;
    auto groups_of = [&](int gs) {
      return width <= 64 && g.C % gs == 0 && r0 % gs == 0 && rows % gs == 0 && width % gs == 0;
    };
    if (groups_of(16)) {
      hwc_panel_groups<16>(xt_, g, r0, rows, width, k0, nk, d);
      continue;
    }
    if (groups_of(8)) {
      hwc_panel_groups<8>(xt_, g, r0, rows, width, k0, nk, d);
      continue;
    }
    // Any other panel, row by row: each row is one (tap, channel).
    for (int64_t i = 0; i < width; ++i) {
      const int64_t r = r0 + i, t = r / g.C, c = r % g.C;
      const int64_t dh = t / g.KW * g.DH - g.PT, dw = t % g.KW * g.DW - g.PL;
      int64_t oh = k0 / g.OW, ow = k0 % g.OW;
      for (int64_t k = 0; k < nk; ++k) {
        const int64_t ih = oh * g.SH + dh, iw = ow * g.SW + dw;
        d[k * width + i] = i < rows && ih >= 0 && ih < g.H && iw >= 0 && iw < g.W
                               ? xt_[(ih * g.W + iw) * g.C + c]
                               : 0.0f;
        if (++ow == g.OW) ow = 0, ++oh;
      }
    }
  }
}

void batched_im2col_pack(const float* x, int64_t xs, const Im2colShape& g, int64_t o0,
                         int64_t no, int64_t k0, int64_t nk, int width, float* dst) {
#ifdef CNNKIT_HAVE_AVX512
  if (active_simd_tier() == SimdTier::avx512 &&
      batched_im2col_pack__avx512(x, xs, g, o0, no, k0, nk, width, dst))
    return;
#endif
  const int64_t P = g.OH * g.OW, taps = g.KH * g.KW, panels = (no + width - 1) / width;
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t k = 0; k < nk; ++k) {
      const int64_t r = k0 + k, c = r / taps, t = r % taps;
      const int64_t dh = t / g.KW * g.DH - g.PT, dw = t % g.KW * g.DW - g.PL;
      float* d = dst + (p * nk + k) * width;
      for (int64_t i = 0; i < width; ++i) {
        const int64_t o = o0 + p * width + i, j = o % P;
        const int64_t ih = j / g.OW * g.SH + dh, iw = j % g.OW * g.SW + dw;
        d[i] = p * width + i < no && ih >= 0 && ih < g.H && iw >= 0 && iw < g.W
                   ? x[o / P * xs + (c * g.H + ih) * g.W + iw]
                   : 0.0f;
      }
    }
}

void chw_to_hwc(float* xt, const float* x, int64_t C, int64_t HW) {
#ifdef CNNKIT_HAVE_AVX2
  if (use_avx2()) {
    chw_to_hwc__avx2(xt, x, C, HW);
    return;
  }
#endif
  // 8 x 8 tiles keep both the reads and the scattered writes within a few cache lines.
  constexpr int64_t kTile = 8;
  for (int64_t c0 = 0; c0 < C; c0 += kTile)
    for (int64_t j0 = 0; j0 < HW; j0 += kTile)
      for (int64_t c = c0; c < std::min(C, c0 + kTile); ++c)
        for (int64_t j = j0; j < std::min(HW, j0 + kTile); ++j) xt[j * C + c] = x[c * HW + j];
}

void im2col(float* col, const float* x, const Im2colShape& g) {
  const int64_t rows = g.C * g.KH * g.KW, npix = g.OH * g.OW;
  for (int64_t r = 0; r < rows; ++r) {
    const Tap t = tap(x, g, r);
    float* d = col + r * npix;
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      const float* row = tap_row(t, g, oh);
      for (int64_t ow = 0; ow < g.OW; ++ow) d[oh * g.OW + ow] = tap_value(t, row, g, ow);
    }
  }
}

void col2im_add(float* x, const float* col, const Im2colShape& g, int64_t j0, int64_t nj,
                int64_t c0, int64_t c1) {
  const int64_t kk = g.KH * g.KW;
  for (int64_t r = c0 * kk; r < c1 * kk; ++r) {
    const Tap t = tap(x, g, r);
    float* plane = x + r / kk * g.H * g.W;
    int64_t oh = j0 / g.OW, ow = j0 % g.OW;
    for (int64_t j = 0; j < nj;) {
      // The part of output row oh in [j0, j0+nj): its in-image columns add into one input row.
      const int64_t len = std::min(g.OW - ow, nj - j), ih = oh * g.SH + t.dh;
      if (ih >= 0 && ih < g.H) {
        float* row = plane + ih * g.W;
        const float* s = col + r * nj + j;  // s[e - ow] is the value of output column e
        const int64_t lo = std::max(ow, t.ow_lo), hi = std::min(ow + len, t.ow_hi);
        if (g.SW == 1) {
#pragma omp simd
          for (int64_t e = lo; e < hi; ++e) row[e + t.dw] += s[e - ow];
        } else {
          for (int64_t e = lo; e < hi; ++e) row[e * g.SW + t.dw] += s[e - ow];
        }
      }
      j += len;
      ow += len;
      if (ow == g.OW) ow = 0, ++oh;
    }
  }
}

}  // namespace cnnkit
