// Matrix-vector kernel dispatch: the vector kernels of a SIMD tier, when this build and CPU
// have them.
#include "kernels/gemv.hpp"

namespace cnnkit {

const GemvKernels* gemv_kernels(SimdTier tier) {
  if (!simd_tier_supported(tier)) return nullptr;
  switch (tier) {
    case SimdTier::ref:
    case SimdTier::portable: return nullptr;
    case SimdTier::avx2:
#ifdef CNNKIT_HAVE_AVX2
      return &gemv_kernels__avx2;
#else
      return nullptr;
#endif
    case SimdTier::avx512:
#ifdef CNNKIT_HAVE_AVX512
      return &gemv_kernels__avx512;
#else
      return nullptr;
#endif
  }
  return nullptr;
}

}  // namespace cnnkit
