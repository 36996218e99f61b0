// AVX2 pooling kernels (kernels/pool.hpp): the AVX-512 kernels' structure at half the width,
// 8 outputs of a row per vector. At column stride 2 a row of a window block is 16 contiguous
// inputs, read with two masked loads and split into taps with a shuffle and a lane permute
// (even lanes, odd lanes); at stride 1 a tap is 8 contiguous inputs. Masked-off lanes
// (padding, past the row's end) neither read nor fault; they are blended to -inf for max
// (never taken) and left 0 for average (a sum that starts at +0 is never -0, so adding +0
// leaves its bits unchanged). Lane indices are int32 (a plane has fewer than 2^31 elements).
#include <immintrin.h>

#include <cstdint>
#include <limits>

#include "kernels/pool.hpp"

namespace cnnkit {

namespace {

#define CNNKIT_INLINE inline __attribute__((always_inline))

CNNKIT_INLINE int64_t min64__avx2(int64_t a, int64_t b) { return a < b ? a : b; }
CNNKIT_INLINE int64_t max64__avx2(int64_t a, int64_t b) { return a > b ? a : b; }

CNNKIT_INLINE __m256i iota__avx2() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
CNNKIT_INLINE __m256i set1__avx2(int64_t v) { return _mm256_set1_epi32(static_cast<int32_t>(v)); }

// All ones in the int32 lanes whose value lies in [0, n).
CNNKIT_INLINE __m256i inside__avx2(__m256i v, int64_t n) {
  return _mm256_and_si256(_mm256_cmpgt_epi32(v, _mm256_set1_epi32(-1)),
                          _mm256_cmpgt_epi32(set1__avx2(n), v));
}

// All ones in lanes [0, n).
CNNKIT_INLINE __m256i first_lanes__avx2(int64_t n) {
  return _mm256_cmpgt_epi32(set1__avx2(min64__avx2(n, 8)), iota__avx2());
}

// Software prefetch a few KiB ahead of a kernel's reads (see pool_avx512.cpp).
constexpr int64_t kPrefetchBytes = 4096;

CNNKIT_INLINE void prefetch__avx2(const void* from, int64_t bytes) {
  const char* p = static_cast<const char*>(from) + kPrefetchBytes;
  // at most 64 KiB: a caller's row stride times the row can be any size (a 2**40 pooling
  // stride asked for 2**44 bytes, a loop that never ended)
  const int64_t n = bytes < (int64_t{1} << 16) ? bytes : (int64_t{1} << 16);
  for (int64_t b = 0; b < n; b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
}

// relu(v): v <= 0 becomes +0, NaN stays, as relu_forward computes it.
CNNKIT_INLINE __m256 relu__avx2(__m256 v) {
  return _mm256_andnot_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LE_OQ), v);
}

// Row xr's 16 (SW = 2) or 8 (SW = 1) inputs from column c0, columns outside [0, W) as fill;
// the real ones relu'd when RELU (before the fill: padding's -inf must stay below them).
template <int SW, bool RELU = false>
CNNKIT_INLINE void load_run__avx2(const float* xr, int64_t c0, int64_t W, __m256 fill, __m256& a,
                                  __m256& b) {
  const __m256i pos = _mm256_add_epi32(set1__avx2(c0), iota__avx2());
  const __m256i ma = inside__avx2(pos, W);
  a = _mm256_maskload_ps(xr + c0, ma);
  if (RELU) a = relu__avx2(a);
  a = _mm256_blendv_ps(fill, a, _mm256_castsi256_ps(ma));
  if (SW == 1) return;
  const __m256i mb = inside__avx2(_mm256_add_epi32(pos, _mm256_set1_epi32(8)), W);
  b = _mm256_maskload_ps(xr + c0 + 8, mb);
  if (RELU) b = relu__avx2(b);
  b = _mm256_blendv_ps(fill, b, _mm256_castsi256_ps(mb));
}

// dy + 0 in the live lanes (0 elsewhere), and with y also 0 where y > 0 fails (ReLU's
// gradient: y is the pooled relu(x), positive exactly where relu passed the gradient on).
CNNKIT_INLINE __m256 grad_lanes__avx2(const float* dy, const float* y, __m256i live) {
  __m256 g = _mm256_maskload_ps(dy, live);
  if (y)
    g = _mm256_and_ps(g, _mm256_cmp_ps(_mm256_maskload_ps(y, live), _mm256_setzero_ps(), _CMP_GT_OQ));
  return _mm256_add_ps(g, _mm256_setzero_ps());
}

// The even and the odd elements of the 16 floats (a, b).
CNNKIT_INLINE __m256 even__avx2(__m256 a, __m256 b) {
  // [a0 a2 b0 b2 | a4 a6 b4 b6] -> [a0 a2 a4 a6 b0 b2 b4 b6]
  return _mm256_castpd_ps(
      _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
}
CNNKIT_INLINE __m256 odd__avx2(__m256 a, __m256 b) {
  return _mm256_castpd_ps(
      _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}

// 8 int32 lanes stored as int64 into the live lanes of dst.
CNNKIT_INLINE void store_index__avx2(int64_t* dst, __m256i v, __m256i live) {
  _mm256_maskstore_epi64(reinterpret_cast<long long*>(dst),
                         _mm256_cvtepi32_epi64(_mm256_castsi256_si128(live)),
                         _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v)));
  _mm256_maskstore_epi64(reinterpret_cast<long long*>(dst + 4),
                         _mm256_cvtepi32_epi64(_mm256_extracti128_si256(live, 1)),
                         _mm256_cvtepi32_epi64(_mm256_extracti128_si256(v, 1)));
}

// The live lanes of argmax as 8 int32 lanes (0 elsewhere; indices are below 2^31).
CNNKIT_INLINE __m256i load_index__avx2(const int64_t* src, __m256i live) {
  const auto* p = reinterpret_cast<const long long*>(src);
  const __m256i lo = _mm256_maskload_epi64(p, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(live)));
  const __m256i hi =
      _mm256_maskload_epi64(p + 4, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(live, 1)));
  const __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
  return _mm256_permute2x128_si256(_mm256_permutevar8x32_epi32(lo, pick),
                                   _mm256_permutevar8x32_epi32(hi, pick), 0x20);
}

