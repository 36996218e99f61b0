// Branch-free float32 exp and tanh that loops vectorise (std::exp and std::tanh are a library
// call per element: 7 and 15 ns per element here, against ~0.2-0.5 ns vectorised). Within
// 3 ulp of the exact values (tests/test_activation.py). The per-ISA loops of
// kernels/elementwise_*.cpp inline these too: always_inline, so that no out-of-line copy
// compiled for one ISA can be linked into another's caller; and as files are compiled without
// FMA contraction (ISO C++), every SIMD tier computes the same bits.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace cnnkit::vmath {

#define CNNKIT_VMATH inline __attribute__((always_inline))

CNNKIT_VMATH float bits_to_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
CNNKIT_VMATH int32_t float_to_bits(float f) {
  int32_t i;
  std::memcpy(&i, &f, 4);
  return i;
}

// c ? a : b with both already computed, as bit masks: GCC keeps `c ? a : b` of floats as a
// branch (it will not speculate a float operation that might trap), which stops vectorisation.
CNNKIT_VMATH float select(bool c, float a, float b) {
  const int32_t m = -static_cast<int32_t>(c);
  return bits_to_float((m & float_to_bits(a)) | (~m & float_to_bits(b)));
}

// e^x for x <= 0, NaN for NaN. Cephes' expf: x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in
// two so n ln2 is exact), a degree-5 polynomial for e^r, then the exponent n added in two
// halves so that results below 2^-126 round once into the denormals, as std::exp does.
CNNKIT_VMATH float exp_nonpositive(float x) {
  x = select(x < -104.0f, -104.0f, x);  // e^-104 is below half the smallest denormal: 0
  // n = round(x / ln2) by the 1.5 * 2^23 trick: the sum's low mantissa bits hold n
  const float shifter = 12582912.0f;
  const float t = x * 1.44269504088896341f + shifter;
  // unsigned arithmetic: for a NaN x, t's bits are anything, and n must not overflow (UB)
  const auto n = static_cast<int32_t>(static_cast<uint32_t>(float_to_bits(t)) -
                                      static_cast<uint32_t>(float_to_bits(shifter)));
  const float fn = t - shifter;
  const float r = (x - fn * 0.693359375f) - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * (r * r) + r + 1.0f;
  const int32_t n1 = n / 2, n2 = n - n1;  // each >= -75: 2^n1 and 2^n2 are normal floats
  const auto pow2 = [](int32_t k) {
    return bits_to_float(static_cast<int32_t>(static_cast<uint32_t>(k + 127) << 23));
  };
  return er * pow2(n1) * pow2(n2);
}

// 1 / (1 + e^-x) without overflow: e^-|x| <= 1, and the negative side as e^x / (1 + e^x).
CNNKIT_VMATH float sigmoid(float x) {
  const float z = exp_nonpositive(-std::fabs(x));
  const float s = 1.0f / (1.0f + z);
  return select(x >= 0.0f, s, z * s);
}

// tanh: below |x| = 0.625 an odd polynomial (x + x^3 P(x^2), fitted for relative error);
// above, (1 - e) / (1 + e) with e = e^-2|x| <= 0.29, which cancels little. The sign is x's.
CNNKIT_VMATH float tanh(float x) {
  const float a = std::fabs(x);
  const float t = a * a;
  float p = -5.6602135e-3f;
  p = p * t + 2.0591227e-2f;
  p = p * t + -5.3721160e-2f;
  p = p * t + 1.3331129e-1f;
  p = p * t + -3.3333260e-1f;
  const float small = a + a * (p * t);
  const float e = exp_nonpositive(-2.0f * a);
  const float big = (1.0f - e) / (1.0f + e);
  return std::copysign(select(a < 0.625f, small, big), x);
}

}  // namespace cnnkit::vmath
