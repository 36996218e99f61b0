// conv1d's shape function: 1-D validation and messages, then the 2-D shape with H = KH = 1.
#include "ops/conv1d.hpp"

#include <string>

namespace cnnkit {

Conv2dShape conv1d_shape(int64_t N, int64_t C, int64_t L, int64_t OC, int64_t K, int64_t S,
                         int64_t PL, int64_t PR, int64_t D, int64_t G) {
  auto str = [](int64_t v) { return std::to_string(v); };
  if (N < 0 || C < 1 || L < 1)
    throw ShapeError("conv1d: input must have N >= 0 and C, L >= 1, got (N, C, L) = (" + str(N) +
                     ", " + str(C) + ", " + str(L) + ")");
  if (OC < 1 || K < 1)
    throw ShapeError("conv1d: weight must have out_channels and kernel_size >= 1, got (OC, K) = (" +
                     str(OC) + ", " + str(K) + ")");
  if (G < 1 || C % G != 0 || OC % G != 0)
    throw ShapeError("conv1d: groups must be >= 1 and divide in_channels and out_channels, got "
                     "groups = " + str(G) + " for (C, OC) = (" + str(C) + ", " + str(OC) + ")");
  if (S < 1) throw ShapeError("conv1d: stride must be >= 1, got " + str(S));
  if (D < 1) throw ShapeError("conv1d: dilation must be >= 1, got " + str(D));
  if (PL < 0 || PR < 0)
    throw ShapeError("conv1d: padding must be >= 0, got (left, right) = (" + str(PL) + ", " +
                     str(PR) + ")");
  const int64_t ek = D * (K - 1) + 1;
  if (ek > L + PL + PR)
    throw ShapeError("conv1d: kernel " + str(K) + (D > 1 ? " (dilated to " + str(ek) + ")" : "") +
                     " is larger than the padded input length " + str(L + PL + PR));
  return conv2d_shape(N, C, 1, L, OC, 1, K, 1, S, 0, 0, PL, PR, 1, D, G);
}

}  // namespace cnnkit
