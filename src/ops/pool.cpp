// Max, average and global average pooling: the shape rules, the threading, the dispatch to the
// SIMD tier's kernels (kernels/pool.hpp) and the plain loops the portable tier runs, which
// clamp window bounds to the real input once per output element instead of testing each tap.
#include "ops/pool.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common.hpp"
#include "kernels/pool.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {
std::string sizes(int64_t a, int64_t b) { return "(" + std::to_string(a) + ", " + std::to_string(b) + ")"; }

// Clamped window of output index o along one axis: [lo, hi) within [0, extent).
struct Window {
  int64_t lo, hi;
};
inline Window window(int64_t o, int64_t stride, int64_t pad, int64_t kernel, int64_t extent) {
  const int64_t start = o * stride - pad;
  return {std::max<int64_t>(start, 0), std::min<int64_t>(start + kernel, extent)};
}

// a where mask is all ones, b where it is zero, without a branch.
inline float select_bits(int32_t mask, float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  const int32_t r = (mask & ia) | (~mask & ib);
  float out;
  std::memcpy(&out, &r, 4);
  return out;
}

// Pooling cost per plane for the parallel threshold, in bytes moved (x or dx, y or dy, and
// an int64 argmax) plus taps visited: the vector kernels are memory-bound, and counting taps
// alone kept LeNet's pool 2 backward (1024 planes of 10x10) on one thread.
inline int64_t plane_work(const Pool2dShape& s) {
  return 4 * s.H * s.W + 12 * s.OH * s.OW + s.OH * s.OW * s.KH * s.KW;
}
}  // namespace

Pool2dShape pool2d_shape(int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW,
                         int64_t SH, int64_t SW, int64_t PT, int64_t PB, int64_t PL,
                         int64_t PR) {
  if (N < 0 || C < 1 || H < 1 || W < 1)
    throw ShapeError("pool: input must have N >= 0 and C, H, W >= 1, got (N, C, H, W) = (" +
                     std::to_string(N) + ", " + std::to_string(C) + ", " + std::to_string(H) +
                     ", " + std::to_string(W) + ")");
  if (KH < 1 || KW < 1) throw ShapeError("pool: kernel_size must be >= 1, got " + sizes(KH, KW));
  if (SH < 1 || SW < 1) throw ShapeError("pool: stride must be >= 1, got " + sizes(SH, SW));
  if (PT < 0 || PB < 0 || PL < 0 || PR < 0)
    throw ShapeError("pool: padding must be >= 0, got (top, bottom, left, right) = (" +
                     std::to_string(PT) + ", " + std::to_string(PB) + ", " + std::to_string(PL) +
                     ", " + std::to_string(PR) + ")");
  if (2 * std::max(PT, PB) > KH || 2 * std::max(PL, PR) > KW)
    throw ShapeError("pool: padding must be at most half the kernel size, got padding (top, "
                     "bottom, left, right) = (" + std::to_string(PT) + ", " + std::to_string(PB) +
                     ", " + std::to_string(PL) + ", " + std::to_string(PR) + ") for kernel " +
                     sizes(KH, KW));
  if (KH > H + PT + PB || KW > W + PL + PR)
    throw ShapeError("pool: kernel " + sizes(KH, KW) + " is larger than the padded input " +
                     sizes(H + PT + PB, W + PL + PR));
  check_elements("pool", "an input plane (H, W) =", {H, W}, kMaxPlaneElements,
                 "its SIMD kernels address with 32-bit offsets");
  Pool2dShape s{N, C, H, W, KH, KW, SH, SW, PT, PB, PL, PR, 0, 0};
  s.OH = (H + PT + PB - KH) / SH + 1;
  s.OW = (W + PL + PR - KW) / SW + 1;
  return s;
}

Pool2dShape pool1d_shape(int64_t N, int64_t C, int64_t L, int64_t K, int64_t S, int64_t PL,
                         int64_t PR) {
  auto str = [](int64_t v) { return std::to_string(v); };
  if (N < 0 || C < 1 || L < 1)
    throw ShapeError("pool1d: input must have N >= 0 and C, L >= 1, got (N, C, L) = (" + str(N) +
                     ", " + str(C) + ", " + str(L) + ")");
  if (K < 1) throw ShapeError("pool1d: kernel_size must be >= 1, got " + str(K));
  if (S < 1) throw ShapeError("pool1d: stride must be >= 1, got " + str(S));
  if (PL < 0 || PR < 0 || 2 * std::max(PL, PR) > K)
    throw ShapeError("pool1d: padding must be >= 0 and at most half the kernel size, got "
                     "(left, right) = (" + str(PL) + ", " + str(PR) + ") for kernel " + str(K));
  if (K > L + PL + PR)
    throw ShapeError("pool1d: kernel " + str(K) + " is larger than the padded input length " +
                     str(L + PL + PR));
  return pool2d_shape(N, C, 1, L, 1, K, 1, S, 0, 0, PL, PR);
}

