// AVX-512 pooling kernels (kernels/pool.hpp): 16 outputs of a row per vector. At column stride
// 2 a row of a window block is 32 contiguous inputs, read with two masked loads and split
// into taps with permutes (even lanes, odd lanes); at stride 1 a tap is 16 contiguous inputs.
// Masked-off lanes (padding, past the row's end) neither read nor fault; they load as -inf
// for max (never taken: -inf > v is false and -inf is not NaN) and as 0 for average (a sum
// that starts at +0 is never -0, so adding +0 leaves its bits unchanged). Lane indices are
// int32: a plane has fewer than 2^31 elements (pool2d_shape). The 2x2 stride-2 window without
// top/left padding (LeNet's, VGG's) has its own kernels, free of per-tap loop overhead.
#include <immintrin.h>

#include <cstdint>
#include <limits>

#include "kernels/pool.hpp"

// GCC 12's avx512fintrin.h fills the unused merge source of unmasked intrinsics
// (_mm512_max_epi32 ...) with a self-initialised _mm512_undefined_*(), which
// -Wmaybe-uninitialized reports once those are inlined here: a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace cnnkit {

namespace {

#define CNNKIT_INLINE inline __attribute__((always_inline))

CNNKIT_INLINE int64_t min64__avx512(int64_t a, int64_t b) { return a < b ? a : b; }
CNNKIT_INLINE int64_t max64__avx512(int64_t a, int64_t b) { return a > b ? a : b; }

// Bits [lo, hi) of a 32-bit mask, the range clipped to [0, 32).
CNNKIT_INLINE uint32_t span32__avx512(int64_t lo, int64_t hi) {
  lo = max64__avx512(lo, 0);
  hi = min64__avx512(hi, 32);
  if (hi <= lo) return 0;
  return static_cast<uint32_t>(((uint64_t{1} << hi) - 1) & ~((uint64_t{1} << lo) - 1));
}

CNNKIT_INLINE __mmask16 first_lanes__avx512(int64_t n) {
  return static_cast<__mmask16>(n >= 16 ? 0xffff : (1u << n) - 1);
}

CNNKIT_INLINE __m512i iota__avx512() {
  return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
CNNKIT_INLINE __m512i even__avx512() {
  return _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
}
CNNKIT_INLINE __m512i odd__avx512() {
  return _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}
CNNKIT_INLINE __m512i set1__avx512(int64_t v) { return _mm512_set1_epi32(static_cast<int32_t>(v)); }

// Software prefetch a few KiB ahead of a kernel's reads. The hardware prefetchers do not
// follow masked loads: without it a max pool over a DRAM-resident input ran at ~3 GB/s
// (19 ms for 8x64x112x112, 3x3 s2; 3.5 ms with it).
constexpr int64_t kPrefetchBytes = 4096;

CNNKIT_INLINE void prefetch__avx512(const void* from, int64_t bytes) {
  const char* p = static_cast<const char*>(from) + kPrefetchBytes;
  // at most 64 KiB: a caller's row stride times the row can be any size (a 2**40 pooling
  // stride asked for 2**44 bytes, a loop that never ended)
  const int64_t n = bytes < (int64_t{1} << 16) ? bytes : (int64_t{1} << 16);
  for (int64_t b = 0; b < n; b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
}

// 16 int32 lanes stored as int64 into dst[0, n).
CNNKIT_INLINE void store_index__avx512(int64_t* dst, __m512i v, int64_t n) {
  const __mmask16 m = first_lanes__avx512(n);
  _mm512_mask_storeu_epi64(dst, static_cast<__mmask8>(m),
                           _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v)));
  if (n > 8)
    _mm512_mask_storeu_epi64(dst + 8, static_cast<__mmask8>(m >> 8),
                             _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1)));
}

