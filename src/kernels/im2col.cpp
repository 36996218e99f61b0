// im2col operands (portable packs and the dispatch to the AVX2 ones), the materialised im2col
// and col2im. The portable packs walk the pixels one output row at a time: within a row, the
// input columns a kernel tap (kh, kw) reads are a clipped arithmetic progression.
#include "kernels/im2col.hpp"

#include <algorithm>

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

bool use_avx2() { return active_simd_tier() == SimdTier::avx2; }

}  // namespace

Im2colOperand::Im2colOperand(const float* x, const Im2colShape& g)
    : x_(x), g_(g), avx2_(use_avx2()) {}

void Im2colOperand::pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
                         float* dst) const {
#ifdef CNNKIT_HAVE_AVX2
  if (avx2_ && im2col_pack__avx2(x_, g_, o0, no, k0, nk, width, dst)) return;
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
