// Locally connected 2-D layer ("local connections, unshared"): a convolution whose filter is
// different at every output position. Lowered per position to small GEMMs over the batch:
//   forward  Y_p[N, OC]  = patch_p(x)[N, C*KH*KW] · W_p[OC, C*KH*KW]ᵀ + b
//   weight   dW_p[OC, K] = dY_p[N, OC]ᵀ · patch_p(x)[N, K]
//   input    dpatch_p    = dY_p · W_p, added back into dx through the window of p (col2im)
// where p = (oh, ow) and patch_p(x)[n, :] is the (zero-padded) window of image n that p sees.
#pragma once

#include <cstdint>

#include "common.hpp"

namespace cnnkit {

// Input x [N, C, H, W], weight w [OH, OW, OC, C, KH, KW] (one conv filter bank per output
// position, positions outermost), output y [N, OC, OH, OW]; stride SH SW; zero padding PT PB
// PL PR. Bias b [OC] shared by all positions, or with position_bias [OC, OH, OW], one per
// output element ("a separate bias at each location").
struct LocallyConnected2dShape {
  int64_t N, C, H, W;
  int64_t OC, KH, KW;
  int64_t SH, SW;
  int64_t PT, PB, PL, PR;
  int64_t OH, OW;
  bool position_bias;
};

// OH = (H + PT + PB - KH) / SH + 1 (and likewise OW), validating sizes >= 1 (N >= 0), stride
// >= 1, padding >= 0 and the kernel no larger than the padded input. Throws ShapeError naming
// the sizes. (The weight's OH, OW must then equal these: the bindings check.)
LocallyConnected2dShape locally_connected2d_shape(int64_t N, int64_t C, int64_t H, int64_t W,
                                                  int64_t OC, int64_t KH, int64_t KW,
                                                  int64_t SH, int64_t SW, int64_t PT,
                                                  int64_t PB, int64_t PL, int64_t PR,
                                                  bool position_bias);

// y [N, OC, OH, OW] overwritten; x, w as above; b as the shape says, or null.
void locally_connected2d_forward(float* y, const float* x, const float* w, const float* b,
                                 const LocallyConnected2dShape& s, Workspace& ws);

// dx [N, C, H, W], dw [OH, OW, OC, C, KH, KW], db [OC] or [OC, OH, OW]: each overwritten, or
// null when not needed; dy [N, OC, OH, OW]; x is read only for dw, w only for dx. Every
// result is the same bits for any thread count.
void locally_connected2d_backward(float* dx, float* dw, float* db, const float* dy,
                                  const float* x, const float* w,
                                  const LocallyConnected2dShape& s, Workspace& ws);

// Direct loops over the formula, the truth the GEMM path is held to.
void locally_connected2d_forward__ref(float* y, const float* x, const float* w, const float* b,
                                      const LocallyConnected2dShape& s);
void locally_connected2d_backward__ref(float* dx, float* dw, float* db, const float* dy,
                                       const float* x, const float* w,
                                       const LocallyConnected2dShape& s);

}  // namespace cnnkit
