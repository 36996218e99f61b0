// AVX-512 variants of the phase-split im2col (kernels/im2col_phase.hpp). The split (SW == 4)
// loads 64 padded columns of a row (masked at the image's edges) and deinterleaves them into
// their 4 phases with 8 permutes; the pack
// reads 16 pixels per load, with two masked loads for a block that wraps onto the next output
// row (the planes are padded, so no lane is ever clipped).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/im2col_phase.hpp"

namespace cnnkit {

namespace {

// Columns iw .. iw+15 of a row, 0 outside [0, W); the address is formed without pointer
// arithmetic out of the row, and masked-off lanes are neither read nor fault.
inline __m512 clipped_row16(const float* row, int64_t iw, int64_t W) {
  if (iw >= 0 && iw + 16 <= W) return _mm512_loadu_ps(row + iw);
  const int64_t lo = std::clamp<int64_t>(-iw, 0, 16), hi = std::clamp<int64_t>(W - iw, 0, 16);
  if (hi <= lo) return _mm512_setzero_ps();
  const auto m = static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1));
  const auto addr = reinterpret_cast<const float*>(reinterpret_cast<std::uintptr_t>(row) +
                                                   static_cast<std::uintptr_t>(iw * 4));
  return _mm512_maskz_loadu_ps(m, addr);
}

}  // namespace

bool im2col_phase_split__avx512(float* xq, const float* x, const Im2colShape& g,
                                const Im2colPhaseGeometry& q) {
  if (g.SW != 4) return false;
  const int64_t Wq = q.Wq, plane = q.Hq * Wq;
  // Two rounds of two-source permutes deinterleave 64 padded columns into their 4 phases:
  // first each pair of vectors into (phase 0 | phase 1) and (phase 2 | phase 3) halves, then
  // the halves of the two pairs joined.
  const __m512i even = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25,
                                         29);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(2));
  const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
  const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t ihp = 0; ihp < q.Hq; ++ihp) {
      const int64_t ih = ihp - g.PT;
      float* d = xq + c * 4 * plane + ihp * Wq;  // phase r at d + r * plane
      if (ih < 0 || ih >= g.H) {
        for (int64_t r = 0; r < 4; ++r) std::fill(d + r * plane, d + r * plane + Wq, 0.0f);
        continue;
      }
      const float* row = x + (c * g.H + ih) * g.W;
      for (int64_t m = 0; m < Wq; m += 16) {
        const int64_t iw = 4 * m - g.PL;
        const __m512 v0 = clipped_row16(row, iw, g.W), v1 = clipped_row16(row, iw + 16, g.W),
                     v2 = clipped_row16(row, iw + 32, g.W), v3 = clipped_row16(row, iw + 48, g.W);
        const __m512 t0 = _mm512_permutex2var_ps(v0, even, v1);
        const __m512 t1 = _mm512_permutex2var_ps(v0, odd, v1);
        const __m512 t2 = _mm512_permutex2var_ps(v2, even, v3);
        const __m512 t3 = _mm512_permutex2var_ps(v2, odd, v3);
        const __mmask16 keep =
            Wq - m >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (Wq - m)) - 1);
        _mm512_mask_storeu_ps(d + m, keep, _mm512_permutex2var_ps(t0, lo, t2));
        _mm512_mask_storeu_ps(d + plane + m, keep,
                              _mm512_permutex2var_ps(t0, hi, t2));
        _mm512_mask_storeu_ps(d + 2 * plane + m, keep,
                              _mm512_permutex2var_ps(t1, lo, t3));
        _mm512_mask_storeu_ps(d + 3 * plane + m, keep,
                              _mm512_permutex2var_ps(t1, hi, t3));
      }
    }
  return true;
}

namespace {
struct Block {
  int64_t off1, off2;  // plane offsets of lane 0 in the first row and (minus split) the next
  __mmask16 m1, m2;    // lanes read from each
  bool whole;          // 16 lanes in one output row: one plain load
  int64_t dst;         // its tap-0 lanes in the packed panels
};
}  // namespace

bool im2col_phase_pack__avx512(const float* xq, const Im2colShape& g,
                               const Im2colPhaseGeometry& q, int64_t o0, int64_t no,
                               int64_t k0, int64_t nk, int width, float* dst) {
  if (width % 16 != 0 || g.OW < 16) return false;
  const int64_t groups = width / 16, blocks = (no + width - 1) / width * groups;
  constexpr int64_t kMaxBlocks = 64;
  if (blocks > kMaxBlocks) return false;
  Block desc[kMaxBlocks];
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i0 = b / groups * width + b % groups * 16;
    const int64_t lanes = std::clamp<int64_t>(no - i0, 0, 16);
    const int64_t j = o0 + i0, oh = j / g.OW, ow = j % g.OW;
    const int64_t split = std::min<int64_t>(lanes, g.OW - ow);
    Block& d = desc[b];
    d.off1 = oh * g.SH * q.Wq + ow;
    d.off2 = (oh + 1) * g.SH * q.Wq - split;
    d.m1 = static_cast<__mmask16>((1u << split) - 1);
    d.m2 = static_cast<__mmask16>(((1u << lanes) - 1) & ~((1u << split) - 1));
    d.whole = lanes == 16 && split == 16;
    d.dst = b / groups * nk * width + b % groups * 16;
  }
  // Offset of tap kw from its (c, kh) row of phase 0 (no divisions in the tap loop).
  constexpr int64_t kMaxKW = 64;
  if (g.KW > kMaxKW) return false;
  int64_t kw_off[kMaxKW];
  for (int64_t t = 0; t < g.KW; ++t)
    kw_off[t] = t * g.DW % g.SW * q.Hq * q.Wq + t * g.DW / g.SW;
  int64_t kw = k0 % g.KW, kh = k0 / g.KW % g.KH;
  const int64_t c = k0 / g.KW / g.KH;
  const float* row = xq + (c * g.SW * q.Hq + kh * g.DH) * q.Wq;  // (c, kh) in phase 0
  for (int64_t k = 0; k < nk; ++k) {
    const float* base = row + kw_off[kw];
    for (int64_t b = 0; b < blocks; ++b) {
      const Block& d = desc[b];
      float* out = dst + d.dst + k * width;
      __m512 v;
      if (d.whole) {
        v = _mm512_loadu_ps(base + d.off1);
      } else {
        // Masked-off lanes are neither read nor fault; the addresses stay inside xq's plane
        // rows except for off2's start, formed as an integer.
        const auto a2 = reinterpret_cast<const float*>(
            reinterpret_cast<std::uintptr_t>(base) + static_cast<std::uintptr_t>(d.off2 * 4));
        v = _mm512_maskz_loadu_ps(d.m1, base + d.off1);
        v = _mm512_mask_loadu_ps(v, d.m2, a2);
      }
      _mm512_storeu_ps(out, v);
    }
    if (++kw == g.KW) {
      kw = 0;
      row += g.DH * q.Wq;
      if (++kh == g.KH) kh = 0, row += (g.SW * q.Hq - g.KH * g.DH) * q.Wq;
    }
  }
  return true;
}

}  // namespace cnnkit
