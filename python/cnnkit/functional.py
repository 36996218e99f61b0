"""Stateless ops on NumPy arrays, forward and backward, with torch.nn.functional's meaning.

Arrays are computed in float32. A float32 C-contiguous array is used in place (no copy);
anything else array-like is converted once. Layouts are NCHW for 2-D ops and NCL for 1-D ops.

Forward functions: conv2d, conv1d, max_pool2d, avg_pool2d, max_pool1d, avg_pool1d,
global_avg_pool2d, linear, relu, sigmoid, tanh, softmax, cross_entropy.

Backward functions take the upstream gradient ``grad_output`` first and return the gradient of
each input; those with several inputs take ``input_grad`` / ``weight_grad`` / ``bias_grad``
flags and return ``(grad_input, grad_weight, grad_bias)`` with ``None`` for what was not asked:

- ``conv2d_backward(grad_output, x, weight, stride=1, padding=0, dilation=1, groups=1, ...)``
- ``conv1d_backward(grad_output, x, weight, stride=1, padding=0, dilation=1, groups=1, ...)``
- ``linear_backward(grad_output, x, weight, ...)``
- ``max_pool2d_backward(grad_output, indices, input_shape, kernel_size, stride=None, padding=0)``
  with the ``indices`` that ``max_pool2d(..., return_indices=True)`` returned (same for 1-D)
- ``avg_pool2d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0,
  count_include_pad=True)`` (same for 1-D)
- ``global_avg_pool2d_backward(grad_output, input_shape)``
- ``relu_backward(grad_output, y)``, ``sigmoid_backward``, ``tanh_backward``,
  ``softmax_backward(grad_output, y, axis=-1)``: ``y`` is the forward *output*
- ``cross_entropy_backward(logits, labels, grad=1.0)`` -> gradient of the mean loss w.r.t.
  the logits, ``(softmax(logits) - onehot(labels)) * grad / N``

``padding`` takes an int, a tuple with one int per spatial dimension, ``"valid"`` (no padding)
or ``"same"`` (TensorFlow's rule for any stride: output size ``ceil(input / stride)``, the odd
extra pad at the bottom/right).

Errors: a ``TypeError`` for arguments of the wrong type or dtype, a ``ValueError`` naming the
expected and actual shapes for arrays or sizes that do not fit.
"""
import math
import operator

import numpy as np

from . import _core

__all__ = [
    "conv2d", "conv2d_backward", "conv1d", "conv1d_backward",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "max_pool1d", "max_pool1d_backward", "avg_pool1d", "avg_pool1d_backward",
    "global_avg_pool2d", "global_avg_pool2d_backward",
    "linear", "linear_backward",
    "relu", "relu_backward", "sigmoid", "sigmoid_backward", "tanh", "tanh_backward",
    "softmax", "softmax_backward", "cross_entropy", "softmax_cross_entropy",
    "cross_entropy_backward",
]


# --- argument normalisation -----------------------------------------------------------------

def _int(value, op, name):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be an int, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}") from None