// argmax[0, n) as 16 int32 lanes (0 past n).
CNNKIT_INLINE __m512i load_index__avx512(const int64_t* src, int64_t n) {
  const __mmask16 m = first_lanes__avx512(n);
  const __m256i lo = _mm512_cvtepi64_epi32(_mm512_maskz_loadu_epi64(static_cast<__mmask8>(m), src));
  const __m256i hi =
      _mm512_cvtepi64_epi32(_mm512_maskz_loadu_epi64(static_cast<__mmask8>(m >> 8), src + 8));
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// relu(a) in the lanes of m (real inputs: elsewhere a holds padding's -inf, which must stay
// below every real value): a <= 0 becomes +0, NaN stays, as relu_forward computes it.
CNNKIT_INLINE __m512 relu_lanes__avx512(__m512 a, __mmask16 m) {
  const __m512 zero = _mm512_setzero_ps();
  return _mm512_mask_mov_ps(a, m & _mm512_cmp_ps_mask(a, zero, _CMP_LE_OQ), zero);
}

// dy + 0 in the live lanes (0 elsewhere), and with y also 0 where y > 0 fails (ReLU's
// gradient: y is the pooled relu(x), positive exactly where relu passed the gradient on).
CNNKIT_INLINE __m512 grad_lanes__avx512(const float* dy, const float* y, __mmask16 live) {
  if (y) live &= _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(live, y), _mm512_setzero_ps(), _CMP_GT_OQ);
  return _mm512_add_ps(_mm512_maskz_loadu_ps(live, dy), _mm512_setzero_ps());
}

// (v, i) = the winner of the earlier (a, ia) and the later (b, ib) by the __ref rule: the later
// wins when greater, or when NaN (so the first maximum and the last NaN win).
CNNKIT_INLINE void later_wins__avx512(__m512 a, __m512i ia, __m512 b, __m512i ib, __m512& v,
                                      __m512i& i) {
  const __mmask16 take =
      _mm512_cmp_ps_mask(b, a, _CMP_GT_OQ) | _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q);
  v = _mm512_mask_mov_ps(a, take, b);
  i = _mm512_mask_mov_epi32(ia, take, ib);
}

// Stores the pairs (a[j], b[j]) at columns c0 + 2j and c0 + 2j + 1 of row dr (j = 0..15),
// skipping columns outside [0, W).
CNNKIT_INLINE void store_pairs__avx512(float* dr, int64_t c0, int64_t W, __m512 a, __m512 b) {
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi =
      _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const uint32_t m = span32__avx512(-c0, W - c0);
  _mm512_mask_storeu_ps(dr + c0, static_cast<__mmask16>(m), _mm512_permutex2var_ps(a, lo, b));
  if (m >> 16)
    _mm512_mask_storeu_ps(dr + c0 + 16, static_cast<__mmask16>(m >> 16),
                          _mm512_permutex2var_ps(a, hi, b));
}

// Zeroes the inputs of a plane that no window covers when the windows tile it (backward):
// rows from OH * SH - PT, columns from 2 * OW - PL.
CNNKIT_INLINE void zero_uncovered__avx512(float* dx, const Pool2dShape& s) {
  const int64_t h_end = min64__avx512(s.OH * s.SH - s.PT, s.H);
  const int64_t w_end = max64__avx512(min64__avx512(2 * s.OW - s.PL, s.W), 0);
  for (int64_t h = 0; h < h_end; ++h)
    for (int64_t w = w_end; w < s.W; ++w) dx[h * s.W + w] = 0.0f;
  for (int64_t i = h_end * s.W; i < s.H * s.W; ++i) dx[i] = 0.0f;
}

// --- 2x2 windows at stride 2, no top/left padding --------------------------------------------

CNNKIT_INLINE bool is_2x2__avx512(const Pool2dShape& s) {
  return s.KH == 2 && s.KW == 2 && s.SH == 2 && s.SW == 2 && s.PT == 0 && s.PL == 0;
}

