"""Layers with PyTorch's names, arguments, initialisation and state_dict keys.

Every layer has ``forward(x)`` and ``backward(grad_output) -> grad_input`` on NumPy arrays
(float32, NCHW / NCL) and two dicts, ``params`` and ``grads``, keyed ``"weight"`` and
``"bias"``, whose values are the live float32 arrays the layer computes with: writing into
``layer.params["weight"][...]`` changes the layer, and ``backward`` overwrites
``layer.grads`` (it does not accumulate, unlike PyTorch). ``backward`` uses what the last
``forward`` saw, so call them in pairs.

Shapes given to and returned by ``output_shape`` exclude the batch dimension.

Initialisation is PyTorch's default: weights kaiming-uniform with a = sqrt(5), i.e.
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from
cnnkit's generator (``cnnkit.set_random_seed``).

Inside a model, layers reuse their output and gradient arrays from step to step
(``reuse_buffers``); used on their own they return fresh arrays, like PyTorch.

A training step calls every layer twice, so the per-call Python work is kept small: what
depends only on the input's shape and the layer's settings (validation, padding, output
shape, the reused output arrays) is worked out at the first call with that shape and looked
up afterwards (``_plans``, ``_views``), and the calls into the core a model makes every step
pass their arguments by position (pybind11 matches each keyword by name, ~0.15 us apiece:
~10% of a LeNet-5 forward on one image).
"""
import functools
import math

import numpy as np

from . import _core, _random
from .functional import _flat, _int, _ints, _number, _padding

__all__ = [
    "Layer", "Conv2d", "Conv1d", "MaxPool2d", "AvgPool2d", "MaxPool1d", "AvgPool1d",
    "GlobalAvgPool2d", "Linear", "ReLU", "Sigmoid", "Tanh", "Softmax", "Flatten", "Dropout",
    "Residual", "Concat",
]

LAYER_TYPES = {}  # class name -> class, for rebuilding saved models (no pickle, no code)


class _BackwardBeforeForward(RuntimeError, AttributeError):
    """backward called before any forward: a RuntimeError to callers (an AttributeError too,
    which is what it replaces)."""


# What a layer's forward keeps for its backward.
_FORWARD_STATE = frozenset({"_x", "_shape", "_plan", "_indices", "_y", "_mask", "_mean", "_invstd", "_batch_stats"})


def _forward_first(backward):
    """backward, turning the AttributeError of reading forward's state before any forward into
    a RuntimeError that says so. A wrapper, not Layer.__getattr__: a class with __getattr__
    makes every attribute access of its instances slower (CPython then neither uses the
    generic lookup nor specializes it), which cost a LeNet-5 batch-1 predict ~4 us of 22."""
    if getattr(backward, "_forward_first", False):
        return backward

    @functools.wraps(backward)
    def run(self, *args, **kwargs):
        try:
            return backward(self, *args, **kwargs)
        except AttributeError as e:
            if getattr(e, "name", None) in _FORWARD_STATE and getattr(e, "obj", None) is self:  # 3.10+
                raise _BackwardBeforeForward(f"{type(self).__name__}: backward needs what forward keeps; call "
                                             f"forward first (backward uses the last forward's input)") from None
            raise
    run._forward_first = True
    return run


