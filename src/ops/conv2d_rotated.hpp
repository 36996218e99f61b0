// The rotated kernel of conv2d's stride-1 input gradient as a GEMM operand, from w itself:
// X(o = c, k = oc*KH*KW + t) = wr[c, oc, t] = w[oc, c, KH*KW - 1 - t] (each kernel rotated by
// 180°, input and output channels swapped), for one group's C input and OC output channels
// (w: the group's weights [OC, C, KH, KW]). The packed floats are exactly wr's, so every
// product is the same as through a materialised wr.
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/gemm.hpp"
#include "parallel.hpp"

namespace cnnkit {

class RotatedKernelOperand final : public GemmOperand {
 public:
  RotatedKernelOperand(const float* w, int64_t C, int64_t OC, int64_t KH, int64_t KW)
      : w_(w), C_(C), OC_(OC), kk_(KH * KW) {}

  void pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
            float* dst) const override {
    const int64_t panels = (no + width - 1) / width;
    int64_t oc = k0 / kk_, t = k0 % kk_;
    for (int64_t k = 0; k < nk; ++k) {
      const float* base = w_ + oc * C_ * kk_ + (kk_ - 1 - t);
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t c0 = o0 + p * width, len = std::min<int64_t>(width, o0 + no - c0);
        float* d = dst + (p * nk + k) * width;
        for (int64_t r = 0; r < len; ++r) d[r] = base[(c0 + r) * kk_];
        for (int64_t r = len; r < width; ++r) d[r] = 0.0f;
      }
      if (++t == kk_) t = 0, ++oc;
    }
  }

  // packed [PrepackedOperand::floats(C, OC*KH*KW, width)] = pack(0, C, 0, OC*KH*KW, width),
  // in one pass over w: output channel oc's block w[oc, c0 .. c0+width) is width*KH*KW
  // contiguous floats, which become the width*KH*KW contiguous floats of panel c0/width at
  // k = oc*KH*KW (a small transpose with the taps reversed). So w is read in order once and
  // every write is a run (materialising wr, then transposing it into panels, went through
  // memory twice with scattered writes: a fifth of resnet18_l3_4x4's input gradient).
  // Output channels split over the threads; each writes its own floats.
  void prepack(int width, float* packed) const {
    const int64_t panels = (C_ + width - 1) / width, K = OC_ * kk_;
    parallel_for(OC_, 8 * OC_ * C_ * kk_, [&](int64_t oc0, int64_t oc1, int) {
      for (int64_t oc = oc0; oc < oc1; ++oc)
        for (int64_t p = 0; p < panels; ++p) {
          const int64_t c0 = p * width, len = std::min<int64_t>(width, C_ - c0);
          const float* src = w_ + (oc * C_ + c0) * kk_;
          float* d = packed + (p * K + oc * kk_) * width;
          for (int64_t t = 0; t < kk_; ++t, d += width) {
            const float* s = src + (kk_ - 1 - t);
            for (int64_t r = 0; r < len; ++r) d[r] = s[r * kk_];
            for (int64_t r = len; r < width; ++r) d[r] = 0.0f;
          }
        }
    });
  }

 private:
  const float* w_;
  int64_t C_, OC_, kk_;
};

}  // namespace cnnkit