namespace {

// The plain loops: the portable tier, and the other tiers for shapes their kernels do not
// take. Each runs on planes [p0, p1).

// relu(v) as relu_forward computes it (v <= 0 becomes +0, NaN stays), branch-free.
inline float relu1(float v) { return select_bits(-static_cast<int32_t>((v > 0.0f) | (v != v)), v, 0.0f); }

// Max pooling of x, or of relu(x) when RELU.
template <bool RELU>
void max_forward_planes(float* y, int64_t* argmax, const float* x, const Pool2dShape& s,
                        int64_t p0, int64_t p1) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW, KH = s.KH, KW = s.KW;
  const int64_t SH = s.SH, SW = s.SW, PT = s.PT, PL = s.PL;
  for (int64_t p = p0; p < p1; ++p) {
    const float* xp = x + p * H * W;
    for (int64_t oh = 0; oh < OH; ++oh) {
      float* yr = y + (p * OH + oh) * OW;
      int64_t* ar = argmax + (p * OH + oh) * OW;
      const Window wh = window(oh, SH, PT, KH, H);
      for (int64_t ow = 0; ow < OW; ++ow) {
        yr[ow] = -std::numeric_limits<float>::infinity();
        ar[ow] = wh.lo * W + window(ow, SW, PL, KW, W).lo;
      }
      // Taps outermost, the row's outputs innermost: the outputs are independent, so the
      // inner loop becomes compare-and-blend over a vector of outputs instead of a
      // data-dependent branch per tap (random data mispredicts half of those). Each output
      // still sees its taps in (h, w) order, so the first maximum wins and a NaN wins
      // (PyTorch's rule); `|`, not `||`, keeps the condition branch-free.
      // Only the taps some output reads inside the row: column ow * SW + kw - PL in [0, W)
      // for an ow in [0, OW). The others read padding for every output; looping over them
      // would cost KW per row (a 2**40 kernel never finishes), and a tap right of the row
      // (off > W - 1) would give hi = 1, as C++ truncates a negative (W - 1 - off) / SW to 0,
      // and read (and point argmax) past the row.
      const int64_t kw0 = std::max<int64_t>(0, PL - (OW - 1) * SW);
      const int64_t kw1 = std::min<int64_t>(KW, W + PL);
      for (int64_t h = wh.lo; h < wh.hi; ++h) {
        for (int64_t kw = kw0; kw < kw1; ++kw) {
          const int64_t off = kw - PL;  // output ow reads input column ow * SW + off, off < W
          const int64_t lo = off >= 0 ? 0 : (-off + SW - 1) / SW;
          const int64_t hi = std::min<int64_t>(OW, (W - 1 - off) / SW + 1);
          const float* xr = xp + h * W + off;
          const int64_t base = h * W + off;
          for (int64_t ow = lo; ow < hi; ++ow) {
            const float v = RELU ? relu1(xr[ow * SW]) : xr[ow * SW], cur = yr[ow];
            // all ones when this tap wins; the select is done with bit masks because GCC
            // turns `take ? v : cur` back into a conditional branch
            const int64_t take = -static_cast<int64_t>((v > cur) | (v != v));
            yr[ow] = select_bits(static_cast<int32_t>(take), v, cur);
            ar[ow] = (take & (base + ow * SW)) | (~take & ar[ow]);
          }
        }
      }
    }
  }
}

// Zero fill, then each output's gradient added where its argmax points; with yp (the pooled
// relu(x)), only the outputs with yp > 0 (ReLU's gradient: an input shared by several windows
// has the same yp in all of them, so the sum is kept or dropped whole, as ReLU does).
void max_backward_plane(float* dxp, const float* dyp, const int64_t* ap, const float* yp,
                        int64_t in_plane, int64_t out_plane) {
  std::fill(dxp, dxp + in_plane, 0.0f);
  for (int64_t o = 0; o < out_plane; ++o) dxp[ap[o]] += !yp || yp[o] > 0.0f ? dyp[o] : 0.0f;
}