class Layer:
    """Base class. Subclasses set ``params``/``grads`` in ``__init__`` and implement
    ``forward``, ``backward``, ``output_shape`` and ``get_config``."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            LAYER_TYPES[cls.__name__] = cls
        if "backward" in cls.__dict__:
            cls.backward = _forward_first(cls.__dict__["backward"])

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.training = True
        self.trainable = True
        self.name = None
        self.input_grad = True        # a model turns this off for its first layer
        self.reuse_buffers = False    # a model turns this on: outputs are reused across steps
        self._buffers = {}
        self._views = {}              # (key, shape, dtype) -> the array _out returned for them
        self._plans = {}              # input shape and settings -> what forward worked out
        self._grad_is_scratch = False  # a model sets it: backward may overwrite grad_output
        self._input_is_scratch = False  # a model sets it: forward may overwrite its input
        self._y_out = None            # the reused array the last forward wrote its output to

    # Whether forward behaves differently in training and evaluation mode: what predict and
    # fit switch (Sequential._Mode). True unless a layer class says otherwise, so a user's
    # subclass reading self.training is always switched.
    _mode_dependent = True

    @property
    def training(self):
        return self._training

    @training.setter
    def training(self, value):
        self._training = value

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad_output):
        raise NotImplementedError


    def output_shape(self, input_shape):
        """Output shape (without batch) for an input of input_shape (without batch)."""
        return tuple(input_shape)

    def get_config(self):
        """The constructor arguments, JSON-serialisable."""
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __call__(self, x):
        return self.forward(x)

    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def count_params(self):
        return int(sum(p.size for p in self.params.values()))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    # --- helpers for subclasses ---------------------------------------------------------------

    def _out(self, key, shape, dtype=np.float32):
        """The array to write a result into: None (fresh) unless reuse_buffers, then a cached
        array. A smaller batch gets a leading-rows view of the cached one (still C-contiguous),
        so a model's last, partial batch does not reallocate every epoch. The array returned
        for a (key, shape, dtype) is remembered and returned again."""
        if not self.reuse_buffers:
            return None
        shape = tuple(shape)
        view = self._views.get((key, shape, dtype))
        if view is not None:
            return view
        buf = self._buffers.get(key)
        if (buf is None or buf.dtype != dtype or buf.shape[1:] != shape[1:]
                or len(shape) == 0 or buf.shape[0] < shape[0]):
            buf = self._buffers[key] = np.empty(shape, dtype)
        view = buf[:shape[0]] if shape else buf
        if len(self._views) > 64:  # shapes keep changing: keep the views of the latest only
            self._views.clear()
        self._views[key, shape, dtype] = view
        return view

    def _workspace(self):
        """The core's scratch memory for this layer's next call: inside a model (which runs one
        call at a time) the layer's own Workspace, kept warm from step to step; used on its
        own, None, i.e. the calling thread's, so threads calling one layer never share one."""
        return self._ws if self.reuse_buffers else None

    def _dx(self):
        """The array the input gradient goes to (None: fresh) for the last forward's input
        shape, kept in that forward's plan."""
        dx = self._plan[-1]
        if dx is None and self.reuse_buffers:
            dx = self._plan[-1] = self._out("dx", self._shape)
        return dx

    # Whether backward reads the forward output (then the layer after must not overwrite it).
    _needs_output = False

    def _owns_output(self, y):
        """Whether y (what forward returned) is this layer's own reused output array, which
        its backward does not read: the layer after may overwrite it."""
        return y is self._y_out and y is not None and not self._needs_output

    def _owns(self, grad):
        """Whether grad (what backward returned) is this layer's own reused gradient array,
        which nothing reads once the layer below has used it."""
        plan = getattr(self, "_plan", None)
        return plan is not None and grad is plan[-1]

    def _remember(self, key, plan):
        """Stores what forward worked out for the input shape and settings in key."""
        if len(self._plans) > 16:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def _init_params(self, fan_in, weight_shape, bias):
        """PyTorch's default initialisation; grads as zero arrays of the same shapes."""
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        rng = _random.generator()
        self.params["weight"] = rng.uniform(-bound, bound, weight_shape).astype(np.float32)
        if bias:
            self.params["bias"] = rng.uniform(-bound, bound, weight_shape[0]).astype(np.float32)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def _param_grads(self):
        """Where backward writes the weight and bias gradients: the live grads arrays, or
        nothing for a frozen layer."""
        if not self.trainable:
            return None, None
        return self.grads["weight"], self.grads.get("bias")

    def _expect_input(self, x, layout, channel_axis, channels):
        """Check rank and channels, with a hint when the data looks channels-last (Keras's
        habit): x.shape[channel_axis] is wrong but x.shape[-1] would fit."""
        shape = _shape_of(x)
        name = type(self).__name__
        ndim = layout.count(",") + 1
        if len(shape) != ndim:
            raise ValueError(f"{name} expected input with {ndim} dimensions {layout}, got shape {shape}")
        if shape[channel_axis] != channels:
            hint = ""
            if shape[-1] == channels:
                perm = (0, len(shape) - 1) + tuple(range(1, len(shape) - 1))
                hint = (f"; it looks channels-last: cnnkit takes channels first {layout}, "
                        f"use x.transpose{perm}")
            raise ValueError(f"{name} expected {channels} channels at axis {channel_axis} of input {layout}, "
                             f"got shape {shape}{hint}")


def _shape_of(x):
    """np.shape(x), read straight off an ndarray (the common case, and many times cheaper)."""
    if type(x) is np.ndarray:
        return x.shape
    if x is None:  # np.shape(None) is (): the rank message would hide the real mistake
        raise TypeError("expected an input array, got None")
    return np.shape(x)


def _positive(value, n, name, op):
    v = _ints(value, n, op, name)
    if any(i < 1 for i in v):
        raise ValueError(f"{op}: {name} must be >= 1, got {value!r}")
    return v