def _ints(value, n, op, name):
    """An int or a sequence of n ints -> tuple of n ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ValueError(f"{op}: {name} must be an int or {n} ints, got {tuple(value)!r}")
        return tuple(_int(v, op, name) for v in value)
    return (_int(value, op, name),) * n


def _padding(padding, shape, kernel, stride, dilation, op):
    """Padding -> ((before, after) per spatial dimension), resolving "valid" and "same".

    shape is the input's full shape (N, C, *spatial); kernel, stride, dilation are tuples
    with one entry per spatial dimension. Where sizes are invalid (wrong rank, kernel None or
    < 1 ...), "same" pads nothing and leaves the core to report them.
    """
    n = len(stride)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0),) * n
        if mode != "same":
            raise ValueError(f"{op}: padding must be an int, a tuple, 'valid' or 'same', "
                             f"got {padding!r}")
        if len(shape) != n + 2:
            return ((0, 0),) * n
        pads = []
        for size, k, s, d in zip(shape[2:], kernel, stride, dilation):
            if k is None or k < 1 or s < 1 or d < 1:
                pads.append((0, 0))  # invalid sizes: the core reports them
                continue
            out = -(-size // s)
            total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    return tuple((p, p) for p in _ints(padding, n, op, "padding"))


def _flat(pads):
    return tuple(p for pair in pads for p in pair)


def _pool_args(kernel_size, stride, padding, shape, n, op):
    k = _ints(kernel_size, n, op, "kernel_size")
    s = k if stride is None else _ints(stride, n, op, "stride")
    p = _padding(padding, shape, k, s, (1,) * n, op)
    return k, s, p


def _shape(input_shape, op):
    try:
        return [_int(v, op, "input_shape") for v in input_shape]
    except TypeError:
        raise TypeError(f"{op}: input_shape must be a tuple of ints, got {input_shape!r}") from None


# --- convolution ----------------------------------------------------------------------------

def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) of x (N, C, H, W) with weight (OC, C/groups, KH, KW).

    Returns (N, OC, OH, OW) with OH = (H + pad_top + pad_bottom - dilation*(KH-1) - 1) // stride + 1.
    With groups G, output channels [g*OC/G, (g+1)*OC/G) see only input channels
    [g*C/G, (g+1)*C/G); groups == C is a depthwise convolution.
    """
    s = _ints(stride, 2, "conv2d", "stride")
    d = _ints(dilation, 2, "conv2d", "dilation")
    k = tuple(np.shape(weight)[2:]) if np.ndim(weight) == 4 else (None, None)
    p = _padding(padding, np.shape(x), k, s, d, "conv2d")
    return _core.conv2d_forward(x, weight, bias, s, _flat(p), d, groups=_int(groups, "conv2d", "groups"))


def conv2d_backward(grad_output, x, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    input_grad=True, weight_grad=True, bias_grad=True):
    """Gradients of conv2d: (grad_input, grad_weight, grad_bias), None where not asked for."""
    s = _ints(stride, 2, "conv2d_backward", "stride")
    d = _ints(dilation, 2, "conv2d_backward", "dilation")
    k = tuple(np.shape(weight)[2:]) if np.ndim(weight) == 4 else (None, None)
    p = _padding(padding, np.shape(x), k, s, d, "conv2d_backward")
    return _core.conv2d_backward(grad_output, x, weight, s, _flat(p), d,
                                 bool(input_grad), bool(weight_grad), bool(bias_grad),
                                 groups=_int(groups, "conv2d_backward", "groups"))


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution of x (N, C, L) with weight (OC, C/groups, K); returns (N, OC, OL)."""
    s = _ints(stride, 1, "conv1d", "stride")
    d = _ints(dilation, 1, "conv1d", "dilation")
    k = (np.shape(weight)[2],) if np.ndim(weight) == 3 else (None,)
    (p,) = _padding(padding, np.shape(x), k, s, d, "conv1d")
    return _core.conv1d_forward(x, weight, bias, s[0], p, d[0], groups=_int(groups, "conv1d", "groups"))


def conv1d_backward(grad_output, x, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    input_grad=True, weight_grad=True, bias_grad=True):
    """Gradients of conv1d: (grad_input, grad_weight, grad_bias), None where not asked for."""
    s = _ints(stride, 1, "conv1d_backward", "stride")
    d = _ints(dilation, 1, "conv1d_backward", "dilation")
    k = (np.shape(weight)[2],) if np.ndim(weight) == 3 else (None,)
    (p,) = _padding(padding, np.shape(x), k, s, d, "conv1d_backward")
    return _core.conv1d_backward(grad_output, x, weight, s[0], p, d[0],
                                 bool(input_grad), bool(weight_grad), bool(bias_grad),
                                 groups=_int(groups, "conv1d_backward", "groups"))


# --- pooling --------------------------------------------------------------------------------

def max_pool2d(x, kernel_size, stride=None, padding=0, return_indices=False):
    """Max pooling of x (N, C, H, W); padding counts as -inf. stride defaults to kernel_size.

    With return_indices, also returns the int64 flat index (h * W + w) of each maximum within
    its plane, as PyTorch does; max_pool2d_backward takes them.
    """
    k, s, p = _pool_args(kernel_size, stride, padding, np.shape(x), 2, "max_pool2d")
    y, idx = _core.max_pool2d_forward(x, k, s, _flat(p))
    return (y, idx) if return_indices else y


def max_pool2d_backward(grad_output, indices, input_shape, kernel_size, stride=None, padding=0):
    """Gradient of max_pool2d w.r.t. its input of shape input_shape."""
    shape = _shape(input_shape, "max_pool2d_backward")
    k, s, p = _pool_args(kernel_size, stride, padding, shape, 2, "max_pool2d_backward")
    return _core.max_pool2d_backward(grad_output, indices, shape, k, s, _flat(p))


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Average pooling of x (N, C, H, W); zero padding counted in the divisor when
    count_include_pad (PyTorch's default)."""
    k, s, p = _pool_args(kernel_size, stride, padding, np.shape(x), 2, "avg_pool2d")
    return _core.avg_pool2d_forward(x, k, s, _flat(p), bool(count_include_pad))


