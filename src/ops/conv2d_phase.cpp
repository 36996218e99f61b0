// conv2d forward through the phase-split image (ops/conv2d_phase.hpp).
#include "ops/conv2d_phase.hpp"

#include "kernels/gemm.hpp"
#include "kernels/im2col.hpp"
#include "kernels/im2col_phase.hpp"
#include "kernels/simd.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {

Im2colShape phase_im2col_shape(const Conv2dShape& s) {
  return {s.C, s.H, s.W, s.KH, s.KW, s.SH, s.SW, s.PT, s.PL, s.DH, s.DW, s.OH, s.OW};
}

// The generic path's threading (conv2d.cpp unit_threads): whole (image, group) units per
// thread when that keeps every thread busy (at most 25% of the slots idle), else 1 and the
// GEMM's own threads.
int phase_threads(const Conv2dShape& s) {
  const int64_t items = s.N * s.G;
  const int64_t flops = s.N * 2 * s.OC * (s.C / s.G) * s.KH * s.KW * s.OH * s.OW;
  const int nt = threads_for(items, flops);
  if (nt <= 1) return 1;
  const int64_t per_thread = (items + nt - 1) / nt;
  return per_thread * nt * 4 <= items * 5 ? nt : 1;
}

}  // namespace

bool conv2d_phase_applies(const Conv2dShape& sg) {
  // Strides 3 and up with a kernel wider than the stride: each input value then feeds several
  // taps of a row. Not on the avx2 tier, which has no vector split or pack of its own here:
  // AlexNet conv1 (1 thread) ran 13.0 ms on its im2col pack, 14.4 on the portable phase pack
  // (avx512: 7.2 -> 5.6-5.8 ms; portable: 40.5 -> 36.7 ms).
  return active_simd_tier() != SimdTier::avx2 && sg.SW >= 3 && sg.KW > sg.SW && sg.OW >= 16 &&
         sg.G == 1;
}

int64_t conv2d_phase_scratch(const Conv2dShape& s) {
  return phase_threads(s) * im2col_phase_geometry(phase_im2col_shape(s)).floats();
}

void conv2d_forward_phase(float* y, const float* x, const float* w, const float* b,
                          const Conv2dShape& s, float* scratch) {
  const Im2colShape g = phase_im2col_shape(s);
  const int64_t P = s.OH * s.OW, K = s.C * s.KH * s.KW;
  const int64_t xs = s.C * s.H * s.W, ys = s.OC * P, qs = im2col_phase_geometry(g).floats();
  GemmEpilogue ep;
  ep.row_bias = b;
  parallel_chunks(s.N, phase_threads(s), [&](int64_t n0, int64_t n1, int t) {
    float* xq = scratch + t * qs;
    for (int64_t n = n0; n < n1; ++n) {
      im2col_phase_split(xq, x + n * xs, g);
      gemm(s.OC, P, K, 1.0f, gemm_a(w, K, false), Im2colPhaseOperand(xq, g), 0.0f, y + n * ys,
           P, ep);
    }
  });
}

}  // namespace cnnkit
