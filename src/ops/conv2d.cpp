// conv2d: the shape function, the im2col + GEMM lowering of forward and backward, the direct
// path for small few-channel layers, and the direct-loop references. Per image (darknet's
// lowering, with col packed straight from the image by the GEMM instead of materialised):
//   forward  y[OC, OH*OW]     = w[OC, C*KH*KW] · col(x) + b      (1x1 stride 1 unpadded: col = x)
//   weight   dw[OC, C*KH*KW] += dy[OC, OH*OW] · col(x)ᵀ, summed over the batch in fixed groups
//            of images; col packed from the image made channels-last when C % 8 == 0
//   input    dx = col2im(wᵀ · dy), or at stride 1 and C >= 32 the forward convolution of dy
//            with the 180°-rotated, transposed kernel (no col2im)
//   bias     db[OC] = sums of dy, per image group too
// Stride-1 layers of at most 64 input channels on images of at most 64 x 64 outputs (LeNet,
// CIFAR, VGG's 64 -> 64: conv_direct_plan) skip lowering:
// kernels/conv_direct.hpp convolves each image in place, one thread per image, in the same
// per-image steps and image groups.
// Small output maps (ResNet's 4x4 and 2x2) fold the batch into the GEMM's N dimension instead
// of running per image: ops/conv2d_batched.hpp.
// Groups: each of the G groups is a convolution of its own (group_shape: C/G input and OC/G
// output channels) that every step above runs unchanged, on pointers offset to the group's
// channels, while images stay C*H*W (and OC*OH*OW) floats apart; the units of work are then
// (image, group) pairs. Depthwise convolutions (G == C: one input channel per group) run the
// per-channel kernels of kernels/conv_depthwise.hpp instead, (image, channel) planes per unit.
// Every result is bit-identical for any thread count: images are independent, and the batch
// reductions (dw, db) use groups fixed by the shape, added in group order.
// Threads: whole images per thread with single-threaded GEMMs whenever the batch splits evenly
// enough over the threads (LeNet, CIFAR, VGG at N = 8 ...); otherwise (N = 1, odd small
// batches) image by image with the GEMM's own threads. See unit_threads.
#include "ops/conv2d.hpp"

#include <algorithm>
#include <string>

#include "kernels/conv_depthwise.hpp"
#include "kernels/conv_direct.hpp"
#include "kernels/gemm.hpp"
#include "kernels/im2col.hpp"
#include "ops/conv2d_batched.hpp"
#include "ops/conv2d_phase.hpp"
#include "ops/conv2d_rotated.hpp"
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
                         int64_t PR, int64_t DH, int64_t DW, int64_t G) {
  if (N < 0 || C < 1 || H < 1 || W < 1)
    throw ShapeError("conv2d: input must have N >= 0 and C, H, W >= 1, got (N, C, H, W) = " +
                     tuple({N, C, H, W}));
  if (OC < 1 || KH < 1 || KW < 1)
    throw ShapeError("conv2d: weight must have out_channels and kernel sizes >= 1, got "
                     "(OC, KH, KW) = " + tuple({OC, KH, KW}));
  if (G < 1 || C % G != 0 || OC % G != 0)
    throw ShapeError("conv2d: groups must be >= 1 and divide in_channels and out_channels, got "
                     "groups = " + std::to_string(G) + " for (C, OC) = " + tuple({C, OC}));
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
  Conv2dShape s{N, C, H, W, OC, KH, KW, SH, SW, PT, PB, PL, PR, DH, DW, 0, 0, G};
  s.OH = (H + PT + PB - ekh) / SH + 1;
  s.OW = (W + PL + PR - ekw) / SW + 1;
  return s;
}

