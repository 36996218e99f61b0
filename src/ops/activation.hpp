// Elementwise activations on n floats. Backward takes the forward output y (all three
// derivatives are functions of it), so the input need not be kept. y may alias x, dx may
// alias dy.
#pragma once

#include <cstdint>

namespace cnnkit {

void relu_forward(float* y, const float* x, int64_t n);                        // max(x, 0), NaN kept
void relu_backward(float* dx, const float* dy, const float* y, int64_t n);     // dy * (y > 0)
void sigmoid_forward(float* y, const float* x, int64_t n);                     // 1 / (1 + e^-x), no overflow
void sigmoid_backward(float* dx, const float* dy, const float* y, int64_t n);  // dy * y * (1 - y)
void tanh_forward(float* y, const float* x, int64_t n);
void tanh_backward(float* dx, const float* dy, const float* y, int64_t n);     // dy * (1 - y^2)

}  // namespace cnnkit