// A block of 16 outputs of a row and the 32 input columns of its windows, the same for every
// row: computed once per call (for up to kMaxBlocks blocks, OW <= 256; wider rows compute
// theirs per row), so that the row loops are vector work alone (LeNet's rows are one block).
struct Block2x2 {
  int64_t ow0, n;       // outputs [ow0, ow0 + n)
  __mmask16 live;       // lanes [0, n)
  __mmask16 m0, m1;     // input columns 2 * ow0 + [0, 16) and + [16, 32) inside [0, W)
  __mmask16 col1;       // lanes whose window has its second column (no right padding)
};
constexpr int64_t kMaxBlocks = 16;

CNNKIT_INLINE Block2x2 block_2x2__avx512(int64_t b, int64_t OW, int64_t W) {
  Block2x2 k;
  k.ow0 = 16 * b;
  k.n = min64__avx512(16, OW - k.ow0);
  k.live = first_lanes__avx512(k.n);
  const uint32_t m = span32__avx512(0, W - 2 * k.ow0);
  k.m0 = static_cast<__mmask16>(m);
  k.m1 = static_cast<__mmask16>(m >> 16);
  k.col1 = static_cast<__mmask16>(span32__avx512(0, (W - 2 * k.ow0) / 2));
  return k;
}

// Calls f(block) for each block of a row, from the table when it has them.
template <class F>
CNNKIT_INLINE void for_blocks__avx512(const Block2x2* table, int64_t blocks, int64_t OW, int64_t W,
                                      F&& f) {
  for (int64_t b = 0; b < blocks; ++b)
    f(b < kMaxBlocks ? table[b] : block_2x2__avx512(b, OW, W));
}

// As a tree: the first row's two taps, the second row's two taps, then the two results. The
// tree gives the sequential rule's answer because every index of the second row follows
// every index of the first. Bottom/right padding: a missing second row is skipped, a missing
// second column loads as -inf.
template <bool RELU>
void max_forward_2x2__avx512(float* y, int64_t* argmax, const float* x, const Pool2dShape& s,
                             int64_t planes) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW, blocks = (OW + 15) / 16;
  Block2x2 table[kMaxBlocks];
  for (int64_t b = 0; b < min64__avx512(blocks, kMaxBlocks); ++b) table[b] = block_2x2__avx512(b, OW, W);
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const __m512i lane2 = _mm512_slli_epi32(iota__avx512(), 1), one = _mm512_set1_epi32(1);
  const __m512i down = set1__avx512(W);
  for (int64_t p = 0; p < planes; ++p, x += H * W, y += OH * OW, argmax += OH * OW) {
    for (int64_t oh = 0; oh < OH; ++oh) {
      const float* r0 = x + 2 * oh * W;
      const bool second = 2 * oh + 1 < H;
      prefetch__avx512(r0, 2 * W * 4);
      for_blocks__avx512(table, blocks, OW, W, [&](const Block2x2& k) {
        const int64_t c0 = 2 * k.ow0;
        const __m512i i00 = _mm512_add_epi32(set1__avx512(2 * oh * W + c0), lane2);
        __m512 a0 = _mm512_mask_loadu_ps(ninf, k.m0, r0 + c0);
        __m512 b0 = _mm512_mask_loadu_ps(ninf, k.m1, r0 + c0 + 16);
        if (RELU) a0 = relu_lanes__avx512(a0, k.m0), b0 = relu_lanes__avx512(b0, k.m1);
        __m512 v;
        __m512i i;
        later_wins__avx512(_mm512_permutex2var_ps(a0, even__avx512(), b0), i00,
                           _mm512_permutex2var_ps(a0, odd__avx512(), b0),
                           _mm512_add_epi32(i00, one), v, i);
        if (second) {
          __m512 a1 = _mm512_mask_loadu_ps(ninf, k.m0, r0 + W + c0);
          __m512 b1 = _mm512_mask_loadu_ps(ninf, k.m1, r0 + W + c0 + 16);
          if (RELU) a1 = relu_lanes__avx512(a1, k.m0), b1 = relu_lanes__avx512(b1, k.m1);
          const __m512i i10 = _mm512_add_epi32(i00, down);
          __m512 v1;
          __m512i i1;
          later_wins__avx512(_mm512_permutex2var_ps(a1, even__avx512(), b1), i10,
                             _mm512_permutex2var_ps(a1, odd__avx512(), b1),
                             _mm512_add_epi32(i10, one), v1, i1);
          later_wins__avx512(v, i, v1, i1, v, i);
        }
        _mm512_mask_storeu_ps(y + oh * OW + k.ow0, k.live, v);
        store_index__avx512(argmax + oh * OW + k.ow0, i, k.n);
      });
    }
  }
}