def _padding_arg(padding, n, op):
    """Validate a padding argument now (resolved against the input size at forward time)."""
    if isinstance(padding, str):
        if padding.lower() not in ("same", "valid"):
            raise ValueError(f"{op}: padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
        return padding.lower()
    p = _ints(padding, n, op, "padding")
    if any(i < 0 for i in p):
        raise ValueError(f"{op}: padding must be >= 0, got {padding!r}")
    return p


# --- convolution --------------------------------------------------------------------------------

class _Conv(Layer):
    """forward and backward shared by Conv2d and Conv1d: the core functions and the input
    layout are class attributes."""

    _mode_dependent = False

    _layout = None
    _core_forward = _core_backward = None

    def _init_conv(self, in_channels, out_channels, kernel_size, groups, bias):
        """Channels, groups and PyTorch's default init: each output channel sees
        in_channels / groups input channels, so fan_in = in_channels / groups * prod(kernel)."""
        op = type(self).__name__
        self.in_channels = _positive(in_channels, 1, "in_channels", op)[0]
        self.out_channels = _positive(out_channels, 1, "out_channels", op)[0]
        self.groups = _positive(groups, 1, "groups", op)[0]
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{op}: in_channels ({self.in_channels}) and out_channels ({self.out_channels}) "
                             f"must both be divisible by groups ({self.groups})")
        self._init_params(self.in_channels // self.groups * math.prod(kernel_size),
                          (self.out_channels, self.in_channels // self.groups) + tuple(kernel_size), bool(bias))
        self._ws = _core.Workspace()

    def forward(self, x):
        shape = _shape_of(x)
        key = (shape, self.reuse_buffers, self.padding, self.kernel_size, self.stride, self.dilation)
        plan = self._plans.get(key)
        if plan is None:
            self._expect_input(x, self._layout, 1, self.in_channels)
            pad = self._pads(shape)
            out = self._out("y", (shape[0],) + self.output_shape(shape[1:])) if self.reuse_buffers else None
            plan = self._remember(key, [pad, out, None])  # [2]: the dx array, once asked for
        self._x, self._shape, self._plan = x, shape, plan
        pad, out = plan[0], plan[1]
        self._pad, self._y_out = pad, out
        # (..., ref, out, workspace, groups)
        return type(self)._core_forward(x, self.params["weight"], self.params.get("bias"), self.stride, pad,
                                        self.dilation, False, out, self._workspace(), self.groups)

    def backward(self, grad_output):
        dw, db = self._param_grads()
        dx = self._dx() if self.input_grad else None
        # (..., need_dx, need_dw, need_db, ref, out, workspace, groups)
        gx, _, _ = type(self)._core_backward(grad_output, self._x, self.params["weight"], self.stride, self._pad,
                                             self.dilation, self.input_grad, dw is not None, db is not None,
                                             False, (dx, dw, db), self._workspace(), self.groups)
        return gx


class Conv2d(_Conv):
    """2-D convolution: (N, in_channels, H, W) -> (N, out_channels, OH, OW)."""

    _layout = "(N, C, H, W)"
    _core_forward, _core_backward = _core.conv2d_forward, _core.conv2d_backward

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True):
        super().__init__()
        op = type(self).__name__
        self.kernel_size = _positive(kernel_size, 2, "kernel_size", op)
        self.stride = _positive(stride, 2, "stride", op)
        self.dilation = _positive(dilation, 2, "dilation", op)
        self.padding = _padding_arg(padding, 2, op)
        self._init_conv(in_channels, out_channels, self.kernel_size, groups, bias)

    def _pads(self, shape):
        return _flat(_padding(self.padding, shape, self.kernel_size, self.stride, self.dilation, type(self).__name__))

    def output_shape(self, input_shape):
        if len(input_shape) != 3 or input_shape[0] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expected input shape ({self.in_channels}, H, W), "
                             f"got {tuple(input_shape)}")
        oh, ow = _core.conv2d_output_size(tuple(input_shape), (self.out_channels,) + self.kernel_size,
                                          self.stride, self._pads((1,) + tuple(input_shape)), self.dilation)
        return (self.out_channels, oh, ow)

    def get_config(self):
        pad = self.padding if isinstance(self.padding, str) else list(self.padding)
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": pad,
                "dilation": list(self.dilation), "groups": self.groups, "bias": "bias" in self.params}


class Conv1d(_Conv):
    """1-D convolution: (N, in_channels, L) -> (N, out_channels, OL)."""

    _layout = "(N, C, L)"
    _core_forward, _core_backward = _core.conv1d_forward, _core.conv1d_backward

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True):
        super().__init__()
        op = type(self).__name__
        self.kernel_size = _positive(kernel_size, 1, "kernel_size", op)[0]
        self.stride = _positive(stride, 1, "stride", op)[0]
        self.dilation = _positive(dilation, 1, "dilation", op)[0]
        self.padding = _padding_arg(padding, 1, op)
        self._init_conv(in_channels, out_channels, (self.kernel_size,), groups, bias)

    def _pads(self, shape):
        (p,) = _padding(self.padding, shape, (self.kernel_size,), (self.stride,), (self.dilation,),
                        type(self).__name__)
        return p

    def output_shape(self, input_shape):
        if len(input_shape) != 2 or input_shape[0] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expected input shape ({self.in_channels}, L), "
                             f"got {tuple(input_shape)}")
        _, ol = _core.conv2d_output_size((input_shape[0], 1, input_shape[1]),
                                         (self.out_channels, 1, self.kernel_size), (1, self.stride),
                                         (0, 0) + self._pads((1,) + tuple(input_shape)), (1, self.dilation))
        return (self.out_channels, ol)

    def get_config(self):
        pad = self.padding if isinstance(self.padding, str) else self.padding[0]
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": pad,
                "dilation": self.dilation, "groups": self.groups, "bias": "bias" in self.params}


# --- pooling ------------------------------------------------------------------------------------

