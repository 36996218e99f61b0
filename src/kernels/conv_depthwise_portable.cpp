// The portable tier of the depthwise convolution kernels (conv_depthwise_impl.hpp on 4-float
// GCC / Clang vector extensions, which compile to the baseline ISA).
#include "kernels/conv_depthwise_impl.hpp"
#include "kernels/vec_portable.hpp"

namespace cnnkit {

namespace {

using Impl = conv_depthwise_impl::ConvDepthwise<V__portable>;

}  // namespace

const ConvDepthwiseKernels conv_depthwise_kernels__portable = {"portable", &Impl::forward,
                                                         &Impl::weight, &Impl::input};

}  // namespace cnnkit