// Output channel oc belongs to group oc / (OC/G) and reads its C/G input channels, from
// c0 = group * C/G; w[oc, c - c0, kh, kw].
void conv2d_forward__ref(float* y, const float* x, const float* w, const float* b,
                         const Conv2dShape& s) {
  const int64_t Cg = s.C / s.G, OCg = s.OC / s.G;
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oc = 0; oc < s.OC; ++oc)
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          float acc = b ? b[oc] : 0.0f;
          for (int64_t c = oc / OCg * Cg; c < (oc / OCg + 1) * Cg; ++c)
            for (int64_t kh = 0; kh < s.KH; ++kh) {
              const int64_t ih = oh * s.SH - s.PT + kh * s.DH;
              if (ih < 0 || ih >= s.H) continue;
              for (int64_t kw = 0; kw < s.KW; ++kw) {
                const int64_t iw = ow * s.SW - s.PL + kw * s.DW;
                if (iw < 0 || iw >= s.W) continue;
                acc += x[((n * s.C + c) * s.H + ih) * s.W + iw] *
                       w[((oc * Cg + c % Cg) * s.KH + kh) * s.KW + kw];
              }
            }
          y[((n * s.OC + oc) * s.OH + oh) * s.OW + ow] = acc;
        }
}

void conv2d_backward__ref(float* dx, float* dw, float* db, const float* dy, const float* x,
                          const float* w, const Conv2dShape& s) {
  const int64_t Cg = s.C / s.G, OCg = s.OC / s.G;
  if (dx)
    for (int64_t i = 0; i < s.N * s.C * s.H * s.W; ++i) dx[i] = 0.0f;
  if (dw)
    for (int64_t i = 0; i < s.OC * Cg * s.KH * s.KW; ++i) dw[i] = 0.0f;
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
          for (int64_t c = oc / OCg * Cg; c < (oc / OCg + 1) * Cg; ++c)
            for (int64_t kh = 0; kh < s.KH; ++kh) {
              const int64_t ih = oh * s.SH - s.PT + kh * s.DH;
              if (ih < 0 || ih >= s.H) continue;
              for (int64_t kw = 0; kw < s.KW; ++kw) {
                const int64_t iw = ow * s.SW - s.PL + kw * s.DW;
                if (iw < 0 || iw >= s.W) continue;
                const int64_t xi = ((n * s.C + c) * s.H + ih) * s.W + iw;
                const int64_t wi = ((oc * Cg + c % Cg) * s.KH + kh) * s.KW + kw;
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
constexpr int kSlotPartial = 1;  // weight-gradient partials (of image groups 1 .. B-1, or all)
constexpr int kSlotRotated = 2;  // the rotated, transposed kernel
constexpr int kSlotImage = 3;    // channels-last images for the weight gradient, one per thread
constexpr int kSlotPackedWeights = 6;  // the forward's weights in the GEMM's A panels

// The weight gradient sums over the batch in B fixed groups of consecutive images (image
// groups, not to be confused with the convolution's groups G), one partial per image group,
// the partials added in group order. B depends on the shape alone (at most this many, and
// partials of at most kMaxPartialFloats in all), so dw is the same for every thread count and
// either threading path; B also caps the threads of this reduction (times G).
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

int64_t image_flops(const Conv2dShape& s) {
  return 2 * s.OC * (s.C / s.G) * s.KH * s.KW * s.OH * s.OW;
}

// One group of a grouped convolution as a convolution of its own: C/G input and OC/G output
// channels. Run on the group's slices of x, w, b, y (and their gradients), with the batch
// strides of the whole tensors.
Conv2dShape group_shape(const Conv2dShape& s) {
  Conv2dShape g = s;
  g.C /= s.G, g.OC /= s.G, g.G = 1;
  return g;
}

// One input channel per group: the depthwise kernels' case. (G == 1 with C == 1 is an
// ordinary convolution, LeNet's first layer, which the direct path handles.)
bool is_depthwise(const Conv2dShape& s) { return s.G > 1 && s.G == s.C; }

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
// wp: w prepacked in the GEMM's A panels (MR wide, PrepackedOperand), or null.
// wsrc: the operand wp was packed from, when w is null (the rotated kernel, packed from the
// forward's weights).
void forward_image(float* y, const float* x, const float* w, const float* b,
                   const Conv2dShape& s, const float* wp = nullptr, int mr = 0,
                   const GemmOperand* wsrc = nullptr) {
  const int64_t P = s.OH * s.OW, K = s.C * s.KH * s.KW;
  GemmEpilogue ep;
  ep.row_bias = b;
  const DenseOperand wd = gemm_a(w, K, false);
  const PrepackedOperand wpo(wp, s.OC, K, mr, wsrc ? *wsrc : wd);
  const GemmOperand& A = wp ? static_cast<const GemmOperand&>(wpo) : wd;
  if (is_pointwise(s))
    gemm(s.OC, P, K, 1.0f, A, gemm_b(x, P, false), 0.0f, y, P, ep);
  else
    gemm(s.OC, P, K, 1.0f, A, Im2colOperand(x, im2col_shape(s)), 0.0f, y, P, ep);
}

// The batch's fixed image groups for the reductions over images (see kWeightGradGroups):
// image n belongs to group b when N*b/B <= n < N*(b+1)/B. The depthwise path keeps
// kConvDepthwiseLanes lane partials per weight.
int64_t batch_groups(const Conv2dShape& s) {
  const int64_t wsize = s.OC * (s.C / s.G) * s.KH * s.KW;
  const int64_t psize = is_depthwise(s) ? wsize * kConvDepthwiseLanes : wsize;
  const int64_t most = std::max<int64_t>(1, std::min(s.N, kWeightGradGroups));
  return std::clamp<int64_t>(kMaxPartialFloats / psize, 1, most);
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

// db [OC] = sums of dy [N, OC, OH, OW]: per image group, the row sums of its images in order;
// then the group sums in group order (the order the fused paths of the backward use too).
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

// dw [OC, C, KH*KW] = dwt [OC, KH*KW, C] with its last two axes swapped (C: a group's input
// channels, OC: every output channel, since each output channel's rows are its own).
void untranspose_taps(float* dw, const float* dwt, int64_t OC, int64_t C, int64_t kk) {
  parallel_for(OC, OC * C * kk, [&](int64_t o0, int64_t o1, int) {
    for (int64_t oc = o0; oc < o1; ++oc)
      for (int64_t t = 0; t < kk; ++t)
        for (int64_t c = 0; c < C; ++c) dw[(oc * C + c) * kk + t] = dwt[(oc * kk + t) * C + c];
  });
}

// The per-image steps of the backward pass and what they share. s is one group's shape
// (group_shape); each step takes pointers to that group's slices of one image.
struct Backward {
  const Conv2dShape& s;
  InputGradPath path;
  WeightGradPath wpath;
  Conv2dShape sr;          // rotated_shape(s), for the rotated path
  int64_t col_block;       // pixel columns per col2im block
  const float* wrp = nullptr;  // the rotated kernels in the GEMM's A panels (or null),
  int64_t wrpg = 0;            // wrpg floats per group,
  int mr = 0;                  // mr wide

  // dw [OC, C*KH*KW] (+)= dyn [OC, OH*OW] · col(xn)ᵀ, with dw's axes ordered (oc, kh, kw, c)
  // on the channels-last path; xt: scratch of C*H*W floats for that path.
  void weight_image(float* dw, bool accumulate, const float* dyn, const float* xn,
                    float* xt) const {
    const int64_t P = s.OH * s.OW, K = s.C * s.KH * s.KW;
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

  // dxn [C, H, W] overwritten from dyn [OC, OH, OW] and w [OC, C, KH, KW] (wr: w rotated, for
  // the rotated path); col: scratch of K * col_block floats for the col2im path.
  // threaded: this runs outside a parallel region, so col2im spreads over channels.
  void input_image(float* dxn, const float* dyn, const float* w, const float* wr, float* col,
                   bool threaded, int64_t group) const {
    const int64_t P = s.OH * s.OW, K = s.C * s.KH * s.KW;
    switch (path) {
      case InputGradPath::pointwise:
        gemm(s.C, P, s.OC, 1.0f, gemm_a(w, K, true), gemm_b(dyn, P, false), 0.0f, dxn, P);
        return;
      case InputGradPath::rotated: {
        const RotatedKernelOperand wro(w, s.C, s.OC, s.KH, s.KW);
        forward_image(dxn, dyn, wr, nullptr, sr, wrp ? wrp + group * wrpg : nullptr, mr, &wro);
        return;
      }
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
// small images) or the GEMM path, for each pass of this convolution (of one group's shape).
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

// y = conv(x, w) + b through the direct kernels, whole (image, group) pairs per thread.
void direct_forward(float* y, const float* x, const float* w, const float* b,
                    const Conv2dShape& s, Direct kind, Workspace& ws) {
  const Conv2dShape sg = group_shape(s);
  const ConvDirectShape d = direct_shape(sg);
  const ConvDirectKernels& kern = conv_direct_kernels(active_simd_tier());
  const int64_t K = sg.C * s.KH * s.KW, P = s.OH * s.OW;
  const int64_t xs = s.C * s.H * s.W, ys = s.OC * P, xg = sg.C * s.H * s.W, yg = sg.OC * P;
  // Per group: the forward weights, then the bias row.
  const int64_t wkn = (K + 1) * d.OCs;
  float* wk = ws.buffer(kSlotDirectWeights, s.G * wkn);
  for (int64_t g = 0; g < s.G; ++g)
    conv_direct_pack_forward(wk + g * wkn, w + g * sg.OC * K, b ? b + g * sg.OC : nullptr, d);
  const int64_t xpn = is_padded(s) ? lines(sg.C * d.Hp * d.Wp) : 0;
  const int64_t yts = kind == Direct::channels ? lines(conv_direct_forward_oc_scratch(d)) : 0;
  const int64_t per = xpn + yts;
  const int nt = unit_threads(s.N * s.G, s.N * image_flops(s));
  float* scratch = ws.buffer(kSlotDirectScratch, static_cast<std::size_t>(nt) * per);
  parallel_chunks(s.N * s.G, nt, [&](int64_t u0, int64_t u1, int t) {
    float* xp = scratch + t * per;
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t n = u / s.G, g = u % s.G;
      const float* xi = pad_image(xp, x + n * xs + g * xg, sg, d);
      const float* wg = wk + g * wkn;
      const float* bias = b ? wg + K * d.OCs : nullptr;
      float* yi = y + n * ys + g * yg;
      if (kind == Direct::width)
        kern.forward_w(yi, xi, wg, bias, d);
      else
        kern.forward_oc(yi, xi, wg, bias, xp + xpn, d);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// The depthwise path (kernels/conv_depthwise.hpp): G == C, so input channel c alone feeds the
// M = OC/C output channels c*M .. c*M+M-1, whose kernels w[c*M + m, 0] are consecutive.

ConvDepthwiseShape depthwise_shape(const Conv2dShape& s) {
  return conv_depthwise_shape(s.H, s.W, s.KH, s.KW, s.SH, s.SW, s.PT, s.PB, s.PL, s.PR, s.DH,
                              s.DW);
}

// (image, channel) planes per thread: each pads its input plane once, then convolves it with
// the M kernels of its output channels. Planes are independent, so any split gives the same y.
void depthwise_forward(float* y, const float* x, const float* w, const float* b,
                       const Conv2dShape& s, Workspace& ws) {
  const ConvDepthwiseShape d = depthwise_shape(s);
  const ConvDepthwiseKernels& kern = conv_depthwise_kernels(active_simd_tier());
  const int64_t M = s.OC / s.C, KK = s.KH * s.KW, HW = s.H * s.W, P = s.OH * s.OW;
  const int64_t xqn = lines(conv_depthwise_xq_size(d));
  const int nt = threads_for(s.N * s.C, s.N * image_flops(s));
  float* scratch = ws.buffer(kSlotDirectScratch, static_cast<std::size_t>(nt) * xqn);
  parallel_chunks(s.N * s.C, nt, [&](int64_t u0, int64_t u1, int t) {
    float* xq = scratch + t * xqn;
    for (int64_t u = u0; u < u1; ++u) {  // u = n*C + c
      conv_depthwise_pad(xq, x + u * HW, d);
      for (int64_t oc = u % s.C * M; oc < (u % s.C + 1) * M; ++oc)
        kern.forward(y + (u / s.C * s.OC + oc) * P, xq, w + oc * KK, b ? b[oc] : 0.0f, d);
    }
  });
}

// Units of (image group, channel): for each image of the group, the db row sums and dw lane
// partials of the channel's M outputs (into the image group's partials, summed in group order
// afterwards, then over lanes in lane order) and the channel's dx plane, while its dy planes
// are in cache. Units write disjoint partials and planes: any split gives the same bits.
void depthwise_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                        const float* w, const Conv2dShape& s, Workspace& ws) {
  const ConvDepthwiseShape d = depthwise_shape(s);
  const ConvDepthwiseKernels& kern = conv_depthwise_kernels(active_simd_tier());
  const int64_t M = s.OC / s.C, KK = s.KH * s.KW, HW = s.H * s.W, P = s.OH * s.OW;
  const int64_t lanes = kConvDepthwiseLanes, psize = s.OC * KK * lanes;
  const int64_t groups = batch_groups(s);
  float* partials = ws.buffer(kSlotPartial, (dw ? groups * psize : 0) + (db ? groups * s.OC : 0));
  float* db_partials = partials + (dw ? groups * psize : 0);
  const int64_t xqn = dw ? lines(conv_depthwise_xq_size(d)) : 0;
  const int64_t per = xqn + (dx ? lines(conv_depthwise_input_scratch(d, M)) : 0);
  const int nt = threads_for(groups * s.C, 3 * s.N * image_flops(s));
  float* scratch = ws.buffer(kSlotDirectScratch, static_cast<std::size_t>(nt) * per);
  parallel_chunks(groups * s.C, nt, [&](int64_t u0, int64_t u1, int t) {
    float* xq = scratch + t * per;
    float* dxs = xq + xqn;
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t g = u / s.C, c = u % s.C, n0 = s.N * g / groups, n1 = s.N * (g + 1) / groups;
      float* pc = dw ? partials + (g * s.OC + c * M) * KK * lanes : nullptr;
      if (dw) std::fill(pc, pc + M * KK * lanes, 0.0f);
      for (int64_t n = n0; n < n1; ++n) {
        const float* dyn = dy + (n * s.OC + c * M) * P;  // the M planes of channel c
        if (db)
          for (int64_t m = 0; m < M; ++m) {
            const float r = row_sum(dyn + m * P, P);
            float& group = db_partials[g * s.OC + c * M + m];
            group = n == n0 ? r : group + r;
          }
        if (dw) {
          conv_depthwise_pad(xq, x + (n * s.C + c) * HW, d);
          for (int64_t m = 0; m < M; ++m) kern.weight(pc + m * KK * lanes, xq, dyn + m * P, d);
        }
        if (dx) kern.input(dx + (n * s.C + c) * HW, dyn, w + c * M * KK, M, dxs, d);
      }
    }
  });
  if (db)
    for (int64_t oc = 0; oc < s.OC; ++oc) {
      float acc = db_partials[oc];
      for (int64_t g = 1; g < groups; ++g) acc += db_partials[g * s.OC + oc];
      db[oc] = acc;
    }
  if (dw)
    for (int64_t i = 0; i < s.OC * KK; ++i) {
      float acc = 0.0f;
      for (int64_t l = 0; l < lanes; ++l) {
        float lane = partials[i * lanes + l];
        for (int64_t g = 1; g < groups; ++g) lane += partials[g * psize + i * lanes + l];
        acc = l == 0 ? lane : acc + lane;
      }
      dw[i] = acc;
    }
}

}  // namespace

void conv2d_forward(float* y, const float* x, const float* w, const float* b,
                    const Conv2dShape& s, Workspace& ws) {
  if (s.N == 0) return;
  if (is_depthwise(s)) return depthwise_forward(y, x, w, b, s, ws);
  const Conv2dShape sg = group_shape(s);
  if (const Direct kind = direct_plan(sg).forward; kind != Direct::none)
    return direct_forward(y, x, w, b, s, kind, ws);
  // --- small output maps: the batch folded into the GEMM (ops/conv2d_batched.hpp) ---
  if (conv2d_batched_applies(sg))
    return conv2d_forward_batched(y, x, w, b, s, ws.buffer(kSlotCol, conv2d_batched_scratch(s)));
  // ---
  // --- large strided kernels (AlexNet conv1): phase-split images (ops/conv2d_phase.hpp) ---
  // s, not the per-group sg (whose G is always 1): the phase path is dense only, and a grouped
  // convolution sent there read w as if every filter had all C channels
  if (conv2d_phase_applies(s))
    return conv2d_forward_phase(y, x, w, b, s, ws.buffer(kSlotCol, conv2d_phase_scratch(s)));
  // ---
  const int64_t P = s.OH * s.OW, xs = s.C * s.H * s.W, ys = s.OC * P;
  const int64_t xg = sg.C * s.H * s.W, yg = sg.OC * P, wg = sg.OC * sg.C * s.KH * s.KW;
  // Whole (image, group) pairs per thread when there are enough of them; each is the same
  // GEMM either way, so y does not depend on the thread count.
  const int nt = unit_threads(s.N * s.G, s.N * image_flops(s));
  // With several images, the weights are packed into the GEMM's A panels once, not per image.
  const GemmKernel* kr = gemm_kernel(active_simd_tier());
  float* wp = nullptr;
  const int64_t K = sg.C * s.KH * s.KW;
  const int64_t wpg = kr ? PrepackedOperand::floats(sg.OC, K, kr->MR) : 0;
  if (kr && s.N > 1) {
    wp = ws.buffer(kSlotPackedWeights, s.G * wpg);
    for (int64_t g = 0; g < s.G; ++g)
      gemm_prepack(gemm_a(w + g * wg, K, false), sg.OC, K, kr->MR, wp + g * wpg);
  }
  parallel_chunks(s.N * s.G, nt, [&](int64_t u0, int64_t u1, int) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t n = u / s.G, g = u % s.G;
      forward_image(y + n * ys + g * yg, x + n * xs + g * xg, w + g * wg,
                    b ? b + g * sg.OC : nullptr, sg, wp ? wp + g * wpg : nullptr,
                    kr ? kr->MR : 0);
    }
  });
}

void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, const Conv2dShape& s, Workspace& ws) {
  const Conv2dShape sg = group_shape(s);
  const int64_t K = sg.C * s.KH * s.KW, wsize = s.OC * K, wg = sg.OC * K;
  const int64_t P = s.OH * s.OW, xs = s.C * s.H * s.W, ys = s.OC * P;
  const int64_t xg = sg.C * s.H * s.W, yg = sg.OC * P;
  if ((!dx && !dw) || s.N == 0) {
    if (db) bias_grad(db, dy, s);
    if (dw) std::fill(dw, dw + wsize, 0.0f);
    return;
  }
  if (is_depthwise(s)) return depthwise_backward(dx, dw, db, dy, x, w, s, ws);
  const ConvDirectPlan plan = direct_plan(sg);
  // --- small output maps: the batch folded into the GEMM (ops/conv2d_batched.hpp) ---
  if (plan.forward == Direct::none && conv2d_batched_applies(sg)) {
    if (db) bias_grad(db, dy, s);
    float* scratch = ws.buffer(kSlotCol, conv2d_batched_scratch(s));
    if (dx && input_grad_path(sg) == InputGradPath::rotated &&
        conv2d_batched_rotated_pays(sg)) {
      const Conv2dShape sr = rotated_shape(sg);
      return conv2d_backward_batched(dx, dw, dy, x, w, s, scratch, &sr,
                                     ws.buffer(kSlotImage, conv2d_batched_rotated_scratch(s, sr)));
    }
    return conv2d_backward_batched(dx, dw, dy, x, w, s, scratch);
  }
  // ---
  const Direct wdirect = dw ? plan.weight : Direct::none;
  const bool xdirect = dx && plan.input;
  const ConvDirectShape d = direct_shape(sg);
  const ConvDirectKernels& kern = conv_direct_kernels(active_simd_tier());
  Backward bw{sg, input_grad_path(sg), weight_grad_path(sg), sg, 0};
  float* wr = nullptr;  // per group: the rotated kernel
  if (dx && !xdirect && bw.path == InputGradPath::rotated) {
    bw.sr = rotated_shape(sg);
    if (const GemmKernel* kr = gemm_kernel(active_simd_tier()); kr && s.N > 1) {
      // With several images, the rotated kernels are packed into the GEMM's A panels once,
      // straight from w (conv2d_rotated.hpp; wr is never formed).
      const int64_t Kr = bw.sr.C * s.KH * s.KW;
      bw.mr = kr->MR;
      bw.wrpg = PrepackedOperand::floats(bw.sr.OC, Kr, kr->MR);
      float* wrp = ws.buffer(kSlotPackedWeights, s.G * bw.wrpg);
      for (int64_t g = 0; g < s.G; ++g)
        RotatedKernelOperand(w + g * wg, sg.C, sg.OC, s.KH, s.KW)
            .prepack(kr->MR, wrp + g * bw.wrpg);
      bw.wrp = wrp;
    } else {
      wr = ws.buffer(kSlotRotated, wsize);
      for (int64_t g = 0; g < s.G; ++g) rotate_kernel(wr + g * wg, w + g * wg, sg);
    }
  }
  bw.col_block = std::min(P, std::max(kColBlockAlign,
                                      kColBlockFloats / K / kColBlockAlign * kColBlockAlign));
  float* wt = nullptr;  // per group: the direct input-gradient weights
  if (xdirect) {
    wt = ws.buffer(kSlotDirectWeights, wsize);
    for (int64_t g = 0; g < s.G; ++g) conv_direct_pack_input(wt + g * wg, w + g * wg, d);
  }

  // Image group b holds images [N*b/B, N*(b+1)/B) and sums them into its partial of dw, which
  // holds each convolution group's part in turn (psize_g floats from g * psize_g), laid out as
  // its kernel accumulates:
  //   plain          dw itself for b = 0 (GEMM, transposed or pointwise pack)
  //   tap_major      [OC/G, KH*KW, C/G] (GEMM, channels-last pack)
  //   lanes          [OC/G * K, 16] lane partials (direct, over width)
  //   channels_last  [K, OCs] (direct, over channels)
  // db is summed here too, per image group, while each image's dy is in cache.
  enum class Layout { plain, tap_major, lanes, channels_last };
  const Layout layout = wdirect == Direct::width      ? Layout::lanes
                        : wdirect == Direct::channels ? Layout::channels_last
                        : bw.wpath == WeightGradPath::channels_last ? Layout::tap_major
                                                                    : Layout::plain;
  const int64_t psize_g = layout == Layout::lanes           ? wg * kConvDirectLanes
                          : layout == Layout::channels_last ? K * d.OCs
                                                            : wg;
  const int64_t psize = s.G * psize_g;
  const int64_t groups = batch_groups(s);
  const int64_t dw_partials = !dw ? 0 : layout == Layout::plain ? groups - 1 : groups;
  float* partials = ws.buffer(kSlotPartial, dw_partials * psize + (db ? groups * s.OC : 0));
  float* db_partials = partials + dw_partials * psize;
  auto partial = [&](int64_t b) {
    return layout != Layout::plain ? partials + b * psize
           : b == 0               ? dw
                                  : partials + (b - 1) * psize;
  };
  // Units: (image group, convolution group) pairs, each writing its own part of a partial
  // and its own channels of dx.
  const int64_t units = groups * s.G;
  const int nt = unit_threads(units, 3 * s.N * image_flops(s));
  const bool gemm_cols = dx && !xdirect && bw.path == InputGradPath::col2im;
  float* cols = gemm_cols
                    ? ws.buffer(kSlotCol, static_cast<std::size_t>(nt) * K * bw.col_block)
                    : nullptr;
  float* images = layout == Layout::tap_major
                      ? ws.buffer(kSlotImage, static_cast<std::size_t>(nt) * xg)
                      : nullptr;
  // Per thread for the direct kernels: the padded image, the channels-last dy, padded dy.
  const int64_t xpn = wdirect != Direct::none && is_padded(s) ? lines(sg.C * d.Hp * d.Wp) : 0;
  const int64_t dytn = wdirect == Direct::channels ? lines(conv_direct_weight_oc_scratch(d)) : 0;
  const int64_t dypn = xdirect ? lines(conv_direct_input_scratch(d)) : 0;
  const int64_t per = xpn + dytn + dypn;
  float* scratch = per ? ws.buffer(kSlotDirectScratch, static_cast<std::size_t>(nt) * per)
                       : nullptr;
  parallel_chunks(units, nt, [&](int64_t u0, int64_t u1, int t) {
    float* xp = scratch ? scratch + t * per : nullptr;
    float* dyt = xp ? xp + xpn : nullptr;
    float* dyp = xp ? dyt + dytn : nullptr;
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t b = u / s.G, g = u % s.G;
      const int64_t n0 = s.N * b / groups, n1 = s.N * (b + 1) / groups;
      float* pg = dw ? partial(b) + g * psize_g : nullptr;
      if (wdirect != Direct::none) std::fill(pg, pg + psize_g, 0.0f);
      for (int64_t n = n0; n < n1; ++n) {
        const float* dyn = dy + n * ys + g * yg;
        const float* xn = x + n * xs + g * xg;
        if (db)
          for (int64_t oc = 0; oc < sg.OC; ++oc) {
            const float r = row_sum(dyn + oc * P, P);
            float& group = db_partials[b * s.OC + g * sg.OC + oc];
            group = n == n0 ? r : group + r;
          }
        if (wdirect == Direct::width)
          kern.weight_w(pg, pad_image(xp, xn, sg, d), dyn, d);
        else if (wdirect == Direct::channels)
          kern.weight_oc(pg, pad_image(xp, xn, sg, d), dyn, dyt, d);
        else if (dw)
          bw.weight_image(pg, n > n0, dyn, xn, images ? images + t * xg : nullptr);
        if (xdirect)
          kern.input(dx + n * xs + g * xg, dyn, wt + g * wg, dyp, d);
        else if (dx)
          bw.input_image(dx + n * xs + g * xg, dyn, w + g * wg, wr ? wr + g * wg : nullptr,
                         cols ? cols + t * K * bw.col_block : nullptr, nt == 1, g);
      }
    }
  });
  if (db)
    for (int64_t oc = 0; oc < s.OC; ++oc) {
      float acc = db_partials[oc];
      for (int64_t b = 1; b < groups; ++b) acc += db_partials[b * s.OC + oc];
      db[oc] = acc;
    }
  if (!dw) return;
  float* p0 = partial(0);
  if (groups > 1) {
    // p0 += p1, then p2, ...: every element summed in image-group order.
    parallel_for(psize, groups * psize, [&](int64_t e0, int64_t e1, int) {
      for (int64_t b = 1; b < groups; ++b) {
        const float* p = partial(b);
#pragma omp simd
        for (int64_t e = e0; e < e1; ++e) p0[e] += p[e];
      }
    });
  }
  switch (layout) {
    case Layout::plain: return;
    case Layout::tap_major: untranspose_taps(dw, p0, s.OC, sg.C, s.KH * s.KW); return;
    case Layout::lanes:  // the lanes of each element, added in lane order
      for (int64_t i = 0; i < wsize; ++i) {
        float acc = p0[i * kConvDirectLanes];
        for (int64_t l = 1; l < kConvDirectLanes; ++l) acc += p0[i * kConvDirectLanes + l];
        dw[i] = acc;
      }
      return;
    case Layout::channels_last:
      for (int64_t g = 0; g < s.G; ++g)
        for (int64_t oc = 0; oc < sg.OC; ++oc)
          for (int64_t k = 0; k < K; ++k)
            dw[(g * sg.OC + oc) * K + k] = p0[g * psize_g + k * d.OCs + oc];
      return;
  }
}

}  // namespace cnnkit
