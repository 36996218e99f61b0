// The AVX2 tier of the depthwise convolution kernels (conv_depthwise_impl.hpp on 8-float
// vectors). Built with -mavx2 -mfma and only run when the CPU has both.
#include "kernels/conv_depthwise_impl.hpp"
#include "kernels/vec_avx2.hpp"

namespace cnnkit {

namespace {

using Impl = conv_depthwise_impl::ConvDepthwise<V__avx2>;

}  // namespace

const ConvDepthwiseKernels conv_depthwise_kernels__avx2 = {"avx2", &Impl::forward,
                                                         &Impl::weight, &Impl::input};

}  // namespace cnnkit
