// Per-ISA pooling kernels, one (n, c) plane per call: x [H, W] -> y [OH, OW] (ops/pool.hpp owns
// the shapes, the threading and the portable loops). Each output row is computed a vector of
// outputs at a time, its window's taps visited in the same (h, w) order as the __ref loops, so
// every tier gives the same bits: max keeps the first maximum and the last NaN, average sums
// the real taps in order from +0 and divides (never multiplies by a reciprocal).
#pragma once

#include <cstdint>

#include "kernels/simd.hpp"
#include "ops/pool.hpp"

namespace cnnkit {

// Forward kernels take any window at column stride 1 or 2 (a vector of outputs then reads
// one or two contiguous runs of a row); other strides use the portable loops.
inline bool pool2d_vector_forward(const Pool2dShape& s) { return s.SW == 1 || s.SW == 2; }

// Backward kernels take windows two columns wide at column stride 2 and as tall as their row
// stride: the windows tile the input without overlap or gaps, so each input has at most one
// window and dx is written once, densely (no zero fill followed by a scatter), and the
// inputs past the last window are zeroed.
inline bool pool2d_dense_backward(const Pool2dShape& s) {
  return s.KW == 2 && s.SW == 2 && s.KH == s.SH;
}

// The kernels of one SIMD tier, each on `planes` consecutive planes (x planes [H, W], y,
// argmax, dy planes [OH, OW]).
struct PoolKernels {
  // y, argmax (flat h * W + w within the plane) overwritten from x, or from relu(x) when
  // `relu` (ReLU then max pooling, without writing relu(x): the same bits as the two).
  void (*max_forward)(float* y, int64_t* argmax, const float* x, const Pool2dShape& s,
                      int64_t planes, bool relu);
  // dx overwritten from dy; with y (the pooled relu(x)), the gradient of ReLU then max
  // pooling: dy only where y > 0. Returns the number of planes done: `planes`, or the first
  // plane holding an argmax outside its own window (indices not from the forward pass,
  // possibly out of range), which is left partly written for the caller to check and redo.
  int64_t (*max_backward)(float* dx, const float* dy, const int64_t* argmax, const float* y,
                          const Pool2dShape& s, int64_t planes);
  void (*avg_forward)(float* y, const float* x, const Pool2dShape& s, bool count_include_pad,
                      int64_t planes);
  void (*avg_backward)(float* dx, const float* dy, const Pool2dShape& s, bool count_include_pad,
                       int64_t planes);
};

// The vector kernels of a tier (avx2, avx512 when built and supported); null for ref and
// portable and for a tier this build or CPU cannot run.
const PoolKernels* pool_kernels(SimdTier tier);

extern const PoolKernels pool_kernels__avx2;
extern const PoolKernels pool_kernels__avx512;

}  // namespace cnnkit
