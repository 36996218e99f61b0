// Constant padding: row by row, a fill, one copy of the overlapping span, a fill; threads over
// planes. Backward is the same copy the other way (the crop of the padded frame).
#include "ops/pad.hpp"

#include <algorithm>
#include <string>

#include "common.hpp"
#include "parallel.hpp"

namespace cnnkit {

Pad2dShape pad2d_shape(int64_t planes, int64_t H, int64_t W, int64_t PT, int64_t PB,
                       int64_t PL, int64_t PR) {
  auto str = [](int64_t v) { return std::to_string(v); };
  if (planes < 0 || H < 0 || W < 0)
    throw ShapeError("pad: sizes must be >= 0, got (planes, H, W) = (" + str(planes) + ", " +
                     str(H) + ", " + str(W) + ")");
  const int64_t crop_h = std::max<int64_t>(-PT, 0) + std::max<int64_t>(-PB, 0);
  const int64_t crop_w = std::max<int64_t>(-PL, 0) + std::max<int64_t>(-PR, 0);
  if (crop_h > H || crop_w > W)
    throw ShapeError("pad: negative padding (top, bottom, left, right) = (" + str(PT) + ", " +
                     str(PB) + ", " + str(PL) + ", " + str(PR) + ") crops more than the input's (" +
                     str(H) + ", " + str(W) + ")");
  return {planes, H, W, PT, PB, PL, PR, H + PT + PB, W + PL + PR};
}

namespace {

// The columns of an output row that come from the input: [lo, hi), input column ow - PL.
struct Span {
  int64_t lo, hi;
};
Span inner_columns(const Pad2dShape& s) {
  const int64_t lo = std::clamp<int64_t>(s.PL, 0, s.OW);
  const int64_t hi = std::clamp<int64_t>(s.PL + s.W, lo, s.OW);
  return {lo, hi};
}

void forward_planes(float* y, const float* x, const Pad2dShape& s, float value, int64_t p0,
                    int64_t p1) {
  const Span cols = inner_columns(s);
  for (int64_t q = p0; q < p1; ++q)
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      float* yr = y + (q * s.OH + oh) * s.OW;
      const int64_t h = oh - s.PT;
      if (h < 0 || h >= s.H) {
        std::fill(yr, yr + s.OW, value);
        continue;
      }
      const float* xr = x + (q * s.H + h) * s.W + (cols.lo - s.PL);  // input of column lo
      std::fill(yr, yr + cols.lo, value);
      std::copy(xr, xr + (cols.hi - cols.lo), yr + cols.lo);
      std::fill(yr + cols.hi, yr + s.OW, value);
    }
}

void backward_planes(float* dx, const float* dy, const Pad2dShape& s, int64_t p0, int64_t p1) {
  const Span cols = inner_columns(s);
  for (int64_t q = p0; q < p1; ++q)
    for (int64_t h = 0; h < s.H; ++h) {
      float* dxr = dx + (q * s.H + h) * s.W;
      const int64_t oh = h + s.PT;
      if (oh < 0 || oh >= s.OH) {
        std::fill(dxr, dxr + s.W, 0.0f);
        continue;
      }
      const int64_t lo = cols.lo - s.PL, hi = cols.hi - s.PL;  // input columns kept
      const float* dyr = dy + (q * s.OH + oh) * s.OW + cols.lo;  // the gradient of column lo
      std::fill(dxr, dxr + lo, 0.0f);
      std::copy(dyr, dyr + (hi - lo), dxr + lo);
      std::fill(dxr + hi, dxr + s.W, 0.0f);
    }
}

}  // namespace

void pad2d_forward(float* y, const float* x, const Pad2dShape& s, float value) {
  parallel_for(s.planes, 2 * s.planes * s.OH * s.OW, [=, &s](int64_t p0, int64_t p1, int) {
    forward_planes(y, x, s, value, p0, p1);
  });
}

void pad2d_backward(float* dx, const float* dy, const Pad2dShape& s) {
  parallel_for(s.planes, 2 * s.planes * s.H * s.W, [=, &s](int64_t p0, int64_t p1, int) {
    backward_planes(dx, dy, s, p0, p1);
  });
}

}  // namespace cnnkit
