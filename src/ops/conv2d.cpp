// conv2d: the shape function, the im2col + GEMM lowering of forward and backward, the direct
// path for small few-channel layers, and the direct-loop references. Per image (darknet's
// lowering, with col packed straight from the image by the GEMM instead of materialised):
//   forward  y[OC, OH*OW]     = w[OC, C*KH*KW] · col(x) + b      (1x1 stride 1 unpadded: col = x)
//   weight   dw[OC, C*KH*KW] += dy[OC, OH*OW] · col(x)ᵀ, summed over the batch in fixed groups
//            of images; col packed from the image made channels-last when C % 8 == 0
//   input    dx = col2im(wᵀ · dy), or at stride 1 and C >= 32 the forward convolution of dy
//            with the 180°-rotated, transposed kernel (no col2im)
//   bias     db[OC] = sums of dy, per image group too
// Small layers with few input channels (LeNet, CIFAR stems: conv_direct_plan) skip lowering:
// kernels/conv_direct.hpp convolves each image in place, one thread per image, in the same
// per-image steps and image groups.
// Every result is bit-identical for any thread count: images are independent, and the batch
// reductions (dw, db) use groups fixed by the shape, added in group order.
// Threads: whole images per thread with single-threaded GEMMs whenever the batch splits evenly
// enough over the threads (LeNet, CIFAR, VGG at N = 8 ...); otherwise (N = 1, odd small
// batches) image by image with the GEMM's own threads. See unit_threads.
#include "ops/conv2d.hpp"

#include <algorithm>
#include <string>

#include "kernels/conv_direct.hpp"
#include "kernels/gemm.hpp"
#include "kernels/im2col.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {
std::string tuple(std::initializer_list<int64_t> v) {
  std::string s = "(";
  for (int64_t x : v) s += (s.size() > 1 ? ", " : "") + std::to_string(x);
  return s + ")";
}
}  // namespace

Conv2dShape conv2d_shape(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OC, int64_t KH,
                         int64_t KW, int64_t SH, int64_t SW, int64_t PT, int64_t PB, int64_t PL,
                         int64_t PR, int64_t DH, int64_t DW) {
  if (N < 0 || C < 1 || H < 1 || W < 1)
    throw ShapeError("conv2d: input must have N >= 0 and C, H, W >= 1, got (N, C, H, W) = " +
                     tuple({N, C, H, W}));
  if (OC < 1 || KH < 1 || KW < 1)
    throw ShapeError("conv2d: weight must have out_channels and kernel sizes >= 1, got "
                     "(OC, KH, KW) = " + tuple({OC, KH, KW}));
  if (SH < 1 || SW < 1) throw ShapeError("conv2d: stride must be >= 1, got " + tuple({SH, SW}));
  if (DH < 1 || DW < 1)
    throw ShapeError("conv2d: dilation must be >= 1, got " + tuple({DH, DW}));
  if (PT < 0 || PB < 0 || PL < 0 || PR < 0)
    throw ShapeError("conv2d: padding must be >= 0, got (top, bottom, left, right) = " +
                     tuple({PT, PB, PL, PR}));
  const int64_t ekh = DH * (KH - 1) + 1, ekw = DW * (KW - 1) + 1;  // dilated kernel extent
  if (ekh > H + PT + PB || ekw > W + PL + PR)
    throw ShapeError("conv2d: kernel " + tuple({KH, KW}) +
                     (DH > 1 || DW > 1 ? " (dilated to " + tuple({ekh, ekw}) + ")" : "") +
                     " is larger than the padded input " + tuple({H + PT + PB, W + PL + PR}));
  Conv2dShape s{N, C, H, W, OC, KH, KW, SH, SW, PT, PB, PL, PR, DH, DW, 0, 0};
  s.OH = (H + PT + PB - ekh) / SH + 1;
  s.OW = (W + PL + PR - ekw) / SW + 1;
  return s;
}

