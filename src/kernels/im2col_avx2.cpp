// AVX2 packs of the im2col operands, in blocks of 8 consecutive pixels, each classified once
// and then read for every kernel tap: inside one output row at stride 1 it is 8 consecutive
// input floats (one load, masked at the image's left/right edge); across two rows, two masked
// loads; inside one row at stride 2 or 4, contiguous loads and shuffles; anything else gathers
// its 8 lanes. The transposed pack loads 8 taps of a block and transposes the 8x8 tile in
// registers. Also the 8x8-transposing CHW -> HWC copy of the channels-last operand.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/im2col.hpp"
#include "kernels/im2col_taps.hpp"

namespace cnnkit {

namespace {

using im2col_detail::fits_int32;
using im2col_detail::kTapChunk;
using im2col_detail::Tap;
using im2col_detail::TapWalker;

// The helpers below run per 8 floats: inlining them keeps their vectors in registers.
#define CNNKIT_INLINE inline __attribute__((always_inline))

// The pixels of a block, lane by lane: oh*SH and ow*SW; lanes past the block's end get an
// oh*SH so negative that every tap misses the image.
struct PixelLanes {
  __m256i ohs, ows;
};

CNNKIT_INLINE PixelLanes pixel_lanes(const Im2colShape& g, int64_t j0, int lanes) {
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
CNNKIT_INLINE __m256i in_range(__m256i v, int64_t lo, int64_t hi) {
  return _mm256_and_si256(_mm256_cmpgt_epi32(v, _mm256_set1_epi32(static_cast<int32_t>(lo - 1))),
                          _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(hi)), v));
}

// 8 values of tap t for a block given lane by lane (any stride, any row crossing).
CNNKIT_INLINE __m256 gather_tap(const float* x, const Im2colShape& g, const Tap& t,
                                const PixelLanes& px) {
  const __m256i ih = _mm256_add_epi32(px.ohs, _mm256_set1_epi32(static_cast<int32_t>(t.dh)));
  const __m256i iw = _mm256_add_epi32(px.ows, _mm256_set1_epi32(static_cast<int32_t>(t.dw)));
  const __m256i mask = _mm256_and_si256(in_range(ih, 0, g.H), in_range(iw, 0, g.W));
  const __m256i idx =
      _mm256_add_epi32(_mm256_mullo_epi32(ih, _mm256_set1_epi32(static_cast<int32_t>(g.W))), iw);
  return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), x + t.plane, idx,
                                  _mm256_castsi256_ps(mask), 4);
}

// p[0], p[sw], .. p[7*sw] for sw = 2 or 4 (a whole block inside one output row and the
// image): contiguous loads, the strided lanes picked out by shuffles.
CNNKIT_INLINE __m256 strided_load(const float* p, int64_t sw) {
  if (sw == 2) {  // [p0 p2 p8 p10 | p4 p6 p12 p14] -> [p0 p2 p4 ... p14]
    const __m256 even = _mm256_shuffle_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8), 0x88);
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), 0xD8));
  }
  // sw == 4: [p0 p8 p16 p24 | p4 p12 p20 p28] -> [p0 p4 p8 ... p28]
  const __m256 ab = _mm256_unpacklo_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8));
  const __m256 cd = _mm256_unpacklo_ps(_mm256_loadu_ps(p + 16), _mm256_loadu_ps(p + 24));
  return _mm256_permutevar8x32_ps(_mm256_shuffle_ps(ab, cd, 0x44),
                                  _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// Input columns iw .. iw+7 of a row, the lanes outside [0, W) zero: masked-off lanes are
// neither read nor can fault, so the address may lie outside the row (it is formed without
// pointer arithmetic out of it).
CNNKIT_INLINE __m256 clipped_load(const float* row, int64_t iw, int64_t W, __m256i lanes_wanted) {
  const __m256i cols = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int32_t>(iw)),
                                        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const auto addr = reinterpret_cast<const float*>(reinterpret_cast<std::uintptr_t>(row) +
                                                   static_cast<std::uintptr_t>(iw * 4));
  return _mm256_maskload_ps(addr, _mm256_and_si256(in_range(cols, 0, W), lanes_wanted));
}

// How the 8 pixels of a block lie on the input, decided once per block and used for every
// tap: inside one output row (SW 1, 2 or 4), across two rows (SW 1), or anywhere (gathers).
struct PixelBlock {
  enum Kind { empty, one_row, one_row_strided, two_rows, scattered } kind;
  int64_t ohs, ow;  // all but scattered: the first pixel's oh*SH and ow
  int64_t ohs2;     // two_rows: the second row's oh*SH
  int64_t split;    // two_rows: lanes [0, split) lie in the first row
  __m256i first;    // two_rows: the mask of lanes [0, split)
  PixelLanes px;    // scattered, one_row_strided (for the edges)
};