class _Pool(Layer):
    """Shared argument handling of the pooling layers (n spatial dimensions)."""

    _mode_dependent = False

    ndim = 2

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        op = type(self).__name__
        n = self.ndim
        self.kernel_size = _positive(kernel_size, n, "kernel_size", op)
        self.stride = self.kernel_size if stride is None else _positive(stride, n, "stride", op)
        self.padding = _padding_arg(padding, n, op)

    def _pads(self, shape):
        return _flat(_padding(self.padding, shape, self.kernel_size, self.stride, (1,) * self.ndim,
                              type(self).__name__))

    def output_shape(self, input_shape):
        if len(input_shape) != self.ndim + 1:
            layout = "(C, H, W)" if self.ndim == 2 else "(C, L)"
            raise ValueError(f"{type(self).__name__} expected input shape {layout}, got {tuple(input_shape)}")
        pads = self._pads((1,) + tuple(input_shape))
        if self.ndim == 2:
            return (input_shape[0],) + _core.pool2d_output_size(tuple(input_shape), self.kernel_size,
                                                                self.stride, pads)
        _, ol = _core.pool2d_output_size((input_shape[0], 1, input_shape[1]), (1,) + self.kernel_size,
                                         (1,) + self.stride, (0, 0) + pads)
        return (input_shape[0], ol)

    def _check(self, x):
        shape = _shape_of(x)
        if len(shape) != self.ndim + 2:
            layout = "(N, C, H, W)" if self.ndim == 2 else "(N, C, L)"
            raise ValueError(f"{type(self).__name__} expected input with {self.ndim + 2} dimensions {layout}, "
                             f"got shape {shape}")
        return shape

    def _core_args(self, pads):
        """kernel, stride, padding in the form the 2-D or 1-D core function takes."""
        if self.ndim == 2:
            return self.kernel_size, self.stride, pads
        return self.kernel_size[0], self.stride[0], pads

    def _plan_for(self, x):
        """[input shape, padding, core arguments, output shape to reuse or None, dx array] for
        x, checked at the first call with x's shape; sets self._plan to it."""
        shape = _shape_of(x)
        key = (shape, self.reuse_buffers, self.padding, self.kernel_size, self.stride)
        plan = self._plans.get(key)
        if plan is None:
            self._check(x)
            pad = self._pads(shape)
            y_shape = shape[:1] + self.output_shape(shape[1:]) if self.reuse_buffers else None
            plan = self._remember(key, [shape, pad, self._core_args(pad), y_shape, None])
        self._plan = plan
        return plan

    def get_config(self):
        unwrap = (lambda t: list(t)) if self.ndim == 2 else (lambda t: t[0])
        pad = self.padding if isinstance(self.padding, str) else unwrap(self.padding)
        return {"kernel_size": unwrap(self.kernel_size), "stride": unwrap(self.stride), "padding": pad}


class MaxPool2d(_Pool):
    """Max pooling over (N, C, H, W); padding counts as -inf; stride defaults to kernel_size."""

    ndim = 2

    def forward(self, x):
        self._shape, self._pad, args, y_shape, _ = self._plan_for(x)
        fwd = _core.max_pool2d_forward if self.ndim == 2 else _core.max_pool1d_forward
        out = None if y_shape is None else (self._out("y", y_shape), self._out("indices", y_shape, np.int64))
        self._y_out = None if out is None else out[0]
        y, self._indices = fwd(x, *args, out=out)
        return y

    def backward(self, grad_output):
        bwd = _core.max_pool2d_backward if self.ndim == 2 else _core.max_pool1d_backward
        return bwd(grad_output, self._indices, self._shape, *self._plan[2], out=self._dx())

    def _relu_forward(self, x):
        """forward(relu(x)) in one pass, for a model running a ReLU layer and then this one
        (2-D): the same output bit for bit, without relu(x) written and read back."""
        self._shape, self._pad, args, y_shape, _ = self._plan_for(x)
        out = None if y_shape is None else (self._out("y", y_shape), self._out("indices", y_shape, np.int64))
        self._y_out = None  # _relu_backward reads the output: the layer after must not overwrite it
        self._y, self._indices = _core.max_pool2d_relu_forward(x, *args, out)
        return self._y

    def _relu_backward(self, grad_output):
        """The ReLU's input gradient after _relu_forward: backward then relu_backward's."""
        return _core.max_pool2d_relu_backward(grad_output, self._indices, self._y, self._shape,
                                              *self._plan[2], self._dx())


class MaxPool1d(MaxPool2d):
    """Max pooling over (N, C, L)."""

    ndim = 1


class AvgPool2d(_Pool):
    """Average pooling over (N, C, H, W); zero padding counted in the divisor when
    count_include_pad (PyTorch's default)."""

    ndim = 2

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True):
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x):
        self._shape, self._pad, args, y_shape, _ = self._plan_for(x)
        fwd = _core.avg_pool2d_forward if self.ndim == 2 else _core.avg_pool1d_forward
        self._y_out = out = None if y_shape is None else self._out("y", y_shape)
        return fwd(x, *args, self.count_include_pad, out=out)

    def backward(self, grad_output):
        bwd = _core.avg_pool2d_backward if self.ndim == 2 else _core.avg_pool1d_backward
        return bwd(grad_output, self._shape, *self._plan[2], self.count_include_pad, out=self._dx())

    def get_config(self):
        return dict(super().get_config(), count_include_pad=self.count_include_pad)


class AvgPool1d(AvgPool2d):
    """Average pooling over (N, C, L)."""

    ndim = 1


