// conv2d with the batch folded into the GEMM's N dimension, for small output maps (see
// conv2d_batched.hpp). The batch runs in chunks of nb images fixed by the shape (col capped at
// kMaxColFloats), each group of a grouped convolution in turn; within a chunk:
//   col [K, nb*P]  (K = C/G*KH*KW, P = OH*OW; column n*P + j: pixel j of image n) of x, never
//            materialised: the GEMMs pack it from a zero-padded copy of x (PaddedIm2colOperand),
//            or the forward's straight from x for "same" rows at stride 1 with 16k pixels a
//            map on the avx512 tier (batched_im2col_pack: one masked load per 16 columns)
//   forward  yt [OC/G, nb*P] = w_g · col + b_g (the GEMM's row-bias epilogue), scattered to y
//   backward dyt [OC/G, nb*P] gathered from dy; dw_g (+)= dyt · colᵀ (chunk 0 overwrites,
//            later chunks add in chunk order, B = colᵀ packed from xpad); the scratch of xpad
//            then holds dcol = w_gᵀ · dyt, materialised for col2im.
// Threads: each GEMM spreads over the threads itself, splitting C tiles with the same K order
// on every thread; the gathers and scatters split rows or (image, channel) planes that each
// write disjoint floats in a fixed order. So every result is the same for any thread count.
// dw sums over the batch in one K = nb*P reduction (the GEMM's K order: images in order, then
// pixels), not in the per-image path's image groups, so its rounding differs from that path's.
#include "ops/conv2d_batched.hpp"

#include <algorithm>
#include <cstring>

#include "kernels/gemm.hpp"
#include "kernels/im2col.hpp"
#include "ops/conv2d_rotated.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {

// Output maps of at most this many pixels take the batched path. Measured on the AVX-512 tier
// (8 x 32 tiles), 1 thread, N = 16, 3x3 forward + backward: 2x2 512 -> 512 47.9 -> 6.0 ms,
// 4x4 256 -> 256 11.3 -> 5.4 ms, 7x7 512 -> 512 80.6 -> 63.8 ms (49 pixels fill 2 tiles of 32
// to 77%); but 8x8 128 -> 128 5.1 -> 6.6 ms: 64 pixels fill the tiles and the per-image path
// packs col straight from the image.
constexpr int64_t kBatchedMaxPixels = 49;

// col of one chunk is at most this many floats (8 MiB), or one image's when that is more:
// 9 images of 512 channels at 7x7 (441 GEMM columns), all 16 of ResNet-18's 4x4 and 2x2 maps.
constexpr int64_t kMaxColFloats = int64_t{1} << 21;

int64_t col_rows(const Conv2dShape& s) { return s.C / s.G * s.KH * s.KW; }

// Images per chunk: as many as keep col within kMaxColFloats, at least 1.
int64_t chunk_images(const Conv2dShape& s) {
  const int64_t per_image = col_rows(s) * s.OH * s.OW;
  return std::clamp<int64_t>(kMaxColFloats / per_image, 1, std::max<int64_t>(s.N, 1));
}

// dx [nb, C, H, W] (image stride xs) overwritten with col2im of dcol [K, ld] (the layout of
// PaddedIm2colOperand's col): the adjoint of im2col. Threads take (image, channel) planes; each element
// receives its terms in a fixed order (kh, kw, then pixel).
void col2im_batched(float* dx, int64_t xs, const float* dcol, int64_t ld, int64_t nb,
                    const Conv2dShape& s) {
  const int64_t C = s.C / s.G, P = s.OH * s.OW, HW = s.H * s.W;
  parallel_for(nb * C, col_rows(s) * nb * P, [&](int64_t u0, int64_t u1, int) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t n = u / C, c = u % C;
      float* xp = dx + n * xs + c * HW;
      std::fill(xp, xp + HW, 0.0f);
      for (int64_t kh = 0; kh < s.KH; ++kh)
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const float* src = dcol + ((c * s.KH + kh) * s.KW + kw) * ld + n * P;
          for (int64_t oh = 0; oh < s.OH; ++oh) {
            const int64_t ih = oh * s.SH - s.PT + kh * s.DH;
            if (ih < 0 || ih >= s.H) continue;
            for (int64_t ow = 0; ow < s.OW; ++ow) {
              const int64_t iw = ow * s.SW - s.PL + kw * s.DW;
              if (iw >= 0 && iw < s.W) xp[ih * s.W + iw] += src[oh * s.OW + ow];
            }
          }
        }
    }
  });
}

