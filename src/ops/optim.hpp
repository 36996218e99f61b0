// Optimizer updates with PyTorch's rules: torch.optim.SGD (dampening 0) and torch.optim.Adam
// (L2 weight decay added to the gradient, not AdamW). Each is one fused pass over a parameter
// tensor that reads its gradient and updates the parameter and its state in place; the state
// arrays belong to the caller, so a step allocates nothing.
//
// Scalars arrive as double (Python floats) and are rounded to float where PyTorch rounds them:
// bias corrections and the step size are formed in double, as torch.optim does in Python.
#pragma once

#include <cstdint>

namespace cnnkit {

// One SGD step on p [n] (updated in place) with gradient g [n]:
//   d = g + weight_decay * p
//   buf = d on the first step (first = true), else momentum * buf + d    (when momentum > 0)
//   d = nesterov ? d + momentum * buf : buf                               (when momentum > 0)
//   p -= lr * d
// buf [n] is the momentum buffer, read (unless first) and written; null when momentum == 0.
void sgd_step(float* p, float* buf, const float* g, int64_t n, double lr, double momentum,
              bool nesterov, double weight_decay, bool first);
void sgd_step__ref(float* p, float* buf, const float* g, int64_t n, double lr, double momentum,
                   bool nesterov, double weight_decay, bool first);

// Adam step number t >= 1 (counting this one) on p [n] with gradient g [n]; m [n] and v [n]
// are the first and second moment estimates (zeros before step 1), updated in place:
//   d = g + weight_decay * p
//   m = lerp(m, d, 1 - beta1);  v = beta2 * v + (1 - beta2) * d * d
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
void adam_step(float* p, float* m, float* v, const float* g, int64_t n, double lr, double beta1,
               double beta2, double eps, double weight_decay, int64_t t);
void adam_step__ref(float* p, float* m, float* v, const float* g, int64_t n, double lr,
                    double beta1, double beta2, double eps, double weight_decay, int64_t t);

}  // namespace cnnkit
