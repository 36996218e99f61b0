// CPU feature detection and the CNNKIT_SIMD override.
#include "kernels/simd.hpp"

#include <cstdlib>

#include "common.hpp"

namespace cnnkit {

const char* simd_tier_name(SimdTier tier) {
  switch (tier) {
    case SimdTier::ref: return "ref";
    case SimdTier::portable: return "portable";
    case SimdTier::avx2: return "avx2";
    case SimdTier::avx512: return "avx512";
  }
  return "?";
}

SimdTier parse_simd_tier(const std::string& name) {
  if (name == "ref") return SimdTier::ref;
  if (name == "portable") return SimdTier::portable;
  if (name == "avx2") return SimdTier::avx2;
  if (name == "avx512") return SimdTier::avx512;
  throw ShapeError("unknown SIMD tier '" + name +
                   "': expected one of ref, portable, avx2, avx512");
}

bool simd_tier_supported(SimdTier tier) {
  switch (tier) {
    case SimdTier::ref:
    case SimdTier::portable: return true;
    case SimdTier::avx2:
#if defined(CNNKIT_HAVE_AVX2) && (defined(__GNUC__) || defined(__clang__))
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
    case SimdTier::avx512:  // F is all the kernels use; the check includes OS support
#if defined(CNNKIT_HAVE_AVX512) && (defined(__GNUC__) || defined(__clang__))
      return __builtin_cpu_supports("avx512f") && simd_tier_supported(SimdTier::avx2);
#else
      return false;
#endif
  }
  return false;
}

SimdTier best_simd_tier() {
  for (SimdTier t : {SimdTier::avx512, SimdTier::avx2})
    if (simd_tier_supported(t)) return t;
  return SimdTier::portable;
}

namespace {
struct TierChoice {
  SimdTier tier;
  std::string note;
};

TierChoice choose_tier() {
  const char* env = std::getenv("CNNKIT_SIMD");
  if (!env || !*env) return {best_simd_tier(), ""};
  SimdTier want;
  try {
    want = parse_simd_tier(env);
  } catch (const ShapeError&) {
    return {best_simd_tier(), std::string("CNNKIT_SIMD=") + env +
                                  " is not one of ref, portable, avx2, avx512; ignored"};
  }
  if (!simd_tier_supported(want))
    return {best_simd_tier(), std::string("CNNKIT_SIMD=") + env +
                                  " is not supported on this CPU or build; using " +
                                  simd_tier_name(best_simd_tier())};
  return {want, ""};
}

const TierChoice& tier_choice() {
  static const TierChoice choice = choose_tier();  // once, thread-safe (C++11 statics)
  return choice;
}
}  // namespace

SimdTier active_simd_tier() { return tier_choice().tier; }
const std::string& simd_tier_note() { return tier_choice().note; }

}  // namespace cnnkit