// (v, i) = the winner of the earlier (a, ia) and the later (b, ib) by the __ref rule: the later
// wins when greater, or when NaN (so the first maximum and the last NaN win).
CNNKIT_INLINE void later_wins__avx2(__m256 a, __m256i ia, __m256 b, __m256i ib, __m256& v,
                                    __m256i& i) {
  const __m256 take = _mm256_or_ps(_mm256_cmp_ps(b, a, _CMP_GT_OQ), _mm256_cmp_ps(b, b, _CMP_UNORD_Q));
  v = _mm256_blendv_ps(a, b, take);
  i = _mm256_castps_si256(
      _mm256_blendv_ps(_mm256_castsi256_ps(ia), _mm256_castsi256_ps(ib), take));
}

// Stores the pairs (a[j], b[j]) at columns c0 + 2j and c0 + 2j + 1 of row dr (j = 0..7),
// skipping columns outside [0, W).
CNNKIT_INLINE void store_pairs__avx2(float* dr, int64_t c0, int64_t W, __m256 a, __m256 b) {
  const __m256 lo = _mm256_unpacklo_ps(a, b);  // [a0 b0 a1 b1 | a4 b4 a5 b5]
  const __m256 hi = _mm256_unpackhi_ps(a, b);  // [a2 b2 a3 b3 | a6 b6 a7 b7]
  const __m256i pos = _mm256_add_epi32(set1__avx2(c0), iota__avx2());
  _mm256_maskstore_ps(dr + c0, inside__avx2(pos, W), _mm256_permute2f128_ps(lo, hi, 0x20));
  if (c0 + 8 < W)
    _mm256_maskstore_ps(dr + c0 + 8, inside__avx2(_mm256_add_epi32(pos, _mm256_set1_epi32(8)), W),
                        _mm256_permute2f128_ps(lo, hi, 0x31));
}

// Zeroes the inputs of a plane that no window covers when the windows tile it (backward):
// rows from OH * SH - PT, columns from 2 * OW - PL.
CNNKIT_INLINE void zero_uncovered__avx2(float* dx, const Pool2dShape& s) {
  const int64_t h_end = min64__avx2(s.OH * s.SH - s.PT, s.H);
  const int64_t w_end = max64__avx2(min64__avx2(2 * s.OW - s.PL, s.W), 0);
  for (int64_t h = 0; h < h_end; ++h)
    for (int64_t w = w_end; w < s.W; ++w) dx[h * s.W + w] = 0.0f;
  for (int64_t i = h_end * s.W; i < s.H * s.W; ++i) dx[i] = 0.0f;
}