// Forward im2col without the col: the chunk's images are copied once into xpad, zero padded
// to Hp x Wp (every tap of every output inside it), and the forward product's B operand
// X(o = column n*P + j, k = row r) = col(r, n*P + j) packs straight from xpad through a table
// of offsets per (tap, column): pack is then a branch-free gather into the L1/L2-resident
// panel, instead of writing col (2.4 MB for ResNet-18's 4x4 256-channel layer) and reading it
// back. Packing is pure copying: the panels, and so the product, are exactly those of col.
struct PadGeom {
  int64_t Hp, Wp;
};
PadGeom pad_geom(const Conv2dShape& s) {
  return {(s.OH - 1) * s.SH + (s.KH - 1) * s.DH + 1, (s.OW - 1) * s.SW + (s.KW - 1) * s.DW + 1};
}

// Floats of xpad for nb images, rounded up to even (the offset table after it is int64).
int64_t xpad_floats(const Conv2dShape& s, int64_t nb) {
  const PadGeom pg = pad_geom(s);
  return (nb * (s.C / s.G) * pg.Hp * pg.Wp + 1) / 2 * 2;
}

// Floats of xpad plus the offset table (int64, 2 floats each) for nb images.
int64_t implicit_floats(const Conv2dShape& s, int64_t nb) {
  return xpad_floats(s, nb) + 2 * s.KH * s.KW * nb * s.OH * s.OW;
}

// A run of a panel row: len floats to dst[0 ..) of the row from xpad at src (+ the tap's
// offset). Runs are short (an output row: 4 floats for a 4x4 map), so the common lengths are
// fixed-size copies (one vector move each), not library calls.
struct Run {
  int64_t dst, len, src;
};
constexpr int kMaxRunWidth = 64;

inline void copy_run(float* d, const float* s, int64_t len) {
  switch (len) {
    case 2: std::memcpy(d, s, 2 * sizeof(float)); return;
    case 4: std::memcpy(d, s, 4 * sizeof(float)); return;
    case 8: std::memcpy(d, s, 8 * sizeof(float)); return;
    case 16: std::memcpy(d, s, 16 * sizeof(float)); return;
    default:
      for (int64_t i = 0; i < len; ++i) d[i] = s[i];
  }
}

