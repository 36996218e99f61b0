// The kernels of conv_direct.hpp as templates on a tier's vector type V. Included only by the
// per-tier files (conv_direct_portable.cpp, conv_direct_avx2.cpp, conv_direct_avx512.cpp),
// each instantiating ConvDirect<V> on its own V, whose name ends in the tier (V__avx2 ...).
// Everything here is a template on V: no function of this header is shared between files
// compiled with different ISA flags, and every instantiated name carries the tier's.
//
// V provides: T, a vector of L floats; M, a lane mask; kRegs, the vector registers; kAcc, the
// accumulators a register block may hold (kRegs less the operands); mask(n) (lanes [0, n),
// all for n >= L);
// zero(); load(p); loadz(p, m) (masked-off lanes 0 and not read); store(p, v);
// store(p, v, m); bcast(p); fma(a, b, c) = a*b + c; add(a, b); and
// transpose(dst, ldd, src, lds, rows, cols): dst[c*ldd + r] = src[r*lds + c] for r < rows,
// c < cols, both <= L (one tile; nothing else read or written).
//
// The blocks are GEMM-like microkernels over implicit operands: accumulators in a 2-D array
// indexed only by compile-time constants (every such loop is unrolled), so they stay in
// registers; the block sizes are template parameters, picked per call from tables.
#pragma once

#include <cstdint>
#include <utility>

#include "kernels/conv_direct.hpp"
#include "kernels/kernel_tables.hpp"

