"""Bad input raises the documented exception with a message naming expected and actual sizes,
never a crash or a silent wrong answer (PyTorch's error-input style: a table of calls)."""
import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F

x4 = np.zeros((2, 3, 8, 8), np.float32)
w4 = np.zeros((4, 3, 3, 3), np.float32)
x3 = np.zeros((2, 3, 16), np.float32)
w3 = np.zeros((4, 3, 5), np.float32)
logits = np.zeros((4, 10), np.float32)
labels = np.array([0, 1, 2, 3])

# name: (call, exception, regex the message must match)
BAD_CALLS = {
    # wrong rank
    "conv2d_x_3d": (lambda: F.conv2d(x4[0], w4), ValueError, r"4 dimensions.*got shape \(3, 8, 8\)"),
    "conv2d_w_3d": (lambda: F.conv2d(x4, w4[0]), ValueError, r"weight with 4 dimensions.*\(3, 3, 3\)"),
    "conv1d_x_4d": (lambda: F.conv1d(x4, w3), ValueError, r"3 dimensions \(N, C, L\).*\(2, 3, 8, 8\)"),
    "max_pool2d_x_2d": (lambda: F.max_pool2d(x4[0, 0], 2), ValueError, r"4 dimensions.*\(8, 8\)"),
    "avg_pool1d_x_4d": (lambda: F.avg_pool1d(x4, 2), ValueError, r"3 dimensions.*\(2, 3, 8, 8\)"),
    "global_pool_x_3d": (lambda: F.global_avg_pool2d(x3), ValueError, r"4 dimensions.*\(2, 3, 16\)"),
    "linear_w_1d": (lambda: F.linear(logits, np.zeros(10, np.float32)), ValueError, r"2 dimensions.*\(10,\)"),
    "cross_entropy_logits_1d": (lambda: F.cross_entropy(logits[0], labels), ValueError, r"2 dimensions.*\(10,\)"),
    "softmax_scalar": (lambda: F.softmax(np.float32(1.0)), ValueError, r"at least 1 dimension"),
    # channel and feature mismatches
    "conv2d_channels": (lambda: F.conv2d(x4, np.zeros((4, 2, 3, 3), np.float32)), ValueError,
                        r"\(2, 3, 8, 8\) has 3 channels but weight of shape \(4, 2, 3, 3\) expects 2"),
    "conv1d_channels": (lambda: F.conv1d(x3, np.zeros((4, 5, 3), np.float32)), ValueError,
                        r"has 3 channels but weight of shape \(4, 5, 3\) expects 5"),
    "conv2d_bias_shape": (lambda: F.conv2d(x4, w4, np.zeros(3, np.float32)), ValueError,
                          r"bias of shape \(4,\), got shape \(3,\)"),
    "linear_features": (lambda: F.linear(np.zeros((2, 5), np.float32), np.zeros((3, 4), np.float32)), ValueError,
                        r"\(2, 5\) must end in 4 features.*\(3, 4\)"),
    "linear_bias_shape": (lambda: F.linear(logits, np.zeros((3, 10), np.float32), np.zeros(4, np.float32)),
                          ValueError, r"bias of shape \(3,\), got shape \(4,\)"),
    # kernel larger than the padded input
    "conv2d_kernel_too_big": (lambda: F.conv2d(x4, np.zeros((1, 3, 11, 3), np.float32), padding=1), ValueError,
                              r"kernel \(11, 3\) is larger than the padded input \(10, 10\)"),
    "conv2d_dilated_kernel_too_big": (lambda: F.conv2d(x4, w4, dilation=5), ValueError,
                                      r"dilated to \(11, 11\).*larger than the padded input \(8, 8\)"),
    "conv1d_kernel_too_big": (lambda: F.conv1d(x3, np.zeros((1, 3, 17), np.float32)), ValueError,
                              r"kernel 17 is larger than the padded input length 16"),
    "max_pool2d_kernel_too_big": (lambda: F.max_pool2d(x4, 9), ValueError, r"kernel \(9, 9\) is larger"),
    "max_pool1d_kernel_too_big": (lambda: F.max_pool1d(x3, 17), ValueError, r"kernel 17 is larger.*16"),
    # non-positive kernel, stride, dilation; negative padding
    "conv2d_stride_0": (lambda: F.conv2d(x4, w4, stride=0), ValueError, r"stride must be >= 1, got \(0, 0\)"),
    "conv2d_stride_negative": (lambda: F.conv2d(x4, w4, stride=(1, -2)), ValueError, r"stride must be >= 1.*-2"),
    "conv2d_dilation_0": (lambda: F.conv2d(x4, w4, dilation=0), ValueError, r"dilation must be >= 1"),
    "conv2d_padding_negative": (lambda: F.conv2d(x4, w4, padding=-1), ValueError, r"padding must be >= 0"),
    "conv2d_empty_kernel": (lambda: F.conv2d(x4, np.zeros((4, 3, 0, 3), np.float32)), ValueError,
                            r"kernel sizes >= 1.*\(4, 0, 3\)"),
    "conv2d_zero_out_channels": (lambda: F.conv2d(x4, np.zeros((0, 3, 3, 3), np.float32)), ValueError,
                                 r"out_channels.*>= 1"),
    "conv1d_stride_0": (lambda: F.conv1d(x3, w3, stride=0), ValueError, r"stride must be >= 1, got 0"),
    "conv1d_padding_negative": (lambda: F.conv1d(x3, w3, padding=-3), ValueError, r"padding must be >= 0"),
    "max_pool2d_kernel_0": (lambda: F.max_pool2d(x4, 0), ValueError, r"kernel_size must be >= 1"),
    "max_pool2d_stride_0": (lambda: F.max_pool2d(x4, 2, stride=0), ValueError, r"stride must be >= 1"),
    "avg_pool2d_padding_negative": (lambda: F.avg_pool2d(x4, 2, padding=-1), ValueError, r"padding must be >= 0"),
    "max_pool2d_padding_over_half": (lambda: F.max_pool2d(x4, 2, padding=2), ValueError,
                                     r"at most half the kernel size"),
    "max_pool1d_kernel_negative": (lambda: F.max_pool1d(x3, -1), ValueError, r"kernel_size must be >= 1"),
    "padding_unknown_string": (lambda: F.conv2d(x4, w4, padding="full"), ValueError, r"'valid' or 'same'.*'full'"),
    "padding_wrong_length": (lambda: F.conv2d(x4, w4, padding=(1, 1, 1)), ValueError, r"2 ints"),
    "stride_float": (lambda: F.conv2d(x4, w4, stride=1.5), TypeError, r"stride must be an int, got float"),
    "kernel_size_none": (lambda: F.max_pool2d(x4, None), TypeError, r"kernel_size must be an int"),
    "stride_bool": (lambda: F.max_pool2d(x4, 2, stride=True), TypeError, r"got bool"),
    # labels
    "labels_out_of_range": (lambda: F.cross_entropy(logits, [0, 1, 2, 10]), ValueError,
                            r"labels must be in \[0, 10\), got 10 at index 3"),
    "labels_negative": (lambda: F.cross_entropy(logits, [0, -1, 2, 3]), ValueError, r"got -1 at index 1"),
    "labels_wrong_length": (lambda: F.cross_entropy(logits, [0, 1, 2]), ValueError,
                            r"labels of shape \(4,\), got shape \(3,\)"),
    "labels_2d": (lambda: F.cross_entropy(logits, labels[:, None]), ValueError, r"\(4,\), got shape \(4, 1\)"),
    "labels_nan": (lambda: F.cross_entropy(logits, [0.0, np.nan, 1.0, 2.0]), ValueError,
                   r"labels must be integers, got nan at index 1"),
    "labels_fractional": (lambda: F.cross_entropy(logits, [0.0, 1.5, 1.0, 2.0]), ValueError, r"got 1.5"),
    "labels_strings": (lambda: F.cross_entropy(logits, ["a", "b", "c", "d"]), TypeError, r"labels must hold integers"),
    "labels_none": (lambda: F.cross_entropy(logits, None), TypeError, r"labels must be an array"),
    "cross_entropy_no_classes": (lambda: F.cross_entropy(np.zeros((2, 0), np.float32), [0, 0]), ValueError,
                                 r"no classes"),
    "cross_entropy_backward_grad_nan": (lambda: F.cross_entropy_backward(logits, labels, grad=float("nan")),
                                        ValueError, r"grad must be finite"),
    # dtypes and foreign objects
    "x_none": (lambda: F.conv2d(None, w4), TypeError, r"input must be an array, got None"),
    "x_complex": (lambda: F.relu(np.zeros(3, np.complex64)), TypeError, r"real numbers, got dtype complex64"),
    "x_strings": (lambda: F.relu(np.array(["a", "b"])), TypeError, r"real numbers, got dtype <U1"),
    "x_object": (lambda: F.sigmoid(object()), TypeError, r"real numbers, got dtype object"),
    "x_dict": (lambda: F.linear({"a": 1}, np.zeros((1, 1), np.float32)), TypeError, r"real numbers"),
    "weight_datetime": (lambda: F.conv2d(x4, w4.astype("datetime64[s]")), TypeError, r"datetime64"),
    # backward shape agreement
    "conv2d_backward_grad_shape": (lambda: F.conv2d_backward(np.zeros((2, 4, 7, 7), np.float32), x4, w4), ValueError,
                                   r"grad_output of shape \(2, 4, 6, 6\), got shape \(2, 4, 7, 7\)"),
    "linear_backward_grad_shape": (lambda: F.linear_backward(np.zeros((4, 3), np.float32), logits,
                                                             np.zeros((5, 10), np.float32)), ValueError,
                                   r"grad_output of shape \(4, 5\), got shape \(4, 3\)"),
    "relu_backward_shape": (lambda: F.relu_backward(np.zeros(3, np.float32), np.zeros(4, np.float32)), ValueError,
                            r"grad_output of shape \(4,\), got shape \(3,\)"),
    "softmax_backward_shape": (lambda: F.softmax_backward(np.zeros((2, 3)), np.zeros((2, 4)), axis=0), ValueError,
                               r"\(2, 4\), got shape \(2, 3\)"),
    "softmax_axis_out_of_range": (lambda: F.softmax(logits, axis=2), ValueError, r"axis 2 is out of range"),
    "max_pool_backward_indices_out_of_range": (
        lambda: F.max_pool2d_backward(np.zeros((2, 3, 4, 4)), np.full((2, 3, 4, 4), 64), x4.shape, 2), ValueError,
        r"indices must be in \[0, 64\)"),
    "max_pool_backward_float_indices": (
        lambda: F.max_pool2d_backward(np.zeros((2, 3, 4, 4)), np.zeros((2, 3, 4, 4)), x4.shape, 2), TypeError,
        r"indices must be an integer array"),
    "max_pool_backward_input_shape_rank": (
        lambda: F.max_pool2d_backward(np.zeros((2, 3, 4, 4)), np.zeros((2, 3, 4, 4), np.int64), (2, 3, 8), 2),
        ValueError, r"input_shape must have 4 entries, got 3"),
    "avg_pool_backward_input_shape_type": (
        lambda: F.avg_pool2d_backward(np.zeros((2, 3, 4, 4)), "abc", 2), TypeError, r"input_shape must be a tuple"),
    "global_pool_backward_grad_shape": (lambda: F.global_avg_pool2d_backward(np.zeros((2, 4)), x4.shape), ValueError,
                                        r"\(2, 3\), got shape \(2, 4\)"),
    # configuration
    "set_num_threads_0": (lambda: cnnkit.set_num_threads(0), ValueError, r"n must be >= 1, got 0"),
    "set_num_threads_str": (lambda: cnnkit.set_num_threads("2"), TypeError, r"must be an int"),
    "gemm_inner_mismatch": (lambda: cnnkit._core.gemm(np.zeros((2, 3)), np.zeros((4, 5))), ValueError,
                            r"inner sizes differ.*\(2, 3\).*\(4, 5\)"),
    "gemm_unknown_tier": (lambda: cnnkit._core.gemm(np.zeros((2, 3)), np.zeros((3, 5)), tier="sse9"), ValueError,
                          r"unknown SIMD tier 'sse9'"),
}


@pytest.mark.parametrize("name", BAD_CALLS)
def test_bad_call_raises_documented_error(name):
    call, exc, pattern = BAD_CALLS[name]
    with pytest.raises(exc, match=pattern):
        call()


def test_errors_are_value_and_type_errors_only():
    """No bad call leaks another exception type (RuntimeError, IndexError, SystemError ...)."""
    for name, (call, exc, _) in BAD_CALLS.items():
        try:
            call()
        except (ValueError, TypeError) as e:
            assert isinstance(e, exc), f"{name}: {type(e).__name__} instead of {exc.__name__}"
        else:
            raise AssertionError(f"{name}: no error raised")


def test_bad_call_leaves_inputs_untouched():
    x = np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(x4.shape)
    keep = x.copy()
    with pytest.raises(ValueError):
        F.conv2d(x, np.zeros((4, 2, 3, 3), np.float32))
    np.testing.assert_array_equal(x, keep)
