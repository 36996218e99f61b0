// Locally connected 2-D: the shape function, the per-position GEMM lowering and the direct
// loops. The batch is the GEMMs' long dimension, so the input and the output gradient are
// first transposed to batch-innermost layouts (xt [C*H*W, N], dyt [P, OC, N]); a window of
// position p is then a list of taps whose N values are contiguous, which packs as fast as a
// dense matrix. Per position p (P = OH * OW, K = C * KH * KW):
//   forward  yt[p] [OC, N] = W_p [OC, K] · patch_p [K, N]            then y = yt transposed + b
//   weight   dW_p [OC, K]  = dyt[p] [OC, N] · patch_p [K, N]ᵀ
//   input    dpatch_p [K, N] = W_pᵀ · dyt[p], added into dxt [C*H*W, N] tap by tap (col2im)
//            by threads owning input rows, then dx = dxt transposed
// Positions are independent (each has its own weights): threads own ranges of positions and
// run single-threaded GEMMs, so no result depends on the thread count.
#include "ops/locally_connected.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/gemm.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {
std::string tuple(std::initializer_list<int64_t> v) {
  std::string s = "(";
  for (int64_t x : v) s += (s.size() > 1 ? ", " : "") + std::to_string(x);
  return s + ")";
}
}  // namespace

LocallyConnected2dShape locally_connected2d_shape(int64_t N, int64_t C, int64_t H, int64_t W,
                                                  int64_t OC, int64_t KH, int64_t KW,
                                                  int64_t SH, int64_t SW, int64_t PT,
                                                  int64_t PB, int64_t PL, int64_t PR,
                                                  bool position_bias) {
  const std::string op = "locally_connected2d: ";
  if (N < 0 || C < 1 || H < 1 || W < 1)
    throw ShapeError(op + "input must have N >= 0 and C, H, W >= 1, got (N, C, H, W) = " +
                     tuple({N, C, H, W}));
  if (OC < 1 || KH < 1 || KW < 1)
    throw ShapeError(op + "weight must have out_channels and kernel sizes >= 1, got "
                     "(OC, KH, KW) = " + tuple({OC, KH, KW}));
  if (SH < 1 || SW < 1) throw ShapeError(op + "stride must be >= 1, got " + tuple({SH, SW}));
  if (PT < 0 || PB < 0 || PL < 0 || PR < 0)
    throw ShapeError(op + "padding must be >= 0, got (top, bottom, left, right) = " +
                     tuple({PT, PB, PL, PR}));
  if (KH > H + PT + PB || KW > W + PL + PR)
    throw ShapeError(op + "kernel " + tuple({KH, KW}) + " is larger than the padded input " +
                     tuple({H + PT + PB, W + PL + PR}));
  LocallyConnected2dShape s{N, C, H, W, OC, KH, KW, SH, SW, PT, PB, PL, PR, 0, 0, position_bias};
  s.OH = (H + PT + PB - KH) / SH + 1;
  s.OW = (W + PL + PR - KW) / SW + 1;
  return s;
}

namespace {

// dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols, in 8 x 8 tiles (both sides'
// cache lines are used whole).
void transpose(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows,
               int64_t cols) {
  constexpr int64_t T = 8;
  for (int64_t r0 = 0; r0 < rows; r0 += T)
    for (int64_t c0 = 0; c0 < cols; c0 += T) {
      const int64_t r1 = std::min(rows, r0 + T), c1 = std::min(cols, c0 + T);
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = r0; r < r1; ++r) dst[c * ldd + r] = src[r * lds + c];
    }
}

// xt [CHW, N] = x [N, CHW] transposed, threads over ranges of CHW.
void to_batch_inner(float* xt, const float* x, int64_t N, int64_t CHW) {
  parallel_for(CHW, 2 * N * CHW, [=](int64_t j0, int64_t j1, int) {
    transpose(xt + j0 * N, N, x + j0, CHW, N, j1 - j0);
  });
}

// The offset in an image [C, H, W] of each tap (c, kh, kw) of position p's window, or -1 where
// the tap falls in the zero padding.
void window_taps(int64_t* taps, const LocallyConnected2dShape& s, int64_t p) {
  const int64_t oh = p / s.OW, ow = p % s.OW;
  int64_t j = 0;
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t ih = oh * s.SH - s.PT + kh;
      for (int64_t kw = 0; kw < s.KW; ++kw, ++j) {
        const int64_t iw = ow * s.SW - s.PL + kw;
        taps[j] = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W ? (c * s.H + ih) * s.W + iw : -1;
      }
    }
}