namespace cnnkit {
namespace conv_direct_impl {

#define CNNKIT_UNROLL _Pragma("GCC unroll 32")

// Bounds of the block-size tables.
constexpr int kMaxNC = 4;    // vectors of a row: forward_w, input
constexpr int kMaxOB = 24;   // output channels: forward_w
constexpr int kMaxR = 14;    // pixels of a row: forward_oc
constexpr int kMaxNV = 4;    // channel vectors: forward_oc
constexpr int kMaxWOB = 8;   // output channels: weight_w
constexpr int kMaxTB = 8;    // taps: weight_w
constexpr int kMaxNR = 7;    // kernel rows: weight_oc
constexpr int kMaxJ = 28;    // (c, kh) rows: input

// --- forward, vectorised over output width --------------------------------------------------
// OB output channels from o0, NC vectors of every output row from column ch0 (the last vector
// may be partial: its loads and store are masked, so nothing past the row is read or written).
// Per tap: NC loads of the image, OB weight broadcasts, OB*NC FMAs.
template <class V, int OB, int NC>
struct ForwardW {
  static constexpr bool ok = OB * NC <= V::kAcc && OB * NC + NC + 1 <= V::kRegs;
  static void run(float* y, const float* xp, const int32_t* toff, const float* wk,
                  const float* bias, const ConvDirectShape& s, int64_t o0, int64_t ch0) {
    using T = typename V::T;
    const int64_t K = s.C * s.KH * s.KW, P = s.OH * s.OW, col = ch0 * V::L;
    const typename V::M m = V::mask(s.OW - col - (NC - 1) * V::L);
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const float* xr = xp + oh * s.Wp + col;
      T acc[OB][NC];
      CNNKIT_UNROLL for (int o = 0; o < OB; ++o) {
        const T b = bias ? V::bcast(bias + o0 + o) : V::zero();
        CNNKIT_UNROLL for (int j = 0; j < NC; ++j) acc[o][j] = b;
      }
      const float* wkk = wk + o0;
      for (int64_t k = 0; k < K; ++k, wkk += s.OCs) {
        const float* xk = xr + toff[k];
        T xv[NC];
        CNNKIT_UNROLL for (int j = 0; j < NC - 1; ++j) xv[j] = V::load(xk + j * V::L);
        xv[NC - 1] = V::loadz(xk + (NC - 1) * V::L, m);
        CNNKIT_UNROLL for (int o = 0; o < OB; ++o) {
          const T wv = V::bcast(wkk + o);
          CNNKIT_UNROLL for (int j = 0; j < NC; ++j) acc[o][j] = V::fma(wv, xv[j], acc[o][j]);
        }
      }
      float* yr = y + o0 * P + oh * s.OW + col;
      CNNKIT_UNROLL for (int o = 0; o < OB; ++o) {
        CNNKIT_UNROLL for (int j = 0; j < NC - 1; ++j) V::store(yr + o * P + j * V::L, acc[o][j]);
        V::store(yr + o * P + (NC - 1) * V::L, acc[o][NC - 1], m);
      }
    }
  }
};

// --- forward, vectorised over output channels -----------------------------------------------
// RW rows from oh times R pixels from ow0 times NV channel vectors from vector v0, into the
// channels-last yt [OH*OW, OCs]. Per tap: NV weight loads, RW*R image broadcasts, RW*R*NV FMAs.
template <class V, int RW, int R, int NV>
struct ForwardOc {
  static constexpr bool ok = RW * R * NV <= V::kAcc;
  static void run(float* yt, const float* xp, const int32_t* toff, const float* wk,
                  const float* bias, const ConvDirectShape& s, int64_t oh, int64_t ow0,
                  int64_t v0) {
    using T = typename V::T;
    const int64_t K = s.C * s.KH * s.KW;
    T acc[RW][R][NV];
    CNNKIT_UNROLL for (int v = 0; v < NV; ++v) {
      const T b = bias ? V::load(bias + (v0 + v) * V::L) : V::zero();
      CNNKIT_UNROLL for (int i = 0; i < RW; ++i) {
        CNNKIT_UNROLL for (int r = 0; r < R; ++r) acc[i][r][v] = b;
      }
    }
    const float* xr = xp + oh * s.Wp + ow0;
    const float* wkk = wk + v0 * V::L;
    for (int64_t k = 0; k < K; ++k, wkk += s.OCs) {
      T wv[NV];
      CNNKIT_UNROLL for (int v = 0; v < NV; ++v) wv[v] = V::load(wkk + v * V::L);
      CNNKIT_UNROLL for (int i = 0; i < RW; ++i) {
        const float* xk = xr + i * s.Wp + toff[k];
        CNNKIT_UNROLL for (int r = 0; r < R; ++r) {
          const T xb = V::bcast(xk + r);
          CNNKIT_UNROLL for (int v = 0; v < NV; ++v)
            acc[i][r][v] = V::fma(xb, wv[v], acc[i][r][v]);
        }
      }
    }
    CNNKIT_UNROLL for (int i = 0; i < RW; ++i) {
      float* out = yt + ((oh + i) * s.OW + ow0) * s.OCs + v0 * V::L;
      CNNKIT_UNROLL for (int r = 0; r < R; ++r) {
        CNNKIT_UNROLL for (int v = 0; v < NV; ++v)
          V::store(out + r * s.OCs + v * V::L, acc[i][r][v]);
      }
    }
  }
};
template <class V, int R, int NV>
struct ForwardOc1 : ForwardOc<V, 1, R, NV> {};
template <class V, int R, int NV>
struct ForwardOc2 : ForwardOc<V, 2, R, NV> {};

// --- weight gradient, vectorised over output width ------------------------------------------
// OB output channels from o0 times TB taps from t0, lane partials over every (oh, ow): per
// vector of a dy row, OB loads of dy, TB loads of the image, OB*TB FMAs. The last vector of a
// row is masked in dy and in the image alike, so its dead lanes multiply 0 by 0 (a NaN or Inf
// of the image outside the taps' reach must not enter dw).
template <class V, int OB, int TB>
struct WeightW {
  static constexpr bool ok = OB * TB <= V::kAcc && OB * TB + OB + 1 <= V::kRegs;
  using T = typename V::T;

  template <bool Masked>
  static inline __attribute__((always_inline)) void step(T (&acc)[OB][TB], const float* dyr,
                                                         const float* xr, const int32_t* toff,
                                                         int64_t P, typename V::M m) {
    // One pointer stepped down the OB dy rows, opaque to the compiler, which would otherwise
    // hold OB row offsets in registers and, short of registers, reload them from the stack
    // at every step.
    T d[OB];
    const float* dp = dyr;
    CNNKIT_UNROLL for (int o = 0; o < OB; ++o) {
      d[o] = Masked ? V::loadz(dp, m) : V::load(dp);
      dp += P;
      asm("" : "+r"(dp));
    }
    CNNKIT_UNROLL for (int t = 0; t < TB; ++t) {
      const T xv = Masked ? V::loadz(xr + toff[t], m) : V::load(xr + toff[t]);
      CNNKIT_UNROLL for (int o = 0; o < OB; ++o) acc[o][t] = V::fma(d[o], xv, acc[o][t]);
    }
  }

