// The phase-split im2col (kernels/im2col_phase.hpp): geometry, the portable split and pack,
// and the dispatch to the AVX-512 variants.
#include "kernels/im2col_phase.hpp"

#include <algorithm>

#include "kernels/simd.hpp"

namespace cnnkit {

int64_t Im2colPhaseGeometry::floats() const { return C * SW * Hq * Wq; }

Im2colPhaseGeometry im2col_phase_geometry(const Im2colShape& g) {
  Im2colPhaseGeometry q;
  q.Hq = (g.OH - 1) * g.SH + (g.KH - 1) * g.DH + 1;
  q.Wq = g.OW + (g.KW - 1) * g.DW / g.SW;
  q.C = g.C;
  q.SW = g.SW;
  return q;
}

void im2col_phase_split(float* xq, const float* x, const Im2colShape& g) {
  const Im2colPhaseGeometry q = im2col_phase_geometry(g);
  if (active_simd_tier() == SimdTier::avx512 && im2col_phase_split__avx512(xq, x, g, q)) return;
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t r = 0; r < g.SW; ++r)
      for (int64_t ihp = 0; ihp < q.Hq; ++ihp) {
        float* d = xq + ((c * g.SW + r) * q.Hq + ihp) * q.Wq;
        const int64_t ih = ihp - g.PT;
        if (ih < 0 || ih >= g.H) {
          std::fill(d, d + q.Wq, 0.0f);
          continue;
        }
        const float* row = x + (c * g.H + ih) * g.W;
        for (int64_t m = 0; m < q.Wq; ++m) {
          const int64_t iw = m * g.SW + r - g.PL;
          d[m] = iw >= 0 && iw < g.W ? row[iw] : 0.0f;
        }
      }
}

Im2colPhaseOperand::Im2colPhaseOperand(const float* xq, const Im2colShape& g)
    : xq_(xq), g_(g), q_(im2col_phase_geometry(g)),
      avx512_(active_simd_tier() == SimdTier::avx512) {}

void Im2colPhaseOperand::pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
                              float* dst) const {
  if (avx512_ && im2col_phase_pack__avx512(xq_, g_, q_, o0, no, k0, nk, width, dst)) return;
  const Im2colShape& g = g_;
  const int64_t panels = (no + width - 1) / width;
  // Pixel offsets in a phase plane, in chunks: xq offset of pixel (oh, ow) = oh*SH*Wq + ow.
  constexpr int64_t kChunk = 64;
  int64_t off[kChunk];
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t i0 = 0; i0 < width; i0 += kChunk) {
      const int64_t ni = std::min<int64_t>(kChunk, width - i0);
      int64_t live = 0;
      for (int64_t i = 0; i < ni; ++i) {
        const int64_t o = p * width + i0 + i;
        if (o >= no) break;
        const int64_t j = o0 + o;
        off[i] = j / g.OW * g.SH * q_.Wq + j % g.OW;
        ++live;
      }
      for (int64_t k = 0; k < nk; ++k) {
        const int64_t rr = k0 + k, kw = rr % g.KW, kh = rr / g.KW % g.KH, c = rr / g.KW / g.KH;
        const int64_t r = kw * g.DW % g.SW, s = kw * g.DW / g.SW;
        const float* base = xq_ + ((c * g.SW + r) * q_.Hq + kh * g.DH) * q_.Wq + s;
        float* d = dst + (p * nk + k) * width + i0;
        for (int64_t i = 0; i < live; ++i) d[i] = base[off[i]];
        for (int64_t i = live; i < ni; ++i) d[i] = 0.0f;
      }
    }
}

}  // namespace cnnkit