void conv2d_forward__ref(float* y, const float* x, const float* w, const float* b,
                         const Conv2dShape& s) {
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oc = 0; oc < s.OC; ++oc)
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          float acc = b ? b[oc] : 0.0f;
          for (int64_t c = 0; c < s.C; ++c)
            for (int64_t kh = 0; kh < s.KH; ++kh) {
              const int64_t ih = oh * s.SH - s.PT + kh * s.DH;
              if (ih < 0 || ih >= s.H) continue;
              for (int64_t kw = 0; kw < s.KW; ++kw) {
                const int64_t iw = ow * s.SW - s.PL + kw * s.DW;
                if (iw < 0 || iw >= s.W) continue;
                acc += x[((n * s.C + c) * s.H + ih) * s.W + iw] *
                       w[((oc * s.C + c) * s.KH + kh) * s.KW + kw];
              }
            }
          y[((n * s.OC + oc) * s.OH + oh) * s.OW + ow] = acc;
        }
}

void conv2d_backward__ref(float* dx, float* dw, float* db, const float* dy, const float* x,
                          const float* w, const Conv2dShape& s) {
  if (dx)
    for (int64_t i = 0; i < s.N * s.C * s.H * s.W; ++i) dx[i] = 0.0f;
  if (dw)
    for (int64_t i = 0; i < s.OC * s.C * s.KH * s.KW; ++i) dw[i] = 0.0f;
  if (db)
    for (int64_t i = 0; i < s.OC; ++i) db[i] = 0.0f;
  // Each forward term y[n,oc,oh,ow] += x[n,c,ih,iw] * w[oc,c,kh,kw] sends dy back to both
  // factors; the bias term sends dy to db.
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oc = 0; oc < s.OC; ++oc)
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          const float g = dy[((n * s.OC + oc) * s.OH + oh) * s.OW + ow];
          if (db) db[oc] += g;
          for (int64_t c = 0; c < s.C; ++c)
            for (int64_t kh = 0; kh < s.KH; ++kh) {
              const int64_t ih = oh * s.SH - s.PT + kh * s.DH;
              if (ih < 0 || ih >= s.H) continue;
              for (int64_t kw = 0; kw < s.KW; ++kw) {
                const int64_t iw = ow * s.SW - s.PL + kw * s.DW;
                if (iw < 0 || iw >= s.W) continue;
                const int64_t xi = ((n * s.C + c) * s.H + ih) * s.W + iw;
                const int64_t wi = ((oc * s.C + c) * s.KH + kh) * s.KW + kw;
                if (dx) dx[xi] += g * w[wi];
                if (dw) dw[wi] += g * x[xi];
              }
            }
        }
}

// ---------------------------------------------------------------------------------------------
// The im2col + GEMM path

