// Batch normalisation over the channels of x [N, C, HW] (BatchNorm2d: HW = H * W; BatchNorm1d:
// (N, C, L) with HW = L, or (N, C) with HW = 1): y = (x - mean[c]) * invstd[c] * weight[c] +
// bias[c], with the batch's statistics in training (PyTorch's rule) or given running ones.
#pragma once

#include <cstdint>

namespace cnnkit {

// x [N, C, HW]. batch_stats: the statistics will come from the batch (training mode, or a
// layer that tracks no running statistics).
struct BatchNormShape {
  int64_t N, C, HW;
  bool batch_stats;
};

// Validates C >= 1, N >= 0, HW >= 1, and, with batch_stats, more than one value per channel
// (N * HW != 1: PyTorch's "Expected more than 1 value per channel when training"; an empty
// batch is allowed and leaves the running statistics alone). Throws ShapeError naming them.
BatchNormShape batch_norm_shape(int64_t N, int64_t C, int64_t HW, bool batch_stats);

// y [N, C, HW] overwritten; mean, invstd [C] overwritten with the statistics y was normalised
// with (batch_norm_backward's inputs); x [N, C, HW]; weight, bias [C] or null (1 and 0).
// batch_stats: mean and invstd = 1 / sqrt(var + eps) of the batch (biased variance); then
//   running_mean, running_var [C], when not null, become (1 - momentum) * r + momentum * stat,
//   with the unbiased variance var * M / (M - 1), M = N * HW (unchanged when M = 0).
// else: running_mean, running_var [C] are read: mean = running_mean, invstd from running_var.
// Statistics are summed in double, per channel by one thread: the same bits for any thread
// count.
void batch_norm_forward(float* y, float* mean, float* invstd, float* running_mean,
                        float* running_var, const float* x, const float* weight,
                        const float* bias, const BatchNormShape& s, double momentum,
                        double eps);

// dx [N, C, HW], dweight [C], dbias [C]: each overwritten, or null when not needed; dy and x
// [N, C, HW]; mean, invstd [C] as forward wrote them; weight [C] or null. With batch_stats the
// full batch-norm gradient (mean and variance depend on x); else the affine map's only.
void batch_norm_backward(float* dx, float* dweight, float* dbias, const float* dy,
                         const float* x, const float* mean, const float* invstd,
                         const float* weight, const BatchNormShape& s);

// Two-pass double loops over the formulas: the truth the fast paths are held to.
void batch_norm_forward__ref(float* y, float* mean, float* invstd, float* running_mean,
                             float* running_var, const float* x, const float* weight,
                             const float* bias, const BatchNormShape& s, double momentum,
                             double eps);
void batch_norm_backward__ref(float* dx, float* dweight, float* dbias, const float* dy,
                              const float* x, const float* mean, const float* invstd,
                              const float* weight, const BatchNormShape& s);

}  // namespace cnnkit
