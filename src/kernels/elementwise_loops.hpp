// The loops of kernels/elementwise.hpp, included by each ISA's file (elementwise.cpp for the
// portable build, elementwise_avx2.cpp, elementwise_avx512.cpp), which wraps them in
// functions named for its ISA. Everything here is always_inline: an out-of-line copy compiled
// for one ISA must never be linked into another's callers.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/elementwise.hpp"
#include "ops/vmath.hpp"

namespace cnnkit::elementwise_loops {

#define CNNKIT_LOOP inline __attribute__((always_inline))

CNNKIT_LOOP void sigmoid(float* y, const float* x, int64_t b, int64_t e) {
#pragma omp simd
  for (int64_t i = b; i < e; ++i) y[i] = vmath::sigmoid(x[i]);
}

CNNKIT_LOOP void tanh(float* y, const float* x, int64_t b, int64_t e) {
#pragma omp simd
  for (int64_t i = b; i < e; ++i) y[i] = vmath::tanh(x[i]);
}

// The optimizer file needs -fno-math-errno for its sqrt to vectorise (CMakeLists.txt sets it
// for every file including this loop); with errno, GCC branches to the library call per
// element (4x slower).
CNNKIT_LOOP void adam(float* p, float* m, float* v, const float* g, int64_t b, int64_t e,
                      const AdamScalars& s) {
  const AdamScalars c = s;  // by value: the float stores below cannot alias it
#pragma omp simd
  for (int64_t i = b; i < e; ++i) {
    const float d = c.decay ? g[i] + c.wd * p[i] : g[i];
    // m.lerp_(d, w1): torch uses m + w1 * (d - m) for |w1| < 0.5, else d - (d - m) * (1 - w1),
    // so that the result is exact at both ends of the weight range.
    const float mi = c.small ? m[i] + c.w1 * (d - m[i]) : d - (d - m[i]) * c.w1c;
    const float vi = v[i] * c.b2 + c.w2 * d * d;
    m[i] = mi;
    v[i] = vi;
    p[i] -= c.step_size * (mi / (std::sqrt(vi) / c.bc2_sqrt + c.eps));
  }
}

}  // namespace cnnkit::elementwise_loops