// patch_p of the batch-inner input xt [CHW, N] as a GEMM operand X(o, k): tap o and image k
// (taps_outer), or image o and tap k.
class PatchOperand final : public GemmOperand {
 public:
  PatchOperand(const float* xt, const int64_t* taps, int64_t N, bool taps_outer)
      : xt_(xt), taps_(taps), N_(N), taps_outer_(taps_outer) {}

  void pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
            float* dst) const override {
    const int64_t panels = (no + width - 1) / width;
    for (int64_t p = 0; p < panels; ++p) {
      float* d = dst + p * nk * width;
      const int64_t rows = std::min<int64_t>(width, no - p * width);
      if (taps_outer_) {
        // row r of the panel is tap o0 + p * width + r: its images k0 .. k0 + nk - 1 are
        // contiguous in xt
        for (int64_t r = 0; r < width; ++r) {
          const int64_t tap = r < rows ? taps_[o0 + p * width + r] : -1;
          const float* src = tap >= 0 ? xt_ + tap * N_ + k0 : nullptr;
          for (int64_t k = 0; k < nk; ++k) d[k * width + r] = src ? src[k] : 0.0f;
        }
      } else {
        // column k of the panel is tap k0 + k: images o0 + p * width .. contiguous in xt
        const int64_t n0 = o0 + p * width;
        for (int64_t k = 0; k < nk; ++k) {
          const int64_t tap = taps_[k0 + k];
          float* dk = d + k * width;
          if (tap < 0) {
            std::fill(dk, dk + width, 0.0f);
            continue;
          }
          std::copy(xt_ + tap * N_ + n0, xt_ + tap * N_ + n0 + rows, dk);
          std::fill(dk + rows, dk + width, 0.0f);
        }
      }
    }
  }

 private:
  const float* xt_;
  const int64_t* taps_;
  int64_t N_;
  bool taps_outer_;
};

int64_t gemm_work(const LocallyConnected2dShape& s) {
  // flops scaled as gemm() scales them for threads_for: a thread should get ~2 MFLOP
  return (2 * s.N * s.OC * s.C * s.KH * s.KW * s.OH * s.OW) >> 5;
}

// y [N, OC, P] = yt [P, OC, N] transposed, plus the bias; threads over output channels.
void finish_output(float* y, const float* yt, const float* b, const LocallyConnected2dShape& s) {
  const int64_t N = s.N, OC = s.OC, P = s.OH * s.OW;
  const bool per_position = s.position_bias;
  parallel_for(OC, 3 * N * OC * P, [=](int64_t c0, int64_t c1, int) {
    for (int64_t oc = c0; oc < c1; ++oc) {
      transpose(y + oc * P, OC * P, yt + oc * N, OC * N, P, N);
      if (!b) continue;
      for (int64_t n = 0; n < N; ++n) {
        float* row = y + (n * OC + oc) * P;
        if (per_position) {
          const float* bp = b + oc * P;
#pragma omp simd
          for (int64_t p = 0; p < P; ++p) row[p] += bp[p];
        } else {
          const float bo = b[oc];
#pragma omp simd
          for (int64_t p = 0; p < P; ++p) row[p] += bo;
        }
      }
    }
  });
}

// dxt rows (c, ih) for c * H + ih in [r0, r1): += the dpatch [Pb, K, N] columns of positions
// [pb0, pb0 + Pb) whose windows cover them, in position then tap order.
void add_patch_grads(float* dxt, const float* dpatch, const LocallyConnected2dShape& s,
                     int64_t pb0, int64_t pb1, int64_t r0, int64_t r1) {
  const int64_t N = s.N, K = s.C * s.KH * s.KW;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t c = r / s.H, ih = r % s.H;
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const int64_t kh = ih + s.PT - oh * s.SH;
      if (kh < 0 || kh >= s.KH) continue;
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const int64_t p = oh * s.OW + ow;
        if (p < pb0 || p >= pb1) continue;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t iw = ow * s.SW - s.PL + kw;
          if (iw < 0 || iw >= s.W) continue;
          float* dst = dxt + (r * s.W + iw) * N;
          const float* src = dpatch + ((p - pb0) * K + (c * s.KH + kh) * s.KW + kw) * N;
#pragma omp simd
          for (int64_t n = 0; n < N; ++n) dst[n] += src[n];
        }
      }
    }
  }
}