namespace {

// Workspace slots of conv2d.
constexpr int kSlotCol = 0;      // col blocks of the input gradient, one per thread
constexpr int kSlotPartial = 1;  // weight-gradient partials (of groups 1 .. G-1, or all G)
constexpr int kSlotRotated = 2;  // the rotated, transposed kernel
constexpr int kSlotImage = 3;    // channels-last images for the weight gradient, one per thread

// The weight gradient sums over the batch in G fixed groups of consecutive images, one
// partial per group, the partials added in group order. G depends on the shape alone (at most
// this many, and partials of at most kMaxPartialFloats in all), so dw is the same for every
// thread count and either threading path; G also caps the threads of this reduction.
constexpr int64_t kWeightGradGroups = 8;
constexpr int64_t kMaxPartialFloats = int64_t{1} << 22;  // 16 MiB

// col2im works on blocks of col [C*KH*KW, nj] of about this many floats (L2-resident), nj a
// multiple of 32, a whole number of GEMM tile columns for every tier (a ragged block of 113
// pixels wasted 12% of the AVX2 GEMM on strided_s2's input gradient).
constexpr int64_t kColBlockFloats = int64_t{1} << 17;
constexpr int64_t kColBlockAlign = 32;

Im2colShape im2col_shape(const Conv2dShape& s) {
  return {s.C, s.H, s.W, s.KH, s.KW, s.SH, s.SW, s.PT, s.PL, s.DH, s.DW, s.OH, s.OW};
}

// A 1x1, stride-1, unpadded convolution: col is the image itself.
bool is_pointwise(const Conv2dShape& s) {
  return s.KH == 1 && s.KW == 1 && s.SH == 1 && s.SW == 1 && s.PT == 0 && s.PB == 0 &&
         s.PL == 0 && s.PR == 0;
}

int64_t image_flops(const Conv2dShape& s) { return 2 * s.OC * s.C * s.KH * s.KW * s.OH * s.OW; }

// Threads over `items` independent units of whole images, each running single-threaded
// GEMMs, when that keeps every thread busy (at most 25% of the slots idle); else 1, and each
// GEMM spreads itself over the threads.
int unit_threads(int64_t items, int64_t flops) {
  const int nt = threads_for(items, flops);
  if (nt <= 1) return 1;
  const int64_t per_thread = (items + nt - 1) / nt;
  return per_thread * nt * 4 <= items * 5 ? nt : 1;
}

// y [OC, OH, OW] = w [OC, C*KH*KW] · col(x [C, H, W]) + b, for one image.
void forward_image(float* y, const float* x, const float* w, const float* b,
                   const Conv2dShape& s) {
  const int64_t P = s.OH * s.OW, K = s.C * s.KH * s.KW;
  GemmEpilogue ep;
  ep.row_bias = b;
  if (is_pointwise(s))
    gemm(s.OC, P, K, 1.0f, gemm_a(w, K, false), gemm_b(x, P, false), 0.0f, y, P, ep);
  else
    gemm(s.OC, P, K, 1.0f, gemm_a(w, K, false), Im2colOperand(x, im2col_shape(s)), 0.0f, y, P,
         ep);
}

// The batch's fixed groups for the reductions over images (see kWeightGradGroups): image n
// belongs to group g when N*g/G <= n < N*(g+1)/G.
int64_t batch_groups(const Conv2dShape& s) {
  const int64_t wsize = s.OC * s.C * s.KH * s.KW;
  const int64_t most = std::max<int64_t>(1, std::min(s.N, kWeightGradGroups));
  return std::clamp<int64_t>(kMaxPartialFloats / wsize, 1, most);
}

// Sum of v[0 .. n): 8 running sums, lane l taking v[8i + l], then added in lane order, then
// the tail. Written out so that every caller sums in exactly this order (no reassociation is
// left to the compiler), which keeps db identical whether or not it is fused with dw.
float row_sum(const float* v, int64_t n) {
  float acc[8] = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; ++l) acc[l] += v[j + l];
  float sum = 0.0f;
  for (int l = 0; l < 8; ++l) sum += acc[l];
  for (; j < n; ++j) sum += v[j];
  return sum;
}

// db [OC] = sums of dy [N, OC, OH, OW]: per group, the row sums of its images in order; then
// the group sums in group order (the order the fused path in conv2d_backward uses too).
void bias_grad(float* db, const float* dy, const Conv2dShape& s) {
  const int64_t P = s.OH * s.OW, groups = batch_groups(s);
  parallel_for(s.OC, s.N * s.OC * P, [&](int64_t o0, int64_t o1, int) {
    for (int64_t oc = o0; oc < o1; ++oc) {
      float acc = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t n0 = s.N * g / groups, n1 = s.N * (g + 1) / groups;
        float group = 0.0f;
        for (int64_t n = n0; n < n1; ++n) {
          const float r = row_sum(dy + (n * s.OC + oc) * P, P);
          group = n == n0 ? r : group + r;
        }
        acc = g == 0 ? group : acc + group;
      }
      db[oc] = acc;
    }
  });
}

// How the input gradient of one image is formed.
enum class InputGradPath {
  pointwise,  // dx [C, H*W] = wᵀ · dy: col2im of a 1x1 stride-1 conv is the identity
  rotated,    // stride 1, padding < the dilated kernel: a forward conv of dy (rotated_shape)
  col2im,     // dx = col2im(wᵀ · dy), in pixel blocks
};

InputGradPath input_grad_path(const Conv2dShape& s) {
  if (is_pointwise(s)) return InputGradPath::pointwise;
  // The rotated path's GEMM has M = C rows and packs the col of dy (OC*KH*KW x H*W) for
  // them; col2im's has M = C*KH*KW and K = OC, plus the scatter. Measured here: rotated wins
  // from C = 32 (VGG 64 -> 64: 18.8 vs 23.6 ms), col2im below (LeNet 6 -> 16: 0.9 vs 1.9 ms).
  const int64_t ekh = s.DH * (s.KH - 1) + 1, ekw = s.DW * (s.KW - 1) + 1;
  if (s.C >= 32 && s.SH == 1 && s.SW == 1 && std::max(s.PT, s.PB) <= ekh - 1 &&
      std::max(s.PL, s.PR) <= ekw - 1)
    return InputGradPath::rotated;
  return InputGradPath::col2im;
}