// Each output's argmax is one of its four taps: d = argmax - (index of tap (0, 0)) is 0, 1,
// W or W + 1. dx is dy + 0 at that tap (+ 0: the scatter's 0 + dy turns -0 into +0) and 0 at
// the other three.
int64_t max_backward_2x2__avx512(float* dx, const float* dy, const int64_t* argmax,
                                 const float* y, const Pool2dShape& s, int64_t planes) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW, blocks = (OW + 15) / 16;
  Block2x2 table[kMaxBlocks];
  for (int64_t b = 0; b < min64__avx512(blocks, kMaxBlocks); ++b) table[b] = block_2x2__avx512(b, OW, W);
  const __m512i lane2 = _mm512_slli_epi32(iota__avx512(), 1), one = _mm512_set1_epi32(1);
  const __m512i down = set1__avx512(W), down1 = set1__avx512(W + 1);
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  for (int64_t p = 0; p < planes; ++p, dx += H * W, dy += OH * OW, argmax += OH * OW) {
    for (int64_t oh = 0; oh < OH; ++oh) {
      float* r0 = dx + 2 * oh * W;
      const bool second = 2 * oh + 1 < H;
      prefetch__avx512(argmax + oh * OW, OW * 8);
      bool ok = true;
      for_blocks__avx512(table, blocks, OW, W, [&](const Block2x2& k) {
        const int64_t c0 = 2 * k.ow0;
        const __m512 g = grad_lanes__avx512(dy + oh * OW + k.ow0,
                                            y ? y + (p * OH + oh) * OW + k.ow0 : nullptr, k.live);
        const __m512i d = _mm512_sub_epi32(load_index__avx512(argmax + oh * OW + k.ow0, k.n),
                                           _mm512_add_epi32(set1__avx512(2 * oh * W + c0), lane2));
        const __mmask16 e00 = _mm512_cmpeq_epi32_mask(d, _mm512_setzero_si512());
        // d == 1 without a second column would name the next row
        const __mmask16 e01 = _mm512_mask_cmpeq_epi32_mask(k.col1, d, one);
        __mmask16 found = e00 | e01;
        __m512 a = _mm512_maskz_mov_ps(e00, g), c = _mm512_maskz_mov_ps(e01, g);
        _mm512_mask_storeu_ps(r0 + c0, k.m0, _mm512_permutex2var_ps(a, lo, c));
        if (k.m1) _mm512_mask_storeu_ps(r0 + c0 + 16, k.m1, _mm512_permutex2var_ps(a, hi, c));
        if (second) {
          const __mmask16 e10 = _mm512_cmpeq_epi32_mask(d, down);
          const __mmask16 e11 = _mm512_mask_cmpeq_epi32_mask(k.col1, d, down1);
          found |= e10 | e11;
          a = _mm512_maskz_mov_ps(e10, g);
          c = _mm512_maskz_mov_ps(e11, g);
          _mm512_mask_storeu_ps(r0 + W + c0, k.m0, _mm512_permutex2var_ps(a, lo, c));
          if (k.m1) _mm512_mask_storeu_ps(r0 + W + c0 + 16, k.m1, _mm512_permutex2var_ps(a, hi, c));
        }
        ok &= (found & k.live) == k.live;
      });
      if (!ok) return p;
    }
    zero_uncovered__avx512(dx, s);
  }
  return planes;
}

