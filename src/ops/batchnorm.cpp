// Batch normalisation: per-channel statistics, then one affine map per channel.
//   forward   y = (x - mean) * scale + beta,  scale = weight * invstd
//   backward  dx = a * dy + b * (x - mean) + k, where a = weight * invstd and, with batch
//             statistics (which depend on x), b = -a * invstd^2 * Σ dy (x - mean) / M and
//             k = -a * Σ dy / M; dweight = invstd * Σ dy (x - mean), dbias = Σ dy.
// Sums over a channel are shifted (by the channel's first value, so that a large mean does not
// cancel the variance away), taken in float vector lanes over blocks of kBlock values and
// added into double. With batch statistics each thread owns whole channels and makes both
// passes over a channel back to back (its values still in cache); the plain affine maps run
// over (n, c) planes. Every channel is reduced by one thread in a fixed order, so results do
// not depend on the thread count. (N, C) inputs (HW = 1) run the same steps along rows.
#include "ops/batchnorm.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common.hpp"
#include "parallel.hpp"

namespace cnnkit {

BatchNormShape batch_norm_shape(int64_t N, int64_t C, int64_t HW, bool batch_stats) {
  auto str = [](int64_t v) { return std::to_string(v); };
  if (N < 0 || C < 1 || HW < 1)
    throw ShapeError("batch_norm: input must have N >= 0, C >= 1 and a non-empty plane, got N = " +
                     str(N) + ", C = " + str(C) + ", values per plane = " + str(HW));
  if (batch_stats && N * HW == 1)
    throw ShapeError("batch_norm: expected more than 1 value per channel when training, got N = " +
                     str(N) + " with " + str(HW) + " value(s) per plane (C = " + str(C) + ")");
  return {N, C, HW, batch_stats};
}

namespace {

// Values summed in float lanes before the partial sums go into double: 128 per lane at 8
// lanes keeps the float error near 1e-6 of the block sum at worst.
constexpr int64_t kBlock = 1024;

struct Sums {
  double s1 = 0.0, s2 = 0.0;
};

// The helpers below take their arguments by value, outside any parallel lambda: GCC does not
// vectorise a loop reading its pointers through a lambda's closure (parallel.hpp).

// Adds Σ (x - shift) and Σ (x - shift)^2 over x [len] to *sums.
void add_moments(const float* x, int64_t len, float shift, Sums* sums) {
  for (int64_t b = 0; b < len; b += kBlock) {
    const int64_t e = std::min(len, b + kBlock);
    float a1 = 0.0f, a2 = 0.0f;
#pragma omp simd reduction(+ : a1, a2)
    for (int64_t i = b; i < e; ++i) {
      const float d = x[i] - shift;
      a1 += d;
      a2 += d * d;
    }
    sums->s1 += a1;
    sums->s2 += a2;
  }
}

// Adds Σ dy and Σ dy * (x - mean) over dy, x [len] to *sums.
void add_grad_moments(const float* dy, const float* x, int64_t len, float mean, Sums* sums) {
  for (int64_t b = 0; b < len; b += kBlock) {
    const int64_t e = std::min(len, b + kBlock);
    float a1 = 0.0f, a2 = 0.0f;
#pragma omp simd reduction(+ : a1, a2)
    for (int64_t i = b; i < e; ++i) {
      const float g = dy[i];
      a1 += g;
      a2 += g * (x[i] - mean);
    }
    sums->s1 += a1;
    sums->s2 += a2;
  }
}

// y [len] = (x - mean) * scale + shift.
void affine(float* y, const float* x, int64_t len, float mean, float scale, float shift) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) y[i] = (x[i] - mean) * scale + shift;
}

// dx [len] = a * dy + b * (x - mean) + k.
void grad_affine(float* dx, const float* dy, const float* x, int64_t len, float mean, float a,
                 float b, float k) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) dx[i] = a * dy[i] + b * (x[i] - mean) + k;
}

