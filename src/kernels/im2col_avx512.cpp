// AVX-512 pack of the forward im2col operand, in blocks of 16 consecutive pixels, each
// classified once and then read for every kernel tap: inside one output row at stride 1, one
// load (masked at the image's left/right edge; masked-off lanes neither read nor fault);
// across two rows, two masked loads; at stride 2 or 4, within one row or across two,
// contiguous loads (masked at the edges) and permutes; anything else a masked gather. Twice the width of the AVX2 pack, for the avx512
// tier, whose GEMM would otherwise wait on the pack.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/im2col.hpp"
#include "kernels/im2col_taps.hpp"

namespace cnnkit {

namespace {

using im2col_detail::fits_int32;
using im2col_detail::Tap;
using im2col_detail::TapWalker;

#define CNNKIT_INLINE inline __attribute__((always_inline))

// How the 16 pixels of a block lie on the input (see the file head).
struct Block16 {
  enum Kind {
    empty, one_row, one_row_strided, two_rows, two_rows_strided, same_rows, scattered
  } kind;
  int64_t ohs, ow;         // all but scattered: the first pixel's oh*SH and ow
  int64_t ohs2, split;     // two_rows*: the second row's oh*SH; lanes [0, split) in the first
  __mmask16 first;         // two_rows*: the mask of lanes [0, split)
  __m512i lane_ohs, lane_ows;  // scattered, one_row_strided, same_rows: oh*SH and ow*SW
  __mmask16 live;          // scattered, one_row_strided, same_rows: lanes inside the operand
  int64_t j0;              // same_rows: the first pixel
};

CNNKIT_INLINE __m512i iota16() {
  return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

// Stride 1 with as many output columns as input ones ("same" padding across): pixel j reads
// x[plane + j + dh*W + dw] for every tap, so a block of consecutive pixels, across any number
// of output rows, is one contiguous run of the plane, masked where it leaves a row or the image.
CNNKIT_INLINE bool same_rows(const Im2colShape& g) {
  return g.SH == 1 && g.SW == 1 && g.OW == g.W;
}

CNNKIT_INLINE Block16 block16(const Im2colShape& g, int64_t j0, int lanes) {
  Block16 b{};
  if (lanes <= 0) return b;
  const int64_t oh = j0 / g.OW, ow = j0 % g.OW;
  b.ohs = oh * g.SH;
  b.ow = ow;
  if (lanes == 16 && ow + 16 <= g.OW && g.SW == 1) {
    b.kind = Block16::one_row;
    return b;
  }
  const bool strided = g.SW == 2 || g.SW == 4;
  if (lanes == 16 && (g.SW == 1 || strided) && g.OW >= 16 && ow + 16 > g.OW) {
    b.kind = g.SW == 1 ? Block16::two_rows : Block16::two_rows_strided;
    b.ohs2 = b.ohs + g.SH;
    b.split = g.OW - ow;
    b.first = static_cast<__mmask16>((1u << b.split) - 1);
    return b;
  }
  b.kind = lanes == 16 && ow + 16 <= g.OW && strided ? Block16::one_row_strided
           : same_rows(g)                           ? Block16::same_rows
                                                    : Block16::scattered;
  b.j0 = j0;
  alignas(64) int32_t a[16], c[16];
  int64_t h = oh, w = ow;
  for (int t = 0; t < 16; ++t) {
    a[t] = static_cast<int32_t>(h * g.SH);
    c[t] = static_cast<int32_t>(w * g.SW);
    if (++w == g.OW) w = 0, ++h;
  }
  b.lane_ohs = _mm512_load_si512(a);
  b.lane_ows = _mm512_load_si512(c);
  b.live = static_cast<__mmask16>((1u << lanes) - 1);
  return b;
}

// Lanes l with lo <= v[l] < hi.
CNNKIT_INLINE __mmask16 in_range16(__m512i v, int64_t lo, int64_t hi) {
  return _mm512_cmpge_epi32_mask(v, _mm512_set1_epi32(static_cast<int32_t>(lo))) &
         _mm512_cmplt_epi32_mask(v, _mm512_set1_epi32(static_cast<int32_t>(hi)));
}

// Input columns iw .. iw+15 of a row into the lanes in `wanted` that lie inside [0, W); the
// other lanes keep `src`. The address is formed without pointer arithmetic out of the row;
// masked lanes are not read.
CNNKIT_INLINE __m512 clipped_load16(__m512 src, const float* row, int64_t iw, int64_t W,
                                    __mmask16 wanted) {
  const __m512i cols = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(iw)), iota16());
  const auto addr = reinterpret_cast<const float*>(reinterpret_cast<std::uintptr_t>(row) +
                                                   static_cast<std::uintptr_t>(iw * 4));
  return _mm512_mask_loadu_ps(src, in_range16(cols, 0, W) & wanted, addr);
}

CNNKIT_INLINE __m512 gather_tap16(const float* x, const Im2colShape& g, const Tap& t,
                                  const Block16& b) {
  const __m512i ih = _mm512_add_epi32(b.lane_ohs, _mm512_set1_epi32(static_cast<int32_t>(t.dh)));
  const __m512i iw = _mm512_add_epi32(b.lane_ows, _mm512_set1_epi32(static_cast<int32_t>(t.dw)));
  const __mmask16 m = b.live & in_range16(ih, 0, g.H) & in_range16(iw, 0, g.W);
  const __m512i idx =
      _mm512_add_epi32(_mm512_mullo_epi32(ih, _mm512_set1_epi32(static_cast<int32_t>(g.W))), iw);
  return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, x + t.plane, 4);
}