CNNKIT_INLINE PixelBlock pixel_block(const Im2colShape& g, int64_t j0, int lanes) {
  PixelBlock b{};
  if (lanes <= 0) return b;
  const int64_t oh = j0 / g.OW, ow = j0 % g.OW;
  b.ohs = oh * g.SH;
  b.ow = ow;
  if (lanes == 8 && ow + 8 <= g.OW && g.SW == 1) {
    b.kind = PixelBlock::one_row;
  } else if (lanes == 8 && ow + 8 <= g.OW && (g.SW == 2 || g.SW == 4)) {
    b.kind = PixelBlock::one_row_strided;
    b.px = pixel_lanes(g, j0, lanes);
  } else if (lanes == 8 && g.SW == 1 && g.OW >= 8) {
    b.kind = PixelBlock::two_rows;
    b.ohs2 = b.ohs + g.SH;
    b.split = g.OW - ow;
    b.first = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(b.split)),
                                 _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  } else {
    b.kind = PixelBlock::scattered;
    b.px = pixel_lanes(g, j0, lanes);
  }
  return b;
}

// The 8 values of tap t for a block of kind K (the kind is a template argument so that the
// loops over taps below compile to one tight loop per kind).
template <PixelBlock::Kind K>
CNNKIT_INLINE __m256 load_tap(const float* x, const Im2colShape& g, const Tap& t,
                              const PixelBlock& b) {
  if constexpr (K == PixelBlock::empty) {
    return _mm256_setzero_ps();
  } else if constexpr (K == PixelBlock::one_row) {
    const int64_t ih = b.ohs + t.dh, iw = b.ow + t.dw;
    if (ih < 0 || ih >= g.H) return _mm256_setzero_ps();
    const float* row = x + t.plane + ih * g.W;
    if (iw >= 0 && iw + 8 <= g.W) return _mm256_loadu_ps(row + iw);
    return clipped_load(row, iw, g.W, _mm256_set1_epi32(-1));
  } else if constexpr (K == PixelBlock::one_row_strided) {
    const int64_t ih = b.ohs + t.dh, iw = b.ow * g.SW + t.dw;
    if (ih < 0 || ih >= g.H) return _mm256_setzero_ps();
    if (iw >= 0 && iw + 8 * g.SW <= g.W) return strided_load(x + t.plane + ih * g.W + iw, g.SW);
    return gather_tap(x, g, t, b.px);  // clipped by the padding
  } else if constexpr (K == PixelBlock::two_rows) {
    // Lane l reads column ow + l + dw of the first row, or l - split + dw of the second.
    __m256 v = _mm256_setzero_ps();
    const int64_t ih1 = b.ohs + t.dh, ih2 = b.ohs2 + t.dh;
    if (ih1 >= 0 && ih1 < g.H)
      v = clipped_load(x + t.plane + ih1 * g.W, b.ow + t.dw, g.W, b.first);
    if (ih2 >= 0 && ih2 < g.H)
      v = _mm256_or_ps(v, clipped_load(x + t.plane + ih2 * g.W, t.dw - b.split, g.W,
                                       _mm256_xor_si256(b.first, _mm256_set1_epi32(-1))));
    return v;
  } else {
    return gather_tap(x, g, t, b.px);
  }
}

// Calls f(std::integral_constant<PixelBlock::Kind, b.kind>{}).
template <class F>
void with_kind(const PixelBlock& b, F&& f) {
  using B = PixelBlock;
  switch (b.kind) {
    case B::empty: return f(std::integral_constant<B::Kind, B::empty>{});
    case B::one_row: return f(std::integral_constant<B::Kind, B::one_row>{});
    case B::one_row_strided: return f(std::integral_constant<B::Kind, B::one_row_strided>{});
    case B::two_rows: return f(std::integral_constant<B::Kind, B::two_rows>{});
    case B::scattered: return f(std::integral_constant<B::Kind, B::scattered>{});
  }
}

// In-register transpose: v[i][j] <- v[j][i].
CNNKIT_INLINE void transpose8(__m256 v[8]) {
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

constexpr int kMaxWidth = 64;

}  // namespace

