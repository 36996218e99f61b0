// Residual sum and channel concatenation. Both are memory-bound copies: threads take
// contiguous chunks (add) or whole images (concat), so writes never overlap.
#include "ops/merge.hpp"

#include <cstring>

#include "parallel.hpp"

namespace cnnkit {

namespace {
// A helper taking its pointers by value: written inline in the parallel lambda, GCC reloads
// the captured pointers each iteration and does not vectorise.
void add_range(float* y, const float* a, const float* b, int64_t begin, int64_t end) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) y[i] = a[i] + b[i];
}

int64_t total_channels(const int64_t* cs, int count) {
  int64_t c = 0;
  for (int i = 0; i < count; ++i) c += cs[i];
  return c;
}
}  // namespace

void add_forward(float* y, const float* a, const float* b, int64_t n) {
  parallel_for(n, n * 3, [=](int64_t begin, int64_t end, int) { add_range(y, a, b, begin, end); });
}

void concat_forward(float* y, const float* const* xs, const int64_t* cs, int count, int64_t N,
                    int64_t inner) {
  const int64_t C = total_channels(cs, count);
  parallel_for(N, N * C * inner, [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      float* dst = y + n * C * inner;
      for (int i = 0; i < count; ++i) {
        const int64_t len = cs[i] * inner;
        std::memcpy(dst, xs[i] + n * len, len * sizeof(float));
        dst += len;
      }
    }
  });
}

void concat_backward(float* const* dxs, const float* dy, const int64_t* cs, int count, int64_t N,
                     int64_t inner) {
  const int64_t C = total_channels(cs, count);
  parallel_for(N, N * C * inner, [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* src = dy + n * C * inner;
      for (int i = 0; i < count; ++i) {
        const int64_t len = cs[i] * inner;
        std::memcpy(dxs[i] + n * len, src, len * sizeof(float));
        src += len;
      }
    }
  });
}

}  // namespace cnnkit