  static void run(float* dwv, const float* xp, const int32_t* toff, const float* dy,
                  const ConvDirectShape& s, int64_t o0, int64_t t0) {
    const int64_t K = s.C * s.KH * s.KW, P = s.OH * s.OW;
    const int64_t full = (s.OW - 1) / V::L;  // vectors before the last, which may be partial
    const typename V::M m = V::mask(s.OW - full * V::L);
    T acc[OB][TB];
    CNNKIT_UNROLL for (int o = 0; o < OB; ++o) {
      CNNKIT_UNROLL for (int t = 0; t < TB; ++t)
        acc[o][t] = V::load(dwv + ((o0 + o) * K + t0 + t) * kConvDirectLanes);
    }
    const int32_t* tt = toff + t0;
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const float* dyr = dy + o0 * P + oh * s.OW;
      const float* xr = xp + oh * s.Wp;
      for (int64_t j = 0; j < full; ++j) step<false>(acc, dyr + j * V::L, xr + j * V::L, tt, P, m);
      step<true>(acc, dyr + full * V::L, xr + full * V::L, tt, P, m);
    }
    CNNKIT_UNROLL for (int o = 0; o < OB; ++o) {
      CNNKIT_UNROLL for (int t = 0; t < TB; ++t)
        V::store(dwv + ((o0 + o) * K + t0 + t) * kConvDirectLanes, acc[o][t]);
    }
  }
};

// --- weight gradient, vectorised over output channels ---------------------------------------
// The taps (c, kh0 .. kh0+NR-1, every kw) of channel vector v: per pixel, one load of the
// channels-last dy, NR*KW image broadcasts, as many FMAs. KW is a template parameter so that
// a row's taps are consecutive addresses (immediate offsets, no tap table in the loop).
template <class V, int KW, int NR>
struct WeightOc {
  static constexpr bool ok = KW * NR + 2 <= V::kRegs;  // + the dy vector and a spare
  static void run(float* dwt, const float* xp, const float* dyt, const ConvDirectShape& s,
                  int64_t c, int64_t kh0, int64_t v) {
    using T = typename V::T;
    T acc[NR][KW];
    float* out = dwt + ((c * s.KH + kh0) * KW) * s.OCs + v * V::L;
    CNNKIT_UNROLL for (int r = 0; r < NR; ++r) {
      CNNKIT_UNROLL for (int q = 0; q < KW; ++q) acc[r][q] = V::load(out + (r * KW + q) * s.OCs);
    }
    const float* xc = xp + (c * s.Hp + kh0) * s.Wp;
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const float* xr = xc + oh * s.Wp;
      const float* d = dyt + oh * s.OW * s.OCs + v * V::L;
      for (int64_t ow = 0; ow < s.OW; ++ow, d += s.OCs) {
        const T dv = V::load(d);
        // One pointer per kernel row, opaque to the compiler: pixel ow + 1 reads tap q at the
        // address of tap q + 1 here, and left to see that, GCC (predictive commoning) carries
        // the taps over in scalar registers, spills them and broadcasts from the stack; and
        // it would otherwise hold each of the NR*KW offsets r*Wp + q in a register of its own.
        CNNKIT_UNROLL for (int r = 0; r < NR; ++r) {
          const float* xq = xr + r * s.Wp + ow;
          asm("" : "+r"(xq));
          CNNKIT_UNROLL for (int q = 0; q < KW; ++q)
            acc[r][q] = V::fma(V::bcast(xq + q), dv, acc[r][q]);
        }
      }
    }
    CNNKIT_UNROLL for (int r = 0; r < NR; ++r) {
      CNNKIT_UNROLL for (int q = 0; q < KW; ++q) V::store(out + (r * KW + q) * s.OCs, acc[r][q]);
    }
  }
};