// p[0], p[sw], .. p[15*sw] for sw = 2 or 4: contiguous loads, lanes picked by permutes.
CNNKIT_INLINE __m512 strided_load16(const float* p, int64_t sw) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                         30);
  if (sw == 2) return _mm512_permutex2var_ps(_mm512_loadu_ps(p), even, _mm512_loadu_ps(p + 16));
  // sw == 4: every 4th of 64 floats, 8 from each pair of loads, then the two halves joined.
  const __m512i fourth = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20,
                                           24, 28);
  const __m512 lo = _mm512_permutex2var_ps(_mm512_loadu_ps(p), fourth, _mm512_loadu_ps(p + 16));
  const __m512 hi =
      _mm512_permutex2var_ps(_mm512_loadu_ps(p + 32), fourth, _mm512_loadu_ps(p + 48));
  const __m512i halves = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22,
                                           23);
  return _mm512_permutex2var_ps(lo, halves, hi);
}

// Columns iw, iw + sw, .. iw + 15*sw of a row (sw = 2 or 4), 0 where they fall outside
// [0, W): masked contiguous loads (clipped_load16), then the permutes of strided_load16.
CNNKIT_INLINE __m512 strided_clipped16(const float* row, int64_t iw, int64_t W, int64_t sw) {
  const __m512 z = _mm512_setzero_ps();
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                         30);
  if (sw == 2)
    return _mm512_permutex2var_ps(clipped_load16(z, row, iw, W, 0xFFFF), even,
                                  clipped_load16(z, row, iw + 16, W, 0xFFFF));
  const __m512i fourth = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20,
                                           24, 28);
  const __m512 lo = _mm512_permutex2var_ps(clipped_load16(z, row, iw, W, 0xFFFF), fourth,
                                           clipped_load16(z, row, iw + 16, W, 0xFFFF));
  const __m512 hi = _mm512_permutex2var_ps(clipped_load16(z, row, iw + 32, W, 0xFFFF), fourth,
                                           clipped_load16(z, row, iw + 48, W, 0xFFFF));
  const __m512i halves = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22,
                                           23);
  return _mm512_permutex2var_ps(lo, halves, hi);
}