// --- 2x2 windows at stride 2, no top/left padding --------------------------------------------

CNNKIT_INLINE bool is_2x2__avx2(const Pool2dShape& s) {
  return s.KH == 2 && s.KW == 2 && s.SH == 2 && s.SW == 2 && s.PT == 0 && s.PL == 0;
}

// As max_forward_2x2__avx512: a tree over the two rows' tap pairs.
template <bool RELU>
void max_forward_2x2__avx2(float* y, int64_t* argmax, const float* x, const Pool2dShape& s,
                           int64_t planes) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW;
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  const __m256i lane2 = _mm256_slli_epi32(iota__avx2(), 1), one = _mm256_set1_epi32(1);
  const __m256i down = set1__avx2(W);
  for (int64_t p = 0; p < planes; ++p, x += H * W, y += OH * OW, argmax += OH * OW) {
    for (int64_t oh = 0; oh < OH; ++oh) {
      const float* r0 = x + 2 * oh * W;
      const bool second = 2 * oh + 1 < H;
      prefetch__avx2(r0, 2 * W * 4);
      for (int64_t ow0 = 0; ow0 < OW; ow0 += 8) {
        const int64_t c0 = 2 * ow0;
        const __m256i i00 = _mm256_add_epi32(set1__avx2(2 * oh * W + c0), lane2);
        __m256 a, b, v;
        __m256i i;
        load_run__avx2<2, RELU>(r0, c0, W, ninf, a, b);
        later_wins__avx2(even__avx2(a, b), i00, odd__avx2(a, b), _mm256_add_epi32(i00, one), v, i);
        if (second) {
          load_run__avx2<2, RELU>(r0 + W, c0, W, ninf, a, b);
          const __m256i i10 = _mm256_add_epi32(i00, down);
          __m256 v1;
          __m256i i1;
          later_wins__avx2(even__avx2(a, b), i10, odd__avx2(a, b), _mm256_add_epi32(i10, one), v1, i1);
          later_wins__avx2(v, i, v1, i1, v, i);
        }
        const __m256i live = first_lanes__avx2(OW - ow0);
        _mm256_maskstore_ps(y + oh * OW + ow0, live, v);
        store_index__avx2(argmax + oh * OW + ow0, i, live);
      }
    }
  }
}

// As max_backward_2x2__avx512: d = argmax - (index of tap (0, 0)) is 0, 1, W or W + 1.
int64_t max_backward_2x2__avx2(float* dx, const float* dy, const int64_t* argmax,
                               const float* y, const Pool2dShape& s, int64_t planes) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW;
  const __m256i lane2 = _mm256_slli_epi32(iota__avx2(), 1), one = _mm256_set1_epi32(1);
  const __m256i down = set1__avx2(W), down1 = set1__avx2(W + 1);
  for (int64_t p = 0; p < planes; ++p, dx += H * W, dy += OH * OW, argmax += OH * OW) {
    for (int64_t oh = 0; oh < OH; ++oh) {
      float* r0 = dx + 2 * oh * W;
      const bool second = 2 * oh + 1 < H;
      prefetch__avx2(argmax + oh * OW, OW * 8);
      prefetch__avx2(dy + oh * OW, OW * 4);
      for (int64_t ow0 = 0; ow0 < OW; ow0 += 8) {
        const int64_t c0 = 2 * ow0;
        const __m256i live = first_lanes__avx2(OW - ow0);
        const __m256 g =
            grad_lanes__avx2(dy + oh * OW + ow0, y ? y + (p * OH + oh) * OW + ow0 : nullptr, live);
        const __m256i d = _mm256_sub_epi32(load_index__avx2(argmax + oh * OW + ow0, live),
                                           _mm256_add_epi32(set1__avx2(2 * oh * W + c0), lane2));
        // the second column exists (no right padding): else d == 1 names the next row
        const __m256i col1 = _mm256_cmpgt_epi32(down, _mm256_add_epi32(set1__avx2(c0 + 1), lane2));
        const __m256i e00 = _mm256_cmpeq_epi32(d, _mm256_setzero_si256());
        const __m256i e01 = _mm256_and_si256(col1, _mm256_cmpeq_epi32(d, one));
        __m256i found = _mm256_or_si256(e00, e01);
        store_pairs__avx2(r0, c0, W, _mm256_and_ps(_mm256_castsi256_ps(e00), g),
                          _mm256_and_ps(_mm256_castsi256_ps(e01), g));
        if (second) {
          const __m256i e10 = _mm256_cmpeq_epi32(d, down);
          const __m256i e11 = _mm256_and_si256(col1, _mm256_cmpeq_epi32(d, down1));
          found = _mm256_or_si256(found, _mm256_or_si256(e10, e11));
          store_pairs__avx2(r0 + W, c0, W, _mm256_and_ps(_mm256_castsi256_ps(e10), g),
                            _mm256_and_ps(_mm256_castsi256_ps(e11), g));
        }
        if (!_mm256_testc_si256(found, live)) return p;  // a live lane found no tap
      }
    }
    zero_uncovered__avx2(dx, s);
  }
  return planes;
}

