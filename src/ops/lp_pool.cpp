// Lp pooling: direct loops over each window, threads over (n, c) planes. The window sums are
// recomputed in backward instead of being kept from forward (one more pass over x, one less
// array to carry between the passes).
#include "ops/lp_pool.hpp"

#include <algorithm>
#include <cmath>

#include "parallel.hpp"

namespace cnnkit {

namespace {

// x^p, with the powers PyTorch computes exactly (x * x for 2) taken without pow.
inline float power(float x, float p) {
  if (p == 2.0f) return x * x;
  if (p == 1.0f) return x;
  return std::pow(x, p);
}

// S^(1/p), with sqrt for p = 2 (correctly rounded, and several times cheaper than pow).
inline float root(float sum, float p, float inv_p) {
  return p == 2.0f ? std::sqrt(sum) : std::pow(sum, inv_p);
}

// d(x^p)/dx / p = x^(p - 1)
inline float power_slope(float x, float p) {
  if (p == 2.0f) return x;
  if (p == 1.0f) return 1.0f;
  return std::pow(x, p - 1.0f);
}

// Σ x^p over the window of output (oh, ow) in the plane xp [H, W].
inline float window_sum(const float* xp, const Pool2dShape& s, int64_t oh, int64_t ow, float p) {
  float sum = 0.0f;
  for (int64_t kh = 0; kh < s.KH; ++kh) {
    const float* row = xp + (oh * s.SH + kh) * s.W + ow * s.SW;
    for (int64_t kw = 0; kw < s.KW; ++kw) sum += power(row[kw], p);
  }
  return sum;
}

void forward_planes(float* y, const float* x, const Pool2dShape& s, float p, int64_t p0,
                    int64_t p1) {
  const float inv_p = static_cast<float>(1.0 / p);
  for (int64_t q = p0; q < p1; ++q) {
    const float* xp = x + q * s.H * s.W;
    float* yp = y + q * s.OH * s.OW;
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow)
        yp[oh * s.OW + ow] = root(window_sum(xp, s, oh, ow, p), p, inv_p);
  }
}

void backward_planes(float* dx, const float* dy, const float* x, const Pool2dShape& s, float p,
                     int64_t p0, int64_t p1) {
  const float root_slope = static_cast<float>(1.0 / p - 1.0);  // d S^(1/p) / dS, times p
  const int64_t plane = s.H * s.W;
  for (int64_t q = p0; q < p1; ++q) {
    const float* xp = x + q * plane;
    float* dxp = dx + q * plane;
    const float* dyp = dy + q * s.OH * s.OW;
    // dS of every input first (the windows' gradients added up), then times d(x^p)/dx for
    // every input, as PyTorch's chain rule does: an input no window covers gets 0 * slope,
    // which is NaN where the slope is (x < 0 with a fractional p), as in PyTorch.
    std::fill(dxp, dxp + plane, 0.0f);
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const float sum = window_sum(xp, s, oh, ow, p);
        if (sum == 0.0f) continue;  // PyTorch's relu(|S|) passes no gradient at S = 0
        const float g = dyp[oh * s.OW + ow] *
                        (p == 2.0f ? 1.0f / std::sqrt(sum) : std::pow(sum, root_slope));
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          float* row = dxp + (oh * s.SH + kh) * s.W + ow * s.SW;
          for (int64_t kw = 0; kw < s.KW; ++kw) row[kw] += g;
        }
      }
    if (p != 1.0f)
      for (int64_t i = 0; i < plane; ++i) dxp[i] *= power_slope(xp[i], p);
  }
}

int64_t plane_work(const Pool2dShape& s) { return 8 * s.OH * s.OW * s.KH * s.KW + s.H * s.W; }

}  // namespace

void lp_pool2d_forward(float* y, const float* x, const Pool2dShape& s, float p) {
  const int64_t planes = s.N * s.C;
  parallel_for(planes, planes * plane_work(s), [=, &s](int64_t p0, int64_t p1, int) {
    forward_planes(y, x, s, p, p0, p1);
  });
}

void lp_pool2d_backward(float* dx, const float* dy, const float* x, const Pool2dShape& s,
                        float p) {
  const int64_t planes = s.N * s.C;
  parallel_for(planes, 2 * planes * plane_work(s), [=, &s](int64_t p0, int64_t p1, int) {
    backward_planes(dx, dy, x, s, p, p0, p1);
  });
}

}  // namespace cnnkit
