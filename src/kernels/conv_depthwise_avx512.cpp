// The AVX-512 tier of the depthwise convolution kernels (conv_depthwise_impl.hpp on
// 16-float vectors). Built with -mavx512f and only run when the CPU has it.
#include "kernels/conv_depthwise_impl.hpp"
#include "kernels/vec_avx512.hpp"

namespace cnnkit {

namespace {

using Impl = conv_depthwise_impl::ConvDepthwise<V__avx512>;

}  // namespace

const ConvDepthwiseKernels conv_depthwise_kernels__avx512 = {"avx512", &Impl::forward,
                                                         &Impl::weight, &Impl::input};

}  // namespace cnnkit