// db [OC] (sums of dy over images and positions) or [OC, P] (over images), threads over
// output channels, images added in order.
void bias_grad(float* db, const float* dy, const LocallyConnected2dShape& s) {
  const int64_t N = s.N, OC = s.OC, P = s.OH * s.OW;
  const bool per_position = s.position_bias;
  parallel_for(OC, N * OC * P, [=](int64_t c0, int64_t c1, int) {
    for (int64_t oc = c0; oc < c1; ++oc) {
      if (per_position) {
        float* acc = db + oc * P;
        std::fill(acc, acc + P, 0.0f);
        for (int64_t n = 0; n < N; ++n) {
          const float* row = dy + (n * OC + oc) * P;
#pragma omp simd
          for (int64_t p = 0; p < P; ++p) acc[p] += row[p];
        }
      } else {
        double acc = 0.0;
        for (int64_t n = 0; n < N; ++n) {
          const float* row = dy + (n * OC + oc) * P;
          float part = 0.0f;
#pragma omp simd reduction(+ : part)
          for (int64_t p = 0; p < P; ++p) part += row[p];
          acc += part;
        }
        db[oc] = static_cast<float>(acc);
      }
    }
  });
}

// Positions per block of the input gradient's dpatch buffer [Pb, K, N]: at most 16 MB.
int64_t dpatch_block(const LocallyConnected2dShape& s) {
  const int64_t per_position = std::max<int64_t>(1, s.C * s.KH * s.KW * s.N);
  return std::clamp<int64_t>((int64_t{1} << 22) / per_position, 1, s.OH * s.OW);
}

}  // namespace

void locally_connected2d_forward(float* y, const float* x, const float* w, const float* b,
                                 const LocallyConnected2dShape& s, Workspace& ws) {
  const int64_t N = s.N, OC = s.OC, P = s.OH * s.OW, K = s.C * s.KH * s.KW;
  const int64_t CHW = s.C * s.H * s.W;
  if (N == 0) return;
  float* xt = ws.buffer(0, CHW * N);
  float* yt = ws.buffer(1, P * OC * N);
  to_batch_inner(xt, x, N, CHW);
  const int nt = threads_for(P, gemm_work(s));
  parallel_chunks(P, nt, [&](int64_t p0, int64_t p1, int) {
    std::vector<int64_t> taps(K);
    for (int64_t p = p0; p < p1; ++p) {
      window_taps(taps.data(), s, p);
      // yt[p] [OC, N] = W_p [OC, K] · patch_p [K, N]
      gemm(OC, N, K, 1.0f, DenseOperand(w + p * OC * K, K, 1),
           PatchOperand(xt, taps.data(), N, false), 0.0f, yt + p * OC * N, N);
    }
  });
  finish_output(y, yt, b, s);
}

void locally_connected2d_backward(float* dx, float* dw, float* db, const float* dy,
                                  const float* x, const float* w,
                                  const LocallyConnected2dShape& s, Workspace& ws) {
  const int64_t N = s.N, OC = s.OC, P = s.OH * s.OW, K = s.C * s.KH * s.KW;
  const int64_t CHW = s.C * s.H * s.W;
  if (db) bias_grad(db, dy, s);
  if (N == 0) {  // no images: zero gradients of the parameters, nothing else to write
    if (dw) std::fill(dw, dw + P * OC * K, 0.0f);
    return;
  }
  if (!dx && !dw) return;
  // dyt [P, OC, N]: for each output channel, dy [N, P] (row stride OC * P) transposed.
  float* dyt = ws.buffer(1, P * OC * N);
  parallel_for(OC, 2 * N * OC * P, [=](int64_t c0, int64_t c1, int) {
    for (int64_t oc = c0; oc < c1; ++oc) transpose(dyt + oc * N, OC * N, dy + oc * P, OC * P, N, P);
  });
  float* xt = nullptr;
  if (dw) {
    xt = ws.buffer(0, CHW * N);
    to_batch_inner(xt, x, N, CHW);
  }
  const int64_t block = dx ? dpatch_block(s) : P;
  float* dpatch = dx ? ws.buffer(2, block * K * N) : nullptr;
  float* dxt = dx ? ws.buffer(3, CHW * N) : nullptr;
  if (dx) std::fill(dxt, dxt + CHW * N, 0.0f);
  const int nt = threads_for(P, (dx && dw ? 2 : 1) * gemm_work(s));
  for (int64_t pb0 = 0; pb0 < P; pb0 += block) {
    const int64_t pb1 = std::min(P, pb0 + block);
    parallel_chunks(pb1 - pb0, nt, [&](int64_t i0, int64_t i1, int) {
      std::vector<int64_t> taps(dw ? K : 0);
      for (int64_t p = pb0 + i0; p < pb0 + i1; ++p) {
        const float* wp = w + p * OC * K;
        const float* dyp = dyt + p * OC * N;
        if (dw) {
          // dW_p [OC, K] = dyt[p] [OC, N] · (patch_p [K, N])ᵀ
          window_taps(taps.data(), s, p);
          gemm(OC, K, N, 1.0f, DenseOperand(dyp, N, 1), PatchOperand(xt, taps.data(), N, true),
               0.0f, dw + p * OC * K, K);
        }
        if (dx)  // dpatch_p [K, N] = (W_p [OC, K])ᵀ · dyt[p] [OC, N]
          gemm(K, N, OC, 1.0f, DenseOperand(wp, 1, K), DenseOperand(dyp, 1, N), 0.0f,
               dpatch + (p - pb0) * K * N, N);
      }
    });
    if (dx) {
      // Each input row (c, ih) is written by one thread, so the windows' overlaps never race.
      const int64_t rows = s.C * s.H;
      parallel_for(rows, (pb1 - pb0) * K * N, [&](int64_t r0, int64_t r1, int) {
        add_patch_grads(dxt, dpatch, s, pb0, pb1, r0, r1);
      });
    }
  }
  if (dx) {
    // dx [N, CHW] = dxt [CHW, N] transposed, threads over ranges of CHW
    parallel_for(CHW, 2 * N * CHW, [=](int64_t j0, int64_t j1, int) {
      transpose(dx + j0, CHW, dxt + j0 * N, N, j1 - j0, N);
    });
  }
}

