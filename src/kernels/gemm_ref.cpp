// gemm__ref: the naive GEMM every faster tier is held to.
#include <algorithm>
#include <vector>

#include "kernels/gemm.hpp"

namespace cnnkit {

void gemm__ref(int64_t M, int64_t N, int64_t K, float alpha, const GemmOperand& A,
               const GemmOperand& B, float beta, float* C, int64_t ldc,
               const GemmEpilogue& ep) {
  // Unpack both operands whole (width 1 makes panel p = row p): a[i*K + k], b[j*K + k].
  std::vector<float> a(std::max<int64_t>(1, M * K)), b(std::max<int64_t>(1, N * K));
  if (K > 0) {
    A.pack(0, M, 0, K, 1, a.data());
    B.pack(0, N, 0, K, 1, b.data());
  }
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      float acc = 0.0f;
      for (int64_t k = 0; k < K; ++k) acc += a[i * K + k] * b[j * K + k];
      float c = alpha * acc;
      if (beta != 0.0f) c += beta * C[i * ldc + j];
      if (ep.row_bias) c += ep.row_bias[i];
      if (ep.col_bias) c += ep.col_bias[j];
      if (ep.relu) c = std::max(c, 0.0f);
      C[i * ldc + j] = c;
    }
  }
}

}  // namespace cnnkit
