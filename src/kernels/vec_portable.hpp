// The portable tier's vector, V__portable: 4 floats as GCC / Clang vector extensions, which
// compile to the baseline ISA (SSE2 on x86-64, NEON on AArch64); 16 registers; partial
// vectors element by element (masked-off lanes neither read nor written). The operations the
// per-tier kernel templates take (conv_direct_impl.hpp describes them); included only by the
// portable tier's kernel files.
#pragma once

#include <cstdint>
#include <cstring>

namespace cnnkit {

namespace {

#define CNNKIT_INLINE static inline __attribute__((always_inline))

struct V__portable {
  typedef float T __attribute__((vector_size(16)));
  using M = int;  // the number of leading lanes
  static constexpr int L = 4;
  static constexpr int kRegs = 16;
  static constexpr int kAcc = 12;
  CNNKIT_INLINE M mask(int64_t n) { return n >= 4 ? 4 : static_cast<int>(n); }
  CNNKIT_INLINE T zero() { return T{0.0f, 0.0f, 0.0f, 0.0f}; }
  CNNKIT_INLINE T load(const float* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  CNNKIT_INLINE T loadz(const float* p, M m) {
    if (m == 4) return load(p);
    T v = zero();
    for (int l = 0; l < m; ++l) v[l] = p[l];
    return v;
  }
  CNNKIT_INLINE void store(float* p, T v) { std::memcpy(p, &v, sizeof v); }
  CNNKIT_INLINE void store(float* p, T v, M m) {
    if (m == 4) return store(p, v);
    for (int l = 0; l < m; ++l) p[l] = v[l];
  }
  CNNKIT_INLINE T bcast(const float* p) { return T{*p, *p, *p, *p}; }
  CNNKIT_INLINE T fma(T a, T b, T c) { return a * b + c; }
  CNNKIT_INLINE T add(T a, T b) { return a + b; }
  CNNKIT_INLINE void transpose(float* dst, int64_t ldd, const float* src, int64_t lds,
                               int64_t rows, int64_t cols) {
    for (int64_t c = 0; c < cols; ++c)
      for (int64_t r = 0; r < rows; ++r) dst[c * ldd + r] = src[r * lds + c];
  }
};

#undef CNNKIT_INLINE

}  // namespace

}  // namespace cnnkit
