// Which SIMD tier the kernels run: detected once from the CPU, overridable with
// CNNKIT_SIMD=ref|portable|avx2|avx512 so that tests can run every tier on one machine.
#pragma once

#include <string>

namespace cnnkit {

// Ordered: a CPU that supports a tier supports every tier below it (avx512 is only reported
// with AVX2+FMA present), so a kernel family without an avx512 version runs its avx2 one for
// any tier >= avx2.
enum class SimdTier : int { ref = 0, portable = 1, avx2 = 2, avx512 = 3 };

const char* simd_tier_name(SimdTier tier);
SimdTier parse_simd_tier(const std::string& name);  // throws ShapeError on an unknown name
bool simd_tier_supported(SimdTier tier);            // compiled in and runnable on this CPU
SimdTier best_simd_tier();                          // the fastest supported tier

// The tier in use, fixed at first call: $CNNKIT_SIMD if set (an unsupported request falls
// back to the best supported tier and simd_tier_note() says so), else best_simd_tier().
SimdTier active_simd_tier();
const std::string& simd_tier_note();  // empty unless the request was overridden

}  // namespace cnnkit