template <Block16::Kind K>
CNNKIT_INLINE __m512 load_tap16(const float* x, const Im2colShape& g, const Tap& t,
                                const Block16& b, int64_t ahead) {
  if constexpr (K == Block16::empty) {
    return _mm512_setzero_ps();
  } else if constexpr (K == Block16::one_row) {
    const int64_t ih = b.ohs + t.dh, iw = b.ow + t.dw;
    if (ih < 0 || ih >= g.H) return _mm512_setzero_ps();
    const float* row = x + t.plane + ih * g.W;
    _mm_prefetch(reinterpret_cast<const char*>(row + iw + ahead), _MM_HINT_T0);
    if (iw >= 0 && iw + 16 <= g.W) return _mm512_loadu_ps(row + iw);
    return clipped_load16(_mm512_setzero_ps(), row, iw, g.W, 0xFFFF);
  } else if constexpr (K == Block16::one_row_strided) {
    const int64_t ih = b.ohs + t.dh, iw = b.ow * g.SW + t.dw;
    if (ih < 0 || ih >= g.H) return _mm512_setzero_ps();
    const float* row = x + t.plane + ih * g.W;
    for (int64_t i = 0; i < g.SW; ++i)
      _mm_prefetch(reinterpret_cast<const char*>(row + iw + ahead + 16 * i), _MM_HINT_T0);
    if (iw >= 0 && iw + 16 * g.SW <= g.W) return strided_load16(row + iw, g.SW);
    return strided_clipped16(row, iw, g.W, g.SW);  // clipped by the padding
  } else if constexpr (K == Block16::two_rows) {
    // Lane l reads column ow + l + dw of the first row, or l - split + dw of the second.
    __m512 v = _mm512_setzero_ps();
    const int64_t ih1 = b.ohs + t.dh, ih2 = b.ohs2 + t.dh;
    _mm_prefetch(reinterpret_cast<const char*>(x + t.plane + ih1 * g.W + b.ow + t.dw + ahead),
                 _MM_HINT_T0);
    if (ih1 >= 0 && ih1 < g.H)
      v = clipped_load16(v, x + t.plane + ih1 * g.W, b.ow + t.dw, g.W, b.first);
    if (ih2 >= 0 && ih2 < g.H)
      v = clipped_load16(v, x + t.plane + ih2 * g.W, t.dw - b.split, g.W,
                         static_cast<__mmask16>(~b.first));
    return v;
  } else if constexpr (K == Block16::two_rows_strided) {
    // Lane l reads column (ow + l)*SW + dw of the first row, or (l - split)*SW + dw of the
    // second.
    const int64_t ih1 = b.ohs + t.dh, ih2 = b.ohs2 + t.dh;
    const __m512 v1 = ih1 >= 0 && ih1 < g.H
                          ? strided_clipped16(x + t.plane + ih1 * g.W, b.ow * g.SW + t.dw, g.W,
                                              g.SW)
                          : _mm512_setzero_ps();
    const __m512 v2 = ih2 >= 0 && ih2 < g.H
                          ? strided_clipped16(x + t.plane + ih2 * g.W, t.dw - b.split * g.SW,
                                              g.W, g.SW)
                          : _mm512_setzero_ps();
    return _mm512_mask_blend_ps(b.first, v2, v1);
  } else if constexpr (K == Block16::same_rows) {
    // One masked load: lanes whose ih or iw leaves the image (unsigned compares catch < 0) and
    // lanes past the operand stay 0 and are not read.
    const __m512i ih = _mm512_add_epi32(b.lane_ohs, _mm512_set1_epi32(static_cast<int32_t>(t.dh)));
    const __m512i iw = _mm512_add_epi32(b.lane_ows, _mm512_set1_epi32(static_cast<int32_t>(t.dw)));
    const __mmask16 m =
        b.live & _mm512_cmplt_epu32_mask(ih, _mm512_set1_epi32(static_cast<int32_t>(g.H))) &
        _mm512_cmplt_epu32_mask(iw, _mm512_set1_epi32(static_cast<int32_t>(g.W)));
    const auto addr = reinterpret_cast<const float*>(
        reinterpret_cast<std::uintptr_t>(x + t.plane) +
        static_cast<std::uintptr_t>((b.j0 + t.dh * g.W + t.dw) * 4));
    return _mm512_maskz_loadu_ps(m, addr);
  } else {
    return gather_tap16(x, g, t, b);
  }
}

