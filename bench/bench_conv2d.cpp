// conv2d and conv1d over the named shapes of bench/shapes/conv2d.txt and conv1d.txt: each is
// first validated against conv2d_forward__ref / conv2d_backward__ref (exit 1 on a mismatch),
// then timed (median ms) forward, the weight gradient (dw + db, as a first layer asks for),
// the input gradient alone (dx), and forward+backward (dx, dw and db), as GFLOP/s and % of
// the FMA peak measured in the same run, at the vector width of the active SIMD tier (512-bit
// FMAs for avx512, 256-bit otherwise; CNNKIT_SIMD=avx2 gives the AVX2 figures).
// Forward+backward counts 3x the forward FLOPs; "path" is the forward and weight-gradient
// kernel conv_direct_plan picks (gemm, or direct over width / over channels). Before the
// shapes, every im2col pack is checked against the materialised im2col, and every direct and
// depthwise kernel of every tier that runs here against its __ref, bit for bit on integer data.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "common.hpp"
#include "kernels/conv_depthwise.hpp"
#include "kernels/conv_direct.hpp"
#include "kernels/im2col.hpp"
#include "ops/conv1d.hpp"
#include "ops/conv2d.hpp"

namespace {

using cnnkit::Conv2dShape;
using cnnkit::Im2colShape;

// What a GEMM pack of no x nk elements writes at panel width `width`: panels of `width`
// columns, k-major inside a panel, at(o, k) for o < no and zeros past it.
template <class At>
std::vector<float> packed_panels(int64_t no, int64_t nk, int width, At at) {
  const int64_t panels = (no + width - 1) / width;
  std::vector<float> want(panels * nk * width);
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t k = 0; k < nk; ++k)
      for (int e = 0; e < width; ++e) {
        const int64_t o = p * width + e;
        want[(p * nk + k) * width + e] = o < no ? at(o, k) : 0.0f;
      }
  return want;
}

