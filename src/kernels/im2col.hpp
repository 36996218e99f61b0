// im2col for one image as GEMM operands that pack straight from the [C, H, W] image (implicit
// GEMM: the col matrix is never materialised), and col2im, its adjoint, for the input gradient.
//
//   col(r, j) = x[c, oh*SH - PT + kh*DH, ow*SW - PL + kw*DW]   (0 outside the image)
//   with row r = (c*KH + kh)*KW + kw and pixel j = oh*OW + ow.
//
// Packing is pure copying, so the per-ISA variants (*__avx2) give bit-identical panels; the
// operands pick one once, from the active SIMD tier.
#pragma once

#include <cstdint>

#include "kernels/gemm.hpp"

namespace cnnkit {

// One image's im2col geometry: input [C, H, W], kernel KH x KW, stride SH SW, top/left
// padding PT PL, dilation DH DW, output OH x OW (bottom/right padding is implied by OH OW).
struct Im2colShape {
  int64_t C, H, W;
  int64_t KH, KW;
  int64_t SH, SW;
  int64_t PT, PL;
  int64_t DH, DW;
  int64_t OH, OW;
};

// col as the B operand of the forward product Y[OC, OH*OW] = W[OC, C*KH*KW] · col:
// X(o = pixel j, k = row r) for the image x [C, H, W].
class Im2colOperand final : public GemmOperand {
 public:
  Im2colOperand(const float* x, const Im2colShape& g);
  void pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
            float* dst) const override;

 private:
  const float* x_;
  Im2colShape g_;
  SimdTier tier_;
};

// col transposed, the B operand of the weight gradient dW[OC, C*KH*KW] = dY[OC, OH*OW] · colᵀ:
// X(o = row r, k = pixel j) for the image x [C, H, W].
class Im2colTransposedOperand final : public GemmOperand {
 public:
  Im2colTransposedOperand(const float* x, const Im2colShape& g);
  void pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
            float* dst) const override;

 private:
  const float* x_;
  Im2colShape g_;
  bool avx2_;
};

// col transposed with its rows in tap-major order, from the channels-last image
// xt [H, W, C] (chw_to_hwc): the B operand of the weight gradient computed as
// dwt[OC, KH*KW*C] = dY[OC, OH*OW] · colᵀ, which is dw with its axes ordered (oc, kh, kw, c).
// X(o = (kh*KW + kw)*C + c, k = pixel j) = xt[(ih*W + iw)*C + c]: a panel's rows are runs of
// consecutive channels, so packing copies runs of xt (no transposes, no gathers).
class Im2colHwcOperand final : public GemmOperand {
 public:
  Im2colHwcOperand(const float* xt, const Im2colShape& g) : xt_(xt), g_(g) {}
  void pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
            float* dst) const override;

 private:
  const float* xt_;
  Im2colShape g_;
};

// xt [HW, C] = x [C, HW] transposed: an image made channels-last.
void chw_to_hwc(float* xt, const float* x, int64_t C, int64_t HW);

// col [C*KH*KW, OH*OW] overwritten with the im2col matrix of x [C, H, W].
void im2col(float* col, const float* x, const Im2colShape& g);

// x [C, H, W] += col2im of the pixel columns j0 .. j0+nj-1 of a col matrix, given as
// col [C*KH*KW, nj] (row stride nj), for the channels c0 .. c1-1 only: the adjoint of im2col.
// Each x element receives its terms in a fixed order (kh, kw, then pixel), so channel ranges
// may run on different threads and the result does not depend on how they are split.
void col2im_add(float* x, const float* col, const Im2colShape& g, int64_t j0, int64_t nj,
                int64_t c0, int64_t c1);

// Per-ISA variants of the operands' pack (im2col_avx2.cpp, im2col_avx512.cpp); same contract
// as pack(). They return false, writing nothing, for the layouts they do not handle (width not
// a multiple of 8, or 16 for avx512), which then take the next tier's pack down.
bool im2col_pack__avx2(const float* x, const Im2colShape& g, int64_t o0, int64_t no,
                       int64_t k0, int64_t nk, int width, float* dst);
bool im2col_transposed_pack__avx2(const float* x, const Im2colShape& g, int64_t o0, int64_t no,
                                  int64_t k0, int64_t nk, int width, float* dst);
void chw_to_hwc__avx2(float* xt, const float* x, int64_t C, int64_t HW);
bool im2col_pack__avx512(const float* x, const Im2colShape& g, int64_t o0, int64_t no,
                         int64_t k0, int64_t nk, int width, float* dst);

// The batched path's transposed operand (ops/conv2d_batched.cpp, PaddedIm2colOperand): panel
// lane rr, row k = xpad[(r / taps)*HWp + ofs[(r % taps)*ld] + ofs[k0 + k]] for r = o0 + p*width
// + rr < o0 + no, else 0 (ofs: the offset table, tap 0's row first, ofs[0] == 0). Returns
// false, writing nothing, when width is not 16, 32, 48 or 64 or xpad has 2^31 floats or more.
bool padded_im2col_transposed_pack__avx512(const float* xpad, int64_t xpad_floats,
                                           const int64_t* ofs, int64_t ld, int64_t HWp,
                                           int64_t taps, int64_t o0, int64_t no, int64_t k0,
                                           int64_t nk, int width, float* dst);

// The batched forward operand straight from the images, no padded copy: X(o = column n*P + j,
// k = row r) = col_n(r, j), col_n the im2col matrix of image n at x + n*xs (geometry g, one
// image's, P = OH*OW). Applies to "same" rows at stride 1 (OW == W, so pixel j of a tap reads
// x[plane + j + dh*W + dw]) with P a multiple of 16: every 16 columns starting at a multiple
// of 16 are one image's, one masked load per row of col.
inline bool batched_same_rows(const Im2colShape& g) {
  return g.SH == 1 && g.SW == 1 && g.OW == g.W && g.OH * g.OW % 16 == 0;
}
// The portable pack of that operand for any geometry and range, element by element, or the
// AVX-512 one where it applies and the active tier is avx512 (the same floats).
void batched_im2col_pack(const float* x, int64_t xs, const Im2colShape& g, int64_t o0,
                         int64_t no, int64_t k0, int64_t nk, int width, float* dst);
// Returns false, writing nothing, unless batched_same_rows(g), width a multiple of 16 and o0
// of 16, and the plane indices fit int32.
bool batched_im2col_pack__avx512(const float* x, int64_t xs, const Im2colShape& g,
                                 int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
                                 float* dst);

}  // namespace cnnkit