// The same along one row of an (N, C) input, channels [c0, c1), per-channel arrays indexed by
// c; the double sums s1, s2 are indexed by c - c0.
void add_row_moments(const float* x, const float* shift, int64_t c0, int64_t c1, double* s1,
                     double* s2) {
#pragma omp simd
  for (int64_t c = c0; c < c1; ++c) {
    const double d = static_cast<double>(x[c]) - static_cast<double>(shift[c]);
    s1[c - c0] += d;
    s2[c - c0] += d * d;
  }
}

void add_row_grad_moments(const float* dy, const float* x, const float* mean, int64_t c0,
                          int64_t c1, double* s1, double* s2) {
#pragma omp simd
  for (int64_t c = c0; c < c1; ++c) {
    const double g = dy[c];
    s1[c - c0] += g;
    s2[c - c0] += g * (static_cast<double>(x[c]) - static_cast<double>(mean[c]));
  }
}

void affine_row(float* y, const float* x, int64_t c0, int64_t c1, const float* mean,
                const float* scale, const float* shift) {
#pragma omp simd
  for (int64_t c = c0; c < c1; ++c) y[c] = (x[c] - mean[c]) * scale[c] + shift[c];
}

void grad_affine_row(float* dx, const float* dy, const float* x, int64_t c0, int64_t c1,
                     const float* mean, const float* a, const float* b, const float* k) {
#pragma omp simd
  for (int64_t c = c0; c < c1; ++c) dx[c] = a[c] * dy[c] + b[c] * (x[c] - mean[c]) + k[c];
}

// y = (x - mean[c]) * scale[c] + shift[c] over all of x [N, C, HW]: threads over planes (rows
// of an (N, C) input).
void affine_all(float* y, const float* x, const float* mean, const float* scale,
                const float* shift, const BatchNormShape& s) {
  const int64_t C = s.C, HW = s.HW;
  if (HW == 1) {
    parallel_for(s.N, 2 * s.N * C, [=](int64_t n0, int64_t n1, int) {
      for (int64_t n = n0; n < n1; ++n) affine_row(y + n * C, x + n * C, 0, C, mean, scale, shift);
    });
    return;
  }
  parallel_for(s.N * C, 2 * s.N * C * HW, [=](int64_t p0, int64_t p1, int) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t c = p % C;
      affine(y + p * HW, x + p * HW, HW, mean[c], scale[c], shift[c]);
    }
  });
}

// Runs f(c0, c1) on threads owning contiguous ranges of channels; `passes` over the data.
template <class F>
void over_channels(const BatchNormShape& s, int64_t passes, F&& f) {
  parallel_for(s.C, passes * s.N * s.C * s.HW, [&](int64_t c0, int64_t c1, int) { f(c0, c1); });
}

}  // namespace