// --- input gradient: scatter form, vectorised over input width ------------------------------
// RW dy rows from oh, the J rows (c, kh) = j0 .. j0+J-1 of the flattened C*KH, NC vectors of
// input columns from ch0: acc[i][j] = sum over (oc, kw) of w[oc, c, kh, kw] *
// dy[oc, oh + i, iw + PL - kw] (from the zero-padded copy dyp), then added into row
// oh + i - PT + kh of dxp [C, H, Wv] where that row exists. Per (oc, kw): RW*NC loads of dyp,
// J weight broadcasts, RW*J*NC FMAs.
template <class V, int RW, int J, int NC>
struct Input {
  static constexpr bool ok = RW * J * NC <= V::kAcc && RW * (J + 1) * NC + 1 <= V::kRegs;
  static void run(float* dxp, const float* dyp, const float* wt, const ConvDirectShape& s,
                  int64_t oh, int64_t j0, int64_t ch0) {
    using T = typename V::T;
    const int64_t CKH = s.C * s.KH, col = ch0 * V::L;
    T acc[RW][J][NC];
    CNNKIT_UNROLL for (int i = 0; i < RW; ++i) {
      CNNKIT_UNROLL for (int j = 0; j < J; ++j) {
        CNNKIT_UNROLL for (int n = 0; n < NC; ++n) acc[i][j][n] = V::zero();
      }
    }
    const float* drow = dyp + oh * s.Wd + s.PL + s.KW - 1 + col;
    const float* wj = wt + j0;
    for (int64_t oc = 0; oc < s.OC; ++oc, drow += s.OH * s.Wd) {
      for (int64_t kw = 0; kw < s.KW; ++kw, wj += CKH) {
        T dv[RW][NC];
        CNNKIT_UNROLL for (int i = 0; i < RW; ++i) {
          CNNKIT_UNROLL for (int n = 0; n < NC; ++n)
            dv[i][n] = V::load(drow + i * s.Wd - kw + n * V::L);
        }
        CNNKIT_UNROLL for (int j = 0; j < J; ++j) {
          const T wb = V::bcast(wj + j);
          CNNKIT_UNROLL for (int i = 0; i < RW; ++i) {
            CNNKIT_UNROLL for (int n = 0; n < NC; ++n)
              acc[i][j][n] = V::fma(wb, dv[i][n], acc[i][j][n]);
          }
        }
      }
    }
    CNNKIT_UNROLL for (int i = 0; i < RW; ++i) {
      int64_t c = j0 / s.KH, kh = j0 % s.KH;  // of row j, stepped without dividing
      CNNKIT_UNROLL for (int j = 0; j < J; ++j) {
        const int64_t ih = oh + i - s.PT + kh, at = (c * s.H + ih) * s.Wv + col;
        if (++kh == s.KH) kh = 0, ++c;
        if (ih < 0 || ih >= s.H) continue;  // a row of the padding: its sums are dropped
        CNNKIT_UNROLL for (int n = 0; n < NC; ++n) {
          float* p = dxp + at + n * V::L;
          V::store(p, V::add(V::load(p), acc[i][j][n]));
        }
      }
    }
  }
};
template <class V, int J, int NC>
struct Input1 : Input<V, 1, J, NC> {};
template <class V, int J, int NC>
struct Input2 : Input<V, 2, J, NC> {};

// --- tables of the instantiations ------------------------------------------------------------

using kernel_tables::fill;  // table[A][B] = &Kernel<V, A, B>::run, or null

// Kernel<V, A, B> seen with its two block sizes swapped, so that every table is indexed by
// the size fixed for a call first.
template <template <class, int, int> class Kernel>
struct Flip {
  template <class W, int A, int B>
  struct K : Kernel<W, B, A> {};
};

template <class V>
struct Tables {
  using ForwardWFn = void (*)(float*, const float*, const int32_t*, const float*, const float*,
                              const ConvDirectShape&, int64_t, int64_t);
  using ForwardOcFn = void (*)(float*, const float*, const int32_t*, const float*,
                               const float*, const ConvDirectShape&, int64_t, int64_t, int64_t);
  using WeightWFn = void (*)(float*, const float*, const int32_t*, const float*,
                             const ConvDirectShape&, int64_t, int64_t);
  using WeightOcFn = void (*)(float*, const float*, const float*, const ConvDirectShape&,
                              int64_t, int64_t, int64_t);
  using InputFn = void (*)(float*, const float*, const float*, const ConvDirectShape&, int64_t,
                           int64_t, int64_t);