class GlobalAvgPool2d(Layer):
    """Mean over each feature map: (N, C, H, W) -> (N, C)."""

    _mode_dependent = False

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"GlobalAvgPool2d expected input shape (C, H, W), got {tuple(input_shape)}")
        return (input_shape[0],)

    def forward(self, x):
        self._shape = _shape_of(x)
        out = self._out("y", self._shape[:2]) if len(self._shape) == 4 else None
        return _core.global_avg_pool2d_forward(x, out=out)

    def backward(self, grad_output):
        return _core.global_avg_pool2d_backward(grad_output, self._shape, out=self._out("dx", self._shape))


# --- dense, activations, reshaping, regularisation ------------------------------------------------

class Linear(Layer):
    """y = x W^T + b with W (out_features, in_features); x (N, in_features)."""

    _mode_dependent = False

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features = _positive(in_features, 1, "in_features", "Linear")[0]
        self.out_features = _positive(out_features, 1, "out_features", "Linear")[0]
        self._init_params(self.in_features, (self.out_features, self.in_features), bool(bias))

    def output_shape(self, input_shape):
        if len(input_shape) < 1 or input_shape[-1] != self.in_features:
            raise ValueError(f"Linear expected input shape (..., {self.in_features}), got {tuple(input_shape)}"
                             + (" (add a Flatten layer before it?)" if len(input_shape) > 1 else ""))
        return tuple(input_shape[:-1]) + (self.out_features,)

    def forward(self, x):
        shape = _shape_of(x)
        if len(shape) < 2 or shape[-1] != self.in_features:
            raise ValueError(f"Linear expected input of shape (N, ..., {self.in_features}), got shape {shape}"
                             + (" (add a Flatten layer before it?)" if len(shape) > 2 else ""))
        self._x, self._shape = x, shape
        plan = self._plans.get((shape, self.reuse_buffers))
        if plan is None:
            out = self._out("y", shape[:-1] + (self.out_features,)) if self.reuse_buffers else None
            plan = self._remember((shape, self.reuse_buffers), [out, None])
        self._plan, self._y_out = plan, plan[0]
        return _core.linear_forward(x, self.params["weight"], self.params.get("bias"), plan[0])

    def backward(self, grad_output):
        dw, db = self._param_grads()
        dx = self._dx() if self.input_grad else None
        gx, _, _ = _core.linear_backward(grad_output, self._x, self.params["weight"], self.input_grad,
                                         dw is not None, db is not None, (dx, dw, db))
        return gx

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": "bias" in self.params}


class _Activation(Layer):
    """Elementwise activation whose derivative is a function of its output."""

    _mode_dependent = False

    _forward = _backward = None
    _needs_output = True

    def forward(self, x):
        self._shape = shape = _shape_of(x)
        plan = self._plans.get((shape, self.reuse_buffers))
        if plan is None:
            plan = self._remember((shape, self.reuse_buffers), [None, None])  # y, dx: once asked for
        self._plan = plan
        if self._input_is_scratch:  # in place: one array fewer to write (LeNet's ReLU 1: 1.2 MB)
            out = x
        else:
            out = plan[0]
            if out is None and self.reuse_buffers:
                out = plan[0] = self._out("y", shape)
        self._y = type(self)._forward(x, out)
        return self._y

    def backward(self, grad_output):
        # in place when the model says grad_output is scratch: one array fewer to write
        # (LeNet's first ReLU: 1.2 MB)
        out = grad_output if self._grad_is_scratch else self._dx()
        return type(self)._backward(grad_output, self._y, out)


class ReLU(_Activation):
    _forward, _backward = _core.relu_forward, _core.relu_backward


class Sigmoid(_Activation):
    _forward, _backward = _core.sigmoid_forward, _core.sigmoid_backward


class Tanh(_Activation):
    _forward, _backward = _core.tanh_forward, _core.tanh_backward


class Softmax(Layer):
    """Softmax along axis (default: the last, the classes of a (N, K) input)."""

    _mode_dependent = False

    _needs_output = True

    def __init__(self, axis=-1):
        super().__init__()
        self.axis = _int(axis, "Softmax", "axis")

    def forward(self, x):
        nd = np.ndim(x)  # an axis out of range goes to functional.softmax, which reports it
        if nd >= 1 and -nd <= self.axis < nd and self.axis % nd == nd - 1:
            out = self._out("y", np.shape(x)) if self.reuse_buffers else None
            self._y = _core.softmax_forward(x, out=out)
        else:
            from .functional import softmax
            self._y = softmax(x, axis=self.axis)
        return self._y

    def backward(self, grad_output):
        from .functional import softmax_backward
        return softmax_backward(grad_output, self._y, axis=self.axis)

    def get_config(self):
        return {"axis": self.axis}


