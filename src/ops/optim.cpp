// SGD and Adam updates. Each is a flat elementwise pass: memory bound, so the whole update is
// fused into one loop (PyTorch's single-tensor path makes 4-6 passes over the tensor). Threads
// take contiguous chunks; elements are independent, so the chunks never race. Scalars are
// rounded where torch.optim rounds them and each element sees the operations of its formulas
// in the same order (torch fuses some into FMAs, so the two differ by an ulp or so); the fast
// loops and the __ref loops, written from PyTorch's sequence of tensor ops, agree bit for bit.
#include "ops/optim.hpp"

#include <cmath>

#include "kernels/elementwise.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {
// Per-element cost, in bytes touched, for the parallel_for threshold.
constexpr int64_t kSgdCost = 16;
constexpr int64_t kAdamCost = 32;

// The loops take everything by value and run on elements [b, e). Written inside the
// parallel_for lambda instead, they would read the captured pointers through the closure in
// the OpenMP-outlined function, where GCC cannot hoist those loads past the float stores and
// does not vectorise (measured: 2 threads ran Adam 2x slower than 1).

// torch skips the decay term when weight_decay == 0, which matters for an infinite p
// (0 * inf = NaN); the flags are loop-invariant, so the compiler unswitches or blends them.
void sgd_range(float* p, float* buf, const float* g, int64_t b, int64_t e, float lr, float mu,
               bool nesterov, float wd, bool decay, bool first) {
  if (buf == nullptr) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) {
      const float d = decay ? g[i] + wd * p[i] : g[i];
      p[i] -= lr * d;
    }
    return;
  }
#pragma omp simd
  for (int64_t i = b; i < e; ++i) {
    const float d = decay ? g[i] + wd * p[i] : g[i];
    const float bi = first ? d : buf[i] * mu + d;
    buf[i] = bi;
    p[i] -= lr * (nesterov ? d + bi * mu : bi);
  }
}

}  // namespace

void sgd_step(float* p, float* buf, const float* g, int64_t n, double lr, double momentum,
              bool nesterov, double weight_decay, bool first) {
  // torch rounds each Scalar to float in the kernel: p.add_(d, alpha=-lr), buf.mul_(momentum).
  const float lr_f = static_cast<float>(lr), mu = static_cast<float>(momentum);
  const float wd = static_cast<float>(weight_decay);
  const bool decay = weight_decay != 0.0;
  float* b = momentum != 0.0 ? buf : nullptr;
  parallel_for(n, n * kSgdCost, [=](int64_t lo, int64_t hi, int) {
    sgd_range(p, b, g, lo, hi, lr_f, mu, nesterov, wd, decay, first);
  });
}

void sgd_step__ref(float* p, float* buf, const float* g, int64_t n, double lr, double momentum,
                   bool nesterov, double weight_decay, bool first) {
  for (int64_t i = 0; i < n; ++i) {
    float d = g[i];
    // grad.add(p, alpha=weight_decay)
    if (weight_decay != 0.0) d = d + static_cast<float>(weight_decay) * p[i];
    if (momentum != 0.0) {
      if (first)
        buf[i] = d;  // torch.clone(grad)
      else
        buf[i] = buf[i] * static_cast<float>(momentum) + d;  // buf.mul_(momentum).add_(grad)
      d = nesterov ? d + buf[i] * static_cast<float>(momentum) : buf[i];
    }
    p[i] = p[i] - static_cast<float>(lr) * d;  // p.add_(d, alpha=-lr)
  }
}

void adam_step(float* p, float* m, float* v, const float* g, int64_t n, double lr, double beta1,
               double beta2, double eps, double weight_decay, int64_t t) {
  AdamScalars s;
  s.step_size = static_cast<float>(lr / (1.0 - std::pow(beta1, static_cast<double>(t))));
  s.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(beta2, static_cast<double>(t))));
  s.w1 = static_cast<float>(1.0 - beta1);
  s.w1c = 1.0f - s.w1;
  s.small = std::fabs(s.w1) < 0.5f;
  s.b2 = static_cast<float>(beta2);
  s.w2 = static_cast<float>(1.0 - beta2);
  s.eps = static_cast<float>(eps);
  s.wd = static_cast<float>(weight_decay);
  s.decay = weight_decay != 0.0;
  // the active tier's loop (kernels/elementwise.hpp): the same bits at any vector width
  const ElementwiseKernels& k = elementwise_kernels(active_simd_tier());
  parallel_for(n, n * kAdamCost, [=, &k](int64_t lo, int64_t hi, int) { k.adam(p, m, v, g, lo, hi, s); });
}

void adam_step__ref(float* p, float* m, float* v, const float* g, int64_t n, double lr,
                    double beta1, double beta2, double eps, double weight_decay, int64_t t) {
  for (int64_t i = 0; i < n; ++i) {
    float d = g[i];
    if (weight_decay != 0.0) d = d + static_cast<float>(weight_decay) * p[i];
    const float w = static_cast<float>(1.0 - beta1);  // exp_avg.lerp_(grad, 1 - beta1)
    m[i] = std::fabs(w) < 0.5f ? m[i] + w * (d - m[i]) : d - (d - m[i]) * (1.0f - w);
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    v[i] = v[i] * static_cast<float>(beta2) + static_cast<float>(1.0 - beta2) * d * d;
    const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(t));
    const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(t));
    const double step_size = lr / bias_correction1;
    // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    const float denom = std::sqrt(v[i]) / static_cast<float>(std::sqrt(bias_correction2)) +
                        static_cast<float>(eps);
    p[i] = p[i] - static_cast<float>(step_size) * (m[i] / denom);  // p.addcdiv_(m, denom, -ss)
  }
}

}  // namespace cnnkit