  ForwardWFn forward_w[kMaxNC + 1][kMaxOB + 1] = {};                // [NC][OB]
  ForwardOcFn forward_oc[3][kMaxNV + 1][kMaxR + 1] = {};            // [RW][NV][R]
  WeightWFn weight_w[kMaxWOB + 1][kMaxTB + 1] = {};                 // [OB][TB]
  WeightOcFn weight_oc[kConvDirectMaxKernel + 1][kMaxNR + 1] = {};  // [KW][NR]
  InputFn input[3][kMaxNC + 1][kMaxJ + 1] = {};                     // [RW][NC][J]

  constexpr Tables() {
    fill<Flip<ForwardW>::template K, V>(forward_w, std::make_integer_sequence<int, kMaxNC + 1>());
    fill<Flip<ForwardOc1>::template K, V>(forward_oc[1],
                                          std::make_integer_sequence<int, kMaxNV + 1>());
    fill<Flip<ForwardOc2>::template K, V>(forward_oc[2],
                                          std::make_integer_sequence<int, kMaxNV + 1>());
    fill<WeightW, V>(weight_w, std::make_integer_sequence<int, kMaxWOB + 1>());
    fill<WeightOc, V>(weight_oc, std::make_integer_sequence<int, kConvDirectMaxKernel + 1>());
    fill<Flip<Input1>::template K, V>(input[1], std::make_integer_sequence<int, kMaxNC + 1>());
    fill<Flip<Input2>::template K, V>(input[2], std::make_integer_sequence<int, kMaxNC + 1>());
  }
};

template <class V>
inline constexpr Tables<V> kTables{};

// The entry points of one tier (ConvDirectKernels), which split the work into blocks.
template <class V>
struct ConvDirect {
  static constexpr const Tables<V>& tables = kTables<V>;

  // [begin, end) of part i of n near-equal parts of [0, total).
  struct Part {
    int64_t begin, end;
  };
  static Part part(int64_t total, int64_t n, int64_t i) {
    return {total * i / n, total * (i + 1) / n};
  }

  // The block shape of forward_w and input: rw image rows x j weight rows (broadcast) x nc
  // vectors of a row (loaded), for `rows` weight rows and `vecs` vectors per image row.
  struct Blocking {
    int64_t rw, j, nc;
  };
  // Estimated cycles of one step of such a block: its FMAs at 2 per cycle, its loads (the
  // unaligned row vectors and the weight broadcasts, folded into the FMAs or not) at about 1
  // per cycle, and at least the FMA latency (4), as each accumulator takes one FMA per step.
  // Fitted on Zen 5 (AVX-512 and AVX2) over LeNet, CIFAR's stem and conv1d: blocks of about
  // one load per FMA ran 1.5-2x slower than those of 10 loads per 24 FMAs.
  static double step_cycles(int64_t rw, int64_t j, int64_t nc) {
    const double fmas = rw * j * nc / 2.0, loads = static_cast<double>(rw * nc + j);
    const double most = fmas > loads ? fmas : loads;
    return most > 4.0 ? most : 4.0;
  }
  // The shape of least estimated cycles per image row over every vector count nc <= kMaxNC
  // and rw in {1, max_rw}, j the most weight rows the registers hold (so that fewer blocks
  // pass over the data). Always taking the widest nc left AVX2's 16 registers 2 or 3 weight
  // rows: 1.3-2x slower than the GEMM path on conv1d's input gradient.
  static Blocking blocking(int64_t rows, int64_t vecs, int64_t max_rw, int64_t max_j) {
    Blocking best{1, 1, 1};
    double best_cycles = 0.0;
    for (int64_t rw = 1; rw <= max_rw; ++rw)
      for (int64_t nc = 1; nc <= min(kMaxNC, vecs); ++nc) {
        int64_t j = min(max_j, V::kAcc / (rw * nc));
        while (j > 0 && rw * (j + 1) * nc + 1 > V::kRegs) --j;
        if (j < 1) continue;
        const int64_t nb = ceil_div(rows, j), ng = ceil_div(vecs, nc);
        const double cycles =
            nb * ng * step_cycles(rw, ceil_div(rows, nb), ceil_div(vecs, ng)) / rw;
        if (best_cycles == 0.0 || cycles < best_cycles) best = {rw, j, nc}, best_cycles = cycles;
      }
    return best;
  }