class Flatten(Layer):
    """Flattens dims start_dim..end_dim (PyTorch's defaults: all but the batch)."""

    _mode_dependent = False

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = _int(start_dim, "Flatten", "start_dim")
        self.end_dim = _int(end_dim, "Flatten", "end_dim")

    def _flat_shape(self, shape):
        nd = len(shape)
        s, e = self.start_dim % nd if nd else 0, self.end_dim % nd if nd else 0
        in_range = -nd <= self.start_dim < nd and -nd <= self.end_dim < nd  # else % would wrap silently
        if nd == 0 or not in_range or s > e:
            why = f": dims must be in [{-nd}, {nd - 1}]" if nd and not in_range else ""
            raise ValueError(f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}) does not fit shape {shape}{why}")
        return tuple(shape[:s]) + (int(np.prod(shape[s:e + 1], dtype=np.int64)),) + tuple(shape[e + 1:])

    def output_shape(self, input_shape):
        # shapes here exclude the batch: shift the dims by one
        return self._flat_shape((1,) + tuple(input_shape))[1:]

    def forward(self, x):
        if type(x) is not np.ndarray:
            x = np.asarray(x)
        self._shape = x.shape
        key = (x.shape, self.start_dim, self.end_dim)
        flat = self._plans.get(key)
        if flat is None:
            flat = self._remember(key, self._flat_shape(x.shape))
        return x.reshape(flat)

    def backward(self, grad_output):
        if type(grad_output) is not np.ndarray:
            grad_output = np.asarray(grad_output)
        return grad_output.reshape(self._shape)

    def get_config(self):
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}


class Dropout(Layer):
    """Inverted dropout: in training, zeroes each element with probability p and scales the
    rest by 1 / (1 - p); in evaluation, the identity. Masks come from cnnkit's generator."""

    def __init__(self, p=0.5):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)):
            raise TypeError(f"Dropout: p must be a number in [0, 1), got {type(p).__name__}")
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be a number in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x):
        self._mask = None
        if not self.training or self.p == 0.0:
            return x
        seed = int(_random.generator().integers(0, 2**63))
        shape = np.shape(x)
        out, mask = (self._out("y", shape), self._out("mask", shape)) if self.reuse_buffers else (None, None)
        y, self._mask = _core.dropout_forward(x, self.p, seed, out=out, mask_out=mask)
        return y

    def backward(self, grad_output):
        if self._mask is None:
            return grad_output
        return _core.dropout_backward(grad_output, self._mask, out=self._out("dx", self._mask.shape))

    def get_config(self):
        return {"p": self.p}


# --- normalisation, locally connected layers, more pooling, padding -------------------------------

__all__ += ["BatchNorm2d", "BatchNorm1d", "LocallyConnected2d", "LPPool2d", "AdaptiveAvgPool2d", "ZeroPad2d"]


class _BatchNorm(Layer):
    """Batch normalisation over dim 1 (PyTorch's _BatchNorm): in training, normalises with the
    batch's mean and biased variance and updates the running statistics with momentum (the
    unbiased variance, as PyTorch; momentum=None: their cumulative average); in evaluation,
    uses the running statistics. ``buffers`` holds running_mean, running_var (float32) and
    num_batches_tracked (an int64 0-d array): live arrays that ``Sequential.state_dict()``
    stores after the params, under PyTorch's keys. A frozen layer (``trainable = False``) keeps
    gamma and beta but still updates its buffers in training mode, as PyTorch's
    requires_grad=False does."""

    _ranks = ()          # accepted input ranks, batch included
    _layouts = ""        # the layouts of those ranks, for messages

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        op = type(self).__name__
        self.num_features = _positive(num_features, 1, "num_features", op)[0]
        self.eps = _number(eps, op, "eps", 0.0)
        self.momentum = None if momentum is None else _number(momentum, op, "momentum", 0.0)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        c = self.num_features
        if self.affine:
            self.params = {"weight": np.ones(c, np.float32), "bias": np.zeros(c, np.float32)}
            self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.buffers = {}
        if self.track_running_stats:
            self.buffers = {"running_mean": np.zeros(c, np.float32), "running_var": np.ones(c, np.float32),
                            "num_batches_tracked": np.zeros((), np.int64)}

    def _check(self, shape):
        name = type(self).__name__
        if len(shape) not in self._ranks:
            raise ValueError(f"{name} expected input with {' or '.join(map(str, self._ranks))} dimensions "
                             f"{self._layouts}, got shape {shape}")
        if shape[1] != self.num_features:
            hint = ""
            if len(shape) > 2 and shape[-1] == self.num_features:  # Layer._expect_input's hint
                perm = (0, len(shape) - 1) + tuple(range(1, len(shape) - 1))
                hint = f"; it looks channels-last: cnnkit takes channels first, use x.transpose{perm}"
            raise ValueError(f"{name} expected {self.num_features} channels at axis 1, got shape {shape}{hint}")

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) + 1 not in self._ranks or shape[0] != self.num_features:
            layouts = self._layouts.replace("N, ", "")
            raise ValueError(f"{type(self).__name__} expected input shape {layouts} with C = {self.num_features}, "
                             f"got {shape}")
        return shape

    def forward(self, x):
        shape = _shape_of(x)
        key = (shape, self.reuse_buffers)
        plan = self._plans.get(key)
        if plan is None:
            self._check(shape)
            c = self.num_features
            out = (self._out("y", shape), self._out("mean", (c,)), self._out("invstd", (c,))) \
                if self.reuse_buffers else None
            plan = self._remember(key, [out, None])  # [1]: the dx array, once asked for
        self._plan, self._shape, self._x = plan, shape, x
        self._batch_stats = self.training or not self.track_running_stats
        update = self.training and self.track_running_stats
        momentum = self.momentum
        if update and momentum is None:  # cumulative moving average, as PyTorch
            momentum = 1.0 / float(self.buffers["num_batches_tracked"] + 1)
        stats = self.track_running_stats and (update or not self._batch_stats)
        y, self._mean, self._invstd = _core.batch_norm_forward(
            x, self.params.get("weight"), self.params.get("bias"),
            self.buffers["running_mean"] if stats else None, self.buffers["running_var"] if stats else None,
            self._batch_stats, momentum or 0.0, self.eps, out=plan[0])
        if update:
            self.buffers["num_batches_tracked"][...] += 1
        self._y_out = None if plan[0] is None else plan[0][0]
        return y

    def backward(self, grad_output):
        dw, db = self._param_grads() if self.affine else (None, None)
        dx = self._dx() if self.input_grad else None
        gx, _, _ = _core.batch_norm_backward(grad_output, self._x, self.params.get("weight"), self._mean,
                                             self._invstd, self._batch_stats, self.input_grad, dw is not None,
                                             db is not None, out=(dx, dw, db))
        return gx

    def get_config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "affine": self.affine, "track_running_stats": self.track_running_stats}


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) over N, H, W per channel C = num_features."""

    _ranks = (4,)
    _layouts = "(N, C, H, W)"


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) over N (and L) per channel C = num_features."""

    _ranks = (2, 3)
    _layouts = "(N, C) or (N, C, L)"