// At stride 1, dx[c, ih, iw] = sum dy[oc, ih + PT - kh*DH, iw + PL - kw*DW] w[oc, c, kh, kw]:
// the convolution of dy [OC, OH, OW] with wr [C, OC, KH, KW] (wr[c, oc, kh, kw] =
// w[oc, c, KH-1-kh, KW-1-kw]), padded by the dilated kernel extent - 1 - the forward padding,
// which gives an H x W output.
Conv2dShape rotated_shape(const Conv2dShape& s) {
  const int64_t ekh = s.DH * (s.KH - 1) + 1, ekw = s.DW * (s.KW - 1) + 1;
  return conv2d_shape(s.N, s.OC, s.OH, s.OW, s.C, s.KH, s.KW, 1, 1, ekh - 1 - s.PT,
                      ekh - 1 - s.PB, ekw - 1 - s.PL, ekw - 1 - s.PR, s.DH, s.DW);
}

// wr [C, OC, KH, KW] = w [OC, C, KH, KW] with each kernel rotated by 180°.
void rotate_kernel(float* wr, const float* w, const Conv2dShape& s) {
  const int64_t kk = s.KH * s.KW;
  for (int64_t oc = 0; oc < s.OC; ++oc)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t t = 0; t < kk; ++t)
        wr[(c * s.OC + oc) * kk + kk - 1 - t] = w[(oc * s.C + c) * kk + t];
}

// How the weight gradient of one image is formed.
enum class WeightGradPath {
  pointwise,     // dw [OC, C] += dy · xᵀ: col is the image
  channels_last, // dwt [OC, KH*KW*C] += dy · colᵀ in tap-major rows, packed by copying runs
                 // of channels from the image made channels-last (C a multiple of 8)
  transposed,    // dw += dy · colᵀ, packed from NCHW by 8 x 8 transposes
};

WeightGradPath weight_grad_path(const Conv2dShape& s) {
  if (is_pointwise(s)) return WeightGradPath::pointwise;
  // Measured on VGG 64 -> 64: the channels-last pack (transposition included) runs ~2.5x
  // faster than the transposing one.
  if (s.C % 8 == 0) return WeightGradPath::channels_last;
  return WeightGradPath::transposed;
}

// dw [OC, C, KH*KW] = dwt [OC, KH*KW, C] with its last two axes swapped.
void untranspose_taps(float* dw, const float* dwt, const Conv2dShape& s) {
  const int64_t kk = s.KH * s.KW;
  parallel_for(s.OC, s.OC * s.C * kk, [&](int64_t o0, int64_t o1, int) {
    for (int64_t oc = o0; oc < o1; ++oc)
      for (int64_t t = 0; t < kk; ++t)
        for (int64_t c = 0; c < s.C; ++c)
          dw[(oc * s.C + c) * kk + t] = dwt[(oc * kk + t) * s.C + c];
  });
}

// The per-image steps of the backward pass and what they share.
struct Backward {
  const Conv2dShape& s;
  const float* dy;
  const float* x;
  const float* w;
  InputGradPath path;
  WeightGradPath wpath;
  Conv2dShape sr;          // rotated_shape(s), for the rotated path
  const float* wr;         // the rotated kernel, for the rotated path
  int64_t col_block;       // pixel columns per col2im block

  // dw [OC, C*KH*KW] (+)= dy_n [OC, OH*OW] · col(x_n)ᵀ, with dw's axes ordered
  // (oc, kh, kw, c) on the channels-last path; xt: scratch of C*H*W floats for that path.
  void weight_image(float* dw, bool accumulate, int64_t n, float* xt) const {
    const int64_t P = s.OH * s.OW, K = s.C * s.KH * s.KW;
    const float* dyn = dy + n * s.OC * P;
    const float* xn = x + n * s.C * s.H * s.W;
    const float beta = accumulate ? 1.0f : 0.0f;
    const DenseOperand a = gemm_a(dyn, P, false);
    switch (wpath) {
      case WeightGradPath::pointwise:
        gemm(s.OC, K, P, 1.0f, a, gemm_b(xn, P, true), beta, dw, K);
        return;
      case WeightGradPath::channels_last:
        chw_to_hwc(xt, xn, s.C, s.H * s.W);
        gemm(s.OC, K, P, 1.0f, a, Im2colHwcOperand(xt, im2col_shape(s)), beta, dw, K);
        return;
      case WeightGradPath::transposed:
        gemm(s.OC, K, P, 1.0f, a, Im2colTransposedOperand(xn, im2col_shape(s)), beta, dw, K);
        return;
    }
  }