  // toff[k]: the offset in xp of tap k = (c, kh, kw) from the output pixel's top-left input.
  static void tap_offsets(int32_t* toff, const ConvDirectShape& s) {
    int64_t k = 0;
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t kh = 0; kh < s.KH; ++kh)
        for (int64_t kw = 0; kw < s.KW; ++kw)
          toff[k++] = static_cast<int32_t>((c * s.Hp + kh) * s.Wp + kw);
  }

  static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
  static int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }

  // dst [n] = src [n], in vectors (the last one masked: nothing past either row is touched).
  static void copy_row(float* dst, const float* src, int64_t n) {
    for (int64_t j = 0; j < n; j += V::L) {
      const typename V::M m = V::mask(n - j);
      V::store(dst + j, V::loadz(src + j, m), m);
    }
  }
  static void zero_row(float* dst, int64_t n) {
    for (int64_t j = 0; j < n; j += V::L) V::store(dst + j, V::zero(), V::mask(n - j));
  }

  static void forward_w(float* y, const float* xp, const float* wk, const float* bias,
                        const ConvDirectShape& s) {
    int32_t toff[kConvDirectMaxTaps];
    tap_offsets(toff, s);
    // Output channels and the row's vectors in near-equal blocks of the chosen shape.
    const int64_t vecs = ceil_div(s.OW, V::L);
    const Blocking b = blocking(s.OC, vecs, 1, kMaxOB);
    const int64_t nb = ceil_div(s.OC, b.j), ng = ceil_div(vecs, b.nc);
    for (int64_t g = 0; g < ng; ++g) {
      const Part pg = part(vecs, ng, g);
      for (int64_t i = 0; i < nb; ++i) {
        const Part p = part(s.OC, nb, i);
        tables.forward_w[pg.end - pg.begin][p.end - p.begin](y, xp, toff, wk, bias, s, p.begin,
                                                             pg.begin);
      }
    }
  }

  static void forward_oc(float* y, const float* xp, const float* wk, const float* bias,
                         float* yt, const ConvDirectShape& s) {
    int32_t toff[kConvDirectMaxTaps];
    tap_offsets(toff, s);
    const int64_t vecs = ceil_div(s.OC, V::L);
    for (int64_t v0 = 0; v0 < vecs; v0 += kMaxNV) {
      const int64_t nv = min(kMaxNV, vecs - v0);
      // Pairs of rows when a row's pixels fit half the accumulators: each weight vector then
      // feeds twice the FMAs (LeNet conv2: 2 x 10 pixels).
      const int64_t rw = s.OW * nv * 2 <= V::kAcc ? 2 : 1;
      const int64_t nb = ceil_div(s.OW, min(kMaxR, V::kAcc / (nv * rw)));
      for (int64_t oh = 0; oh < s.OH; oh += rw)
        for (int64_t i = 0; i < nb; ++i) {
          const Part p = part(s.OW, nb, i);
          const int64_t rows = min(rw, s.OH - oh);
          tables.forward_oc[rows][nv][p.end - p.begin](yt, xp, toff, wk, bias, s, oh, p.begin,
                                                       v0);
        }
    }
    // y [OC, P] = yt [P, OCs] transposed, tile by tile.
    const int64_t P = s.OH * s.OW;
    for (int64_t p0 = 0; p0 < P; p0 += V::L)
      for (int64_t c0 = 0; c0 < s.OC; c0 += V::L)
        V::transpose(y + c0 * P + p0, P, yt + p0 * s.OCs + c0, s.OCs, min(V::L, P - p0),
                     min(V::L, s.OC - c0));
  }

  static void weight_w(float* dwv, const float* xp, const float* dy, const ConvDirectShape& s) {
    int32_t toff[kConvDirectMaxTaps];
    tap_offsets(toff, s);
    const int64_t K = s.C * s.KH * s.KW;
    // OB x TB blocks: OB up to kAcc / 4 channels (6 on AVX-512: LeNet's conv1 in one), then as
    // many taps as the accumulators allow, each split into near-equal parts.
    const int64_t nob = ceil_div(s.OC, min(kMaxWOB, V::kAcc / 4));
    for (int64_t i = 0; i < nob; ++i) {
      const Part po = part(s.OC, nob, i);
      const int64_t ob = po.end - po.begin;
      int64_t tb = min(kMaxTB, V::kAcc / ob);
      while (tb > 1 && ob * tb + ob + 1 > V::kRegs) --tb;
      const int64_t ntb = ceil_div(K, tb);
      for (int64_t q = 0; q < ntb; ++q) {
        const Part pt = part(K, ntb, q);
        tables.weight_w[ob][pt.end - pt.begin](dwv, xp, toff, dy, s, po.begin, pt.begin);
      }
    }
  }

  static void weight_oc(float* dwt, const float* xp, const float* dy, float* dyt,
                        const ConvDirectShape& s) {
    // dyt [P, OCs] = dy [OC, P] transposed, zeros past OC.
    const int64_t P = s.OH * s.OW;
    if (s.OC < s.OCs)
      for (int64_t p = 0; p < P; ++p) zero_row(dyt + p * s.OCs + s.OC, s.OCs - s.OC);
    for (int64_t c0 = 0; c0 < s.OC; c0 += V::L)
      for (int64_t p0 = 0; p0 < P; p0 += V::L)
        V::transpose(dyt + p0 * s.OCs + c0, s.OCs, dy + c0 * P + p0, P, min(V::L, s.OC - c0),
                     min(V::L, P - p0));
    const int64_t vecs = ceil_div(s.OC, V::L);
    const int64_t nrmax = min(kMaxNR, (V::kRegs - 2) / s.KW);
    const int64_t nb = ceil_div(s.KH, nrmax);
    for (int64_t v = 0; v < vecs; ++v)
      for (int64_t c = 0; c < s.C; ++c)
        for (int64_t i = 0; i < nb; ++i) {
          const Part p = part(s.KH, nb, i);
          tables.weight_oc[s.KW][p.end - p.begin](dwt, xp, dyt, s, c, p.begin, v);
        }
  }

  static void input(float* dx, const float* dy, const float* wt, float* scratch,
                    const ConvDirectShape& s) {
    // dyp [OC, OH, Wd]: each dy row at column KW-1, zeros around it; dxp [C, H, Wv] zeros.
    float* dyp = scratch;
    float* dxp = scratch + s.OC * s.OH * s.Wd;
    for (int64_t r = 0; r < s.OC * s.OH; ++r) {
      float* d = dyp + r * s.Wd;
      zero_row(d, s.Wd);
      copy_row(d + s.KW - 1, dy + r * s.OW, s.OW);
    }
    zero_row(dxp, s.C * s.H * s.Wv);
    // Rows (c, kh) and the row's vectors in near-equal blocks of the chosen shape; pairs of dy
    // rows share each weight broadcast (LeNet conv2: 3 blocks of 10 rows x 2).
    const int64_t CKH = s.C * s.KH, vecs = ceil_div(s.W, V::L);
    const Blocking b = blocking(CKH, vecs, s.OH >= 2 ? 2 : 1, kMaxJ);
    const int64_t nb = ceil_div(CKH, b.j), ng = ceil_div(vecs, b.nc);
    for (int64_t g = 0; g < ng; ++g) {
      const Part pg = part(vecs, ng, g);
      for (int64_t i = 0; i < nb; ++i) {
        const Part p = part(CKH, nb, i);
        for (int64_t oh = 0; oh < s.OH; oh += b.rw) {
          const int64_t rows = min(b.rw, s.OH - oh);
          tables.input[rows][pg.end - pg.begin][p.end - p.begin](dxp, dyp, wt, s, oh, p.begin,
                                                                 pg.begin);
        }
      }
    }
    for (int64_t r = 0; r < s.C * s.H; ++r) copy_row(dx + r * s.W, dxp + r * s.Wv, s.W);
  }
};

#undef CNNKIT_UNROLL

}  // namespace conv_direct_impl
}  // namespace cnnkit
