// The portable build of the elementwise loops (kernels/elementwise_loops.hpp) and the choice
// of a tier's loops.
#include "kernels/elementwise_loops.hpp"

namespace cnnkit {

namespace {
void sigmoid__portable(float* y, const float* x, int64_t b, int64_t e) {
  elementwise_loops::sigmoid(y, x, b, e);
}
void tanh__portable(float* y, const float* x, int64_t b, int64_t e) {
  elementwise_loops::tanh(y, x, b, e);
}
void adam__portable(float* p, float* m, float* v, const float* g, int64_t b, int64_t e,
                    const AdamScalars& s) {
  elementwise_loops::adam(p, m, v, g, b, e, s);
}
}  // namespace

const ElementwiseKernels elementwise_kernels__portable = {sigmoid__portable, tanh__portable,
                                                          adam__portable};

const ElementwiseKernels& elementwise_kernels(SimdTier tier) {
#ifdef CNNKIT_HAVE_AVX512
  if (tier >= SimdTier::avx512 && simd_tier_supported(SimdTier::avx512))
    return elementwise_kernels__avx512;
#endif
#ifdef CNNKIT_HAVE_AVX2
  if (tier >= SimdTier::avx2 && simd_tier_supported(SimdTier::avx2))
    return elementwise_kernels__avx2;
#endif
  return elementwise_kernels__portable;
}

}  // namespace cnnkit