// The sum (((0 + t00) + t01) + t10) + t11, in the __ref order.
void avg_forward_2x2__avx512(float* y, const float* x, const Pool2dShape& s, bool cip,
                             int64_t planes) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW, blocks = (OW + 15) / 16;
  Block2x2 table[kMaxBlocks];
  for (int64_t b = 0; b < min64__avx512(blocks, kMaxBlocks); ++b) table[b] = block_2x2__avx512(b, OW, W);
  const __m512 zero = _mm512_setzero_ps();
  const __m512i lane2 = _mm512_slli_epi32(iota__avx512(), 1);
  for (int64_t p = 0; p < planes; ++p, x += H * W, y += OH * OW) {
    for (int64_t oh = 0; oh < OH; ++oh) {
      const float* r0 = x + 2 * oh * W;
      const bool second = 2 * oh + 1 < H;
      prefetch__avx512(r0, 2 * W * 4);
      for_blocks__avx512(table, blocks, OW, W, [&](const Block2x2& k) {
        const int64_t c0 = 2 * k.ow0;
        __m512 a = _mm512_maskz_loadu_ps(k.m0, r0 + c0), b = _mm512_maskz_loadu_ps(k.m1, r0 + c0 + 16);
        __m512 sum = _mm512_add_ps(zero, _mm512_permutex2var_ps(a, even__avx512(), b));
        sum = _mm512_add_ps(sum, _mm512_permutex2var_ps(a, odd__avx512(), b));
        if (second) {
          a = _mm512_maskz_loadu_ps(k.m0, r0 + W + c0);
          b = _mm512_maskz_loadu_ps(k.m1, r0 + W + c0 + 16);
          sum = _mm512_add_ps(sum, _mm512_permutex2var_ps(a, even__avx512(), b));
          sum = _mm512_add_ps(sum, _mm512_permutex2var_ps(a, odd__avx512(), b));
        }
        __m512 count = _mm512_set1_ps(4.0f);
        if (!cip) {  // real taps: rows times the lane's columns inside [0, W)
          const __m512i cols = _mm512_sub_epi32(
              _mm512_min_epi32(_mm512_add_epi32(set1__avx512(c0 + 2), lane2), set1__avx512(W)),
              _mm512_add_epi32(set1__avx512(c0), lane2));
          count = _mm512_cvtepi32_ps(_mm512_mullo_epi32(cols, set1__avx512(second ? 2 : 1)));
        }
        _mm512_mask_storeu_ps(y + oh * OW + k.ow0, k.live, _mm512_div_ps(sum, count));
      });
    }
  }
}

// --- any window at column stride 1 or 2 (forward) --------------------------------------------

// The load masks of a block's taps, computed once per block and reused by every row of the
// window: masks[kw] for the columns from cb + kw. Wider kernels go kMaxTaps taps at a time.
constexpr int64_t kMaxTaps = 16;

CNNKIT_INLINE void tap_masks__avx512(uint32_t* masks, int64_t cb, int64_t KW, int64_t W) {
  for (int64_t kw = 0; kw < KW; ++kw) masks[kw] = span32__avx512(-(cb + kw), W - (cb + kw));
}

// Tap kw of row xr for 16 outputs: columns cb + kw + SW * j, masked by masks[kw]; relu'd
// when RELU.
template <int SW, bool RELU = false>
CNNKIT_INLINE __m512 tap__avx512(const float* xr, int64_t c0, uint32_t m, __m512 fill) {
  const auto m0 = static_cast<__mmask16>(m), m1 = static_cast<__mmask16>(m >> 16);
  __m512 a = _mm512_mask_loadu_ps(fill, m0, xr + c0);
  if (RELU) a = relu_lanes__avx512(a, m0);
  if (SW == 1) return a;
  __m512 b = _mm512_mask_loadu_ps(fill, m1, xr + c0 + 16);
  if (RELU) b = relu_lanes__avx512(b, m1);
  return _mm512_permutex2var_ps(a, even__avx512(), b);
}