class PaddedIm2colOperand final : public GemmOperand {
 public:
  // x: nb images (stride xs) of the group's channels; buf: implicit_floats(s, nb) floats,
  // 8-byte aligned.
  // transposed: colᵀ instead, X(o = row r, k = column n*P + j), the weight gradient's B.
  PaddedIm2colOperand(const float* x, int64_t xs, int64_t nb, const Conv2dShape& s,
                      float* buf, bool transposed = false)
      : s_(s), pg_(pad_geom(s)), ld_(nb * s.OH * s.OW), transposed_(transposed),
        xpad_n_(nb * (s.C / s.G) * pg_.Hp * pg_.Wp), tier_(active_simd_tier()), x_(x), xs_(xs),
        g_{s.C / s.G, s.H, s.W, s.KH, s.KW, s.SH, s.SW, s.PT, s.PL, s.DH, s.DW, s.OH, s.OW} {
    const int64_t C = s.C / s.G, HWp = pg_.Hp * pg_.Wp;
    xpad_ = buf;
    ofs_ = reinterpret_cast<int64_t*>(buf + xpad_floats(s, nb));
    // The forward operand of "same" rows at stride 1 packs straight from x on the avx512 tier
    // (batched_im2col_pack__avx512): no padded copy, no offset table.
    direct_ = !transposed && tier_ == SimdTier::avx512 && batched_same_rows(g_);
    if (direct_) return;
    parallel_for(nb * C, nb * C * HWp, [&](int64_t u0, int64_t u1, int) {
      for (int64_t u = u0; u < u1; ++u) {
        const float* xc = x + u / C * xs + u % C * s.H * s.W;
        float* dc = xpad_ + u * HWp;
        // row ip of xpad: zeros, then x's row ip - PT over columns [j0, j1), then zeros
        const int64_t j0 = std::min(s.PL, pg_.Wp), j1 = std::max(j0, std::min(pg_.Wp, s.PL + s.W));
        for (int64_t ip = 0; ip < pg_.Hp; ++ip) {
          const int64_t ih = ip - s.PT;
          float* d = dc + ip * pg_.Wp;
          if (ih < 0 || ih >= s.H) {
            std::fill(d, d + pg_.Wp, 0.0f);
            continue;
          }
          // Element loops, not fill/copy: rows are a few floats (6 for a 4x4 map), where
          // three library calls per row cost more than the copying.
          const float* row = xc + ih * s.W - s.PL;
          for (int64_t j = 0; j < j0; ++j) d[j] = 0.0f;
          for (int64_t j = j0; j < j1; ++j) d[j] = row[j];
          for (int64_t j = j1; j < pg_.Wp; ++j) d[j] = 0.0f;
        }
      }
    });
    for (int64_t kh = 0; kh < s.KH; ++kh)
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        int64_t* t = ofs_ + (kh * s.KW + kw) * ld_;
        for (int64_t n = 0; n < nb; ++n)
          for (int64_t oh = 0; oh < s.OH; ++oh)
            for (int64_t ow = 0; ow < s.OW; ++ow)
              *t++ = n * C * HWp + (oh * s.SH + kh * s.DH) * pg_.Wp + ow * s.SW + kw * s.DW;
      }
  }

  void pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
            float* dst) const override {
    const int64_t panels = (no + width - 1) / width, taps = s_.KH * s_.KW;
    const int64_t HWp = pg_.Hp * pg_.Wp;
    if (direct_) {
      batched_im2col_pack(x_, xs_, g_, o0, no, k0, nk, width, dst);
      return;
    }
    if (transposed_) {
#ifdef CNNKIT_HAVE_AVX512
      if (tier_ == SimdTier::avx512 &&
          padded_im2col_transposed_pack__avx512(xpad_, xpad_n_, ofs_, ld_, HWp, taps, o0, no, k0,
                                                nk, width, dst))
        return;
#endif
      // Panel p, lane rr: row o0 + p*width + rr of col along columns k0 .. k0+nk-1.
      for (int64_t p = 0; p < panels; ++p) {
        float* d = dst + p * nk * width;
        const int64_t oa = o0 + p * width, len = std::min<int64_t>(width, o0 + no - oa);
        for (int64_t rr = 0; rr < len; ++rr) {
          const int64_t r = oa + rr;
          const float* xc = xpad_ + r / taps * HWp;
          const int64_t* of = ofs_ + r % taps * ld_ + k0;
          for (int64_t k = 0; k < nk; ++k) d[k * width + rr] = xc[of[k]];
        }
        for (int64_t rr = len; rr < width; ++rr)
          for (int64_t k = 0; k < nk; ++k) d[k * width + rr] = 0.0f;
      }
      return;
    }
    if (s_.SW == 1 && width <= kMaxRunWidth) {
      // Stride 1: the panel's columns are runs of consecutive pixels of an output row, which
      // read consecutive floats of xpad for every tap: copied run by run.
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t oa = o0 + p * width, len = std::min<int64_t>(width, o0 + no - oa);
        Run runs[kMaxRunWidth];
        int nr = 0;
        for (int64_t i = 0; i < len; ++nr) {  // tap (0, 0) reads xpad at the run's base
          int64_t e = i + 1;
          while (e < len && ofs_[oa + e] == ofs_[oa + e - 1] + 1) ++e;
          runs[nr] = {i, e - i, ofs_[oa + i]};
          i = e;
        }
        float* d = dst + p * nk * width;
        for (int64_t k = 0; k < nk; ++k, d += width) {
          const int64_t r = k0 + k, tap = r % taps;
          const float* xc = xpad_ + r / taps * HWp + (ofs_[tap * ld_] - ofs_[0]);
          for (int q = 0; q < nr; ++q) copy_run(d + runs[q].dst, xc + runs[q].src, runs[q].len);
          for (int64_t i = len; i < width; ++i) d[i] = 0.0f;
        }
      }
      return;
    }
    for (int64_t k = 0; k < nk; ++k) {
      const int64_t r = k0 + k;
      const float* xc = xpad_ + r / taps * HWp;
      const int64_t* ofs = ofs_ + r % taps * ld_;
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t oa = o0 + p * width, len = std::min<int64_t>(width, o0 + no - oa);
        float* d = dst + (p * nk + k) * width;
        const int64_t* of = ofs + oa;
        for (int64_t i = 0; i < len; ++i) d[i] = xc[of[i]];
        for (int64_t i = len; i < width; ++i) d[i] = 0.0f;
      }
    }
  }

 private:
  Conv2dShape s_;
  PadGeom pg_;
  int64_t ld_;
  bool transposed_;
  int64_t xpad_n_;  // floats of xpad
  SimdTier tier_;
  const float* x_;  // the images (stride xs_), read in place when direct_
  int64_t xs_;
  Im2colShape g_;   // one image's geometry, the group's channels
  bool direct_ = false;
  float* xpad_;
  int64_t* ofs_;
};

