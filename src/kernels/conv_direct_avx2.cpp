// The AVX2 tier of the direct convolution kernels (conv_direct_impl.hpp on 8-float vectors):
// blocks of up to 12 accumulators of the 16 ymm registers, partial vectors through
// vmaskmovps (masked-off lanes are neither read nor written). Built with -mavx2 -mfma and only
// run when the CPU has both.
#include "kernels/conv_direct_impl.hpp"
#include "kernels/vec_avx2.hpp"

namespace cnnkit {

namespace {

using Impl = conv_direct_impl::ConvDirect<V__avx2>;

}  // namespace

const ConvDirectKernels conv_direct_kernels__avx2 = {
    "avx2", &Impl::forward_w, &Impl::forward_oc, &Impl::weight_w, &Impl::weight_oc,
    &Impl::input};

}  // namespace cnnkit
