// AVX-512 variants of the phase-split im2col (kernels/im2col_phase.hpp). The split (SW == 4)
// pads a row into a scratch line and deinterleaves 64 floats at a time with permutes; the pack
// reads 16 pixels per load, with two masked loads for a block that wraps onto the next output
// row (the planes are padded, so no lane is ever clipped).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/im2col_phase.hpp"

namespace cnnkit {

bool im2col_phase_split__avx512(float* xq, const float* x, const Im2colShape& g,
                                const Im2colPhaseGeometry& q) {
  if (g.SW != 4) return false;
  const int64_t Wq = q.Wq, line_len = (4 * Wq + 63) / 64 * 64;
  std::vector<float> line(static_cast<size_t>(line_len), 0.0f);
  // Columns of the padded row (iwp) that come from the image: [PL, PL + W) clipped to 4*Wq.
  const int64_t lo = std::min(g.PL, 4 * Wq), hi = std::min(g.PL + g.W, 4 * Wq);
  const __m512i fourth = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20,
                                           24, 28);
  const __m512i halves = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22,
                                           23);
  const __m512i one = _mm512_set1_epi32(1);
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t ihp = 0; ihp < q.Hq; ++ihp) {
      const int64_t ih = ihp - g.PT;
      float* d0 = xq + (c * 4 * q.Hq + ihp) * Wq;  // phase r at d0 + r * Hq * Wq
      if (ih < 0 || ih >= g.H) {
        for (int64_t r = 0; r < 4; ++r) std::fill(d0 + r * q.Hq * Wq, d0 + r * q.Hq * Wq + Wq, 0.0f);
        continue;
      }
      if (hi > lo) std::copy(x + (c * g.H + ih) * g.W, x + (c * g.H + ih) * g.W + (hi - lo),
                             line.data() + lo);
      for (int64_t m = 0; m < Wq; m += 16) {
        const float* p = line.data() + 4 * m;
        const __m512 v0 = _mm512_loadu_ps(p), v1 = _mm512_loadu_ps(p + 16),
                     v2 = _mm512_loadu_ps(p + 32), v3 = _mm512_loadu_ps(p + 48);
        const __mmask16 keep =
            Wq - m >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (Wq - m)) - 1);
        __m512i idx = fourth;
        for (int64_t r = 0; r < 4; ++r) {
          const __m512 a = _mm512_permutex2var_ps(v0, idx, v1);
          const __m512 b = _mm512_permutex2var_ps(v2, idx, v3);
          _mm512_mask_storeu_ps(d0 + r * q.Hq * Wq + m, keep,
                                _mm512_permutex2var_ps(a, halves, b));
          idx = _mm512_add_epi32(idx, one);
        }
      }
    }
  return true;
}

namespace {
struct Block {
  int64_t off1, off2;  // plane offsets of lane 0 in the first row and (minus split) the next
  __mmask16 m1, m2;    // lanes read from each
  bool whole;          // 16 lanes in one output row: one plain load
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
  }
  int64_t kw = k0 % g.KW, kh = k0 / g.KW % g.KH, c = k0 / g.KW / g.KH;
  for (int64_t k = 0; k < nk; ++k) {
    const int64_t r = kw * g.DW % g.SW, s = kw * g.DW / g.SW;
    const float* base = xq + ((c * g.SW + r) * q.Hq + kh * g.DH) * q.Wq + s;
    for (int64_t b = 0; b < blocks; ++b) {
      const Block& d = desc[b];
      float* out = dst + ((b / groups) * nk + k) * width + b % groups * 16;
      __m512 v;
      if (d.whole) {
        v = _mm512_loadu_ps(base + d.off1);
      } else {
        // Masked-off lanes are neither read nor fault; the addresses stay inside xq's plane
        // rows except for off2's start, formed as an integer.
        v = _mm512_maskz_loadu_ps(d.m1, base + d.off1);
        const auto a2 = reinterpret_cast<const float*>(
            reinterpret_cast<std::uintptr_t>(base) + static_cast<std::uintptr_t>(d.off2 * 4));
        v = _mm512_mask_loadu_ps(v, d.m2, a2);
      }
      _mm512_storeu_ps(out, v);
    }
    if (++kw == g.KW) {
      kw = 0;
      if (++kh == g.KH) kh = 0, ++c;
    }
  }
  return true;
}

}  // namespace cnnkit