// Output row oh's taps, in (h, kw) order: row_taps(h, kw0, kn, masks) is called for each
// window row and each run of at most kMaxTaps taps with their masks.
template <class RowTaps>
CNNKIT_INLINE void window_taps__avx512(int64_t h0, int64_t h1, int64_t cb, int64_t KW, int64_t W,
                                       RowTaps&& row_taps) {
  uint32_t masks[kMaxTaps];
  if (KW <= kMaxTaps) {
    tap_masks__avx512(masks, cb, KW, W);
    for (int64_t h = h0; h < h1; ++h) row_taps(h, 0, KW, masks);
    return;
  }
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t k0 = 0; k0 < KW; k0 += kMaxTaps) {
      const int64_t kn = min64__avx512(kMaxTaps, KW - k0);
      tap_masks__avx512(masks, cb + k0, kn, W);
      row_taps(h, k0, kn, masks);
    }
}

template <int SW, bool RELU>
void max_forward_any__avx512(float* y, int64_t* argmax, const float* x, const Pool2dShape& s,
                             int64_t planes) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW, KH = s.KH, KW = s.KW;
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const __m512i lane = _mm512_mullo_epi32(iota__avx512(), _mm512_set1_epi32(SW));
  for (int64_t p = 0; p < planes; ++p, x += H * W, y += OH * OW, argmax += OH * OW) {
    for (int64_t oh = 0; oh < OH; ++oh) {
      const int64_t h0 = max64__avx512(oh * s.SH - s.PT, 0);
      const int64_t h1 = min64__avx512(oh * s.SH - s.PT + KH, H);
      prefetch__avx512(x + h1 * W, s.SH * W * 4);
      for (int64_t ow0 = 0; ow0 < OW; ow0 += 16) {
        const int64_t cb = ow0 * SW - s.PL;  // lane j's window starts at column cb + SW * j
        __m512 best = ninf;
        // Before any tap: the window's first real element, as the __ref loop starts there.
        __m512i bidx = _mm512_add_epi32(
            set1__avx512(h0 * W),
            _mm512_max_epi32(_mm512_add_epi32(set1__avx512(cb), lane), _mm512_setzero_si512()));
        window_taps__avx512(h0, h1, cb, KW, W, [&](int64_t h, int64_t k0, int64_t kn, const uint32_t* m) {
          for (int64_t k = 0; k < kn; ++k) {
            const int64_t c0 = cb + k0 + k;
            later_wins__avx512(best, bidx, tap__avx512<SW, RELU>(x + h * W, c0, m[k], ninf),
                               _mm512_add_epi32(set1__avx512(h * W + c0), lane), best, bidx);
          }
        });
        const int64_t n = min64__avx512(16, OW - ow0);
        _mm512_mask_storeu_ps(y + oh * OW + ow0, first_lanes__avx512(n), best);
        store_index__avx512(argmax + oh * OW + ow0, bidx, n);
      }
    }
  }
}