// The sum (((0 + t00) + t01) + t10) + t11, in the __ref order.
void avg_forward_2x2__avx2(float* y, const float* x, const Pool2dShape& s, bool cip,
                           int64_t planes) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW;
  const __m256 zero = _mm256_setzero_ps();
  const __m256i lane2 = _mm256_slli_epi32(iota__avx2(), 1);
  for (int64_t p = 0; p < planes; ++p, x += H * W, y += OH * OW) {
    for (int64_t oh = 0; oh < OH; ++oh) {
      const float* r0 = x + 2 * oh * W;
      const bool second = 2 * oh + 1 < H;
      prefetch__avx2(r0, 2 * W * 4);
      for (int64_t ow0 = 0; ow0 < OW; ow0 += 8) {
        const int64_t c0 = 2 * ow0;
        __m256 a, b;
        load_run__avx2<2>(r0, c0, W, zero, a, b);
        __m256 sum = _mm256_add_ps(_mm256_add_ps(zero, even__avx2(a, b)), odd__avx2(a, b));
        if (second) {
          load_run__avx2<2>(r0 + W, c0, W, zero, a, b);
          sum = _mm256_add_ps(_mm256_add_ps(sum, even__avx2(a, b)), odd__avx2(a, b));
        }
        __m256 count = _mm256_set1_ps(4.0f);
        if (!cip) {  // real taps: rows times the lane's columns inside [0, W)
          const __m256i cols = _mm256_sub_epi32(
              _mm256_min_epi32(_mm256_add_epi32(set1__avx2(c0 + 2), lane2), set1__avx2(W)),
              _mm256_add_epi32(set1__avx2(c0), lane2));
          count = _mm256_cvtepi32_ps(_mm256_mullo_epi32(cols, set1__avx2(second ? 2 : 1)));
        }
        _mm256_maskstore_ps(y + oh * OW + ow0, first_lanes__avx2(OW - ow0), _mm256_div_ps(sum, count));
      }
    }
  }
}

// --- any window at column stride 1 or 2 (forward) --------------------------------------------

// Tap (h, kw) for 8 outputs: columns c0 + SW * j of row xr, relu'd when RELU.
template <int SW, bool RELU = false>
CNNKIT_INLINE __m256 tap__avx2(const float* xr, int64_t c0, int64_t W, __m256 fill) {
  __m256 a, b;
  load_run__avx2<SW, RELU>(xr, c0, W, fill, a, b);
  return SW == 1 ? a : even__avx2(a, b);
}

template <int SW, bool RELU>
void max_forward_any__avx2(float* y, int64_t* argmax, const float* x, const Pool2dShape& s,
                           int64_t planes) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW, KH = s.KH, KW = s.KW;
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  const __m256i lane = _mm256_mullo_epi32(iota__avx2(), _mm256_set1_epi32(SW));
  for (int64_t p = 0; p < planes; ++p, x += H * W, y += OH * OW, argmax += OH * OW) {
    for (int64_t oh = 0; oh < OH; ++oh) {
      const int64_t h0 = max64__avx2(oh * s.SH - s.PT, 0);
      const int64_t h1 = min64__avx2(oh * s.SH - s.PT + KH, H);
      prefetch__avx2(x + h1 * W, s.SH * W * 4);
      for (int64_t ow0 = 0; ow0 < OW; ow0 += 8) {
        const int64_t cb = ow0 * SW - s.PL;  // lane j's window starts at column cb + SW * j
        __m256 best = ninf;
        // Before any tap: the window's first real element, as the __ref loop starts there.
        __m256i bidx = _mm256_add_epi32(
            set1__avx2(h0 * W),
            _mm256_max_epi32(_mm256_add_epi32(set1__avx2(cb), lane), _mm256_setzero_si256()));
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t kw = 0; kw < KW; ++kw)
            later_wins__avx2(best, bidx, tap__avx2<SW, RELU>(x + h * W, cb + kw, W, ninf),
                             _mm256_add_epi32(set1__avx2(h * W + cb + kw), lane), best, bidx);
        const __m256i live = first_lanes__avx2(OW - ow0);
        _mm256_maskstore_ps(y + oh * OW + ow0, live, best);
        store_index__avx2(argmax + oh * OW + ow0, bidx, live);
      }
    }
  }
}