void avg_forward_planes(float* y, const float* x, const Pool2dShape& s, bool count_include_pad,
                        int64_t p0, int64_t p1) {
  for (int64_t p = p0; p < p1; ++p) {
    const float* xp = x + p * s.H * s.W;
    float* yp = y + p * s.OH * s.OW;
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const Window wh = window(oh, s.SH, s.PT, s.KH, s.H);
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const Window ww = window(ow, s.SW, s.PL, s.KW, s.W);
        float sum = 0.0f;
        for (int64_t h = wh.lo; h < wh.hi; ++h)
          for (int64_t w = ww.lo; w < ww.hi; ++w) sum += xp[h * s.W + w];
        const int64_t count =
            count_include_pad ? s.KH * s.KW : (wh.hi - wh.lo) * (ww.hi - ww.lo);
        yp[oh * s.OW + ow] = sum / static_cast<float>(count);
      }
    }
  }
}

void avg_backward_planes(float* dx, const float* dy, const Pool2dShape& s,
                         bool count_include_pad, int64_t p0, int64_t p1) {
  for (int64_t p = p0; p < p1; ++p) {
    float* dxp = dx + p * s.H * s.W;
    std::fill(dxp, dxp + s.H * s.W, 0.0f);
    const float* dyp = dy + p * s.OH * s.OW;
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const Window wh = window(oh, s.SH, s.PT, s.KH, s.H);
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const Window ww = window(ow, s.SW, s.PL, s.KW, s.W);
        const int64_t count =
            count_include_pad ? s.KH * s.KW : (wh.hi - wh.lo) * (ww.hi - ww.lo);
        const float g = dyp[oh * s.OW + ow] / static_cast<float>(count);
        for (int64_t h = wh.lo; h < wh.hi; ++h)
          for (int64_t w = ww.lo; w < ww.hi; ++w) dxp[h * s.W + w] += g;
      }
    }
  }
}

// The vector kernels of `tier` (null for ref, portable, or a tier this build or CPU lacks).
const PoolKernels* vector_kernels(SimdTier tier) {
  return tier >= SimdTier::avx2 ? pool_kernels(tier) : nullptr;
}
}  // namespace

// Every (n, c) plane is independent: threads take contiguous blocks of planes, and a vector
// kernel is called once per block.

namespace {
void max_forward(SimdTier tier, float* y, int64_t* argmax, const float* x, const Pool2dShape& s,
                 bool relu) {
  const int64_t planes = s.N * s.C, in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  if (tier == SimdTier::ref) {
    if (!relu) return max_pool2d_forward__ref(y, argmax, x, s);
    std::vector<float> rx(x, x + planes * in_plane);  // the two ops, as written
    for (float& v : rx) v = relu1(v);
    return max_pool2d_forward__ref(y, argmax, rx.data(), s);
  }
  const PoolKernels* k = pool2d_vector_forward(s) ? vector_kernels(tier) : nullptr;
  parallel_for(planes, planes * plane_work(s), [=, &s](int64_t p0, int64_t p1, int) {
    if (k)
      k->max_forward(y + p0 * out_plane, argmax + p0 * out_plane, x + p0 * in_plane, s, p1 - p0,
                     relu);
    else if (relu)
      max_forward_planes<true>(y, argmax, x, s, p0, p1);
    else
      max_forward_planes<false>(y, argmax, x, s, p0, p1);
  });
}
}  // namespace

void max_pool2d_forward(SimdTier tier, float* y, int64_t* argmax, const float* x,
                        const Pool2dShape& s) {
  max_forward(tier, y, argmax, x, s, false);
}

void max_pool2d_relu_forward(SimdTier tier, float* y, int64_t* argmax, const float* x,
                             const Pool2dShape& s) {
  max_forward(tier, y, argmax, x, s, true);
}

void max_pool2d_forward(float* y, int64_t* argmax, const float* x, const Pool2dShape& s) {
  max_pool2d_forward(active_simd_tier(), y, argmax, x, s);
}

