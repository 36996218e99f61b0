// AVX2 packs of the im2col operands, in blocks of 8 consecutive pixels: a block inside one
// output row at stride 1 is 8 consecutive input floats for every kernel tap (one load, masked
// at the image's left/right edge); any other block gathers its 8 lanes. The transposed pack
// loads 8 taps of a block and transposes the 8x8 tile in registers.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/im2col.hpp"

namespace cnnkit {

namespace {

// A kernel tap (one row r of col): its input plane's offset from x, and ih = oh*SH + dh,
// iw = ow*SW + dw. Rows past the operand's end are not valid and read as 0.
struct Tap {
  int64_t plane;
  int64_t dh, dw;
  bool valid;
};

Tap tap(const Im2colShape& g, int64_t r, bool valid) {
  const int64_t kk = g.KH * g.KW, c = r / kk, kh = r % kk / g.KW, kw = r % g.KW;
  return {c * g.H * g.W, kh * g.DH - g.PT, kw * g.DW - g.PL, valid};
}

// The pixels of a block, lane by lane: oh*SH and ow*SW; lanes past the block's end get an
// oh*SH so negative that every tap misses the image.
struct PixelLanes {
  __m256i ohs, ows;
};

PixelLanes pixel_lanes(const Im2colShape& g, int64_t j0, int lanes) {
  alignas(32) int32_t a[8], b[8];
  int64_t oh = j0 / g.OW, ow = j0 % g.OW;
  for (int t = 0; t < 8; ++t) {
    a[t] = t < lanes ? static_cast<int32_t>(oh * g.SH) : -(1 << 30);
    b[t] = t < lanes ? static_cast<int32_t>(ow * g.SW) : 0;
    if (++ow == g.OW) ow = 0, ++oh;
  }
  return {_mm256_load_si256(reinterpret_cast<const __m256i*>(a)),
          _mm256_load_si256(reinterpret_cast<const __m256i*>(b))};
}

// Lanes t with lo <= v[t] < hi, as a mask.
__m256i in_range(__m256i v, int64_t lo, int64_t hi) {
  return _mm256_and_si256(_mm256_cmpgt_epi32(v, _mm256_set1_epi32(static_cast<int32_t>(lo - 1))),
                          _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(hi)), v));
}

// 8 values of tap t for a block given lane by lane (any stride, any row crossing).
__m256 gather_tap(const float* x, const Im2colShape& g, const Tap& t, const PixelLanes& px) {
  const __m256i ih = _mm256_add_epi32(px.ohs, _mm256_set1_epi32(static_cast<int32_t>(t.dh)));
  const __m256i iw = _mm256_add_epi32(px.ows, _mm256_set1_epi32(static_cast<int32_t>(t.dw)));
  const __m256i mask = _mm256_and_si256(in_range(ih, 0, g.H), in_range(iw, 0, g.W));
  const __m256i idx =
      _mm256_add_epi32(_mm256_mullo_epi32(ih, _mm256_set1_epi32(static_cast<int32_t>(g.W))), iw);
  return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), x + t.plane, idx,
                                  _mm256_castsi256_ps(mask), 4);
}

// 8 values of tap t for a stride-1 block inside output row oh, columns ow .. ow+7.
__m256 row_tap(const float* x, const Im2colShape& g, const Tap& t, int64_t ohs, int64_t ow) {
  const int64_t ih = ohs + t.dh, iw = ow + t.dw;
  if (ih < 0 || ih >= g.H) return _mm256_setzero_ps();
  const float* row = x + t.plane + ih * g.W;
  if (iw >= 0 && iw + 8 <= g.W) return _mm256_loadu_ps(row + iw);
  // Clipped by the left or right padding: masked-off lanes are neither read nor can fault,
  // so the address may point outside the row (formed without pointer arithmetic out of it).
  const __m256i cols = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int32_t>(iw)),
                                        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const auto addr = reinterpret_cast<const float*>(reinterpret_cast<std::uintptr_t>(row) +
                                                   static_cast<std::uintptr_t>(iw * 4));
  return _mm256_maskload_ps(addr, in_range(cols, 0, g.W));
}