// The real taps of each lane's window: rows times the lane's columns inside [0, W).
CNNKIT_INLINE __m256 real_count__avx2(__m256i start, int64_t KW, int64_t W, int64_t rows) {
  const __m256i lo = _mm256_max_epi32(start, _mm256_setzero_si256());
  const __m256i hi = _mm256_min_epi32(_mm256_add_epi32(start, set1__avx2(KW)), set1__avx2(W));
  return _mm256_cvtepi32_ps(_mm256_mullo_epi32(_mm256_sub_epi32(hi, lo), set1__avx2(rows)));
}

template <int SW>
void avg_forward_any__avx2(float* y, const float* x, const Pool2dShape& s, bool cip,
                           int64_t planes) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW, KH = s.KH, KW = s.KW;
  const __m256 zero = _mm256_setzero_ps();
  const __m256i lane = _mm256_mullo_epi32(iota__avx2(), _mm256_set1_epi32(SW));
  for (int64_t p = 0; p < planes; ++p, x += H * W, y += OH * OW) {
    for (int64_t oh = 0; oh < OH; ++oh) {
      const int64_t h0 = max64__avx2(oh * s.SH - s.PT, 0);
      const int64_t h1 = min64__avx2(oh * s.SH - s.PT + KH, H);
      prefetch__avx2(x + h1 * W, s.SH * W * 4);
      for (int64_t ow0 = 0; ow0 < OW; ow0 += 8) {
        const int64_t cb = ow0 * SW - s.PL;
        __m256 sum = zero;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t kw = 0; kw < KW; ++kw)
            sum = _mm256_add_ps(sum, tap__avx2<SW>(x + h * W, cb + kw, W, zero));
        const __m256 count =
            cip ? _mm256_set1_ps(static_cast<float>(KH * KW))
                : real_count__avx2(_mm256_add_epi32(set1__avx2(cb), lane), KW, W, h1 - h0);
        _mm256_maskstore_ps(y + oh * OW + ow0, first_lanes__avx2(OW - ow0), _mm256_div_ps(sum, count));
      }
    }
  }
}

// --- windows two columns wide at stride 2, as tall as their row stride (backward) ------------

// As max_backward_tiled__avx512: dx is dy + 0 where argmax points, 0 elsewhere.
int64_t max_backward_tiled__avx2(float* dx, const float* dy, const int64_t* argmax,
                                 const float* y, const Pool2dShape& s, int64_t planes) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW;
  const __m256i lane2 = _mm256_slli_epi32(iota__avx2(), 1);
  for (int64_t p = 0; p < planes; ++p, dx += H * W, dy += OH * OW, argmax += OH * OW) {
    for (int64_t oh = 0; oh < OH; ++oh) {
      prefetch__avx2(argmax + oh * OW, OW * 8);
      prefetch__avx2(dy + oh * OW, OW * 4);
      for (int64_t ow0 = 0; ow0 < OW; ow0 += 8) {
        const int64_t c0 = 2 * ow0 - s.PL;
        const __m256i live = first_lanes__avx2(OW - ow0);
        const __m256 g =
            grad_lanes__avx2(dy + oh * OW + ow0, y ? y + (p * OH + oh) * OW + ow0 : nullptr, live);
        const __m256i a = load_index__avx2(argmax + oh * OW + ow0, live);
        const __m256i col0 = _mm256_add_epi32(set1__avx2(c0), lane2);
        const __m256i col1 = _mm256_add_epi32(col0, _mm256_set1_epi32(1));
        // taps inside the row: an index one past a row's end names the next row's first column
        const __m256i in0 = inside__avx2(col0, W), in1 = inside__avx2(col1, W);
        __m256i found = _mm256_setzero_si256();
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t h = oh * s.SH - s.PT + kh;
          if (h < 0 || h >= H) continue;
          const __m256i row = set1__avx2(h * W);
          const __m256i e0 = _mm256_and_si256(in0, _mm256_cmpeq_epi32(a, _mm256_add_epi32(row, col0)));
          const __m256i e1 = _mm256_and_si256(in1, _mm256_cmpeq_epi32(a, _mm256_add_epi32(row, col1)));
          found = _mm256_or_si256(found, _mm256_or_si256(e0, e1));
          store_pairs__avx2(dx + h * W, c0, W, _mm256_and_ps(_mm256_castsi256_ps(e0), g),
                            _mm256_and_ps(_mm256_castsi256_ps(e1), g));
        }
        if (!_mm256_testc_si256(found, live)) return p;  // a live lane found no tap
      }
    }
    zero_uncovered__avx2(dx, s);
  }
  return planes;
}

