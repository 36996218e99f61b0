// Fully connected layer: y = x · W^T + b with W stored (OUT, IN) as PyTorch stores it.
#pragma once

#include <cstdint>

namespace cnnkit {

// y [N, OUT] overwritten; x [N, IN]; w [OUT, IN]; b [OUT] or null.
void linear_forward(float* y, const float* x, const float* w, const float* b, int64_t N,
                    int64_t IN, int64_t OUT);

// dx [N, IN], dw [OUT, IN], db [OUT]: each overwritten, or null when not needed; dy [N, OUT].
void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int64_t N, int64_t IN, int64_t OUT);

}  // namespace cnnkit