class LocallyConnected2d(Layer):
    """Locally connected 2-D layer ("local connections, unshared"): a convolution with a
    separate filter at every output position. input_size (H, W) is fixed because the weights
    depend on it; the output is (N, out_channels, OH, OW) with OH = (H + 2 * padding - KH) //
    stride + 1.

    params["weight"] has shape (OH, OW, out_channels, in_channels, KH, KW): the
    (out_channels, in_channels, KH, KW) filter bank of output position (oh, ow), positions
    outermost. params["bias"] has shape (out_channels, OH, OW), a separate bias at each location
    (position_bias=True, the default), or (out_channels,), shared by all positions. Initialised
    like a convolution with fan_in = in_channels * KH * KW.
    """

    _mode_dependent = False

    def __init__(self, in_channels, out_channels, kernel_size, input_size, stride=1, padding=0, bias=True,
                 position_bias=True):
        super().__init__()
        op = type(self).__name__
        self.in_channels = _positive(in_channels, 1, "in_channels", op)[0]
        self.out_channels = _positive(out_channels, 1, "out_channels", op)[0]
        self.kernel_size = _positive(kernel_size, 2, "kernel_size", op)
        self.input_size = _positive(input_size, 2, "input_size", op)
        self.stride = _positive(stride, 2, "stride", op)
        self.padding = _padding_arg(padding, 2, op)
        self.position_bias = bool(position_bias)
        chw = (self.in_channels,) + self.input_size
        self._pad = _flat(_padding(self.padding, (1,) + chw, self.kernel_size, self.stride, (1, 1), op))
        self.output_size = tuple(_core.locally_connected2d_output_size(
            chw, (self.out_channels,) + self.kernel_size, self.stride, self._pad))
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        rng = _random.generator()
        w_shape = self.output_size + (self.out_channels, self.in_channels) + self.kernel_size
        self.params["weight"] = rng.uniform(-bound, bound, w_shape).astype(np.float32)
        if bias:
            b_shape = (self.out_channels,) + (self.output_size if self.position_bias else ())
            self.params["bias"] = rng.uniform(-bound, bound, b_shape).astype(np.float32)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._ws = _core.Workspace()

    def _check(self, shape):
        name = type(self).__name__
        if len(shape) == 4 and shape[1] == self.in_channels and tuple(shape[2:]) != self.input_size:
            raise ValueError(f"{name} was built for inputs of size (H, W) = {self.input_size} (its weights are "
                             f"per position), got input of shape {shape} with size {tuple(shape[2:])}")

    def output_shape(self, input_shape):
        want = (self.in_channels,) + self.input_size
        if tuple(input_shape) != want:
            raise ValueError(f"{type(self).__name__} expected input shape {want} (its weights are per position), "
                             f"got {tuple(input_shape)}")
        return (self.out_channels,) + self.output_size

    def forward(self, x):
        shape = _shape_of(x)
        key = (shape, self.reuse_buffers)
        plan = self._plans.get(key)
        if plan is None:
            self._expect_input(x, "(N, C, H, W)", 1, self.in_channels)
            self._check(shape)
            out = self._out("y", (shape[0], self.out_channels) + self.output_size) if self.reuse_buffers else None
            plan = self._remember(key, [out, None])  # [1]: the dx array, once asked for
        self._x, self._shape, self._plan = x, shape, plan
        self._y_out = plan[0]
        return _core.locally_connected2d_forward(x, self.params["weight"], self.params.get("bias"), self.stride,
                                                 self._pad, out=plan[0], workspace=self._workspace())

    def backward(self, grad_output):
        dw, db = self._param_grads()
        dx = self._dx() if self.input_grad else None
        gx, _, _ = _core.locally_connected2d_backward(
            grad_output, self._x, self.params["weight"], self.stride, self._pad, self.input_grad, dw is not None,
            db is not None, self.position_bias, out=(dx, dw, db), workspace=self._workspace())
        return gx

    def get_config(self):
        pad = self.padding if isinstance(self.padding, str) else list(self.padding)
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "input_size": list(self.input_size),
                "stride": list(self.stride), "padding": pad, "bias": "bias" in self.params,
                "position_bias": self.position_bias}