template <int SW>
void avg_forward_any__avx512(float* y, const float* x, const Pool2dShape& s, bool cip,
                             int64_t planes) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW, KH = s.KH, KW = s.KW;
  const __m512 zero = _mm512_setzero_ps();
  const __m512i lane = _mm512_mullo_epi32(iota__avx512(), _mm512_set1_epi32(SW));
  for (int64_t p = 0; p < planes; ++p, x += H * W, y += OH * OW) {
    for (int64_t oh = 0; oh < OH; ++oh) {
      const int64_t h0 = max64__avx512(oh * s.SH - s.PT, 0);
      const int64_t h1 = min64__avx512(oh * s.SH - s.PT + KH, H);
      prefetch__avx512(x + h1 * W, s.SH * W * 4);
      for (int64_t ow0 = 0; ow0 < OW; ow0 += 16) {
        const int64_t cb = ow0 * SW - s.PL;
        __m512 sum = zero;
        window_taps__avx512(h0, h1, cb, KW, W, [&](int64_t h, int64_t k0, int64_t kn, const uint32_t* m) {
          for (int64_t k = 0; k < kn; ++k)
            sum = _mm512_add_ps(sum, tap__avx512<SW>(x + h * W, cb + k0 + k, m[k], zero));
        });
        __m512 count = _mm512_set1_ps(static_cast<float>(KH * KW));
        if (!cip) {  // real taps: rows h1 - h0 times the lane's columns inside [0, W)
          const __m512i start = _mm512_add_epi32(set1__avx512(cb), lane);
          const __m512i lo = _mm512_max_epi32(start, _mm512_setzero_si512());
          const __m512i hi =
              _mm512_min_epi32(_mm512_add_epi32(start, set1__avx512(KW)), set1__avx512(W));
          count = _mm512_cvtepi32_ps(
              _mm512_mullo_epi32(_mm512_sub_epi32(hi, lo), set1__avx512(h1 - h0)));
        }
        const int64_t n = min64__avx512(16, OW - ow0);
        _mm512_mask_storeu_ps(y + oh * OW + ow0, first_lanes__avx512(n), _mm512_div_ps(sum, count));
      }
    }
  }
}

// --- windows two columns wide at stride 2, as tall as their row stride (backward) ------------

// A window's taps are (h, 2 * ow - PL) and (h, 2 * ow - PL + 1) for each of its real rows h;
// dx there is dy + 0 where argmax points and 0 elsewhere.
int64_t max_backward_tiled__avx512(float* dx, const float* dy, const int64_t* argmax,
                                   const float* y, const Pool2dShape& s, int64_t planes) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW;
  const __m512i lane2 = _mm512_slli_epi32(iota__avx512(), 1), one = _mm512_set1_epi32(1);
  const __m512i wv = set1__avx512(W), z = _mm512_setzero_si512();
  for (int64_t p = 0; p < planes; ++p, dx += H * W, dy += OH * OW, argmax += OH * OW) {
    for (int64_t oh = 0; oh < OH; ++oh) {
      prefetch__avx512(argmax + oh * OW, OW * 8);
      prefetch__avx512(dy + oh * OW, OW * 4);
      for (int64_t ow0 = 0; ow0 < OW; ow0 += 16) {
        const int64_t n = min64__avx512(16, OW - ow0), c0 = 2 * ow0 - s.PL;
        const __mmask16 live = first_lanes__avx512(n);
        const __m512 g =
            grad_lanes__avx512(dy + oh * OW + ow0, y ? y + (p * OH + oh) * OW + ow0 : nullptr, live);
        const __m512i a = load_index__avx512(argmax + oh * OW + ow0, n);
        const __m512i col0 = _mm512_add_epi32(set1__avx512(c0), lane2);
        const __m512i col1 = _mm512_add_epi32(col0, one);
        // taps inside the row: an index one past a row's end names the next row's first column
        const __mmask16 in0 = _mm512_cmpge_epi32_mask(col0, z) & _mm512_cmplt_epi32_mask(col0, wv);
        const __mmask16 in1 = _mm512_cmpge_epi32_mask(col1, z) & _mm512_cmplt_epi32_mask(col1, wv);
        __mmask16 found = 0;
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t h = oh * s.SH - s.PT + kh;
          if (h < 0 || h >= H) continue;
          const __m512i row = set1__avx512(h * W);
          const __mmask16 e0 = _mm512_mask_cmpeq_epi32_mask(in0, a, _mm512_add_epi32(row, col0));
          const __mmask16 e1 = _mm512_mask_cmpeq_epi32_mask(in1, a, _mm512_add_epi32(row, col1));
          found |= e0 | e1;
          store_pairs__avx512(dx + h * W, c0, W, _mm512_maskz_mov_ps(e0, g),
                              _mm512_maskz_mov_ps(e1, g));
        }
        if ((found & live) != live) return p;
      }
    }
    zero_uncovered__avx512(dx, s);
  }
  return planes;
}