template <class F>
void with_kind16(const Block16& b, F&& f) {
  using B = Block16;
  switch (b.kind) {
    case B::empty: return f(std::integral_constant<B::Kind, B::empty>{});
    case B::one_row: return f(std::integral_constant<B::Kind, B::one_row>{});
    case B::one_row_strided: return f(std::integral_constant<B::Kind, B::one_row_strided>{});
    case B::two_rows: return f(std::integral_constant<B::Kind, B::two_rows>{});
    case B::two_rows_strided: return f(std::integral_constant<B::Kind, B::two_rows_strided>{});
    case B::same_rows: return f(std::integral_constant<B::Kind, B::same_rows>{});
    case B::scattered: return f(std::integral_constant<B::Kind, B::scattered>{});
  }
}

}  // namespace

bool im2col_pack__avx512(const float* x, const Im2colShape& g, int64_t o0, int64_t no,
                         int64_t k0, int64_t nk, int width, float* dst) {
  // Output rows narrower than a block would make every block a gather: the AVX2 pack's
  // 8-pixel blocks then fit rows better, unless the rows are "same" ones at stride 1, whose
  // blocks are single masked loads across rows (same_rows).
  if (width % 16 != 0 || !fits_int32(g) || (g.OW < 16 && !same_rows(g))) return false;
  const int64_t groups = width / 16, blocks = (no + width - 1) / width * groups;
  // Loop order: chunks of blocks (classified once), then a few taps at a time across the
  // chunk's blocks. A block reads one input row per tap, so few taps at a time keep few rows
  // streaming (each advancing 64 bytes a block), which the prefetchers and L1 keep up with;
  // all taps per block at once read hundreds of rows and waited on L2.
  constexpr int64_t kBlockChunk = 32, kTapBlock = 16;
  Block16 desc[kBlockChunk];
  // The GEMM packs B a few panels (no pixels) at a time, consecutive calls moving on by no
  // pixels: each load prefetches what the same tap reads two calls later, about this many
  // floats further into its plane (one call ahead: strided_s2 6.7-6.8 ms, two: 6.3-6.4). Each row is read only briefly per call, too briefly for the
  // hardware prefetchers (VGG-sized packs stalled on L2/L3 at the loads).
  const int64_t ahead = 2 * (no / g.OW * g.SH * g.W + no % g.OW * g.SW);
  Tap taps[kTapBlock];
  for (int64_t ba = 0; ba < blocks; ba += kBlockChunk) {
    const int64_t bn = std::min(kBlockChunk, blocks - ba);
    for (int64_t b = 0; b < bn; ++b) {
      const int64_t i0 = (ba + b) / groups * width + (ba + b) % groups * 16;
      desc[b] = block16(g, o0 + i0, static_cast<int>(std::clamp<int64_t>(no - i0, 0, 16)));
    }
    TapWalker walk(g, k0);
    for (int64_t ka = 0; ka < nk; ka += kTapBlock) {
      const int64_t kn = std::min(kTapBlock, nk - ka);
      for (int64_t k = 0; k < kn; ++k) taps[k] = walk.next(true);
      for (int64_t b = 0; b < bn; ++b) {
        const int64_t p = (ba + b) / groups, q = (ba + b) % groups;
        float* d = dst + (p * nk + ka) * width + q * 16;
        with_kind16(desc[b], [&](auto kind) {
          for (int64_t k = 0; k < kn; ++k)
            _mm512_storeu_ps(d + k * width, load_tap16<kind()>(x, g, taps[k], desc[b], ahead));
        });
      }
    }
  }
  return true;
}

#undef CNNKIT_INLINE

}  // namespace cnnkit
