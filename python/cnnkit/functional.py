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

Normalisation, locally connected layers, more pooling and padding:

- ``batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
  momentum=0.1, eps=1e-5, return_stats=False)`` on x (N, C, ...): training normalises with the
  batch's mean and biased variance and updates running_mean / running_var in place (unbiased
  variance); otherwise it uses them. ``return_stats`` also returns the (mean, invstd) used, which
  ``batch_norm_backward(grad_output, x, weight, mean, invstd, training=True, ...)`` takes ->
  ``(grad_input, grad_weight, grad_bias)`` (the full gradient with batch statistics, the affine
  map's gradient with running ones)
- ``locally_connected2d(x, weight, bias=None, stride=1, padding=0)``: weight (OH, OW, OC, C, KH,
  KW), a separate filter at every output position; bias (OC,) or (OC, OH, OW).
  ``locally_connected2d_backward(grad_output, x, weight, stride=1, padding=0, position_bias=False,
  ...)`` -> ``(grad_input, grad_weight, grad_bias)``
- ``lp_pool2d(x, norm_type, kernel_size, stride=None)``, ``lp_pool2d_backward(grad_output, x,
  norm_type, kernel_size, stride=None)``
- ``adaptive_avg_pool2d(x, output_size)``, ``adaptive_avg_pool2d_backward(grad_output,
  input_shape)``
- ``zero_pad2d(x, padding)`` with padding an int or (left, right, top, bottom), and
  ``pad(x, pad, mode="constant", value=0.0)`` (PyTorch's F.pad on the last one or two
  dimensions; negative pads crop); backward ``zero_pad2d_backward(grad_output, padding)``,
  ``pad_backward(grad_output, pad)``
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
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}") from None
    if not -2**63 <= v < 2**63:  # the core takes int64
        raise ValueError(f"{op}: {name} must fit in 64 bits, got {v}")
    return v


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


# --- normalisation, locally connected, Lp and adaptive pooling, padding -----------------------

__all__ += [
    "batch_norm", "batch_norm_backward", "locally_connected2d", "locally_connected2d_backward",
    "lp_pool2d", "lp_pool2d_backward", "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
    "zero_pad2d", "zero_pad2d_backward", "pad", "pad_backward",
]


