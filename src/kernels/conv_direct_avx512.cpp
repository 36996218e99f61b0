// The AVX-512 tier of the direct convolution kernels (conv_direct_impl.hpp on 16-float
// vectors): blocks of up to 24 accumulators of the 32 zmm registers, partial vectors through
// mask registers (masked-off lanes are neither read nor written, so no row is over-read).
// Built with -mavx512f and only run when the CPU has it.
#include "kernels/conv_direct_impl.hpp"
#include "kernels/vec_avx512.hpp"

namespace cnnkit {

namespace {

using Impl = conv_direct_impl::ConvDirect<V__avx512>;

}  // namespace

const ConvDirectKernels conv_direct_kernels__avx512 = {
    "avx512", &Impl::forward_w, &Impl::forward_oc, &Impl::weight_w, &Impl::weight_oc,
    &Impl::input};

}  // namespace cnnkit
