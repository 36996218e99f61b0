"""Loss functions with torch.nn.functional's meaning and reduction="mean"; the arithmetic runs in
cnnkit's C++ core.

A loss is called on a batch, ``value = loss(y_pred, y_true)`` (a Python float), and then
``loss.backward(grad=1.0)`` returns d(grad * value)/d(y_pred) for that call as float32 of
y_pred's shape. backward may return the same internal buffer on every call (copy it to keep
it), and it reads the y_pred / y_true arrays of the last call, which must not be modified in
between (cross-entropy keeps its own softmax, so only its y_true is read).

- ``CrossEntropy``: softmax cross-entropy of logits (N, K) with integer class labels (N,) or
  class probabilities / one-hot rows (N, K) (-sum t * log_softmax(y_pred), mean over N).
- ``BinaryCrossEntropy``: sigmoid cross-entropy of logits with targets in [0, 1] of the same
  shape, mean over all elements (multi-label; torch's BCEWithLogitsLoss).
- ``MeanSquaredError``: mean over all elements of (y_pred - y_true)^2.
"""
import math
import numbers
from collections.abc import Mapping

import numpy as np

from . import _core

__all__ = ["Loss", "CrossEntropy", "BinaryCrossEntropy", "MeanSquaredError", "get"]


class Loss:
    """Base class: subclasses compute in __call__ and keep in self._cache what _backward needs."""

    name = "loss"

    def __init__(self):
        self._cache = None  # what backward needs from the last call
        self._grad = None  # the gradient buffer, reused while y_pred's shape stays the same

    def __call__(self, y_pred, y_true):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad=1.0):
        """d(grad * loss)/d(y_pred) for the last call: float32 of y_pred's shape."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward: no loss to differentiate yet; "
                               f"call the loss on (y_pred, y_true) first")
        if type(grad) is not float and (isinstance(grad, (bool, np.bool_)) or not isinstance(
                grad, (numbers.Real, np.floating, np.integer))):
            raise TypeError(f"{type(self).__name__}.backward: grad must be a number, got "
                            f"{type(grad).__name__}")
        if not math.isfinite(float(grad)):
            raise ValueError(f"{type(self).__name__}.backward: grad must be finite, got {grad}")
        return self._backward(float(grad))

    def _backward(self, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    def _buffer(self, shape):
        if self._grad is None or self._grad.shape != shape:
            self._grad = np.empty(shape, np.float32)
        return self._grad

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        if not isinstance(config, Mapping):
            raise TypeError(f"{cls.__name__}.from_config: expected a dict, got "
                            f"{type(config).__name__}")
        config = dict(config)
        name = config.pop("name", None)
        target = cls if name is None else _lookup(name)
        if target is Loss or not issubclass(target, cls):
            raise ValueError(f"{cls.__name__}.from_config: config names {name!r}; valid names: "
                             f"{_valid_names()}")
        if config:
            raise ValueError(f"{target.__name__}.from_config: unknown keys {sorted(config)}")
        return target()

    def __repr__(self):
        return f"{type(self).__name__}()"


class CrossEntropy(Loss):
    """Softmax cross-entropy of logits y_pred (N, K) with y_true either integer class labels
    (N,) in [0, K) (integer-valued floats accepted) or class probabilities (N, K), e.g. one-hot
    rows; mean over N. Equals torch.nn.functional.cross_entropy(y_pred, y_true)."""

    name = "cross_entropy"

    def __init__(self):
        super().__init__()
        self._probs = None  # softmax(y_pred) of the last call, reused as the next call's out

    def __call__(self, y_pred, y_true):
        self._cache = None  # a failed call leaves nothing for backward
        shape = y_pred.shape if type(y_pred) is np.ndarray else np.shape(y_pred)
        out = self._probs if self._probs is not None and self._probs.shape == shape else None
        ndim = y_true.ndim if type(y_true) is np.ndarray else np.ndim(y_true)
        if ndim == 1:
            loss, probs = _core.softmax_xent_forward(y_pred, y_true, out=out)
            # the labels are N ints: a private copy keeps backward right if the caller reuses them
            target, soft = np.array(y_true), False
        elif ndim == 2:
            loss, probs = _core.softmax_xent_soft_forward(y_pred, y_true, out=out)
            target, soft = y_true, True
        else:
            raise ValueError(f"cross_entropy: expected y_true of shape (N,) (class labels) or "
                             f"(N, K) (class probabilities) for y_pred of shape (N, K), got "
                             f"y_true of shape {np.shape(y_true)}")
        self._probs = probs
        self._cache = (target, soft)
        return float(loss)

    def _backward(self, grad):
        target, soft = self._cache
        out = self._buffer(self._probs.shape)
        if soft:
            return _core.softmax_xent_soft_backward(self._probs, target, grad, out=out)
        return _core.softmax_xent_backward(self._probs, target, grad, out=out)


class BinaryCrossEntropy(Loss):
    """Sigmoid cross-entropy of logits y_pred with targets y_true in [0, 1] of the same shape
    (multi-label), mean over all elements: max(x, 0) - x * t + log1p(exp(-|x|)). Equals
    torch.nn.functional.binary_cross_entropy_with_logits(y_pred, y_true)."""

    name = "binary_cross_entropy"

    def __call__(self, y_pred, y_true):
        self._cache = None
        loss = _core.bce_logits_forward(y_pred, y_true)
        self._cache = (y_pred, y_true)
        return float(loss)

    def _backward(self, grad):
        x, t = self._cache
        return _core.bce_logits_backward(x, t, grad, out=self._buffer(np.shape(x)))


class MeanSquaredError(Loss):
    """Mean over all elements of (y_pred - y_true)^2, both of one shape (no broadcasting).
    Equals torch.nn.functional.mse_loss(y_pred, y_true)."""

    name = "mse"

    def __call__(self, y_pred, y_true):
        self._cache = None
        loss = _core.mse_forward(y_pred, y_true)
        self._cache = (y_pred, y_true)
        return float(loss)

    def _backward(self, grad):
        x, t = self._cache
        return _core.mse_backward(x, t, grad, out=self._buffer(np.shape(x)))


_LOSSES = {
    "cross_entropy": CrossEntropy,
    "categorical_crossentropy": CrossEntropy,
    "sparse_categorical_crossentropy": CrossEntropy,
    "binary_cross_entropy": BinaryCrossEntropy,
    "binary_crossentropy": BinaryCrossEntropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}


def _valid_names():
    return ", ".join(repr(n) for n in _LOSSES)


def _lookup(name):
    if not isinstance(name, str) or name.lower() not in _LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {_valid_names()}")
    return _LOSSES[name.lower()]


def get(identifier):
    """A Loss from a name (see _LOSSES; case-insensitive), a Loss (itself) or a get_config()
    dict."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        return _lookup(identifier)()
    if isinstance(identifier, Mapping):
        return Loss.from_config(identifier)
    raise TypeError(f"loss must be a name ({_valid_names()}), a Loss or a config dict, got "
                    f"{type(identifier).__name__}")
