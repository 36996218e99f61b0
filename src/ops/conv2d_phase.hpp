// conv2d forward for large strided kernels (AlexNet conv1: 11x11, stride 4): each image is
// first made phase-split (kernels/im2col_phase.hpp), once, into a per-thread scratch, and the
// GEMM y = w · col + b packs col from it as the stride-1 case. Same GEMM, same K order, same
// per-image threading as the generic im2col path, so y is bit-identical to it (packing only
// copies) and independent of the thread count. The backward is unchanged.
#pragma once

#include <cstdint>

#include "common.hpp"
#include "ops/conv2d.hpp"

namespace cnnkit {

// Whether the forward of shape sg takes this path: dense convolutions only (G == 1, so pass
// the whole shape, not a per-group one); also depends on the active SIMD tier.
bool conv2d_phase_applies(const Conv2dShape& sg);
// Scratch floats conv2d_forward_phase needs (for the whole shape s).
int64_t conv2d_phase_scratch(const Conv2dShape& s);
void conv2d_forward_phase(float* y, const float* x, const float* w, const float* b,
                          const Conv2dShape& s, float* scratch);

}  // namespace cnnkit
