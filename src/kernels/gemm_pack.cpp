// DenseOperand::pack: a strided matrix into the driver's micro-panels. The two common layouts
// have their own loops, specialised for the tiers' panel widths so that the inner loop is
// unrolled: outer-contiguous (row-major B, transposed A), where each k of a panel is one short
// contiguous copy, and k-contiguous (row-major A, transposed B), a transpose that reads
// `width` rows side by side. Any other stride pair takes the generic loop.
#include "kernels/gemm.hpp"

namespace cnnkit {

namespace {

constexpr int64_t kPrefetchRows = 8;

// X(o, k) = src[o + k * sk]. W > 0 is the panel width known at compile time, else `width`.
template <int W>
void pack_outer_contiguous(const float* src, int64_t sk, int64_t no, int64_t nk, int width,
                           float* dst) {
  const int w = W > 0 ? W : width;
  for (int64_t o = 0; o < no; o += w, dst += nk * w) {
    const float* s = src + o;
    const int64_t rows = no - o;
    if (rows >= w) {
      // A panel walks down a column strip, one short piece per row of a large matrix: too
      // many streams for the hardware prefetcher, so fetch kPrefetchRows rows ahead.
      for (int64_t k = 0; k < nk; ++k) {
        __builtin_prefetch(s + (k + kPrefetchRows) * sk);
        __builtin_prefetch(s + (k + kPrefetchRows) * sk + w - 1);
        for (int r = 0; r < w; ++r) dst[k * w + r] = s[k * sk + r];
      }
    } else {
      for (int64_t k = 0; k < nk; ++k)
        for (int r = 0; r < w; ++r) dst[k * w + r] = r < rows ? s[k * sk + r] : 0.0f;
    }
  }
}

// X(o, k) = src[o * so + k]: each panel is a transpose of `w` rows of length nk.
template <int W>
void pack_k_contiguous(const float* src, int64_t so, int64_t no, int64_t nk, int width,
                       float* dst) {
  const int w = W > 0 ? W : width;
  for (int64_t o = 0; o < no; o += w, dst += nk * w) {
    const float* s = src + o * so;
    const int64_t rows = no - o;
    if (rows >= w) {
      for (int64_t k = 0; k < nk; ++k)
        for (int r = 0; r < w; ++r) dst[k * w + r] = s[r * so + k];
    } else {
      for (int64_t k = 0; k < nk; ++k)
        for (int r = 0; r < w; ++r) dst[k * w + r] = r < rows ? s[r * so + k] : 0.0f;
    }
  }
}

template <int W>
void pack_dense(const float* src, int64_t so, int64_t sk, int64_t no, int64_t nk, int width,
                float* dst) {
  if (so == 1) {
    pack_outer_contiguous<W>(src, sk, no, nk, width, dst);
  } else if (sk == 1) {
    pack_k_contiguous<W>(src, so, no, nk, width, dst);
  } else {
    const int w = W > 0 ? W : width;
    for (int64_t o = 0; o < no; o += w, dst += nk * w)
      for (int64_t k = 0; k < nk; ++k)
        for (int r = 0; r < w; ++r)
          dst[k * w + r] = o + r < no ? src[(o + r) * so + k * sk] : 0.0f;
  }
}

}  // namespace

void DenseOperand::pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
                        float* dst) const {
  const float* src = data_ + o0 * so_ + k0 * sk_;
  switch (width) {  // the MR and NR of the tiers
    case 6: return pack_dense<6>(src, so_, sk_, no, nk, width, dst);
    case 8: return pack_dense<8>(src, so_, sk_, no, nk, width, dst);
    case 16: return pack_dense<16>(src, so_, sk_, no, nk, width, dst);
    default: return pack_dense<0>(src, so_, sk_, no, nk, width, dst);
  }
}

}  // namespace cnnkit