def _number(value, op, name, minimum=None, strict=False):
    """A finite real number as float (bool rejected), optionally >= (or >) minimum."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: {name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or (minimum is not None and (v <= minimum if strict else v < minimum)):
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
        raise ValueError(f"{op}: {name} must be a finite number{bound}, got {value!r}")
    return v


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5, return_stats=False):
    """Batch normalisation of x (N, C, ...) per channel: (x - mean) / sqrt(var + eps) * weight + bias.

    training: mean and biased variance of the batch (more than one value per channel needed);
    running_mean and running_var (float32 arrays of shape (C,), or None) are then updated in
    place to (1 - momentum) * running + momentum * batch statistic, with the unbiased variance.
    Otherwise running_mean and running_var are used. With return_stats, returns (y, mean,
    invstd): the statistics used, for batch_norm_backward.
    """
    momentum = _number(momentum, "batch_norm", "momentum", 0.0)
    eps = _number(eps, "batch_norm", "eps", 0.0)
    y, mean, invstd = _core.batch_norm_forward(x, weight, bias, running_mean, running_var, bool(training),
                                               momentum, eps)
    return (y, mean, invstd) if return_stats else y


def batch_norm_backward(grad_output, x, weight, mean, invstd, training=True, *, input_grad=True,
                        weight_grad=True, bias_grad=True):
    """Gradients of batch_norm: (grad_input, grad_weight, grad_bias), None where not asked for.

    mean, invstd: what batch_norm(..., return_stats=True) returned. training: the forward used
    the batch's statistics (the full gradient through them); else only the affine map's.
    """
    return _core.batch_norm_backward(grad_output, x, weight, mean, invstd, bool(training),
                                     bool(input_grad), bool(weight_grad), bool(bias_grad))


def _lc_args(x, weight, stride, padding, op):
    s = _ints(stride, 2, op, "stride")
    k = tuple(np.shape(weight)[4:]) if np.ndim(weight) == 6 else (None, None)
    p = _padding(padding, np.shape(x), k, s, (1, 1), op)
    return s, _flat(p)


def locally_connected2d(x, weight, bias=None, stride=1, padding=0):
    """Locally connected layer (unshared convolution) of x (N, C, H, W).

    weight (OH, OW, OC, C, KH, KW): the filter bank applied at output position (oh, ow), where
    OH, OW must be the output size the input, stride and padding give; bias (OC,) shared by all
    positions or (OC, OH, OW), one per position. Returns (N, OC, OH, OW):
    y[n, o, i, j] = b + sum_{c, kh, kw} xpad[n, c, i*SH + kh, j*SW + kw] * weight[i, j, o, c, kh, kw].
    """
    s, p = _lc_args(x, weight, stride, padding, "locally_connected2d")
    return _core.locally_connected2d_forward(x, weight, bias, s, p)


def locally_connected2d_backward(grad_output, x, weight, stride=1, padding=0, position_bias=False, *,
                                 input_grad=True, weight_grad=True, bias_grad=True):
    """Gradients of locally_connected2d: (grad_input, grad_weight, grad_bias), None where not
    asked for; grad_bias has shape (OC, OH, OW) with position_bias, else (OC,)."""
    s, p = _lc_args(x, weight, stride, padding, "locally_connected2d_backward")
    return _core.locally_connected2d_backward(grad_output, x, weight, s, p, bool(input_grad), bool(weight_grad),
                                              bool(bias_grad), bool(position_bias))


def lp_pool2d(x, norm_type, kernel_size, stride=None):
    """Power-average pooling of x (N, C, H, W): (sum over each window of x ** norm_type) **
    (1 / norm_type), PyTorch's lp_pool2d (no padding; stride defaults to kernel_size)."""
    p = _number(norm_type, "lp_pool2d", "norm_type", 0.0, strict=True)
    k, s, _ = _pool_args(kernel_size, stride, 0, np.shape(x), 2, "lp_pool2d")
    return _core.lp_pool2d_forward(x, p, k, s)


def lp_pool2d_backward(grad_output, x, norm_type, kernel_size, stride=None):
    """Gradient of lp_pool2d w.r.t. its input x (which it reads again)."""
    p = _number(norm_type, "lp_pool2d_backward", "norm_type", 0.0, strict=True)
    k, s, _ = _pool_args(kernel_size, stride, 0, np.shape(x), 2, "lp_pool2d_backward")
    return _core.lp_pool2d_backward(grad_output, x, p, k, s)


def _adaptive_size(output_size, shape, op):
    """output_size (an int, or a pair whose None entries keep the input's size) -> (OH, OW)."""
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"{op}: output_size must be an int or 2 entries, got {tuple(output_size)!r}")
        if any(v is None for v in output_size) and len(shape) != 4:
            raise ValueError(f"{op}: expected input with 4 dimensions (N, C, H, W), got shape {tuple(shape)}")
        return tuple(shape[2 + i] if v is None else _int(v, op, "output_size") for i, v in enumerate(output_size))
    return (_int(output_size, op, "output_size"),) * 2


def adaptive_avg_pool2d(x, output_size):
    """Average pooling of x (N, C, H, W) to (N, C, OH, OW) for any output size, PyTorch's bins:
    output row i averages rows floor(i * H / OH) to ceil((i + 1) * H / OH) - 1 (columns alike).
    output_size: an int, or a pair whose None entries keep that input size; 1 is global
    average pooling."""
    size = _adaptive_size(output_size, np.shape(x), "adaptive_avg_pool2d")
    return _core.adaptive_avg_pool2d_forward(x, size)