void batch_norm_forward(float* y, float* mean, float* invstd, float* running_mean,
                        float* running_var, const float* x, const float* weight,
                        const float* bias, const BatchNormShape& s, double momentum,
                        double eps) {
  const int64_t N = s.N, C = s.C, HW = s.HW, M = N * HW;
  std::vector<float> scale(C), shift(C);
  // Channel c's statistics from its shifted sums: mean, invstd, the running statistics, and
  // the coefficients of the affine map.
  auto finish = [&](int64_t c, double s1, double s2, float shift_by) {
    double mu = 0.0, var = 0.0;
    if (M > 0) {
      const double d = s1 / M;
      mu = shift_by + d;
      var = std::max(0.0, s2 / M - d * d);
      if (running_mean) running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mu);
      if (running_var)
        running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] +
                                            momentum * var * M / (M - 1));
    }
    mean[c] = static_cast<float>(mu);
    invstd[c] = static_cast<float>(1.0 / std::sqrt(var + eps));
    scale[c] = invstd[c] * (weight ? weight[c] : 1.0f);
    shift[c] = bias ? bias[c] : 0.0f;
  };

  if (!s.batch_stats) {
    for (int64_t c = 0; c < C; ++c) {
      mean[c] = running_mean[c];
      invstd[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps));
      scale[c] = invstd[c] * (weight ? weight[c] : 1.0f);
      shift[c] = bias ? bias[c] : 0.0f;
    }
    affine_all(y, x, mean, scale.data(), shift.data(), s);
    return;
  }

  if (HW == 1) {
    // rows [N, C]: a thread sums its columns row by row in double, then maps them
    over_channels(s, 3, [&](int64_t c0, int64_t c1) {
      std::vector<double> s1(c1 - c0), s2(c1 - c0);
      for (int64_t n = 0; n < N; ++n) add_row_moments(x + n * C, x, c0, c1, s1.data(), s2.data());
      for (int64_t c = c0; c < c1; ++c) finish(c, s1[c - c0], s2[c - c0], N ? x[c] : 0.0f);
      for (int64_t n = 0; n < N; ++n)
        affine_row(y + n * C, x + n * C, c0, c1, mean, scale.data(), shift.data());
    });
    return;
  }
  over_channels(s, 3, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const float shift_by = N ? x[c * HW] : 0.0f;
      Sums sums;
      for (int64_t n = 0; n < N; ++n) add_moments(x + (n * C + c) * HW, HW, shift_by, &sums);
      finish(c, sums.s1, sums.s2, shift_by);
      for (int64_t n = 0; n < N; ++n) {
        const int64_t off = (n * C + c) * HW;
        affine(y + off, x + off, HW, mean[c], scale[c], shift[c]);
      }
    }
  });
}

void batch_norm_backward(float* dx, float* dweight, float* dbias, const float* dy,
                         const float* x, const float* mean, const float* invstd,
                         const float* weight, const BatchNormShape& s) {
  const int64_t N = s.N, C = s.C, HW = s.HW, M = N * HW;
  std::vector<float> a(C), b(C), k(C);
  // Channel c's gradient sums Σ dy and Σ dy (x - mean) -> dweight, dbias and dx's coefficients.
  auto finish = [&](int64_t c, double sdy, double sdyx) {
    const double g = weight ? weight[c] : 1.0, is = invstd[c];
    if (dweight) dweight[c] = static_cast<float>(sdyx * is);
    if (dbias) dbias[c] = static_cast<float>(sdy);
    a[c] = static_cast<float>(g * is);
    // the batch-statistics terms: d mean / dx and d var / dx (zero for an empty batch)
    b[c] = M > 0 ? static_cast<float>(-g * is * is * is * sdyx / M) : 0.0f;
    k[c] = M > 0 ? static_cast<float>(-g * is * sdy / M) : 0.0f;
  };

  if (s.batch_stats && dx) {
    if (HW == 1) {
      over_channels(s, 4, [&](int64_t c0, int64_t c1) {
        std::vector<double> s1(c1 - c0), s2(c1 - c0);
        for (int64_t n = 0; n < N; ++n)
          add_row_grad_moments(dy + n * C, x + n * C, mean, c0, c1, s1.data(), s2.data());
        for (int64_t c = c0; c < c1; ++c) finish(c, s1[c - c0], s2[c - c0]);
        for (int64_t n = 0; n < N; ++n)
          grad_affine_row(dx + n * C, dy + n * C, x + n * C, c0, c1, mean, a.data(), b.data(),
                          k.data());
      });
      return;
    }
    over_channels(s, 4, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        Sums sums;
        for (int64_t n = 0; n < N; ++n) {
          const int64_t off = (n * C + c) * HW;
          add_grad_moments(dy + off, x + off, HW, mean[c], &sums);
        }
        finish(c, sums.s1, sums.s2);
        for (int64_t n = 0; n < N; ++n) {
          const int64_t off = (n * C + c) * HW;
          grad_affine(dx + off, dy + off, x + off, HW, mean[c], a[c], b[c], k[c]);
        }
      }
    });
    return;
  }

  // The affine map's gradient only (running statistics are constants), or no dx at all.
  if (dweight || dbias) {
    over_channels(s, 2, [&](int64_t c0, int64_t c1) {
      if (HW == 1) {
        std::vector<double> s1(c1 - c0), s2(c1 - c0);
        for (int64_t n = 0; n < N; ++n)
          add_row_grad_moments(dy + n * C, x + n * C, mean, c0, c1, s1.data(), s2.data());
        for (int64_t c = c0; c < c1; ++c) finish(c, s1[c - c0], s2[c - c0]);
        return;
      }
      for (int64_t c = c0; c < c1; ++c) {
        Sums sums;
        for (int64_t n = 0; n < N; ++n) {
          const int64_t off = (n * C + c) * HW;
          add_grad_moments(dy + off, x + off, HW, mean[c], &sums);
        }
        finish(c, sums.s1, sums.s2);
      }
    });
  }
  if (dx) {
    for (int64_t c = 0; c < C; ++c)
      a[c] = static_cast<float>((weight ? weight[c] : 1.0) * static_cast<double>(invstd[c]));
    const std::vector<float> zeros(C, 0.0f);
    affine_all(dx, dy, zeros.data(), a.data(), zeros.data(), s);  // dx = dy * a
  }
}

