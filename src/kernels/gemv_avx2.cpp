// The AVX2 tier of the matrix-vector kernel (gemv_impl.hpp on 8-float vectors).
// Built with -mavx2 -mfma and only run when the CPU has it.
#include "kernels/gemv_impl.hpp"
#include "kernels/vec_avx2.hpp"

namespace cnnkit {

const GemvKernels gemv_kernels__avx2 = {&gemv_impl::Gemv<V__avx2>::linear_rows};

}  // namespace cnnkit