  // dx_n [C, H, W] overwritten; col: scratch of K * col_block floats for the col2im path.
  // threaded: this runs outside a parallel region, so col2im spreads over channels.
  void input_image(float* dxn, int64_t n, float* col, bool threaded) const {
    const int64_t P = s.OH * s.OW, K = s.C * s.KH * s.KW;
    const float* dyn = dy + n * s.OC * P;
    switch (path) {
      case InputGradPath::pointwise:
        gemm(s.C, P, s.OC, 1.0f, gemm_a(w, K, true), gemm_b(dyn, P, false), 0.0f, dxn, P);
        return;
      case InputGradPath::rotated:
        forward_image(dxn, dyn, wr, nullptr, sr);
        return;
      case InputGradPath::col2im:
        break;
    }
    const Im2colShape g = im2col_shape(s);
    std::fill(dxn, dxn + s.C * s.H * s.W, 0.0f);
    for (int64_t j0 = 0; j0 < P; j0 += col_block) {
      const int64_t nj = std::min(col_block, P - j0);
      // col [K, nj] = wᵀ [K, OC] · dy_n [OC, j0 .. j0+nj)
      gemm(K, nj, s.OC, 1.0f, gemm_a(w, K, true), gemm_b(dyn + j0, P, false), 0.0f, col, nj);
      // Channels own disjoint planes of dx_n, so they split over threads without races.
      const int nt = threaded ? threads_for(s.C, K * nj) : 1;
      parallel_chunks(s.C, nt, [&](int64_t c0, int64_t c1, int) {
        col2im_add(dxn, col, g, j0, nj, c0, c1);
      });
    }
  }
};

// ---------------------------------------------------------------------------------------------
// The direct path (kernels/conv_direct.hpp)

constexpr int kSlotDirectWeights = 4;  // the direct kernels' packed weights
constexpr int kSlotDirectScratch = 5;  // per-thread padded images and kernel scratch

using Direct = ConvDirectKind;

// The direct path (kernels/conv_direct.cpp, conv_direct_plan: few input channels, stride 1,
// small images) or the GEMM path, for each pass of this convolution.
ConvDirectPlan direct_plan(const Conv2dShape& s) {
  return conv_direct_plan(s.C, s.OC, s.KH, s.KW, s.SH, s.SW, s.DH, s.DW, s.OH, s.OW);
}

ConvDirectShape direct_shape(const Conv2dShape& s) {
  return conv_direct_shape(s.C, s.H, s.W, s.OC, s.KH, s.KW, s.PT, s.PB, s.PL, s.PR);
}

bool is_padded(const Conv2dShape& s) { return s.PT || s.PB || s.PL || s.PR; }

// The image the kernels read: xp (filled) when the convolution is padded, else x itself.
const float* pad_image(float* xp, const float* x, const Conv2dShape& s,
                       const ConvDirectShape& d) {
  if (!is_padded(s)) return x;
  conv_direct_pad(xp, x, d);
  return xp;
}

// Floats rounded up to whole cache lines, so that per-thread scratch blocks do not share one.
int64_t lines(int64_t n) { return (n + 15) / 16 * 16; }

