// The portable tier of the direct convolution kernels (conv_direct_impl.hpp on 4-float GCC /
// Clang vector extensions, which compile to the baseline ISA: SSE2 on x86-64, NEON on
// AArch64): blocks of up to 12 accumulators of 16 registers; partial vectors element by
// element (masked-off lanes neither read nor written).
#include "kernels/conv_direct_impl.hpp"
#include "kernels/vec_portable.hpp"

namespace cnnkit {

namespace {

using Impl = conv_direct_impl::ConvDirect<V__portable>;

}  // namespace

const ConvDirectKernels conv_direct_kernels__portable = {
    "portable", &Impl::forward_w, &Impl::forward_oc, &Impl::weight_w, &Impl::weight_oc,
    &Impl::input};

}  // namespace cnnkit
