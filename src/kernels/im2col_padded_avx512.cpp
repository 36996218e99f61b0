// AVX-512 pack of the batched path's transposed im2col operand (ops/conv2d_batched.cpp,
// PaddedIm2colOperand with transposed = true): colᵀ from the zero-padded images xpad through
// the per-(tap, column) offset table. A panel's lanes are consecutive col rows (channel, tap),
// each reading its own plane and tap offset, so every panel row (one col column) is a gather:
// lane rr reads xpad[base(rr) + ofs[k]], 16 lanes per instruction, and the panel is written a
// full row at a time, where the scalar pack wrote one float per row, width floats apart.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/im2col.hpp"

namespace cnnkit {

bool padded_im2col_transposed_pack__avx512(const float* xpad, int64_t xpad_floats,
                                           const int64_t* ofs, int64_t ld, int64_t HWp,
                                           int64_t taps, int64_t o0, int64_t no, int64_t k0,
                                           int64_t nk, int width, float* dst) {
  constexpr int kMaxVecs = 4;  // panels up to 64 wide
  if (width % 16 != 0 || width > 16 * kMaxVecs || xpad_floats >= (int64_t{1} << 31))
    return false;
  const int vecs = width / 16;
  const int64_t panels = (no + width - 1) / width;
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t oa = o0 + p * width, len = std::min<int64_t>(width, o0 + no - oa);
    __m512i base[kMaxVecs];
    __mmask16 live[kMaxVecs];
    for (int v = 0; v < vecs; ++v) {
      alignas(64) int32_t b[16];
      for (int l = 0; l < 16; ++l) {
        const int64_t rr = 16 * v + l, r = oa + rr;
        // Lanes past the operand's end are masked off; their base is never used.
        b[l] = rr < len ? static_cast<int32_t>(r / taps * HWp + ofs[r % taps * ld]) : 0;
      }
      base[v] = _mm512_load_si512(b);
      const int64_t n = std::clamp<int64_t>(len - 16 * v, 0, 16);
      live[v] = static_cast<__mmask16>((uint32_t{1} << n) - 1);
    }
    float* d = dst + p * nk * width;
    const int64_t* of = ofs + k0;  // tap 0's offsets: ofs[tap*ld + k] = ofs[tap*ld] + ofs[k]
    for (int64_t k = 0; k < nk; ++k, d += width) {
      const __m512i add = _mm512_set1_epi32(static_cast<int32_t>(of[k]));
      for (int v = 0; v < vecs; ++v)
        _mm512_storeu_ps(d + 16 * v,
                         _mm512_mask_i32gather_ps(_mm512_setzero_ps(), live[v],
                                                  _mm512_add_epi32(base[v], add), xpad, 4));
    }
  }
  return true;
}

}  // namespace cnnkit

namespace cnnkit {

bool batched_im2col_pack__avx512(const float* x, int64_t xs, const Im2colShape& g,
                                 int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
                                 float* dst) {
  const int64_t P = g.OH * g.OW;
  if (!batched_same_rows(g) || width % 16 != 0 || o0 % 16 != 0 ||
      g.H * g.W >= (int64_t{1} << 29))
    return false;
  const int64_t panels = (no + width - 1) / width, taps = g.KH * g.KW, HW = g.H * g.W;
  const __m512i H = _mm512_set1_epi32(static_cast<int32_t>(g.H));
  const __m512i W = _mm512_set1_epi32(static_cast<int32_t>(g.W));
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t q = 0; q < width; q += 16) {
      // 16 consecutive columns n*P + j .. +15: one image n (P is a multiple of 16), pixels
      // j .. j+15 across its output rows, lanes past the operand masked off.
      const int64_t col = o0 + p * width + q, left = o0 + no - col;
      float* d = dst + p * nk * width + q;
      if (left <= 0) {
        for (int64_t k = 0; k < nk; ++k) _mm512_storeu_ps(d + k * width, _mm512_setzero_ps());
        continue;
      }
      const __mmask16 live =
          left >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << left) - 1);
      const int64_t n = col / P, j = col % P;
      alignas(64) int32_t ohs[16], ows[16];
      for (int l = 0; l < 16; ++l) ohs[l] = static_cast<int32_t>((j + l) / g.OW),
                                   ows[l] = static_cast<int32_t>((j + l) % g.OW);
      const __m512i oh = _mm512_load_si512(ohs), ow = _mm512_load_si512(ows);
      const float* xn = x + n * xs + j;
      int64_t c = k0 / taps, t = k0 % taps;
      for (int64_t k = 0; k < nk; ++k) {
        const int64_t dh = t / g.KW * g.DH - g.PT, dw = t % g.KW * g.DW - g.PL;
        const __mmask16 m =
            live &
            _mm512_cmplt_epu32_mask(
                _mm512_add_epi32(oh, _mm512_set1_epi32(static_cast<int32_t>(dh))), H) &
            _mm512_cmplt_epu32_mask(
                _mm512_add_epi32(ow, _mm512_set1_epi32(static_cast<int32_t>(dw))), W);
        // Masked-off lanes are not read: the address is formed without leaving the image
        // through pointer arithmetic.
        const auto addr = reinterpret_cast<const float*>(
            reinterpret_cast<std::uintptr_t>(xn + c * HW) +
            static_cast<std::uintptr_t>((dh * g.W + dw) * 4));
        _mm512_storeu_ps(d + k * width, _mm512_maskz_loadu_ps(m, addr));
        if (++t == taps) t = 0, ++c;
      }
    }
  return true;
}

}  // namespace cnnkit
