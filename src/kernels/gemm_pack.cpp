// DenseOperand::pack: a strided matrix into the driver's micro-panels. The two common layouts
// have their own loops, specialised for the tiers' panel widths (6, 8, 16, 32):
//  - outer-contiguous (row-major B, transposed A): each k of a panel is one short contiguous
//    copy (a fixed-size memcpy the compiler turns into vector moves), done a few source rows
//    at a time across all panels so that reads run along rows;
//  - k-contiguous (row-major A, transposed B): a transpose, done 4 x 4 with SSE2 (part of the
//    x86-64 baseline, so no tier is needed) where the compiler targets it.
// The zero-padded last panel and any other stride pair take plain loops.
#include <cstring>

#include "kernels/gemm.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace cnnkit {

namespace {

// d[k * W + r] = s[r * so + k], a full panel: W rows of length nk side by side.
template <int W>
void panel_k_contiguous(const float* s, int64_t so, int64_t nk, float* d) {
  int64_t k = 0;
#if defined(__SSE2__)
  for (; k + 4 <= nk; k += 4) {
    int r = 0;
    for (; r + 4 <= W; r += 4) {  // 4 rows x 4 k -> 4 k x 4 rows
      __m128 x0 = _mm_loadu_ps(s + (r + 0) * so + k), x1 = _mm_loadu_ps(s + (r + 1) * so + k),
             x2 = _mm_loadu_ps(s + (r + 2) * so + k), x3 = _mm_loadu_ps(s + (r + 3) * so + k);
      _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
      _mm_storeu_ps(d + (k + 0) * W + r, x0);
      _mm_storeu_ps(d + (k + 1) * W + r, x1);
      _mm_storeu_ps(d + (k + 2) * W + r, x2);
      _mm_storeu_ps(d + (k + 3) * W + r, x3);
    }
    for (; r + 2 <= W; r += 2) {  // 2 rows x 4 k -> 4 k x 2 rows
      const __m128 x0 = _mm_loadu_ps(s + r * so + k), x1 = _mm_loadu_ps(s + (r + 1) * so + k);
      const __m128 lo = _mm_unpacklo_ps(x0, x1), hi = _mm_unpackhi_ps(x0, x1);
      _mm_storel_pi(reinterpret_cast<__m64*>(d + (k + 0) * W + r), lo);
      _mm_storeh_pi(reinterpret_cast<__m64*>(d + (k + 1) * W + r), lo);
      _mm_storel_pi(reinterpret_cast<__m64*>(d + (k + 2) * W + r), hi);
      _mm_storeh_pi(reinterpret_cast<__m64*>(d + (k + 3) * W + r), hi);
    }
    for (; r < W; ++r)
      for (int j = 0; j < 4; ++j) d[(k + j) * W + r] = s[r * so + k + j];
  }
#endif
  for (; k < nk; ++k)
    for (int r = 0; r < W; ++r) d[k * W + r] = s[r * so + k];
}

// A panel with only `rows` < w outer indices present (the last one), or any strides: the
// present rows by whichever loop reads the source in order, then the zero padding.
void panel_partial(const float* s, int64_t so, int64_t sk, int64_t rows, int64_t nk, int w,
                   float* d) {
  if (so == 1) {
    for (int64_t k = 0; k < nk; ++k)
      for (int r = 0; r < rows; ++r) d[k * w + r] = s[k * sk + r];
  } else {
    for (int r = 0; r < rows; ++r)
      for (int64_t k = 0; k < nk; ++k) d[k * w + r] = s[r * so + k * sk];
  }
  if (rows < w)
    for (int64_t k = 0; k < nk; ++k)
      for (int r = static_cast<int>(rows); r < w; ++r) d[k * w + r] = 0.0f;
}

// W > 0: the panel width known at compile time; 0: `width`, through the generic loops.
template <int W>
void pack_dense(const float* src, int64_t so, int64_t sk, int64_t no, int64_t nk, int width,
                float* dst) {
  const int w = W > 0 ? W : width;
  const int64_t full = W > 0 ? no / w : 0;  // panels with all w outer indices present
  if (so == 1 && full > 0) {
    // Outer-contiguous: rows of kRowBlock k at a time across all panels, so that the reads
    // run along a few rows of the source instead of down one column strip per panel.
    constexpr int64_t kRowBlock = 8;
    for (int64_t k0 = 0; k0 < nk; k0 += kRowBlock) {
      const int64_t k1 = k0 + kRowBlock < nk ? k0 + kRowBlock : nk;
      for (int64_t p = 0; p < full; ++p) {
        const float* s = src + p * w;
        float* d = dst + p * nk * w;
        for (int64_t k = k0; k < k1; ++k) std::memcpy(d + k * W, s + k * sk, W * sizeof(float));
      }
    }
  } else if (sk == 1) {
    for (int64_t p = 0; p < full; ++p)
      panel_k_contiguous<W>(src + p * w * so, so, nk, dst + p * nk * w);
  } else {
    for (int64_t p = 0; p < full; ++p)
      panel_partial(src + p * w * so, so, sk, w, nk, w, dst + p * nk * w);
  }
  for (int64_t o = full * w; o < no; o += w)
    panel_partial(src + o * so, so, sk, no - o < w ? no - o : w, nk, w, dst + (o / w) * nk * w);
}

}  // namespace

void DenseOperand::pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
                        float* dst) const {
  const float* src = data_ + o0 * so_ + k0 * sk_;
  switch (width) {  // the MR and NR of the tiers
    case 6: return pack_dense<6>(src, so_, sk_, no, nk, width, dst);
    case 8: return pack_dense<8>(src, so_, sk_, no, nk, width, dst);
    case 16: return pack_dense<16>(src, so_, sk_, no, nk, width, dst);
    case 32: return pack_dense<32>(src, so_, sk_, no, nk, width, dst);
    default: return pack_dense<0>(src, so_, sk_, no, nk, width, dst);
  }
}

bool PrepackedOperand::holds(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width) const {
  const int64_t o1 = o0 + no;
  return width == width_ && o0 % width == 0 && (o1 % width == 0 || o1 == no_) && o1 <= no_ &&
         k0 + nk <= K_;
}

const float* PrepackedOperand::panels(int64_t o0, int64_t no, int64_t k0, int64_t nk,
                                      int width, int64_t* panel_stride) const {
  if (!holds(o0, no, k0, nk, width)) return nullptr;
  *panel_stride = K_ * width;
  return packed_ + (o0 / width * K_ + k0) * width;
}

void PrepackedOperand::pack(int64_t o0, int64_t no, int64_t k0, int64_t nk, int width,
                            float* dst) const {
  if (!holds(o0, no, k0, nk, width)) return src_.pack(o0, no, k0, nk, width, dst);
  const int64_t panels = (no + width - 1) / width;
  for (int64_t p = 0; p < panels; ++p)
    std::memcpy(dst + p * nk * width, packed_ + ((o0 / width + p) * K_ + k0) * width,
                static_cast<std::size_t>(nk * width) * sizeof(float));
}

}  // namespace cnnkit