def avg_pool2d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0,
                        count_include_pad=True):
    """Gradient of avg_pool2d w.r.t. its input of shape input_shape."""
    shape = _shape(input_shape, "avg_pool2d_backward")
    k, s, p = _pool_args(kernel_size, stride, padding, shape, 2, "avg_pool2d_backward")
    return _core.avg_pool2d_backward(grad_output, shape, k, s, _flat(p), bool(count_include_pad))


def max_pool1d(x, kernel_size, stride=None, padding=0, return_indices=False):
    """Max pooling of x (N, C, L); see max_pool2d."""
    k, s, p = _pool_args(kernel_size, stride, padding, np.shape(x), 1, "max_pool1d")
    y, idx = _core.max_pool1d_forward(x, k[0], s[0], p[0])
    return (y, idx) if return_indices else y


def max_pool1d_backward(grad_output, indices, input_shape, kernel_size, stride=None, padding=0):
    """Gradient of max_pool1d w.r.t. its input of shape input_shape."""
    shape = _shape(input_shape, "max_pool1d_backward")
    k, s, p = _pool_args(kernel_size, stride, padding, shape, 1, "max_pool1d_backward")
    return _core.max_pool1d_backward(grad_output, indices, shape, k[0], s[0], p[0])


def avg_pool1d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Average pooling of x (N, C, L); see avg_pool2d."""
    k, s, p = _pool_args(kernel_size, stride, padding, np.shape(x), 1, "avg_pool1d")
    return _core.avg_pool1d_forward(x, k[0], s[0], p[0], bool(count_include_pad))


def avg_pool1d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0,
                        count_include_pad=True):
    """Gradient of avg_pool1d w.r.t. its input of shape input_shape."""
    shape = _shape(input_shape, "avg_pool1d_backward")
    k, s, p = _pool_args(kernel_size, stride, padding, shape, 1, "avg_pool1d_backward")
    return _core.avg_pool1d_backward(grad_output, shape, k[0], s[0], p[0], bool(count_include_pad))


def global_avg_pool2d(x):
    """Mean over each plane of x (N, C, H, W); returns (N, C)."""
    return _core.global_avg_pool2d_forward(x)


def global_avg_pool2d_backward(grad_output, input_shape):
    """Gradient of global_avg_pool2d w.r.t. its input of shape input_shape."""
    return _core.global_avg_pool2d_backward(
        grad_output, _shape(input_shape, "global_avg_pool2d_backward"))


# --- dense, activations, softmax --------------------------------------------------------------

def linear(x, weight, bias=None):
    """x (*, in_features) @ weight (out_features, in_features)^T + bias -> (*, out_features)."""
    return _core.linear_forward(x, weight, bias)


def linear_backward(grad_output, x, weight, *, input_grad=True, weight_grad=True, bias_grad=True):
    """Gradients of linear: (grad_input, grad_weight, grad_bias), None where not asked for."""
    return _core.linear_backward(grad_output, x, weight,
                                 bool(input_grad), bool(weight_grad), bool(bias_grad))


def relu(x):
    return _core.relu_forward(x)


def relu_backward(grad_output, y):
    """grad_output * (y > 0), with y = relu(x)."""
    return _core.relu_backward(grad_output, y)


def sigmoid(x):
    return _core.sigmoid_forward(x)


def sigmoid_backward(grad_output, y):
    """grad_output * y * (1 - y), with y = sigmoid(x)."""
    return _core.sigmoid_backward(grad_output, y)


def tanh(x):
    return _core.tanh_forward(x)


def tanh_backward(grad_output, y):
    """grad_output * (1 - y**2), with y = tanh(x)."""
    return _core.tanh_backward(grad_output, y)


def _axis(x, axis, op):
    ndim = np.ndim(x)
    if ndim == 0:
        raise ValueError(f"{op}: expected an array with at least 1 dimension, got shape ()")
    axis = _int(axis, op, "axis")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for an array of shape {np.shape(x)}")
    return axis % ndim


def softmax(x, axis=-1):
    """exp(x - max) / sum(exp(x - max)) along axis."""
    a = _axis(x, axis, "softmax")
    if a == np.ndim(x) - 1:
        return _core.softmax_forward(x)
    moved = np.ascontiguousarray(np.moveaxis(np.asarray(x), a, -1))
    return np.moveaxis(_core.softmax_forward(moved), -1, a)


def softmax_backward(grad_output, y, axis=-1):
    """y * (grad_output - sum(grad_output * y, axis)), with y = softmax(x, axis)."""
    a = _axis(y, axis, "softmax_backward")
    if a == np.ndim(y) - 1:
        return _core.softmax_backward(grad_output, y)
    if np.shape(grad_output) != np.shape(y):
        raise ValueError(f"softmax_backward: expected grad_output of shape {np.shape(y)}, "
                         f"got shape {np.shape(grad_output)}")
    move = lambda t: np.ascontiguousarray(np.moveaxis(np.asarray(t), a, -1))  # noqa: E731
    return np.moveaxis(_core.softmax_backward(move(grad_output), move(y)), -1, a)


def softmax_cross_entropy(logits, labels):
    """(mean cross-entropy loss, softmax probabilities) of logits (N, K) and integer labels (N,).

    The probabilities are what cross_entropy_backward would recompute; layers keep them.
    """
    loss, probs = _core.softmax_xent_forward(logits, labels)
    return float(loss), probs


def cross_entropy(logits, labels):
    """Mean over the batch of -log softmax(logits)[label]; logits (N, K), labels (N,) ints."""
    return softmax_cross_entropy(logits, labels)[0]


def cross_entropy_backward(logits, labels, grad=1.0, probs=None):
    """Gradient of grad * cross_entropy(logits, labels) w.r.t. logits:
    (softmax(logits) - onehot(labels)) * grad / N. Pass probs from softmax_cross_entropy to
    skip recomputing the softmax."""
    if probs is None:
        probs = _core.softmax_xent_forward(logits, labels)[1]
    elif np.shape(probs) != np.shape(logits):
        raise ValueError(f"cross_entropy_backward: expected probs of shape {np.shape(logits)}, "
                         f"got shape {np.shape(probs)}")
    if isinstance(grad, (bool, np.bool_)) or not isinstance(grad, (int, float, np.floating, np.integer)):
        raise TypeError(f"cross_entropy_backward: grad must be a number, got {type(grad).__name__}")
    if not math.isfinite(float(grad)):
        raise ValueError(f"cross_entropy_backward: grad must be finite, got {grad}")
    return _core.softmax_xent_backward(probs, labels, float(grad))