class LPPool2d(_Pool):
    """Power-average pooling over (N, C, H, W), PyTorch's LPPool2d: (sum over each window of
    x ** norm_type) ** (1 / norm_type); norm_type 2 is L2 pooling. No padding; stride defaults
    to kernel_size."""

    ndim = 2

    def __init__(self, norm_type, kernel_size, stride=None):
        super().__init__(kernel_size, stride, 0)
        op = type(self).__name__
        self.norm_type = _number(norm_type, op, "norm_type", 0.0, strict=True)

    def forward(self, x):
        self._shape, _, args, y_shape, _ = self._plan_for(x)
        self._x = x
        self._y_out = out = None if y_shape is None else self._out("y", y_shape)
        return _core.lp_pool2d_forward(x, self.norm_type, args[0], args[1], out=out)

    def backward(self, grad_output):
        args = self._plan[2]
        return _core.lp_pool2d_backward(grad_output, self._x, self.norm_type, args[0], args[1], out=self._dx())

    def get_config(self):
        return {"norm_type": self.norm_type, "kernel_size": list(self.kernel_size), "stride": list(self.stride)}


class AdaptiveAvgPool2d(Layer):
    """Average pooling to a fixed output size, PyTorch's AdaptiveAvgPool2d: output_size an int
    or (OH, OW) whose None entries keep the input's size; 1 gives global average pooling with
    an (N, C, 1, 1) output."""

    _mode_dependent = False

    def __init__(self, output_size):
        super().__init__()
        op = type(self).__name__
        sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
        if len(sizes) != 2:
            raise ValueError(f"{op}: output_size must be an int or 2 entries, got {output_size!r}")
        self.output_size = tuple(None if v is None else _positive(v, 1, "output_size", op)[0] for v in sizes)

    def _size(self, hw):
        return tuple(h if o is None else o for o, h in zip(self.output_size, hw))

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"AdaptiveAvgPool2d expected input shape (C, H, W), got {tuple(input_shape)}")
        return (input_shape[0],) + self._size(input_shape[1:])

    def forward(self, x):
        shape = _shape_of(x)
        key = (shape, self.reuse_buffers, self.output_size)
        plan = self._plans.get(key)
        if plan is None:
            if len(shape) != 4:
                raise ValueError(f"AdaptiveAvgPool2d expected input with 4 dimensions (N, C, H, W), got shape {shape}")
            size = self._size(shape[2:])
            out = self._out("y", shape[:2] + size) if self.reuse_buffers else None
            plan = self._remember(key, [size, out, None])
        self._shape, self._plan = shape, plan
        self._y_out = plan[1]
        return _core.adaptive_avg_pool2d_forward(x, plan[0], out=plan[1])

    def backward(self, grad_output):
        return _core.adaptive_avg_pool2d_backward(grad_output, self._shape, out=self._dx())

    def get_config(self):
        return {"output_size": list(self.output_size)}


class ZeroPad2d(Layer):
    """Zero padding of (N, C, H, W), PyTorch's ZeroPad2d: padding an int for every side or
    (left, right, top, bottom); a negative pad crops."""

    _mode_dependent = False

    def __init__(self, padding):
        super().__init__()
        from .functional import _zero_pad_arg
        self._tblr = _zero_pad_arg(padding, type(self).__name__)
        t, b, l, r = self._tblr
        self.padding = (l, r, t, b)

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"ZeroPad2d expected input shape (C, H, W), got {tuple(input_shape)}")
        t, b, l, r = self._tblr
        c, h, w = input_shape
        if h + t + b < 0 or w + l + r < 0 or min(t, 0) + min(b, 0) < -h or min(l, 0) + min(r, 0) < -w:
            raise ValueError(f"ZeroPad2d: padding (left, right, top, bottom) = {self.padding} crops more than the "
                             f"input's (H, W) = {(h, w)}")
        return (c, h + t + b, w + l + r)

    def forward(self, x):
        shape = _shape_of(x)
        key = (shape, self.reuse_buffers)
        plan = self._plans.get(key)
        if plan is None:
            if len(shape) != 4:
                raise ValueError(f"ZeroPad2d expected input with 4 dimensions (N, C, H, W), got shape {shape}")
            out = self._out("y", shape[:1] + self.output_shape(shape[1:])) if self.reuse_buffers else None
            plan = self._remember(key, [out, None])
        self._shape, self._plan = shape, plan
        self._y_out = plan[0]
        return _core.pad2d_forward(x, self._tblr, 0.0, out=plan[0])

    def backward(self, grad_output):
        return _core.pad2d_backward(grad_output, self._shape, self._tblr, out=self._dx())

    def get_config(self):
        return {"padding": list(self.padding)}


# Blocks made of layers (they subclass Layer, so they come after it).
from .containers import Concat, Residual  # noqa: E402
