// The elementwise loops of kernels/elementwise_loops.hpp compiled for AVX512.
#include "kernels/elementwise_loops.hpp"

namespace cnnkit {

namespace {
void sigmoid__avx512(float* y, const float* x, int64_t b, int64_t e) {
  elementwise_loops::sigmoid(y, x, b, e);
}
void tanh__avx512(float* y, const float* x, int64_t b, int64_t e) {
  elementwise_loops::tanh(y, x, b, e);
}
void adam__avx512(float* p, float* m, float* v, const float* g, int64_t b, int64_t e,
                  const AdamScalars& s) {
  elementwise_loops::adam(p, m, v, g, b, e, s);
}
}  // namespace

const ElementwiseKernels elementwise_kernels__avx512 = {sigmoid__avx512, tanh__avx512, adam__avx512};

}  // namespace cnnkit
