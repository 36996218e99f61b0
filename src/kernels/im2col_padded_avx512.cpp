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
