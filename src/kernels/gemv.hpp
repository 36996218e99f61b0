// Matrix-vector kernels for a linear layer's forward on a few rows (inference on one image):
// y [N, OUT] = x [N, IN] · (w [OUT, IN])^T + b, each output a dot product of two contiguous
// rows, so w is read once, in place, where the GEMM would first pack all of it (for N = 1 the
// packing costs ~10x the arithmetic). Per-ISA builds of one template (gemv_impl.hpp).
#pragma once

#include <cstdint>

#include "kernels/simd.hpp"

namespace cnnkit {

// Rows of x the kernels take at once (N <= kGemvMaxRows): past that the GEMM's packing of w
// is shared by enough rows to pay for itself.
constexpr int64_t kGemvMaxRows = 4;

struct GemvKernels {
  // y[n, o] = sum_k x[n, k] * w[o, k] (+ b[o] when b) for n < N <= kGemvMaxRows and
  // o in [o0, o1); y has row stride OUT. Each dot product is summed in vector lanes, in a
  // fixed order that depends only on IN, so the result is the same whichever threads compute
  // which outputs (it may differ from the GEMM's by rounding).
  void (*linear_rows)(float* y, const float* x, const float* w, const float* b, int64_t N,
                      int64_t IN, int64_t OUT, int64_t o0, int64_t o1);
};

// The kernels of a tier (avx2, avx512 when built and supported); null for ref and portable
// and for a tier this build or CPU cannot run (linear then runs the GEMM).
const GemvKernels* gemv_kernels(SimdTier tier);

extern const GemvKernels gemv_kernels__avx2;
extern const GemvKernels gemv_kernels__avx512;

}  // namespace cnnkit
