// Adaptive average pooling: the bin bounds of each output row and column computed once, then
// direct loops over the bins, threads over (n, c) planes; a 1 x 1 output runs
// global_avg_pool2d's vectorised plane sums.
#include "ops/adaptive_pool.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "common.hpp"
#include "ops/pool.hpp"
#include "parallel.hpp"

namespace cnnkit {

AdaptivePool2dShape adaptive_pool2d_shape(int64_t N, int64_t C, int64_t H, int64_t W,
                                          int64_t OH, int64_t OW) {
  auto str = [](int64_t v) { return std::to_string(v); };
  if (N < 0 || C < 1 || H < 1 || W < 1)
    throw ShapeError("adaptive_avg_pool2d: input must have N >= 0 and C, H, W >= 1, got "
                     "(N, C, H, W) = (" + str(N) + ", " + str(C) + ", " + str(H) + ", " +
                     str(W) + ")");
  if (OH < 1 || OW < 1)
    throw ShapeError("adaptive_avg_pool2d: output_size must be >= 1, got (" + str(OH) + ", " +
                     str(OW) + ")");
  return {N, C, H, W, OH, OW};
}

namespace {

// [begin, end) of each of `out` bins over `in` positions, PyTorch's rule.
struct Bins {
  std::vector<int64_t> begin, end;
  Bins(int64_t in, int64_t out) : begin(out), end(out) {
    for (int64_t i = 0; i < out; ++i) {
      begin[i] = i * in / out;
      end[i] = ((i + 1) * in + out - 1) / out;
    }
  }
};

void forward_planes(float* y, const float* x, const AdaptivePool2dShape& s, const Bins& rows,
                    const Bins& cols, int64_t p0, int64_t p1) {
  for (int64_t q = p0; q < p1; ++q) {
    const float* xp = x + q * s.H * s.W;
    float* yp = y + q * s.OH * s.OW;
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const int64_t h0 = rows.begin[oh], h1 = rows.end[oh];
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const int64_t w0 = cols.begin[ow], w1 = cols.end[ow];
        float sum = 0.0f;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) sum += xp[h * s.W + w];
        yp[oh * s.OW + ow] = sum / static_cast<float>((h1 - h0) * (w1 - w0));
      }
    }
  }
}

void backward_planes(float* dx, const float* dy, const AdaptivePool2dShape& s, const Bins& rows,
                     const Bins& cols, int64_t p0, int64_t p1) {
  for (int64_t q = p0; q < p1; ++q) {
    float* dxp = dx + q * s.H * s.W;
    const float* dyp = dy + q * s.OH * s.OW;
    std::fill(dxp, dxp + s.H * s.W, 0.0f);
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const int64_t h0 = rows.begin[oh], h1 = rows.end[oh];
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const int64_t w0 = cols.begin[ow], w1 = cols.end[ow];
        const float g = dyp[oh * s.OW + ow] / static_cast<float>((h1 - h0) * (w1 - w0));
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) dxp[h * s.W + w] += g;
      }
    }
  }
}

// Taps visited per plane (bins overlap by at most one row or column each way).
int64_t plane_work(const AdaptivePool2dShape& s) {
  return (s.H + s.OH) * (s.W + s.OW) + s.OH * s.OW;
}

}  // namespace

void adaptive_avg_pool2d_forward(float* y, const float* x, const AdaptivePool2dShape& s) {
  const int64_t planes = s.N * s.C;
  if (s.OH == 1 && s.OW == 1) return global_avg_pool2d_forward(y, x, planes, s.H * s.W);
  const Bins rows(s.H, s.OH), cols(s.W, s.OW);
  parallel_for(planes, planes * plane_work(s), [&](int64_t p0, int64_t p1, int) {
    forward_planes(y, x, s, rows, cols, p0, p1);
  });
}

void adaptive_avg_pool2d_backward(float* dx, const float* dy, const AdaptivePool2dShape& s) {
  const int64_t planes = s.N * s.C;
  if (s.OH == 1 && s.OW == 1) return global_avg_pool2d_backward(dx, dy, planes, s.H * s.W);
  const Bins rows(s.H, s.OH), cols(s.W, s.OW);
  parallel_for(planes, planes * plane_work(s), [&](int64_t p0, int64_t p1, int) {
    backward_planes(dx, dy, s, rows, cols, p0, p1);
  });
}

}  // namespace cnnkit
