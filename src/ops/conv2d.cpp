// conv2d: the shape function and forward/backward. Placeholder fast path until the
// im2col + packed-GEMM lowering lands: forward and backward run the direct reference loops.
#include "ops/conv2d.hpp"

#include <string>

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

void conv2d_forward(float* y, const float* x, const float* w, const float* b,
                    const Conv2dShape& s, Workspace&) {
  conv2d_forward__ref(y, x, w, b, s);
}

void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, const Conv2dShape& s, Workspace&) {
  conv2d_backward__ref(dx, dw, db, dy, x, w, s);
}

}  // namespace cnnkit