// y = conv(x, w) + b through the direct kernels, whole images per thread.
void direct_forward(float* y, const float* x, const float* w, const float* b,
                    const Conv2dShape& s, Direct kind, Workspace& ws) {
  const ConvDirectShape d = direct_shape(s);
  const ConvDirectKernels& kern = conv_direct_kernels(active_simd_tier());
  const int64_t K = s.C * s.KH * s.KW, xs = s.C * s.H * s.W, ys = s.OC * s.OH * s.OW;
  float* wk = ws.buffer(kSlotDirectWeights, (K + 1) * d.OCs);
  conv_direct_pack_forward(wk, w, b, d);
  const float* bias = b ? wk + K * d.OCs : nullptr;
  const int64_t xpn = is_padded(s) ? lines(s.C * d.Hp * d.Wp) : 0;
  const int64_t yts = kind == Direct::channels ? lines(conv_direct_forward_oc_scratch(d)) : 0;
  const int64_t per = xpn + yts;
  const int nt = unit_threads(s.N, s.N * image_flops(s));
  float* scratch = ws.buffer(kSlotDirectScratch, static_cast<std::size_t>(nt) * per);
  parallel_chunks(s.N, nt, [&](int64_t n0, int64_t n1, int t) {
    float* xp = scratch + t * per;
    for (int64_t n = n0; n < n1; ++n) {
      const float* xi = pad_image(xp, x + n * xs, s, d);
      if (kind == Direct::width)
        kern.forward_w(y + n * ys, xi, wk, bias, d);
      else
        kern.forward_oc(y + n * ys, xi, wk, bias, xp + xpn, d);
    }
  });
}

}  // namespace

void conv2d_forward(float* y, const float* x, const float* w, const float* b,
                    const Conv2dShape& s, Workspace& ws) {
  if (s.N == 0) return;
  if (const Direct kind = direct_plan(s).forward; kind != Direct::none)
    return direct_forward(y, x, w, b, s, kind, ws);
  const int64_t xs = s.C * s.H * s.W, ys = s.OC * s.OH * s.OW;
  // Whole images per thread when there are enough of them; each image is the same GEMM
  // either way, so y does not depend on the thread count.
  const int nt = unit_threads(s.N, s.N * image_flops(s));
  parallel_chunks(s.N, nt, [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) forward_image(y + n * ys, x + n * xs, w, b, s);
  });
}

