// im2col of a strided convolution from its image made phase-split: the padded image with each
// row split by column into its SW phases (columns iwp = m*SW + r go to phase r at m), copied
// once per image. Tap (c, kh, kw) of output pixel (oh, ow) then reads phase
// r = (kw*DW) % SW at column ow + (kw*DW) / SW, so consecutive pixels of an output row read
// consecutive floats: the pack is the stride-1 case (one load per tap and 16 pixels, none of
// the strided case's permutes and clipping), and the split's deinterleave is done once per
// input value instead of once per tap that reads it (AlexNet conv1, 11x11 stride 4: ~7.6x).
//
//   xq [C, SW, Hq, Wq]: xq[((c*SW + r)*Hq + ihp)*Wq + m] = x[c, ihp - PT, m*SW + r - PL],
//                        0 outside the image,
//   Hq = (OH - 1)*SH + (KH - 1)*DH + 1 (the padded rows read), Wq = OW + ((KW - 1)*DW) / SW.
#pragma once

#include <cstdint>

#include "kernels/gemm.hpp"
#include "kernels/im2col.hpp"

namespace cnnkit {

struct Im2colPhaseGeometry {
  int64_t Hq, Wq;
  int64_t floats() const;  // of one image's xq, C * SW * Hq * Wq (set by im2col_phase_geometry)
  int64_t C, SW;
};
Im2colPhaseGeometry im2col_phase_geometry(const Im2colShape& g);

// xq (im2col_phase_geometry(g).floats() floats) = x [C, H, W] phase-split.
void im2col_phase_split(float* xq, const float* x, const Im2colShape& g);

// col as the B operand of the forward product (same X(o, k) as Im2colOperand), read from xq.
class Im2colPhaseOperand final : public GemmOperand {
 public:
  Im2colPhaseOperand(const float* xq, const Im2colShape& g);
  void pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
            float* dst) const override;

 private:
  const float* xq_;
  Im2colShape g_;
  Im2colPhaseGeometry q_;
  bool avx512_;
};

// AVX-512 variants (im2col_phase_avx512.cpp); false, writing nothing, for what they do not
// handle (split: SW != 4; pack: width not a multiple of 16, OW < 16, KW > 64, or more than
// 64 blocks of 16 pixels in one call), which then take the portable code.
bool im2col_phase_split__avx512(float* xq, const float* x, const Im2colShape& g,
                                const Im2colPhaseGeometry& q);
bool im2col_phase_pack__avx512(const float* xq, const Im2colShape& g,
                               const Im2colPhaseGeometry& q, int64_t o0, int64_t no,
                               int64_t k0, int64_t nk, int width, float* dst);

}  // namespace cnnkit