def adaptive_avg_pool2d_backward(grad_output, input_shape):
    """Gradient of adaptive_avg_pool2d w.r.t. its input of shape input_shape (the output size
    is grad_output's)."""
    return _core.adaptive_avg_pool2d_backward(grad_output, _shape(input_shape, "adaptive_avg_pool2d_backward"))


def _pad_arg(pad, op):
    """PyTorch's pad tuple (left, right[, top, bottom]) -> (top, bottom, left, right)."""
    if not isinstance(pad, (tuple, list)) or len(pad) not in (2, 4):
        raise ValueError(f"{op}: pad must be (left, right) or (left, right, top, bottom), got {pad!r}")
    p = tuple(_int(v, op, "pad") for v in pad)
    return (p[2], p[3], p[0], p[1]) if len(p) == 4 else (0, 0, p[0], p[1])


def _zero_pad_arg(padding, op):
    """ZeroPad2d's padding: an int for every side, or (left, right, top, bottom)."""
    if isinstance(padding, (tuple, list)):
        if len(padding) != 4:
            raise ValueError(f"{op}: padding must be an int or (left, right, top, bottom), got {tuple(padding)!r}")
        return _pad_arg(padding, op)
    p = _int(padding, op, "padding")
    return (p, p, p, p)


def _padded(shape, tblr, sign):
    """shape with its last two sizes grown (sign 1) or shrunk (sign -1) by the padding."""
    t, b, l, r = tblr
    return tuple(shape[:-2]) + (shape[-2] + sign * (t + b), shape[-1] + sign * (l + r))


def pad(x, pad, mode="constant", value=0.0):
    """PyTorch's F.pad in constant mode on the last dimension ((left, right)) or the last two
    ((left, right, top, bottom)); a negative pad crops."""
    if mode != "constant":
        raise ValueError(f"pad: mode must be 'constant' (the only mode cnnkit has), got {mode!r}")
    value = _number(value, "pad", "value")
    tblr = _pad_arg(pad, "pad")
    if len(pad) == 2:  # one dimension: seen as (..., 1, L)
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError("pad: expected an input with at least 1 dimension, got shape ()")
        y = _core.pad2d_forward(x.reshape(x.shape[:-1] + (1, x.shape[-1])), tblr, value)
        return y.reshape(x.shape[:-1] + (y.shape[-1],))
    return _core.pad2d_forward(x, tblr, value)


def pad_backward(grad_output, pad):
    """Gradient of pad (constant mode) w.r.t. its input: grad_output cropped back (zeros where
    the forward cropped)."""
    tblr = _pad_arg(pad, "pad_backward")
    dy = np.asarray(grad_output)
    if len(pad) == 2:
        if dy.ndim < 1:
            raise ValueError("pad_backward: expected grad_output with at least 1 dimension, got shape ()")
        dy2 = dy.reshape(dy.shape[:-1] + (1, dy.shape[-1]))
        dx = _core.pad2d_backward(dy2, _padded(dy2.shape, tblr, -1), tblr)
        return dx.reshape(dy.shape[:-1] + (dx.shape[-1],))
    if dy.ndim < 2:
        raise ValueError(f"pad_backward: expected grad_output with at least 2 dimensions, got shape {dy.shape}")
    return _core.pad2d_backward(dy, _padded(dy.shape, tblr, -1), tblr)


def zero_pad2d(x, padding):
    """Zero padding of the last two dimensions of x (N, C, H, W), PyTorch's ZeroPad2d: padding
    an int for every side or (left, right, top, bottom); a negative pad crops."""
    return _core.pad2d_forward(x, _zero_pad_arg(padding, "zero_pad2d"), 0.0)


def zero_pad2d_backward(grad_output, padding):
    """Gradient of zero_pad2d w.r.t. its input."""
    tblr = _zero_pad_arg(padding, "zero_pad2d_backward")
    dy = np.asarray(grad_output)
    if dy.ndim < 2:
        raise ValueError(f"zero_pad2d_backward: expected grad_output with at least 2 dimensions, got shape {dy.shape}")
    return _core.pad2d_backward(dy, _padded(dy.shape, tblr, -1), tblr)
