// Adaptive average pooling (PyTorch's adaptive_avg_pool2d): x [N, C, H, W] -> y [N, C, OH, OW]
// for any output size; output row i averages input rows [floor(i * H / OH), ceil((i + 1) * H /
// OH)), likewise for columns, so bins may overlap or repeat rows when H is not a multiple of
// OH. An output of 1 x 1 is global average pooling.
#pragma once

#include <cstdint>

namespace cnnkit {

struct AdaptivePool2dShape {
  int64_t N, C, H, W;
  int64_t OH, OW;
};

// Validates N >= 0, C, H, W >= 1 and OH, OW >= 1; throws ShapeError naming the sizes.
AdaptivePool2dShape adaptive_pool2d_shape(int64_t N, int64_t C, int64_t H, int64_t W,
                                          int64_t OH, int64_t OW);

// y [N, C, OH, OW] overwritten with the mean of each bin of x [N, C, H, W].
void adaptive_avg_pool2d_forward(float* y, const float* x, const AdaptivePool2dShape& s);
// dx [N, C, H, W] overwritten: each dy spread evenly over its bin (overlaps add up).
void adaptive_avg_pool2d_backward(float* dx, const float* dy, const AdaptivePool2dShape& s);

}  // namespace cnnkit