void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, const Conv2dShape& s, Workspace& ws) {
  const int64_t K = s.C * s.KH * s.KW, wsize = s.OC * K, xs = s.C * s.H * s.W;
  const int64_t P = s.OH * s.OW;
  if ((!dx && !dw) || s.N == 0) {
    if (db) bias_grad(db, dy, s);
    if (dw) std::fill(dw, dw + wsize, 0.0f);
    return;
  }
  const ConvDirectPlan plan = direct_plan(s);
  const Direct wdirect = dw ? plan.weight : Direct::none;
  const bool xdirect = dx && plan.input;
  const ConvDirectShape d = direct_shape(s);
  const ConvDirectKernels& kern = conv_direct_kernels(active_simd_tier());
  Backward bw{s, dy, x, w, input_grad_path(s), weight_grad_path(s), s, nullptr, 0};
  if (dx && !xdirect && bw.path == InputGradPath::rotated) {
    bw.sr = rotated_shape(s);
    float* wr = ws.buffer(kSlotRotated, wsize);
    rotate_kernel(wr, w, s);
    bw.wr = wr;
  }
  bw.col_block = std::min(P, std::max(kColBlockAlign,
                                      kColBlockFloats / K / kColBlockAlign * kColBlockAlign));
  float* wt = nullptr;
  if (xdirect) {
    wt = ws.buffer(kSlotDirectWeights, wsize);
    conv_direct_pack_input(wt, w, d);
  }

  // Group g holds images [N*g/G, N*(g+1)/G) and sums them into its partial of dw, laid out
  // as its kernel accumulates:
  //   plain          dw itself for g = 0 (GEMM, transposed or pointwise pack)
  //   tap_major      [OC, KH*KW, C] (GEMM, channels-last pack)
  //   lanes          [OC*K, 16] lane partials (direct, over width)
  //   channels_last  [K, OCs] (direct, over channels)
  // db is summed here too, per group, while each image's dy is in cache.
  enum class Layout { plain, tap_major, lanes, channels_last };
  const Layout layout = wdirect == Direct::width      ? Layout::lanes
                        : wdirect == Direct::channels ? Layout::channels_last
                        : bw.wpath == WeightGradPath::channels_last ? Layout::tap_major
                                                                    : Layout::plain;
  const int64_t psize = layout == Layout::lanes           ? wsize * kConvDirectLanes
                        : layout == Layout::channels_last ? K * d.OCs
                                                          : wsize;
  const int64_t groups = batch_groups(s);
  const int64_t dw_partials = !dw ? 0 : layout == Layout::plain ? groups - 1 : groups;
  float* partials = ws.buffer(kSlotPartial, dw_partials * psize + (db ? groups * s.OC : 0));
  float* db_partials = partials + dw_partials * psize;
  auto partial = [&](int64_t g) {
    return layout != Layout::plain ? partials + g * psize
           : g == 0               ? dw
                                  : partials + (g - 1) * psize;
  };
  const int nt = unit_threads(groups, 3 * s.N * image_flops(s));
  const bool gemm_cols = dx && !xdirect && bw.path == InputGradPath::col2im;
  float* cols = gemm_cols
                    ? ws.buffer(kSlotCol, static_cast<std::size_t>(nt) * K * bw.col_block)
                    : nullptr;
  float* images = layout == Layout::tap_major
                      ? ws.buffer(kSlotImage, static_cast<std::size_t>(nt) * xs)
                      : nullptr;
  // Per thread for the direct kernels: the padded image, the channels-last dy, padded dy.
  const int64_t xpn = wdirect != Direct::none && is_padded(s) ? lines(s.C * d.Hp * d.Wp) : 0;
  const int64_t dytn = wdirect == Direct::channels ? lines(conv_direct_weight_oc_scratch(d)) : 0;
  const int64_t dypn = xdirect ? lines(conv_direct_input_scratch(d)) : 0;
  const int64_t per = xpn + dytn + dypn;
  float* scratch = per ? ws.buffer(kSlotDirectScratch, static_cast<std::size_t>(nt) * per)
                       : nullptr;
  parallel_chunks(groups, nt, [&](int64_t g0, int64_t g1, int t) {
    float* xp = scratch ? scratch + t * per : nullptr;
    float* dyt = xp ? xp + xpn : nullptr;
    float* dyp = xp ? dyt + dytn : nullptr;
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t n0 = s.N * g / groups, n1 = s.N * (g + 1) / groups;
      if (wdirect != Direct::none) std::fill(partial(g), partial(g) + psize, 0.0f);
      for (int64_t n = n0; n < n1; ++n) {
        const float* dyn = dy + n * s.OC * P;
        if (db)
          for (int64_t oc = 0; oc < s.OC; ++oc) {
            const float r = row_sum(dyn + oc * P, P);
            float& group = db_partials[g * s.OC + oc];
            group = n == n0 ? r : group + r;
          }
        if (wdirect == Direct::width)
          kern.weight_w(partial(g), pad_image(xp, x + n * xs, s, d), dyn, d);
        else if (wdirect == Direct::channels)
          kern.weight_oc(partial(g), pad_image(xp, x + n * xs, s, d), dyn, dyt, d);
        else if (dw)
          bw.weight_image(partial(g), n > n0, n, images ? images + t * xs : nullptr);
        if (xdirect)
          kern.input(dx + n * xs, dyn, wt, dyp, d);
        else if (dx)
          bw.input_image(dx + n * xs, n, cols ? cols + t * K * bw.col_block : nullptr,
                         nt == 1);
      }
    }
  });
  if (db)
    for (int64_t oc = 0; oc < s.OC; ++oc) {
      float acc = db_partials[oc];
      for (int64_t g = 1; g < groups; ++g) acc += db_partials[g * s.OC + oc];
      db[oc] = acc;
    }
  if (!dw) return;
  float* p0 = partial(0);
  if (groups > 1) {
    // p0 += p1, then p2, ...: every element summed in group order.
    parallel_for(psize, groups * psize, [&](int64_t e0, int64_t e1, int) {
      for (int64_t g = 1; g < groups; ++g) {
        const float* p = partial(g);
#pragma omp simd
        for (int64_t e = e0; e < e1; ++e) p0[e] += p[e];
      }
    });
  }
  switch (layout) {
    case Layout::plain: return;
    case Layout::tap_major: untranspose_taps(dw, p0, s); return;
    case Layout::lanes:  // the lanes of each element, added in lane order
      for (int64_t i = 0; i < wsize; ++i) {
        float acc = p0[i * kConvDirectLanes];
        for (int64_t l = 1; l < kConvDirectLanes; ++l) acc += p0[i * kConvDirectLanes + l];
        dw[i] = acc;
      }
      return;
    case Layout::channels_last:
      for (int64_t oc = 0; oc < s.OC; ++oc)
        for (int64_t k = 0; k < K; ++k) dw[oc * K + k] = p0[k * d.OCs + oc];
      return;
  }
}

}  // namespace cnnkit