namespace {
// The first position in argmax [count] of an index outside [0, plane), or -1. A branch-free
// OR first (the compiler vectorises it): i < 0 or i >= plane sets the sign bit of
// i | (plane - 1 - i); only a plane with a bad index is searched again.
int64_t first_bad_index(const int64_t* argmax, int64_t count, int64_t plane) {
  int64_t bits = 0;
  for (int64_t i = 0; i < count; ++i) bits |= argmax[i] | (plane - 1 - argmax[i]);
  if (bits >= 0) return -1;
  for (int64_t i = 0;; ++i)
    if (argmax[i] < 0 || argmax[i] >= plane) return i;
}

// Max pooling backward of planes [p0, p1): the vector kernel where it takes the shape, the
// scatter for the planes it hands back (and on every plane without one), each plane's
// indices range-checked first when `check`. Returns the position in argmax of the first
// index out of range (the plane is left partly written, later planes unwritten), or -1.
int64_t max_backward_planes(const PoolKernels* k, float* dx, const float* dy,
                            const int64_t* argmax, const float* y, const Pool2dShape& s,
                            bool check, int64_t p0, int64_t p1) {
  const int64_t in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  for (int64_t p = p0; p < p1; ++p) {
    // The kernel checks each index against its own window, which implies the range check.
    if (k)
      p += k->max_backward(dx + p * in_plane, dy + p * out_plane, argmax + p * out_plane,
                           y ? y + p * out_plane : nullptr, s, p1 - p);
    if (p == p1) break;
    const int64_t* ap = argmax + p * out_plane;
    if (check) {
      const int64_t bad = first_bad_index(ap, out_plane, in_plane);
      if (bad >= 0) return p * out_plane + bad;
    }
    max_backward_plane(dx + p * in_plane, dy + p * out_plane, ap, y ? y + p * out_plane : nullptr,
                       in_plane, out_plane);
  }
  return -1;
}

int64_t max_backward(SimdTier tier, float* dx, const float* dy, const int64_t* argmax,
                     const float* y, const Pool2dShape& s, bool check) {
  const int64_t planes = s.N * s.C, in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  if (tier == SimdTier::ref && !y) {
    const int64_t bad = check ? first_bad_index(argmax, planes * out_plane, in_plane) : -1;
    if (bad < 0) max_pool2d_backward__ref(dx, dy, argmax, s);
    return bad;
  }
  // Rows of fewer than 8 outputs leave most of a vector kernel's lanes idle: there the zero
  // fill and scatter is faster (LeNet's 5-wide pool 2: 14 us against 26 us).
  const PoolKernels* k =
      pool2d_dense_backward(s) && s.OW >= 8 && tier != SimdTier::ref ? vector_kernels(tier) : nullptr;
  const int nt = threads_for(planes, planes * plane_work(s));
  std::vector<int64_t> bad(nt, -1);
  // Each plane's scatter stays inside the plane, so threads never write the same element;
  // the chunks are in order, so the first chunk with a bad index has the first one.
  parallel_chunks(planes, nt, [&, k](int64_t p0, int64_t p1, int t) {
    bad[t] = max_backward_planes(k, dx, dy, argmax, y, s, check, p0, p1);
  });
  for (int64_t b : bad)
    if (b >= 0) return b;
  return -1;
}
}  // namespace

void max_pool2d_backward(SimdTier tier, float* dx, const float* dy, const int64_t* argmax,
                         const Pool2dShape& s) {
  max_backward(tier, dx, dy, argmax, nullptr, s, false);
}

void max_pool2d_backward(float* dx, const float* dy, const int64_t* argmax, const Pool2dShape& s) {
  max_backward(active_simd_tier(), dx, dy, argmax, nullptr, s, false);
}

int64_t max_pool2d_backward_checked(SimdTier tier, float* dx, const float* dy,
                                    const int64_t* argmax, const Pool2dShape& s) {
  return max_backward(tier, dx, dy, argmax, nullptr, s, true);
}

int64_t max_pool2d_relu_backward_checked(SimdTier tier, float* dx, const float* dy,
                                         const int64_t* argmax, const float* y,
                                         const Pool2dShape& s) {
  return max_backward(tier, dx, dy, argmax, y, s, true);
}

void avg_pool2d_forward(SimdTier tier, float* y, const float* x, const Pool2dShape& s,
                        bool count_include_pad) {
  if (tier == SimdTier::ref) return avg_pool2d_forward__ref(y, x, s, count_include_pad);
  const int64_t planes = s.N * s.C, in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  const PoolKernels* k = pool2d_vector_forward(s) ? vector_kernels(tier) : nullptr;
  parallel_for(planes, planes * plane_work(s), [=, &s](int64_t p0, int64_t p1, int) {
    if (!k) return avg_forward_planes(y, x, s, count_include_pad, p0, p1);
    k->avg_forward(y + p0 * out_plane, x + p0 * in_plane, s, count_include_pad, p1 - p0);
  });
}

void avg_pool2d_forward(float* y, const float* x, const Pool2dShape& s, bool count_include_pad) {
  avg_pool2d_forward(active_simd_tier(), y, x, s, count_include_pad);
}

void avg_pool2d_backward(SimdTier tier, float* dx, const float* dy, const Pool2dShape& s,
                         bool count_include_pad) {
  if (tier == SimdTier::ref) return avg_pool2d_backward__ref(dx, dy, s, count_include_pad);
  const int64_t planes = s.N * s.C, in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  const PoolKernels* k = pool2d_dense_backward(s) ? vector_kernels(tier) : nullptr;
  parallel_for(planes, planes * plane_work(s), [=, &s](int64_t p0, int64_t p1, int) {
    if (!k) return avg_backward_planes(dx, dy, s, count_include_pad, p0, p1);
    k->avg_backward(dx + p0 * in_plane, dy + p0 * out_plane, s, count_include_pad, p1 - p0);
  });
}

