"""Metrics: accuracy, read in the way the loss reads the model's output.

``get("accuracy", loss)`` returns a callable ``(y_pred, y_true) -> float`` (the fraction
correct) that matches the loss:

- cross-entropy (or no loss): argmax of y_pred (N, K) against integer labels (N,), or
  against the argmax of one-hot / probability rows (N, K);
- binary cross-entropy (logits, multi-label): (y_pred > 0) == (y_true > 0.5) elementwise,
  averaged over all elements;
- mean squared error: as cross-entropy when y_pred is (N, K) with K > 1, else an error.

Metrics are not training arithmetic, so they are vectorised NumPy. An empty batch gives NaN.
"""
import numpy as np

from . import losses as _losses

__all__ = ["Accuracy", "accuracy", "categorical_accuracy", "binary_accuracy", "get"]


def _labels(y_true, N, K, op):
    """Integer class labels (N,) in [0, K) from integers or integer-valued floats."""
    t = np.asarray(y_true)
    if t.shape != (N,):
        raise ValueError(f"{op}: expected y_true of shape ({N},) (class labels) or ({N}, {K}) "
                         f"(one-hot rows), got shape {t.shape}")
    if t.dtype.kind == "f":
        bad = ~(np.isfinite(t) & (t == np.floor(t)))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{op}: labels must be integers, got {t[i].item()!r} at index {i}")
    elif t.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must hold integers, got dtype {t.dtype}")
    if N and (t.min() < 0 or t.max() >= K):
        i = int(np.argmax((t < 0) | (t >= K)))
        raise ValueError(f"{op}: labels must be in [0, {K}), got {t[i].item()!r} at index {i}")
    return t


def categorical_accuracy(y_pred, y_true):
    """Fraction of rows of y_pred (N, K) whose argmax is the label: y_true holds integer labels
    (N,) or one-hot / probability rows (N, K) (their argmax is the label)."""
    op = "accuracy"
    y = np.asarray(y_pred)
    if y.ndim != 2:
        raise ValueError(f"{op}: expected y_pred of shape (N, num_classes), got shape {y.shape}")
    N, K = y.shape
    t = np.asarray(y_true)
    if t.ndim == 2:
        if t.shape != y.shape:
            raise ValueError(f"{op}: expected y_true of shape ({N},) (class labels) or ({N}, {K}) "
                             f"(one-hot rows), got shape {t.shape}")
        labels = t.argmax(axis=1)
    else:
        labels = _labels(t, N, K, op)
    if N == 0:
        return float("nan")
    return np.count_nonzero(y.argmax(axis=1) == labels) / N


def accuracy(y_pred, y_true):
    """categorical_accuracy as a float: the accuracy of a classifier trained with cross-entropy."""
    return float(categorical_accuracy(y_pred, y_true))


def binary_accuracy(y_pred, y_true):
    """Fraction of elements where the logit's side of 0 matches the target's side of 0.5
    (multi-label): mean((y_pred > 0) == (y_true > 0.5)); both of one shape."""
    y, t = np.asarray(y_pred), np.asarray(y_true)
    if y.shape != t.shape:
        raise ValueError(f"binary_accuracy: expected y_true of shape {y.shape} (that of y_pred), "
                         f"got shape {t.shape}")
    if y.size == 0:
        return float("nan")
    return np.count_nonzero((y > 0) == (t > 0.5)) / y.size


def _regression_accuracy(y_pred, y_true):
    shape = np.shape(y_pred)
    if len(shape) != 2 or shape[1] < 2:
        raise ValueError(f"accuracy with mean squared error needs y_pred of shape (N, K) with "
                         f"K > 1 classes (argmax is the prediction), got shape {shape}")
    return categorical_accuracy(y_pred, y_true)


class Accuracy:
    """The accuracy matching a loss; call it as ``metric(y_pred, y_true) -> float``."""

    name = "accuracy"
    _MODES = {"categorical": categorical_accuracy, "binary": binary_accuracy,
              "regression": _regression_accuracy}

    def __init__(self, mode="categorical"):
        if mode not in self._MODES:
            raise ValueError(f"Accuracy: mode must be one of {sorted(self._MODES)}, got {mode!r}")
        self.mode = mode
        self._fn = self._MODES[mode]

    def __call__(self, y_pred, y_true):
        return float(self._fn(y_pred, y_true))

    def get_config(self):
        return {"name": self.name, "mode": self.mode}

    def __repr__(self):
        return f"Accuracy(mode={self.mode!r})"


_NAMES = ("accuracy", "acc")


def get(identifier, loss=None):
    """The metric for identifier ("accuracy" or "acc"; a callable is returned as is), read in
    the way loss (a Loss, a loss name, a config dict or None) reads y_pred."""
    if callable(identifier) and not isinstance(identifier, str):
        return identifier
    if not isinstance(identifier, str):
        raise TypeError(f"metric must be a name ('accuracy') or a callable, got "
                        f"{type(identifier).__name__}")
    if identifier.lower() not in _NAMES:
        raise ValueError(f"unknown metric {identifier!r}; valid names: 'accuracy' (alias 'acc')")
    loss = None if loss is None else _losses.get(loss)
    if isinstance(loss, _losses.BinaryCrossEntropy):
        return Accuracy("binary")
    if isinstance(loss, _losses.MeanSquaredError):
        return Accuracy("regression")
    return Accuracy("categorical")