bool im2col_pack__avx2(const float* x, const Im2colShape& g, int64_t o0, int64_t no,
                       int64_t k0, int64_t nk, int width, float* dst) {
  if (width % 8 != 0 || !fits_int32(g)) return false;
  const int64_t groups = width / 8, blocks = (no + width - 1) / width * groups;
  // Loop order: chunks of blocks (classified once), then a few taps at a time across the
  // chunk's blocks. A block reads one input row per tap, so few taps at a time keep few rows
  // streaming, which the prefetchers and L1 keep up with; all taps per block at once read
  // hundreds of rows and waited on L2.
  constexpr int64_t kBlockChunk = 64, kTapBlock = 48;
  PixelBlock desc[kBlockChunk];
  Tap taps[kTapBlock];
  for (int64_t ba = 0; ba < blocks; ba += kBlockChunk) {
    const int64_t bn = std::min(kBlockChunk, blocks - ba);
    for (int64_t b = 0; b < bn; ++b) {
      const int64_t i0 = (ba + b) / groups * width + (ba + b) % groups * 8;
      desc[b] = pixel_block(g, o0 + i0, static_cast<int>(std::clamp<int64_t>(no - i0, 0, 8)));
    }
    TapWalker walk(g, k0);
    for (int64_t ka = 0; ka < nk; ka += kTapBlock) {
      const int64_t kn = std::min(kTapBlock, nk - ka);
      for (int64_t k = 0; k < kn; ++k) taps[k] = walk.next(true);
      for (int64_t b = 0; b < bn; ++b) {
        const int64_t p = (ba + b) / groups, q = (ba + b) % groups;
        float* d = dst + (p * nk + ka) * width + q * 8;
        with_kind(desc[b], [&](auto kind) {
          for (int64_t k = 0; k < kn; ++k)
            _mm256_storeu_ps(d + k * width, load_tap<kind()>(x, g, taps[k], desc[b]));
        });
      }
    }
  }
  return true;
}

bool im2col_transposed_pack__avx2(const float* x, const Im2colShape& g, int64_t o0, int64_t no,
                                  int64_t k0, int64_t nk, int width, float* dst) {
  if (width % 8 != 0 || width > kMaxWidth || !fits_int32(g)) return false;
  const int64_t panels = (no + width - 1) / width, groups = width / 8;
  // Panels in chunks whose taps fit the stack; within a chunk, each block of 8 pixels is
  // classified once and then serves every panel.
  const int64_t chunk_panels = kTapChunk / width;
  Tap taps[kTapChunk];
  TapWalker walk(g, o0);
  for (int64_t pa = 0; pa < panels; pa += chunk_panels) {
    const int64_t pb = std::min(panels, pa + chunk_panels);
    for (int64_t i = 0; i < (pb - pa) * width; ++i) taps[i] = walk.next(pa * width + i < no);
    for (int64_t kq = 0; kq < nk; kq += 8) {
      const int lanes = static_cast<int>(std::min<int64_t>(8, nk - kq));
      const PixelBlock b = pixel_block(g, k0 + kq, lanes);
      with_kind(b, [&](auto kind) {
        for (int64_t p = pa; p < pb; ++p) {
          float* d = dst + (p * nk + kq) * width;
          const Tap* pt = taps + (p - pa) * width;
          for (int64_t q = 0; q < groups; ++q) {
            __m256 v[8];
            for (int t = 0; t < 8; ++t) {
              const Tap& tp = pt[q * 8 + t];
              v[t] = tp.valid ? load_tap<kind()>(x, g, tp, b) : _mm256_setzero_ps();
            }
            transpose8(v);  // v[l] now holds the 8 taps of pixel kq + l
            for (int l = 0; l < lanes; ++l) _mm256_storeu_ps(d + l * width + q * 8, v[l]);
          }
        }
      });
    }
  }
  return true;
}

void chw_to_hwc__avx2(float* xt, const float* x, int64_t C, int64_t HW) {
  const int64_t C8 = C / 8 * 8, HW8 = HW / 8 * 8;
  for (int64_t c0 = 0; c0 < C8; c0 += 8) {
    for (int64_t j0 = 0; j0 < HW8; j0 += 8) {
      __m256 v[8];
      for (int i = 0; i < 8; ++i) v[i] = _mm256_loadu_ps(x + (c0 + i) * HW + j0);
      transpose8(v);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(xt + (j0 + i) * C + c0, v[i]);
    }
    for (int64_t j = HW8; j < HW; ++j)
      for (int64_t c = c0; c < c0 + 8; ++c) xt[j * C + c] = x[c * HW + j];
  }
  for (int64_t c = C8; c < C; ++c)
    for (int64_t j = 0; j < HW; ++j) xt[j * C + c] = x[c * HW + j];
}

#undef CNNKIT_INLINE

}  // namespace cnnkit