// Each tap of a window gets dy / count + 0 (the scatter's 0 + dy / count).
void avg_backward_tiled__avx512(float* dx, const float* dy, const Pool2dShape& s, bool cip,
                                int64_t planes) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW;
  const __m512i lane2 = _mm512_slli_epi32(iota__avx512(), 1);
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t p = 0; p < planes; ++p, dx += H * W, dy += OH * OW) {
    for (int64_t oh = 0; oh < OH; ++oh) {
      const int64_t h0 = max64__avx512(oh * s.SH - s.PT, 0);
      const int64_t h1 = min64__avx512(oh * s.SH - s.PT + s.KH, H);
      prefetch__avx512(dy + oh * OW, OW * 4);
      for (int64_t ow0 = 0; ow0 < OW; ow0 += 16) {
        const int64_t n = min64__avx512(16, OW - ow0), c0 = 2 * ow0 - s.PL;
        const __mmask16 live = first_lanes__avx512(n);
        __m512 count = _mm512_set1_ps(static_cast<float>(s.KH * s.KW));
        if (!cip) {
          const __m512i start = _mm512_add_epi32(set1__avx512(c0), lane2);
          const __m512i lo = _mm512_max_epi32(start, _mm512_setzero_si512());
          const __m512i hi = _mm512_min_epi32(_mm512_add_epi32(start, set1__avx512(2)), set1__avx512(W));
          count = _mm512_cvtepi32_ps(
              _mm512_mullo_epi32(_mm512_sub_epi32(hi, lo), set1__avx512(h1 - h0)));
        }
        // lanes past OW stay 0 (their count may be 0: no 0 / 0)
        const __m512 g = _mm512_add_ps(
            _mm512_maskz_div_ps(live, _mm512_maskz_loadu_ps(live, dy + oh * OW + ow0), count), zero);
        for (int64_t h = h0; h < h1; ++h) store_pairs__avx512(dx + h * W, c0, W, g, g);
      }
    }
    zero_uncovered__avx512(dx, s);
  }
}

// --- dispatch on the shape -------------------------------------------------------------------

template <bool RELU>
void max_forward_relu__avx512(float* y, int64_t* argmax, const float* x, const Pool2dShape& s,
                              int64_t planes) {
  if (is_2x2__avx512(s))
    max_forward_2x2__avx512<RELU>(y, argmax, x, s, planes);
  else if (s.SW == 1)
    max_forward_any__avx512<1, RELU>(y, argmax, x, s, planes);
  else
    max_forward_any__avx512<2, RELU>(y, argmax, x, s, planes);
}

void max_forward__avx512(float* y, int64_t* argmax, const float* x, const Pool2dShape& s,
                         int64_t planes, bool relu) {
  if (relu)
    max_forward_relu__avx512<true>(y, argmax, x, s, planes);
  else
    max_forward_relu__avx512<false>(y, argmax, x, s, planes);
}

int64_t max_backward__avx512(float* dx, const float* dy, const int64_t* argmax, const float* y,
                             const Pool2dShape& s, int64_t planes) {
  return is_2x2__avx512(s) ? max_backward_2x2__avx512(dx, dy, argmax, y, s, planes)
                           : max_backward_tiled__avx512(dx, dy, argmax, y, s, planes);
}

void avg_forward__avx512(float* y, const float* x, const Pool2dShape& s, bool cip,
                         int64_t planes) {
  if (is_2x2__avx512(s))
    avg_forward_2x2__avx512(y, x, s, cip, planes);
  else if (s.SW == 1)
    avg_forward_any__avx512<1>(y, x, s, cip, planes);
  else
    avg_forward_any__avx512<2>(y, x, s, cip, planes);
}

}  // namespace

const PoolKernels pool_kernels__avx512 = {max_forward__avx512, max_backward__avx512,
                                          avg_forward__avx512, avg_backward_tiled__avx512};

}  // namespace cnnkit