void locally_connected2d_forward__ref(float* y, const float* x, const float* w, const float* b,
                                      const LocallyConnected2dShape& s) {
  const int64_t P = s.OH * s.OW, K = s.C * s.KH * s.KW;
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oc = 0; oc < s.OC; ++oc)
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          const int64_t p = oh * s.OW + ow;
          float acc = b ? b[s.position_bias ? oc * P + p : oc] : 0.0f;
          const float* wp = w + (p * s.OC + oc) * K;
          for (int64_t c = 0; c < s.C; ++c)
            for (int64_t kh = 0; kh < s.KH; ++kh) {
              const int64_t ih = oh * s.SH - s.PT + kh;
              if (ih < 0 || ih >= s.H) continue;
              for (int64_t kw = 0; kw < s.KW; ++kw) {
                const int64_t iw = ow * s.SW - s.PL + kw;
                if (iw < 0 || iw >= s.W) continue;
                acc += x[((n * s.C + c) * s.H + ih) * s.W + iw] * wp[(c * s.KH + kh) * s.KW + kw];
              }
            }
          y[(n * s.OC + oc) * P + p] = acc;
        }
}

void locally_connected2d_backward__ref(float* dx, float* dw, float* db, const float* dy,
                                       const float* x, const float* w,
                                       const LocallyConnected2dShape& s) {
  const int64_t P = s.OH * s.OW, K = s.C * s.KH * s.KW;
  if (dx) std::fill(dx, dx + s.N * s.C * s.H * s.W, 0.0f);
  if (dw) std::fill(dw, dw + P * s.OC * K, 0.0f);
  if (db) std::fill(db, db + (s.position_bias ? s.OC * P : s.OC), 0.0f);
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oc = 0; oc < s.OC; ++oc)
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          const int64_t p = oh * s.OW + ow;
          const float g = dy[(n * s.OC + oc) * P + p];
          if (db) db[s.position_bias ? oc * P + p : oc] += g;
          for (int64_t c = 0; c < s.C; ++c)
            for (int64_t kh = 0; kh < s.KH; ++kh) {
              const int64_t ih = oh * s.SH - s.PT + kh;
              if (ih < 0 || ih >= s.H) continue;
              for (int64_t kw = 0; kw < s.KW; ++kw) {
                const int64_t iw = ow * s.SW - s.PL + kw;
                if (iw < 0 || iw >= s.W) continue;
                const int64_t xi = ((n * s.C + c) * s.H + ih) * s.W + iw;
                const int64_t wi = (p * s.OC + oc) * K + (c * s.KH + kh) * s.KW + kw;
                if (dx) dx[xi] += g * w[wi];
                if (dw) dw[wi] += g * x[xi];
              }
            }
        }
}

}  // namespace cnnkit