void avg_pool2d_backward(float* dx, const float* dy, const Pool2dShape& s,
                         bool count_include_pad) {
  avg_pool2d_backward(active_simd_tier(), dx, dy, s, count_include_pad);
}

void max_pool2d_forward__ref(float* y, int64_t* argmax, const float* x, const Pool2dShape& s) {
  for (int64_t p = 0; p < s.N * s.C; ++p)
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        float best = -std::numeric_limits<float>::infinity();
        int64_t best_i = -1;
        for (int64_t kh = 0; kh < s.KH; ++kh)
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t h = oh * s.SH - s.PT + kh, w = ow * s.SW - s.PL + kw;
            if (h < 0 || h >= s.H || w < 0 || w >= s.W) continue;
            const float v = x[p * s.H * s.W + h * s.W + w];
            if (best_i < 0 || v > best || std::isnan(v)) {
              best = v;
              best_i = h * s.W + w;
            }
          }
        y[(p * s.OH + oh) * s.OW + ow] = best;
        argmax[(p * s.OH + oh) * s.OW + ow] = best_i;
      }
}

void avg_pool2d_forward__ref(float* y, const float* x, const Pool2dShape& s,
                             bool count_include_pad) {
  for (int64_t p = 0; p < s.N * s.C; ++p)
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        float sum = 0.0f;
        int64_t count = 0;
        for (int64_t kh = 0; kh < s.KH; ++kh)
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t h = oh * s.SH - s.PT + kh, w = ow * s.SW - s.PL + kw;
            if (h < 0 || h >= s.H || w < 0 || w >= s.W) continue;
            sum += x[p * s.H * s.W + h * s.W + w];
            ++count;
          }
        y[(p * s.OH + oh) * s.OW + ow] =
            sum / static_cast<float>(count_include_pad ? s.KH * s.KW : count);
      }
}

void max_pool2d_backward__ref(float* dx, const float* dy, const int64_t* argmax,
                              const Pool2dShape& s) {
  const int64_t in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  for (int64_t p = 0; p < s.N * s.C; ++p) {
    for (int64_t i = 0; i < in_plane; ++i) dx[p * in_plane + i] = 0.0f;
    for (int64_t o = 0; o < out_plane; ++o)
      dx[p * in_plane + argmax[p * out_plane + o]] += dy[p * out_plane + o];
  }
}

void avg_pool2d_backward__ref(float* dx, const float* dy, const Pool2dShape& s,
                              bool count_include_pad) {
  for (int64_t i = 0; i < s.N * s.C * s.H * s.W; ++i) dx[i] = 0.0f;
  for (int64_t p = 0; p < s.N * s.C; ++p)
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        int64_t count = 0;  // real taps, counted as the forward __ref loop does
        for (int64_t kh = 0; kh < s.KH; ++kh)
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t h = oh * s.SH - s.PT + kh, w = ow * s.SW - s.PL + kw;
            count += h >= 0 && h < s.H && w >= 0 && w < s.W;
          }
        const float g = dy[(p * s.OH + oh) * s.OW + ow] /
                        static_cast<float>(count_include_pad ? s.KH * s.KW : count);
        for (int64_t kh = 0; kh < s.KH; ++kh)
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t h = oh * s.SH - s.PT + kh, w = ow * s.SW - s.PL + kw;
            if (h >= 0 && h < s.H && w >= 0 && w < s.W) dx[p * s.H * s.W + h * s.W + w] += g;
          }
      }
}

void global_avg_pool2d_forward(float* y, const float* x, int64_t NC, int64_t HW) {
  parallel_for(NC, NC * HW, [=](int64_t p0, int64_t p1, int) {
    for (int64_t p = p0; p < p1; ++p) {
      const float* xp = x + p * HW;
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < HW; ++i) sum += xp[i];
      y[p] = sum / static_cast<float>(HW);
    }
  });
}

void global_avg_pool2d_backward(float* dx, const float* dy, int64_t NC, int64_t HW) {
  parallel_for(NC, NC * HW, [=](int64_t p0, int64_t p1, int) {
    for (int64_t p = p0; p < p1; ++p) {
      const float g = dy[p] / static_cast<float>(HW);
      std::fill(dx + p * HW, dx + (p + 1) * HW, g);
    }
  });
}

}  // namespace cnnkit
