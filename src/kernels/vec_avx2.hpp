// The AVX2 tier's vector, V__avx2: 8 floats in a ymm register, 16 of them; partial vectors
// through vmaskmovps (masked-off lanes are neither read nor written). The operations the
// per-tier kernel templates take (conv_direct_impl.hpp describes them); included only by
// *_avx2.cpp files, built with -mavx2 -mfma.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace cnnkit {

namespace {

#define CNNKIT_INLINE static inline __attribute__((always_inline))

struct V__avx2 {
  using T = __m256;
  using M = __m256i;
  static constexpr int L = 8;
  static constexpr int kRegs = 16;
  static constexpr int kAcc = 12;
  CNNKIT_INLINE M mask(int64_t n) {
    const int32_t k = n >= 8 ? 8 : static_cast<int32_t>(n);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  CNNKIT_INLINE T zero() { return _mm256_setzero_ps(); }
  CNNKIT_INLINE T load(const float* p) { return _mm256_loadu_ps(p); }
  CNNKIT_INLINE T loadz(const float* p, M m) { return _mm256_maskload_ps(p, m); }
  CNNKIT_INLINE void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  CNNKIT_INLINE void store(float* p, T v, M m) { _mm256_maskstore_ps(p, m, v); }
  CNNKIT_INLINE T bcast(const float* p) { return _mm256_broadcast_ss(p); }
  CNNKIT_INLINE T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  CNNKIT_INLINE T add(T a, T b) { return _mm256_add_ps(a, b); }

  // One 8 x 8 tile in registers: pairs of rows interleaved (32-bit, then 64-bit), then the
  // 128-bit halves exchanged; rows past `rows` read as zeros, columns past `cols` are neither
  // read nor stored.
  CNNKIT_INLINE void transpose(float* dst, int64_t ldd, const float* src, int64_t lds,
                               int64_t rows, int64_t cols) {
    const M cm = mask(cols), rm = mask(rows);
    __m256 r[8], t[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) r[i] = i < rows ? loadz(src + i * lds, cm) : zero();
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // r[4i + q]: rows 4i .. 4i+3 of columns q and q+4 (one per 128-bit half).
#pragma GCC unroll 2
    for (int i = 0; i < 2; ++i) {
      r[4 * i + 0] = _mm256_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0x44);
      r[4 * i + 1] = _mm256_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0xEE);
      r[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
      r[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      t[q] = _mm256_permute2f128_ps(r[q], r[q + 4], 0x20);
      t[q + 4] = _mm256_permute2f128_ps(r[q], r[q + 4], 0x31);
    }
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c)
      if (c < cols) store(dst + c * ldd, t[c], rm);
  }
};

#undef CNNKIT_INLINE

}  // namespace

}  // namespace cnnkit
