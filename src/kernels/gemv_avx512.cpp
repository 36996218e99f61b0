// The AVX-512 tier of the matrix-vector kernel (gemv_impl.hpp on 16-float vectors).
// Built with -mavx512f and only run when the CPU has it.
#include "kernels/gemv_impl.hpp"
#include "kernels/vec_avx512.hpp"

namespace cnnkit {

const GemvKernels gemv_kernels__avx512 = {&gemv_impl::Gemv<V__avx512>::linear_rows};

}  // namespace cnnkit