// f [rows, ld] (column n*P + j: pixel j of image n) = the per-image t [nb, rows, P] (image
// stride ts) with the batch folded into its columns; unfold is the inverse. Threads take rows.
void fold(float* f, int64_t ld, const float* t, int64_t ts, int64_t rows, int64_t nb,
          int64_t P) {
  parallel_for(rows, rows * nb * P, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t n = 0; n < nb; ++n)
        std::copy(t + n * ts + r * P, t + n * ts + r * P + P, f + r * ld + n * P);
  });
}

void unfold(float* t, int64_t ts, const float* f, int64_t ld, int64_t rows, int64_t nb,
            int64_t P) {
  parallel_for(rows, rows * nb * P, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t n = 0; n < nb; ++n)
        std::copy(f + r * ld + n * P, f + r * ld + n * P + P, t + n * ts + r * P);
  });
}

}  // namespace

bool conv2d_batched_applies(const Conv2dShape& s) {
  return s.OH * s.OW <= kBatchedMaxPixels;
}

// Floats of the forward's weights packed in the GEMM's A panels, all groups (0 without a
// blocked kernel): packed once per call, split over the threads, and read in place by every
// chunk's GEMM, where each of its threads would otherwise pack all of A itself.
int64_t packed_weight_floats(const Conv2dShape& s) {
  const GemmKernel* kr = gemm_kernel(active_simd_tier());
  return kr ? s.G * PrepackedOperand::floats(s.OC / s.G, col_rows(s), kr->MR) : 0;
}

std::size_t conv2d_batched_scratch(const Conv2dShape& s) {
  const int64_t nb = chunk_images(s), ld = nb * s.OH * s.OW;
  return static_cast<std::size_t>(std::max(col_rows(s) * ld, implicit_floats(s, nb)) +
                                  s.OC / s.G * ld + packed_weight_floats(s));
}

void conv2d_forward_batched(float* y, const float* x, const float* w, const float* b,
                            const Conv2dShape& s, float* scratch) {
  const int64_t K = col_rows(s), OCg = s.OC / s.G, Cg = s.C / s.G, P = s.OH * s.OW;
  const int64_t xs = s.C * s.H * s.W, ys = s.OC * P, nbmax = chunk_images(s);
  // scratch: xpad and the offset table (forward), or col (backward), then yt.
  float* yt = scratch + std::max(K * nbmax * P, implicit_floats(s, nbmax));
  // then the packed weights (packed_weight_floats), when the GEMMs would pack A more than
  // once: several chunks, column panels, or threads splitting columns (each packing all of
  // A). Else prepacking only adds a pass over memory: ResNet-18's 2x2 512 -> 512 layer (9 MB
  // of weights, 1 thread, rows split at 2) measured 1.93 -> 2.16 ms forward with it.
  const GemmKernel* kr = gemm_kernel(active_simd_tier());
  bool prepack = false;
  if (kr) {
    const GemmSplit split = gemm_split(*kr, OCg, nbmax * P, K);
    prepack = s.N > nbmax || nbmax * P > kr->NC || (split.threads > 1 && split.columns);
  }
  const int64_t wpg = prepack ? PrepackedOperand::floats(OCg, K, kr->MR) : 0;
  float* wp = yt + OCg * nbmax * P;
  if (prepack)
    for (int64_t g = 0; g < s.G; ++g)
      gemm_prepack(gemm_a(w + g * OCg * K, K, false), OCg, K, kr->MR, wp + g * wpg);
  for (int64_t n0 = 0; n0 < s.N; n0 += nbmax) {
    const int64_t nb = std::min(nbmax, s.N - n0), ld = nb * P;
    for (int64_t g = 0; g < s.G; ++g) {
      GemmEpilogue ep;
      ep.row_bias = b ? b + g * OCg : nullptr;
      const DenseOperand wd = gemm_a(w + g * OCg * K, K, false);
      const PrepackedOperand wpo(wp + g * wpg, OCg, K, prepack ? kr->MR : 0, wd);
      gemm(OCg, ld, K, 1.0f, prepack ? static_cast<const GemmOperand&>(wpo) : wd,
           PaddedIm2colOperand(x + n0 * xs + g * Cg * s.H * s.W, xs, nb, s, scratch), 0.0f, yt,
           ld, ep);
      unfold(y + n0 * ys + g * OCg * P, ys, yt, ld, OCg, nb, P);
    }
  }
}