// Every pack (the operand's tier and, where it runs, the AVX2 one) of every panel width and a
// spread of sub-ranges, against im2col; dst starts as NaN so an unwritten float shows.
int check_packs() {
  [[maybe_unused]] const bool avx2 = cnnkit::simd_tier_supported(cnnkit::SimdTier::avx2);
  [[maybe_unused]] const bool avx512 = cnnkit::simd_tier_supported(cnnkit::SimdTier::avx512);
  struct G { int64_t C, H, W, KH, KW, SH, SW, PT, PB, PL, PR, DH, DW; };
  const G geoms[] = {
      {3, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},  {2, 7, 28, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1},
      {2, 6, 5, 2, 3, 2, 2, 0, 1, 1, 0, 1, 1},   {1, 13, 13, 3, 2, 3, 1, 2, 0, 0, 3, 2, 2},
      {2, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 40, 1, 5, 1, 1, 0, 0, 2, 2, 1, 1},
      {2, 12, 12, 4, 4, 4, 4, 2, 2, 2, 2, 1, 1}, {3, 4, 4, 3, 3, 1, 1, 2, 2, 2, 2, 1, 1},
      {2, 10, 9, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1},  {1, 3, 30, 3, 7, 1, 2, 1, 1, 3, 3, 1, 2},
      {8, 9, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},  {16, 7, 12, 3, 2, 2, 1, 1, 0, 0, 1, 1, 2},
      {24, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},  {32, 1, 40, 1, 5, 1, 1, 0, 0, 2, 2, 1, 1},
      // stride 2 and 4 with OW >= 16: AVX-512 blocks across two rows, clipped at both edges
      {2, 20, 80, 11, 11, 4, 4, 2, 2, 2, 2, 1, 1}, {3, 8, 41, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
      {2, 6, 70, 3, 5, 2, 4, 1, 0, 3, 2, 1, 1},
      // "same" rows at stride 1 narrower than 16 (AVX-512 blocks across rows, one masked load):
      // 8x8 3x3 pad 1, dilated, an even kernel padded on one side, a single row
      {4, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, {2, 7, 7, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2},
      {3, 5, 6, 2, 4, 1, 1, 0, 1, 2, 1, 1, 1}, {2, 1, 9, 1, 3, 1, 1, 0, 0, 1, 1, 1, 1},
      // ... and with 16k pixels a map (the batched forward's AVX-512 pack): 4x4 3x3 pad 1,
      // dilated, fewer output rows than input ones
      {4, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, {2, 4, 8, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2},
      {2, 6, 8, 3, 3, 1, 1, 0, 0, 1, 1, 1, 1},
  };
  int failures = 0;
  for (const G& q : geoms) {
    const Conv2dShape s = cnnkit::conv2d_shape(1, q.C, q.H, q.W, 1, q.KH, q.KW, q.SH, q.SW, q.PT,
                                               q.PB, q.PL, q.PR, q.DH, q.DW);
    const Im2colShape g{s.C, s.H, s.W, s.KH, s.KW, s.SH, s.SW, s.PT, s.PL, s.DH, s.DW, s.OH, s.OW};
    const int64_t rows = s.C * s.KH * s.KW, npix = s.OH * s.OW;
    const std::vector<float> x = bench::random_floats(s.C * s.H * s.W, 7);
    std::vector<float> col(rows * npix), xt(x.size());
    cnnkit::im2col(col.data(), x.data(), g);
    cnnkit::chw_to_hwc(xt.data(), x.data(), s.C, s.H * s.W);
    const cnnkit::Im2colOperand fwd(x.data(), g);
    const cnnkit::Im2colTransposedOperand bwd(x.data(), g);
    const cnnkit::Im2colHwcOperand hwc(xt.data(), g);
    const int64_t kk = s.KH * s.KW;
    for (int width : {1, 6, 8, 16, 24, 32, 48, 64}) {
      // (outer start, outer count, k start, k count) for X(o, k): fwd has o = pixel, k = row;
      // trans 1 and 2 (the channels-last operand, rows in tap-major order) have o = row.
      for (int trans = 0; trans < 3; ++trans) {
        const int64_t no_all = trans ? rows : npix, nk_all = trans ? npix : rows;
        const int64_t o3 = no_all / 3, k2 = nk_all / 2;
        const int64_t ranges[][4] = {{0, no_all, 0, nk_all},
                                     {o3, no_all - o3, k2, nk_all - k2},
                                     {16, no_all - 16, 8, nk_all - 8},
                                     {1, no_all - 2, 1, nk_all - 2},
                                     {no_all - 1, 1, nk_all - 1, 1}};
        for (const auto& r : ranges) {
          const int64_t o0 = r[0], no = std::min(r[1], no_all - o0), k0 = r[2],
                        nk = std::min(r[3], nk_all - k0);
          if (no < 1 || nk < 1) continue;
          const std::vector<float> want = packed_panels(no, nk, width, [&](int64_t o, int64_t k) {
            int64_t row = trans ? o0 + o : k0 + k;
            const int64_t pix = trans ? k0 + k : o0 + o;
            if (trans == 2) row = row % s.C * kk + row / s.C;
            return col[row * npix + pix];
          });
          const int64_t n = static_cast<int64_t>(want.size());
          const cnnkit::GemmOperand* ops[] = {&fwd, &bwd, &hwc};
          // variant 0: the operand (the active tier's pack); 1: AVX2; 2: AVX-512 (forward).
          for (int variant = 0; variant < 3; ++variant) {
            std::vector<float> got(n, std::numeric_limits<float>::quiet_NaN());
            bool ran = false;
            if (variant == 0) {
              ops[trans]->pack(o0, no, k0, nk, width, got.data());
              ran = true;
            }
#ifdef CNNKIT_HAVE_AVX2
            if (variant == 1 && avx2 && trans == 0)
              ran = cnnkit::im2col_pack__avx2(x.data(), g, o0, no, k0, nk, width, got.data());
            if (variant == 1 && avx2 && trans == 1)
              ran = cnnkit::im2col_transposed_pack__avx2(x.data(), g, o0, no, k0, nk, width,
                                                         got.data());
#endif
#ifdef CNNKIT_HAVE_AVX512
            if (variant == 2 && avx512 && trans == 0)
              ran = cnnkit::im2col_pack__avx512(x.data(), g, o0, no, k0, nk, width, got.data());
#endif
            if (ran && std::memcmp(got.data(), want.data(), n * sizeof(float)) != 0) {
              ++failures;
              std::fprintf(stderr,
                           "PACK MISMATCH: %s%s pack, geometry C%lld H%lld W%lld k%lldx%lld "
                           "s%lld,%lld, width %d, o0 %lld no %lld k0 %lld nk %lld\n",
                           trans == 2 ? "channels-last " : trans ? "transposed " : "",
                           variant == 2 ? "avx512" : variant ? "avx2" : "operand",
                           (long long)q.C, (long long)q.H, (long long)q.W, (long long)q.KH,
                           (long long)q.KW, (long long)q.SH, (long long)q.SW, width,
                           (long long)o0, (long long)no, (long long)k0, (long long)nk);
            }
          }
        }
      }
    }
    // The batched forward operand (batched_im2col_pack): 3 images, x_n at n*xs (xs past the
    // image's end), columns n*npix + j, rows r; against each image's im2col.
    const int64_t nb = 3, xs = s.C * s.H * s.W + 5, ncols = nb * npix;
    std::vector<float> xb(nb * xs), colb(nb * rows * npix);
    for (int64_t n = 0; n < nb; ++n) {
      const std::vector<float> xn = bench::random_floats(s.C * s.H * s.W, 11 + n);
      std::copy(xn.begin(), xn.end(), xb.begin() + n * xs);
      cnnkit::im2col(colb.data() + n * rows * npix, xn.data(), g);
    }
    for (int width : {1, 6, 8, 16, 24, 32, 48, 64}) {
      const int64_t o3 = ncols / 3 / 16 * 16, k2 = rows / 2;
      const int64_t ranges[][4] = {{0, ncols, 0, rows},
                                   {o3, ncols - o3, k2, rows - k2},
                                   {16, ncols - 20, 1, rows - 2},
                                   {1, ncols - 2, 1, rows - 2},
                                   {ncols - 1, 1, rows - 1, 1}};
      for (const auto& r : ranges) {
        const int64_t o0 = r[0], no = std::min(r[1], ncols - o0), k0 = r[2],
                      nk = std::min(r[3], rows - k0);
        if (no < 1 || nk < 1) continue;
        const std::vector<float> want = packed_panels(no, nk, width, [&](int64_t o, int64_t k) {
          const int64_t j = o0 + o;
          return colb[j / npix * rows * npix + (k0 + k) * npix + j % npix];
        });
        const int64_t n = static_cast<int64_t>(want.size());
        for (int variant = 0; variant < 2; ++variant) {  // 0: the active tier's; 1: AVX-512
          std::vector<float> got(n, std::numeric_limits<float>::quiet_NaN());
          bool ran = variant == 0;
          if (ran) cnnkit::batched_im2col_pack(xb.data(), xs, g, o0, no, k0, nk, width, got.data());
#ifdef CNNKIT_HAVE_AVX512
          if (variant == 1 && avx512)
            ran = cnnkit::batched_im2col_pack__avx512(xb.data(), xs, g, o0, no, k0, nk, width,
                                                      got.data());
#endif
          if (ran && std::memcmp(got.data(), want.data(), n * sizeof(float)) != 0) {
            ++failures;
            std::fprintf(stderr,
                         "PACK MISMATCH: batched %s pack, geometry C%lld H%lld W%lld k%lldx%lld "
                         "s%lld,%lld, width %d, o0 %lld no %lld k0 %lld nk %lld\n",
                         variant ? "avx512" : "operand", (long long)q.C, (long long)q.H,
                         (long long)q.W, (long long)q.KH, (long long)q.KW, (long long)q.SH,
                         (long long)q.SW, width, (long long)o0, (long long)no, (long long)k0,
                         (long long)nk);
          }
        }
      }
    }
  }
  return failures;
}

// Integer values in [-4, 4], about half of them 0: every float32 sum of the kernels is exact,
// so each tier must match the __ref kernels bit for bit.
std::vector<float> int_floats(std::size_t n, uint32_t seed) {
  std::vector<float> v = bench::random_floats(n, seed, -4.0f, 4.0f);
  for (float& e : v) e = e > 0 ? std::floor(e * 2.0f) - 4.0f : 0.0f;
  for (float& e : v) e = e < -4.0f ? -4.0f : e;
  return v;
}

// Every entry point of every direct-kernel tier that runs here against the __ref kernels, on
// geometries that reach the blocks' edges: partial vectors, rows wider than a block of
// vectors, more output channels than a block, 1 x 1 to 7 x 7 kernels, padding wider than the
// kernel, a single output pixel. Overwritten outputs start as NaN (an unwritten float shows).
int check_direct() {
  struct G { int64_t C, H, W, OC, KH, KW, PT, PB, PL, PR; };
  const G geoms[] = {
      {1, 28, 28, 6, 5, 5, 2, 2, 2, 2},  {6, 14, 14, 16, 5, 5, 0, 0, 0, 0},
      {3, 9, 33, 32, 3, 3, 1, 1, 1, 1},  {2, 3, 70, 5, 3, 3, 1, 1, 1, 1},
      {2, 5, 4, 70, 3, 2, 1, 0, 0, 1},   {3, 5, 7, 9, 1, 1, 0, 0, 0, 0},
      {2, 9, 11, 4, 7, 7, 3, 3, 3, 3},   {2, 6, 19, 3, 1, 7, 0, 0, 3, 3},
      {2, 19, 6, 3, 7, 1, 3, 3, 0, 0},   {2, 4, 4, 3, 2, 2, 3, 3, 3, 3},
      {3, 7, 8, 5, 4, 2, 1, 2, 0, 1},    {16, 6, 6, 24, 3, 3, 1, 1, 1, 1},
      {4, 1, 40, 8, 1, 5, 0, 0, 2, 2},   {2, 4, 5, 3, 6, 7, 1, 1, 1, 1},
      {5, 11, 13, 17, 3, 4, 2, 0, 1, 2},
  };
  const cnnkit::ConvDirectKernels& ref = cnnkit::conv_direct_kernels__ref;
  std::vector<const cnnkit::ConvDirectKernels*> tiers = {&cnnkit::conv_direct_kernels__portable};
#ifdef CNNKIT_HAVE_AVX2
  if (cnnkit::simd_tier_supported(cnnkit::SimdTier::avx2))
    tiers.push_back(&cnnkit::conv_direct_kernels__avx2);
#endif
#ifdef CNNKIT_HAVE_AVX512
  if (cnnkit::simd_tier_supported(cnnkit::SimdTier::avx512))
    tiers.push_back(&cnnkit::conv_direct_kernels__avx512);
#endif
  const float nan = std::numeric_limits<float>::quiet_NaN();
  int failures = 0;
  for (const G& q : geoms) {
    const cnnkit::ConvDirectShape s =
        cnnkit::conv_direct_shape(q.C, q.H, q.W, q.OC, q.KH, q.KW, q.PT, q.PB, q.PL, q.PR);
    const int64_t K = s.C * s.KH * s.KW, P = s.OH * s.OW, xn = s.C * s.H * s.W;
    const std::vector<float> x = int_floats(xn, 11), w = int_floats(s.OC * K, 12),
                             b = int_floats(s.OC, 13), dy = int_floats(s.OC * P, 14);
    std::vector<float> xp(s.C * s.Hp * s.Wp), wk((K + 1) * s.OCs), wt(s.OC * K);
    cnnkit::conv_direct_pad(xp.data(), x.data(), s);
    cnnkit::conv_direct_pack_forward(wk.data(), w.data(), b.data(), s);
    cnnkit::conv_direct_pack_input(wt.data(), w.data(), s);
    const float* bias = wk.data() + K * s.OCs;
    std::vector<float> scratch(std::max(
        {cnnkit::conv_direct_forward_oc_scratch(s), cnnkit::conv_direct_weight_oc_scratch(s),
         cnnkit::conv_direct_input_scratch(s)}));
    // weight_w's lane partials, summed over lanes; weight_oc's [K, OCs] as [OC, K].
    auto lanes = [&](const std::vector<float>& v) {
      std::vector<float> dw(s.OC * K, 0.0f);
      for (std::size_t i = 0; i < dw.size(); ++i)
        for (int64_t l = 0; l < cnnkit::kConvDirectLanes; ++l)
          dw[i] += v[i * cnnkit::kConvDirectLanes + l];
      return dw;
    };
    auto untranspose = [&](const std::vector<float>& v) {
      std::vector<float> dw(s.OC * K);
      for (int64_t oc = 0; oc < s.OC; ++oc)
        for (int64_t k = 0; k < K; ++k) dw[oc * K + k] = v[k * s.OCs + oc];
      return dw;
    };
    // Each kernel's results (weights accumulated twice, as over two images of a group).
    auto run = [&](const cnnkit::ConvDirectKernels& t) {
      std::vector<std::vector<float>> out;
      std::vector<float> y(s.OC * P, nan), dx(xn, nan), dwv(s.OC * K * cnnkit::kConvDirectLanes),
          dwt(K * s.OCs);
      t.forward_w(y.data(), xp.data(), wk.data(), bias, s);
      out.push_back(y);
      std::fill(y.begin(), y.end(), nan);
      t.forward_oc(y.data(), xp.data(), wk.data(), bias, scratch.data(), s);
      out.push_back(y);
      for (int twice = 0; twice < 2; ++twice) {
        t.weight_w(dwv.data(), xp.data(), dy.data(), s);
        t.weight_oc(dwt.data(), xp.data(), dy.data(), scratch.data(), s);
      }
      out.push_back(lanes(dwv));
      out.push_back(untranspose(dwt));
      t.input(dx.data(), dy.data(), wt.data(), scratch.data(), s);
      out.push_back(dx);
      return out;
    };
    const auto want = run(ref);
    const char* names[] = {"forward_w", "forward_oc", "weight_w", "weight_oc", "input"};
    for (const cnnkit::ConvDirectKernels* t : tiers) {
      const auto got = run(*t);
      for (std::size_t i = 0; i < got.size(); ++i)
        if (std::memcmp(got[i].data(), want[i].data(), got[i].size() * sizeof(float)) != 0) {
          ++failures;
          std::fprintf(stderr,
                       "DIRECT KERNEL MISMATCH: %s %s, C%lld H%lld W%lld OC%lld k%lldx%lld "
                       "pad %lld,%lld,%lld,%lld\n",
                       t->name, names[i], (long long)q.C, (long long)q.H, (long long)q.W,
                       (long long)q.OC, (long long)q.KH, (long long)q.KW, (long long)q.PT,
                       (long long)q.PB, (long long)q.PL, (long long)q.PR);
        }
    }
  }
  return failures;
}

// Every entry point of every depthwise-kernel tier that runs here against the __ref kernels,
// bit for bit on integer data, on geometries at the blocks' edges: strides in either axis
// (phase-split columns, residue-split rows), strides beyond the kernel, dilation, rows of more
// than a block of vectors, more taps than a weight block, channel multipliers M > 1. Outputs
// start as NaN (an unwritten float shows).
int check_depthwise() {
  struct G { int64_t H, W, KH, KW, SH, SW, PT, PB, PL, PR, DH, DW, M; };
  const G geoms[] = {
      {56, 56, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {56, 56, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},
      {9, 70, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2},  {12, 17, 3, 2, 3, 2, 1, 1, 0, 0, 1, 1, 1},
      {13, 12, 5, 5, 1, 1, 4, 4, 4, 4, 2, 2, 3}, {35, 35, 11, 11, 4, 4, 2, 2, 2, 2, 1, 1, 2},
      {20, 7, 3, 2, 5, 3, 1, 1, 1, 1, 1, 1, 1},  {9, 11, 7, 7, 1, 1, 3, 3, 3, 3, 1, 1, 1},
      {1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1},   {4, 5, 6, 7, 1, 1, 1, 1, 1, 1, 1, 1, 2},
      {1, 300, 1, 9, 1, 2, 0, 0, 4, 4, 1, 1, 1}, {7, 8, 4, 3, 2, 2, 1, 2, 0, 1, 1, 2, 1},
  };
  const cnnkit::ConvDepthwiseKernels& ref = cnnkit::conv_depthwise_kernels__ref;
  std::vector<const cnnkit::ConvDepthwiseKernels*> tiers = {
      &cnnkit::conv_depthwise_kernels__portable};
#ifdef CNNKIT_HAVE_AVX2
  if (cnnkit::simd_tier_supported(cnnkit::SimdTier::avx2))
    tiers.push_back(&cnnkit::conv_depthwise_kernels__avx2);
#endif
#ifdef CNNKIT_HAVE_AVX512
  if (cnnkit::simd_tier_supported(cnnkit::SimdTier::avx512))
    tiers.push_back(&cnnkit::conv_depthwise_kernels__avx512);
#endif
  const float nan = std::numeric_limits<float>::quiet_NaN();
  constexpr int64_t lanes = cnnkit::kConvDepthwiseLanes;
  int failures = 0;
  for (const G& q : geoms) {
    const cnnkit::ConvDepthwiseShape s = cnnkit::conv_depthwise_shape(
        q.H, q.W, q.KH, q.KW, q.SH, q.SW, q.PT, q.PB, q.PL, q.PR, q.DH, q.DW);
    const int64_t KK = s.KH * s.KW, P = s.OH * s.OW;
    const std::vector<float> x = int_floats(s.H * s.W, 21), w = int_floats(q.M * KK, 22),
                             dy = int_floats(q.M * P, 23);
    std::vector<float> xq(cnnkit::conv_depthwise_xq_size(s));
    cnnkit::conv_depthwise_pad(xq.data(), x.data(), s);
    std::vector<float> scratch(cnnkit::conv_depthwise_input_scratch(s, q.M));
    auto run = [&](const cnnkit::ConvDepthwiseKernels& t) {
      std::vector<std::vector<float>> out;
      std::vector<float> y(P, nan), dx(s.H * s.W, nan), dwv(KK * lanes, 0.0f), dw(KK, 0.0f);
      t.forward(y.data(), xq.data(), w.data(), 3.0f, s);
      out.push_back(y);
      for (int twice = 0; twice < 2; ++twice) t.weight(dwv.data(), xq.data(), dy.data(), s);
      for (int64_t k = 0; k < KK; ++k)
        for (int64_t l = 0; l < lanes; ++l) dw[k] += dwv[k * lanes + l];
      out.push_back(dw);
      t.input(dx.data(), dy.data(), w.data(), q.M, scratch.data(), s);
      out.push_back(dx);
      return out;
    };
    const auto want = run(ref);
    const char* names[] = {"forward", "weight", "input"};
    for (const cnnkit::ConvDepthwiseKernels* t : tiers) {
      const auto got = run(*t);
      for (std::size_t i = 0; i < got.size(); ++i)
        if (std::memcmp(got[i].data(), want[i].data(), got[i].size() * sizeof(float)) != 0) {
          ++failures;
          std::fprintf(stderr,
                       "DEPTHWISE KERNEL MISMATCH: %s %s, H%lld W%lld k%lldx%lld s%lld,%lld "
                       "pad %lld,%lld,%lld,%lld d%lld,%lld M%lld\n",
                       t->name, names[i], (long long)q.H, (long long)q.W, (long long)q.KH,
                       (long long)q.KW, (long long)q.SH, (long long)q.SW, (long long)q.PT,
                       (long long)q.PB, (long long)q.PL, (long long)q.PR, (long long)q.DH,
                       (long long)q.DW, (long long)q.M);
        }
    }
  }
  return failures;
}

struct Case {
  std::string name;
  Conv2dShape s;
  bool one_d;
};

void run_case(const Case& c, double peak, const bench::Args& args) {
  const Conv2dShape& s = c.s;
  const int64_t xn = s.N * s.C * s.H * s.W, wn = s.OC * (s.C / s.G) * s.KH * s.KW,
                yn = s.N * s.OC * s.OH * s.OW;
  const std::vector<float> x = bench::random_floats(xn, 1), w = bench::random_floats(wn, 2),
                           b = bench::random_floats(s.OC, 3), dy = bench::random_floats(yn, 4);
  std::vector<float> y(yn), dx(xn), dw(wn), db(s.OC);
  cnnkit::Workspace ws;

  // Validate once against the direct loops.
  std::vector<float> ry(yn), rdx(xn), rdw(wn), rdb(s.OC);
  cnnkit::conv2d_forward(y.data(), x.data(), w.data(), b.data(), s, ws);
  cnnkit::conv2d_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), s, ws);
  cnnkit::conv2d_forward__ref(ry.data(), x.data(), w.data(), b.data(), s);
  cnnkit::conv2d_backward__ref(rdx.data(), rdw.data(), rdb.data(), dy.data(), x.data(), w.data(),
                               s);
  const double err = std::max({bench::max_rel_diff(y, ry), bench::max_rel_diff(dx, rdx),
                               bench::max_rel_diff(dw, rdw), bench::max_rel_diff(db, rdb)});
  if (!(err < 1e-4)) {
    std::fprintf(stderr, "MISMATCH %s: max relative error %.3g vs the reference\n",
                 c.name.c_str(), err);
    std::exit(1);
  }

  const double fwd_ms = bench::median_ms(
      [&] { cnnkit::conv2d_forward(y.data(), x.data(), w.data(), b.data(), s, ws); }, args.reps);
  // The backward pass in the two forms a network asks for: weight and bias gradients only (a
  // first layer), and the input gradient alone (the rest of a hidden layer's backward).
  const double dw_ms = bench::median_ms(
      [&] {
        cnnkit::conv2d_backward(nullptr, dw.data(), db.data(), dy.data(), x.data(), w.data(), s,
                                ws);
      },
      args.reps);
  const double dx_ms = bench::median_ms(
      [&] {
        cnnkit::conv2d_backward(dx.data(), nullptr, nullptr, dy.data(), x.data(), w.data(), s,
                                ws);
      },
      args.reps);
  const double all_ms = bench::median_ms(
      [&] {
        cnnkit::conv2d_forward(y.data(), x.data(), w.data(), b.data(), s, ws);
        cnnkit::conv2d_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(),
                                s, ws);
      },
      args.reps);
  const double flops = 2.0 * s.N * s.OC * (s.C / s.G) * s.KH * s.KW * s.OH * s.OW;
  const double fwd_gf = flops / fwd_ms * 1e-6, all_gf = 3 * flops / all_ms * 1e-6;
  const double dw_gf = flops / dw_ms * 1e-6, dx_gf = flops / dx_ms * 1e-6;
  char geom[96];
  if (c.one_d)
    std::snprintf(geom, sizeof geom, "%lldx%lldx%lld->%lld k%lld s%lld p%lld", (long long)s.N,
                  (long long)s.C, (long long)s.W, (long long)s.OC, (long long)s.KW,
                  (long long)s.SW, (long long)s.PL);
  else
    std::snprintf(geom, sizeof geom, "%lldx%lldx%lldx%lld->%lld k%lldx%lld s%lld p%lld",
                  (long long)s.N, (long long)s.C, (long long)s.H, (long long)s.W, (long long)s.OC,
                  (long long)s.KH, (long long)s.KW, (long long)s.SH, (long long)s.PT);
  if (s.G > 1)
    std::snprintf(geom + std::strlen(geom), sizeof geom - std::strlen(geom), " g%lld",
                  (long long)s.G);
  // Each group runs the plan of its own channels; depthwise (G == C) has kernels of its own.
  const cnnkit::ConvDirectPlan plan = cnnkit::conv_direct_plan(
      s.C / s.G, s.OC / s.G, s.KH, s.KW, s.SH, s.SW, s.DH, s.DW, s.OH, s.OW);
  const char* path = s.G > 1 && s.G == s.C ? "dwise" : cnnkit::conv_direct_kind_name(plan.forward);
  std::printf("%-18s %-32s %-8s %8.1e | %8.3f %6.1f %5.1f%% | %8.3f %6.1f | %8.3f %6.1f | "
              "%8.3f %6.1f %5.1f%%\n",
              c.name.c_str(), geom, path, err, fwd_ms,
              fwd_gf, peak > 0 ? 100 * fwd_gf / peak : 0.0, dw_ms, dw_gf, dx_ms, dx_gf, all_ms,
              all_gf, peak > 0 ? 100 * all_gf / peak : 0.0);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Args args = bench::parse_args(argc, argv);
  const int pack_failures = check_packs();
  if (pack_failures) {
    std::fprintf(stderr, "%d im2col pack mismatches\n", pack_failures);
    return 1;
  }
  const int direct_failures = check_direct();
  if (direct_failures) {
    std::fprintf(stderr, "%d direct-kernel mismatches\n", direct_failures);
    return 1;
  }
  const int depthwise_failures = check_depthwise();
  if (depthwise_failures) {
    std::fprintf(stderr, "%d depthwise-kernel mismatches\n", depthwise_failures);
    return 1;
  }
  const bool wide = cnnkit::active_simd_tier() == cnnkit::SimdTier::avx512;
  const double peak = bench::fma_peak_gflops(args.threads, cnnkit::active_simd_tier());
  bench::print_header(
      wide ? "conv2d / conv1d (packs, direct, depthwise kernels checked; peak: 512-bit FMAs)"
           : "conv2d / conv1d (packs, direct, depthwise kernels checked; peak: 256-bit FMAs)",
      args, peak);
  std::printf("%-18s %-32s %-8s %8s | %8s %6s %6s | %8s %6s | %8s %6s | %8s %6s %6s\n",
              "name", "N x C x H x W -> OC", "path", "rel.err", "fwd ms", "GF/s", "peak", "dw ms",
              "GF/s", "dx ms", "GF/s", "f+b ms", "GF/s", "peak");
  std::vector<Case> cases;
  auto num = [](const std::string& t) { return std::stoll(t); };
  for (const auto& t : bench::read_shapes(args, "conv2d.txt"))
    cases.push_back({t[0],
                     cnnkit::conv2d_shape(num(t[1]), num(t[2]), num(t[3]), num(t[4]), num(t[5]),
                                          num(t[6]), num(t[7]), num(t[8]), num(t[9]), num(t[10]),
                                          num(t[10]), num(t[11]), num(t[11]), 1, 1, num(t[12])),
                     false});
  for (const auto& t : bench::read_shapes(args, "conv1d.txt"))
    cases.push_back({t[0],
                     cnnkit::conv1d_shape(num(t[1]), num(t[2]), num(t[3]), num(t[4]), num(t[5]),
                                          num(t[6]), num(t[7]), num(t[7]), 1, num(t[8])),
                     true});
  for (const Case& c : cases) run_case(c, peak, args);
  return 0;
}
