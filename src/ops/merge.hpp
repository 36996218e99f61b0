// Ops that join the outputs of branches: the elementwise sum of a residual connection and the
// channel concatenation of an inception module, with their backward passes.
#pragma once

#include <cstdint>

namespace cnnkit {

// y [n] = a + b; y may alias a or b.
void add_forward(float* y, const float* a, const float* b, int64_t n);

// Concatenation along axis 1 of `count` tensors xs[i] [N, cs[i], inner]:
// y [N, sum(cs), inner] overwritten.
void concat_forward(float* y, const float* const* xs, const int64_t* cs, int count, int64_t N,
                    int64_t inner);
// The inverse: dxs[i] [N, cs[i], inner] overwritten with their slices of dy [N, sum(cs), inner].
void concat_backward(float* const* dxs, const float* dy, const int64_t* cs, int count, int64_t N,
                     int64_t inner);

}  // namespace cnnkit
