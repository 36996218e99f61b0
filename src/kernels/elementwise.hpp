// Per-ISA builds of the elementwise loops that are compute-bound in the portable (SSE2) build:
// sigmoid and tanh (vmath's exp and polynomials) and Adam's update (a square root and a
// division per element). One loop source (elementwise_loops.hpp) compiled per ISA file, so
// every tier computes the same bits (no FMA contraction in ISO C++, and sqrt and division
// are correctly rounded in every ISA); the tier picks only the vector width.
#pragma once

#include <cstdint>

#include "kernels/simd.hpp"

namespace cnnkit {

// Adam's per-tensor scalars, rounded to float where torch.optim rounds them (ops/optim.cpp).
struct AdamScalars {
  float step_size;  // lr / (1 - beta1^t), formed in double
  float bc2_sqrt;   // sqrt(1 - beta2^t), formed in double
  float w1, w1c;    // the lerp weight 1 - beta1, and 1 - w1
  bool small;       // |w1| < 0.5: which of torch's two lerp formulas
  float b2, w2;     // beta2 and 1 - beta2
  float eps, wd;
  bool decay;       // weight_decay != 0
};

// Each loop runs on elements [b, e) (a thread's chunk).
struct ElementwiseKernels {
  void (*sigmoid)(float* y, const float* x, int64_t b, int64_t e);
  void (*tanh)(float* y, const float* x, int64_t b, int64_t e);
  // p, m, v [n] updated in place from g (see ops/optim.hpp)
  void (*adam)(float* p, float* m, float* v, const float* g, int64_t b, int64_t e,
               const AdamScalars& s);
};

// The loops of a tier: the portable ones for ref and portable (and for a tier this build or
// CPU cannot run), else the widest of avx2 / avx512 the tier allows.
const ElementwiseKernels& elementwise_kernels(SimdTier tier);

extern const ElementwiseKernels elementwise_kernels__portable;
extern const ElementwiseKernels elementwise_kernels__avx2;
extern const ElementwiseKernels elementwise_kernels__avx512;

}  // namespace cnnkit