// The rotated input gradient's GEMM has M = C/G rows, K = OC/G*KH*KW and nb*H*W columns; its
// A (the rotated kernel, K-contiguous) is packed by transposes once per chunk, which the
// columns must amortise. Measured (AVX-512, 1 thread, N = 16): 4x4 256 -> 256 (256 columns)
// dx 1.91 -> 1.81 ms over col2im; 2x2 512 -> 512 (64 columns) 2.3 -> 3.5 ms.
constexpr int64_t kRotatedMinColumns = 256;

bool conv2d_batched_rotated_pays(const Conv2dShape& s) {
  return std::min(chunk_images(s), std::max<int64_t>(s.N, 1)) * s.H * s.W >= kRotatedMinColumns;
}

// Floats of one group's rotated kernel in the GEMM's A panels (0 without a blocked kernel).
int64_t packed_rotated_floats(const Conv2dShape& sr) {
  const GemmKernel* kr = gemm_kernel(active_simd_tier());
  return kr ? PrepackedOperand::floats(sr.OC, sr.C * sr.KH * sr.KW, kr->MR) : 0;
}

std::size_t conv2d_batched_rotated_scratch(const Conv2dShape& s, const Conv2dShape& sr) {
  const int64_t nb = chunk_images(s);
  return static_cast<std::size_t>(implicit_floats(sr, nb) + sr.OC * nb * sr.OH * sr.OW +
                                  s.G * packed_rotated_floats(sr));
}

void conv2d_backward_batched(float* dx, float* dw, const float* dy, const float* x,
                             const float* w, const Conv2dShape& s, float* scratch,
                             const Conv2dShape* sr, float* rscratch) {
  const int64_t K = col_rows(s), OCg = s.OC / s.G, Cg = s.C / s.G, P = s.OH * s.OW;
  const int64_t xs = s.C * s.H * s.W, ys = s.OC * P, nbmax = chunk_images(s);
  float* col = scratch;  // xpad and the offset table for dw, then col for dx
  float* dyt = scratch + std::max(K * nbmax * P, implicit_floats(s, nbmax));
  // The rotated input gradient: rscratch holds dy's xpad and offsets, dxt, then the rotated
  // kernels in A panels (packed once per call from w).
  const GemmKernel* kr = gemm_kernel(active_simd_tier());
  const int64_t Kr = OCg * s.KH * s.KW;
  float* dxt = nullptr;
  float* wrp = nullptr;
  int64_t wrpg = 0;
  if (dx && sr) {
    dxt = rscratch + implicit_floats(*sr, nbmax);
    wrp = dxt + Cg * nbmax * s.H * s.W;
    wrpg = packed_rotated_floats(*sr);
    if (kr)
      for (int64_t g = 0; g < s.G; ++g)
        RotatedKernelOperand(w + g * OCg * K, Cg, OCg, s.KH, s.KW).prepack(kr->MR, wrp + g * wrpg);
  }
  for (int64_t n0 = 0; n0 < s.N; n0 += nbmax) {
    const int64_t nb = std::min(nbmax, s.N - n0), ld = nb * P;
    for (int64_t g = 0; g < s.G; ++g) {
      fold(dyt, ld, dy + n0 * ys + g * OCg * P, ys, OCg, nb, P);
      if (dw)
        gemm(OCg, K, ld, 1.0f, gemm_a(dyt, ld, false),
             PaddedIm2colOperand(x + n0 * xs + g * Cg * s.H * s.W, xs, nb, s, col, true),
             n0 == 0 ? 0.0f : 1.0f, dw + g * OCg * K, K);
      if (dx && sr) {
        // dxt [Cg, nb*H*W] = wr_g · col(dy), then unfolded into dx.
        const int64_t ldr = nb * s.H * s.W;
        const RotatedKernelOperand wro(w + g * OCg * K, Cg, OCg, s.KH, s.KW);
        const PrepackedOperand wrpo(wrp + g * wrpg, Cg, Kr, kr ? kr->MR : 0, wro);
        gemm(Cg, ldr, Kr, 1.0f, kr ? static_cast<const GemmOperand&>(wrpo) : wro,
             PaddedIm2colOperand(dy + n0 * ys + g * OCg * P, ys, nb, *sr, rscratch), 0.0f, dxt,
             ldr);
        unfold(dx + n0 * xs + g * Cg * s.H * s.W, xs, dxt, ldr, Cg, nb, s.H * s.W);
      } else if (dx) {
        gemm(K, ld, OCg, 1.0f, gemm_a(w + g * OCg * K, K, true), gemm_b(dyt, ld, false), 0.0f,
             col, ld);
        col2im_batched(dx + n0 * xs + g * Cg * s.H * s.W, xs, col, ld, nb, s);
      }
    }
  }
}

}  // namespace cnnkit