// Each tap of a window gets dy / count + 0 (the scatter's 0 + dy / count).
void avg_backward_tiled__avx2(float* dx, const float* dy, const Pool2dShape& s, bool cip,
                              int64_t planes) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW;
  const __m256i lane2 = _mm256_slli_epi32(iota__avx2(), 1);
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t p = 0; p < planes; ++p, dx += H * W, dy += OH * OW) {
    for (int64_t oh = 0; oh < OH; ++oh) {
      const int64_t h0 = max64__avx2(oh * s.SH - s.PT, 0);
      const int64_t h1 = min64__avx2(oh * s.SH - s.PT + s.KH, H);
      prefetch__avx2(dy + oh * OW, OW * 4);
      for (int64_t ow0 = 0; ow0 < OW; ow0 += 8) {
        const __m256i live = first_lanes__avx2(OW - ow0);
        const int64_t c0 = 2 * ow0 - s.PL;
        const __m256 count =
            cip ? _mm256_set1_ps(static_cast<float>(s.KH * s.KW))
                : real_count__avx2(_mm256_add_epi32(set1__avx2(c0), lane2), 2, W, h1 - h0);
        // lanes past OW are 0 (their count may be 0: no 0 / 0 kept)
        const __m256 q = _mm256_div_ps(_mm256_maskload_ps(dy + oh * OW + ow0, live), count);
        const __m256 g = _mm256_add_ps(_mm256_and_ps(q, _mm256_castsi256_ps(live)), zero);
        for (int64_t h = h0; h < h1; ++h) store_pairs__avx2(dx + h * W, c0, W, g, g);
      }
    }
    zero_uncovered__avx2(dx, s);
  }
}

// --- dispatch on the shape -------------------------------------------------------------------

template <bool RELU>
void max_forward_relu__avx2(float* y, int64_t* argmax, const float* x, const Pool2dShape& s,
                            int64_t planes) {
  if (is_2x2__avx2(s))
    max_forward_2x2__avx2<RELU>(y, argmax, x, s, planes);
  else if (s.SW == 1)
    max_forward_any__avx2<1, RELU>(y, argmax, x, s, planes);
  else
    max_forward_any__avx2<2, RELU>(y, argmax, x, s, planes);
}

void max_forward__avx2(float* y, int64_t* argmax, const float* x, const Pool2dShape& s,
                       int64_t planes, bool relu) {
  if (relu)
    max_forward_relu__avx2<true>(y, argmax, x, s, planes);
  else
    max_forward_relu__avx2<false>(y, argmax, x, s, planes);
}

int64_t max_backward__avx2(float* dx, const float* dy, const int64_t* argmax, const float* y,
                           const Pool2dShape& s, int64_t planes) {
  return is_2x2__avx2(s) ? max_backward_2x2__avx2(dx, dy, argmax, y, s, planes)
                         : max_backward_tiled__avx2(dx, dy, argmax, y, s, planes);
}

void avg_forward__avx2(float* y, const float* x, const Pool2dShape& s, bool cip, int64_t planes) {
  if (is_2x2__avx2(s))
    avg_forward_2x2__avx2(y, x, s, cip, planes);
  else if (s.SW == 1)
    avg_forward_any__avx2<1>(y, x, s, cip, planes);
  else
    avg_forward_any__avx2<2>(y, x, s, cip, planes);
}

}  // namespace

const PoolKernels pool_kernels__avx2 = {max_forward__avx2, max_backward__avx2, avg_forward__avx2,
                                        avg_backward_tiled__avx2};

}  // namespace cnnkit