// In-register transpose: v[i][j] <- v[j][i].
void transpose8(__m256 v[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(v[2 * i], v[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    v[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

// The int32 lane arithmetic above needs every index of the image in range.
bool fits_int32(const Im2colShape& g) {
  const int64_t lim = int64_t{1} << 29;
  return g.H * g.W < lim && g.OH * g.SH + g.PT < lim && g.OW * g.SW + g.PL < lim &&
         g.KH * g.DH < lim && g.KW * g.DW < lim;
}

constexpr int64_t kTapChunk = 256;  // taps whose table sits on the stack at once
constexpr int kMaxWidth = 64;

}  // namespace

bool im2col_pack__avx2(const float* x, const Im2colShape& g, int64_t o0, int64_t no,
                       int64_t k0, int64_t nk, int width, float* dst) {
  if (width % 8 != 0 || !fits_int32(g)) return false;
  const int64_t panels = (no + width - 1) / width, groups = width / 8;
  Tap taps[kTapChunk];
  for (int64_t ka = 0; ka < nk; ka += kTapChunk) {
    const int64_t kb = std::min(nk, ka + kTapChunk);
    for (int64_t k = ka; k < kb; ++k) taps[k - ka] = tap(g, k0 + k, true);
    for (int64_t p = 0; p < panels; ++p)
      for (int64_t q = 0; q < groups; ++q) {
        const int64_t i0 = p * width + q * 8;
        const int lanes = static_cast<int>(std::clamp<int64_t>(no - i0, 0, 8));
        float* d = dst + (p * nk + ka) * width + q * 8;
        const int64_t j0 = o0 + i0, oh = j0 / g.OW, ow = j0 % g.OW;
        if (lanes == 8 && g.SW == 1 && ow + 8 <= g.OW) {
          for (int64_t k = 0; k < kb - ka; ++k, d += width)
            _mm256_storeu_ps(d, row_tap(x, g, taps[k], oh * g.SH, ow));
        } else if (lanes > 0) {
          const PixelLanes px = pixel_lanes(g, j0, lanes);
          for (int64_t k = 0; k < kb - ka; ++k, d += width)
            _mm256_storeu_ps(d, gather_tap(x, g, taps[k], px));
        } else {
          for (int64_t k = 0; k < kb - ka; ++k, d += width)
            _mm256_storeu_ps(d, _mm256_setzero_ps());
        }
      }
  }
  return true;
}

bool im2col_transposed_pack__avx2(const float* x, const Im2colShape& g, int64_t o0, int64_t no,
                                  int64_t k0, int64_t nk, int width, float* dst) {
  if (width % 8 != 0 || width > kMaxWidth || !fits_int32(g)) return false;
  const int64_t panels = (no + width - 1) / width, groups = width / 8;
  Tap taps[kMaxWidth];
  for (int64_t p = 0; p < panels; ++p) {
    for (int i = 0; i < width; ++i) {
      const int64_t r = p * width + i;
      taps[i] = tap(g, o0 + std::min(r, no - 1), r < no);
    }
    float* d = dst + p * nk * width;
    int64_t oh = k0 / g.OW, ow = k0 % g.OW;
    for (int64_t kq = 0; kq < nk;) {
      const int lanes = static_cast<int>(std::min<int64_t>(8, nk - kq));
      const bool in_row = lanes == 8 && g.SW == 1 && ow + 8 <= g.OW;
      const PixelLanes px = in_row ? PixelLanes{} : pixel_lanes(g, k0 + kq, lanes);
      for (int64_t q = 0; q < groups; ++q) {
        __m256 v[8];
        for (int t = 0; t < 8; ++t) {
          const Tap& tp = taps[q * 8 + t];
          v[t] = !tp.valid ? _mm256_setzero_ps()
                 : in_row  ? row_tap(x, g, tp, oh * g.SH, ow)
                           : gather_tap(x, g, tp, px);
        }
        transpose8(v);  // v[t] now holds the 8 taps of pixel kq + t
        for (int t = 0; t < lanes; ++t) _mm256_storeu_ps(d + (kq + t) * width + q * 8, v[t]);
      }
      kq += lanes;
      ow += lanes;
      oh += ow / g.OW;
      ow %= g.OW;
    }
  }
  return true;
}

}  // namespace cnnkit
