// Max, average and global average pooling. Every (n, c) plane is independent, so threads take
// contiguous blocks of planes and backward's scatter-adds never race. Window bounds are clamped
// to the real input once per output element instead of testing each tap for padding.
#include "ops/pool.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "common.hpp"
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

// Pooling cost per plane in taps, for the parallel threshold.
inline int64_t plane_work(const Pool2dShape& s) { return s.OH * s.OW * s.KH * s.KW + s.H * s.W; }
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
  if (H * W > std::numeric_limits<int32_t>::max())
    throw ShapeError("pool: a plane of " + sizes(H, W) + " has more than 2^31 elements");
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

void max_pool2d_forward(float* y, int64_t* argmax, const float* x, const Pool2dShape& s) {
  const int64_t planes = s.N * s.C, in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  parallel_for(planes, planes * plane_work(s), [&](int64_t p0, int64_t p1, int) {
    const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW, KH = s.KH, KW = s.KW;
    const int64_t SH = s.SH, SW = s.SW, PT = s.PT, PL = s.PL;
    for (int64_t p = p0; p < p1; ++p) {
      const float* xp = x + p * in_plane;
      for (int64_t oh = 0; oh < OH; ++oh) {
        float* yr = y + p * out_plane + oh * OW;
        int64_t* ar = argmax + p * out_plane + oh * OW;
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
        for (int64_t h = wh.lo; h < wh.hi; ++h) {
          for (int64_t kw = 0; kw < KW; ++kw) {
            const int64_t off = kw - PL;  // output ow reads input column ow * SW + off
            const int64_t lo = off >= 0 ? 0 : (-off + SW - 1) / SW;
            const int64_t hi = std::min<int64_t>(OW, (W - 1 - off) / SW + 1);
            const float* xr = xp + h * W + off;
            const int64_t base = h * W + off;
            for (int64_t ow = lo; ow < hi; ++ow) {
              const float v = xr[ow * SW], cur = yr[ow];
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
  });
}

void max_pool2d_backward(float* dx, const float* dy, const int64_t* argmax, const Pool2dShape& s) {
  const int64_t planes = s.N * s.C, in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  parallel_for(planes, planes * (in_plane + out_plane), [&](int64_t p0, int64_t p1, int) {
    for (int64_t p = p0; p < p1; ++p) {
      float* dxp = dx + p * in_plane;
      std::fill(dxp, dxp + in_plane, 0.0f);
      const float* dyp = dy + p * out_plane;
      const int64_t* ap = argmax + p * out_plane;
      for (int64_t o = 0; o < out_plane; ++o) dxp[ap[o]] += dyp[o];
    }
  });
}

void avg_pool2d_forward(float* y, const float* x, const Pool2dShape& s, bool count_include_pad) {
  const int64_t planes = s.N * s.C, in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  parallel_for(planes, planes * plane_work(s), [&](int64_t p0, int64_t p1, int) {
    for (int64_t p = p0; p < p1; ++p) {
      const float* xp = x + p * in_plane;
      float* yp = y + p * out_plane;
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
  });
}

void avg_pool2d_backward(float* dx, const float* dy, const Pool2dShape& s,
                         bool count_include_pad) {
  const int64_t planes = s.N * s.C, in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  parallel_for(planes, planes * plane_work(s), [&](int64_t p0, int64_t p1, int) {
    for (int64_t p = p0; p < p1; ++p) {
      float* dxp = dx + p * in_plane;
      std::fill(dxp, dxp + in_plane, 0.0f);
      const float* dyp = dy + p * out_plane;
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
  });
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
