// The AVX-512 tier's vector, V__avx512: 16 floats in a zmm register, 32 of them; partial
// vectors through mask registers (masked-off lanes are neither read nor written). The
// operations the per-tier kernel templates take (conv_direct_impl.hpp describes them);
// included only by *_avx512.cpp files, built with -mavx512f.
#pragma once

#include <immintrin.h>

#include <cstdint>

// GCC 12 warns that the unpack and shuffle intrinsics read an uninitialised vector: they
// start from _mm512_undefined_ps() (GCC bug 105593), nothing of which reaches a result.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace cnnkit {

namespace {

#define CNNKIT_INLINE static inline __attribute__((always_inline))

struct V__avx512 {
  using T = __m512;
  using M = __mmask16;
  static constexpr int L = 16;
  static constexpr int kRegs = 32;
  static constexpr int kAcc = 24;
  CNNKIT_INLINE M mask(int64_t n) {
    return n >= 16 ? static_cast<M>(0xFFFF) : static_cast<M>((1u << n) - 1);
  }
  CNNKIT_INLINE T zero() { return _mm512_setzero_ps(); }
  CNNKIT_INLINE T load(const float* p) { return _mm512_loadu_ps(p); }
  CNNKIT_INLINE T loadz(const float* p, M m) { return _mm512_maskz_loadu_ps(m, p); }
  CNNKIT_INLINE void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  CNNKIT_INLINE void store(float* p, T v, M m) { _mm512_mask_storeu_ps(p, m, v); }
  CNNKIT_INLINE T bcast(const float* p) { return _mm512_set1_ps(*p); }
  CNNKIT_INLINE T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  CNNKIT_INLINE T add(T a, T b) { return _mm512_add_ps(a, b); }

  // One 16 x 16 tile in registers: pairs of rows interleaved (32-bit, then 64-bit), then
  // 128-bit blocks exchanged twice; rows past `rows` read as zeros, columns past `cols` are
  // neither read nor stored.
  CNNKIT_INLINE void transpose(float* dst, int64_t ldd, const float* src, int64_t lds,
                               int64_t rows, int64_t cols) {
    const M cm = mask(cols), rm = mask(rows);
    __m512 r[16], t[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) r[i] = i < rows ? loadz(src + i * lds, cm) : zero();
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // r[4i + q]: rows 4i .. 4i+3 of columns q, q+4, q+8, q+12 (one per 128-bit block).
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0x44);
      r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0xEE);
      r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
      r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    // t[q]: rows 0-3 and 4-7 of columns q and q+8; t[q+4]: of q+4 and q+12 (t[8 ..]: rows
    // 8-15 likewise); then column q = t[q] and t[q+8] low blocks, column q+8 their high ones.
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      t[q] = _mm512_shuffle_f32x4(r[q], r[q + 4], 0x88);
      t[q + 4] = _mm512_shuffle_f32x4(r[q], r[q + 4], 0xDD);
      t[q + 8] = _mm512_shuffle_f32x4(r[q + 8], r[q + 12], 0x88);
      t[q + 12] = _mm512_shuffle_f32x4(r[q + 8], r[q + 12], 0xDD);
    }
#pragma GCC unroll 8
    for (int q = 0; q < 8; ++q) {
      r[q] = _mm512_shuffle_f32x4(t[q], t[q + 8], 0x88);
      r[q + 8] = _mm512_shuffle_f32x4(t[q], t[q + 8], 0xDD);
    }
#pragma GCC unroll 16
    for (int c = 0; c < 16; ++c)
      if (c < cols) store(dst + c * ldd, r[c], rm);
  }
};

#undef CNNKIT_INLINE

}  // namespace

}  // namespace cnnkit