void batch_norm_forward__ref(float* y, float* mean, float* invstd, float* running_mean,
                             float* running_var, const float* x, const float* weight,
                             const float* bias, const BatchNormShape& s, double momentum,
                             double eps) {
  const int64_t N = s.N, C = s.C, HW = s.HW, M = N * HW;
  for (int64_t c = 0; c < C; ++c) {
    double mu = 0.0, var = 0.0;
    if (s.batch_stats) {
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < HW; ++i) mu += x[(n * C + c) * HW + i];
      mu = M ? mu / M : 0.0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < HW; ++i) {
          const double d = x[(n * C + c) * HW + i] - mu;
          var += d * d;
        }
      if (M > 0) {
        if (running_mean) running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mu);
        if (running_var)
          running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] +
                                              momentum * var / (M - 1));
        var /= M;
      }
    } else {
      mu = running_mean[c];
      var = running_var[c];
    }
    const double is = 1.0 / std::sqrt(var + eps);
    mean[c] = static_cast<float>(mu);
    invstd[c] = static_cast<float>(is);
    const double g = weight ? weight[c] : 1.0, b = bias ? bias[c] : 0.0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t j = (n * C + c) * HW + i;
        y[j] = static_cast<float>((x[j] - mu) * is * g + b);
      }
  }
}

void batch_norm_backward__ref(float* dx, float* dweight, float* dbias, const float* dy,
                              const float* x, const float* mean, const float* invstd,
                              const float* weight, const BatchNormShape& s) {
  const int64_t N = s.N, C = s.C, HW = s.HW, M = N * HW;
  for (int64_t c = 0; c < C; ++c) {
    double sdy = 0.0, sdyx = 0.0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t j = (n * C + c) * HW + i;
        sdy += dy[j];
        sdyx += static_cast<double>(dy[j]) * (static_cast<double>(x[j]) - mean[c]);
      }
    const double g = weight ? weight[c] : 1.0, is = invstd[c];
    if (dweight) dweight[c] = static_cast<float>(sdyx * is);
    if (dbias) dbias[c] = static_cast<float>(sdy);
    if (!dx) continue;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t j = (n * C + c) * HW + i;
        double d = dy[j];
        if (s.batch_stats && M > 0)
          d -= sdy / M + (static_cast<double>(x[j]) - mean[c]) * is * is * sdyx / M;
        dx[j] = static_cast<float>(g * is * d);
      }
  }
}

}  // namespace cnnkit
