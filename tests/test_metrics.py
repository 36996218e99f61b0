"""Accuracy as each loss reads the model's output: against plain-loop references and torch."""
import time

import numpy as np
import pytest

from cnnkit import losses, metrics
from helpers import needs_torch, torch


def categorical_ref(y_pred, y_true):
    """Row by row: the first maximum of y_pred against the label (or the first maximum of the
    one-hot / probability row)."""
    hits = 0
    for row, t in zip(np.asarray(y_pred, np.float64), y_true):
        label = int(np.argmax(t)) if np.ndim(t) == 1 else int(t)
        hits += int(np.argmax(row)) == label
    return hits / len(y_pred)


def binary_ref(y_pred, y_true):
    x, t = np.asarray(y_pred, np.float64).ravel(), np.asarray(y_true, np.float64).ravel()
    return sum((a > 0) == (b > 0.5) for a, b in zip(x, t)) / x.size


@pytest.mark.parametrize("loss", [None, "cross_entropy", losses.CrossEntropy(), {"name": "sparse_categorical_crossentropy"}])
@pytest.mark.parametrize("kind", ["labels", "float_labels", "one_hot", "probs"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (37, 10), (200, 3)], ids=str)
def test_categorical_accuracy(shape, kind, loss, rng):
    N, K = shape
    y_pred = rng.standard_normal(shape).astype(np.float32)
    labels = rng.integers(0, K, size=N)
    labels[: N // 2] = y_pred[: N // 2].argmax(axis=1)  # about half right
    y_true = {"labels": labels, "float_labels": labels.astype(np.float32), "one_hot": np.eye(K)[labels],
              "probs": np.eye(K)[labels] * 0.7 + 0.3 / K}[kind]
    acc = metrics.get("accuracy", loss)(y_pred, y_true)
    assert type(acc) is float
    assert acc == pytest.approx(categorical_ref(y_pred, y_true), abs=1e-12)


@pytest.mark.parametrize("shape", [(1, 1), (16, 5), (4, 3, 6, 6)], ids=str)
def test_binary_accuracy(shape, rng):
    y_pred = rng.standard_normal(shape).astype(np.float32)
    y_true = rng.random(shape)
    y_true[..., 0] = 0.5  # a target of exactly 0.5 counts as negative
    y_pred.flat[0] = 0.0  # a logit of exactly 0 counts as negative
    for loss in ("binary_crossentropy", losses.BinaryCrossEntropy()):
        acc = metrics.get("acc", loss)(y_pred, y_true)
        assert type(acc) is float and acc == pytest.approx(binary_ref(y_pred, y_true), abs=1e-12)


def test_mse_accuracy_is_argmax_for_several_outputs_and_an_error_otherwise(rng):
    metric = metrics.get("accuracy", "mse")
    y_pred = rng.standard_normal((20, 4)).astype(np.float32)
    one_hot = np.eye(4)[rng.integers(0, 4, 20)]
    assert metric(y_pred, one_hot) == pytest.approx(categorical_ref(y_pred, one_hot))
    assert metric(y_pred, one_hot.argmax(axis=1)) == pytest.approx(categorical_ref(y_pred, one_hot))
    with pytest.raises(ValueError, match=r"K > 1 classes .* got shape \(20, 1\)"):
        metric(y_pred[:, :1], one_hot[:, :1])
    with pytest.raises(ValueError, match=r"got shape \(20,\)"):
        metric(y_pred[:, 0], one_hot[:, 0])


@needs_torch
def test_against_torch(rng):
    y_pred = rng.standard_normal((64, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 64)
    theirs = (torch.tensor(y_pred).argmax(dim=1) == torch.tensor(labels)).double().mean().item()
    assert metrics.get("accuracy", "cross_entropy")(y_pred, labels) == pytest.approx(theirs, abs=1e-12)
    assert metrics.accuracy(y_pred, np.eye(10)[labels]) == pytest.approx(theirs, abs=1e-12)
    multi = rng.standard_normal((64, 10)).astype(np.float32)
    t = (rng.random((64, 10)) < 0.5).astype(np.float32)
    theirs = ((torch.tensor(multi) > 0) == (torch.tensor(t) > 0.5)).double().mean().item()
    assert metrics.get("accuracy", "binary_cross_entropy")(multi, t) == pytest.approx(theirs, abs=1e-12)


@pytest.mark.parametrize("y_pred,y_true,error,message", [
    ((4, 3), np.array([0, 1, 2]), ValueError, r"expected y_true of shape \(4,\) .* got shape \(3,\)"),
    ((4, 3), np.array([0, 1, 2, 3]), ValueError, r"labels must be in \[0, 3\), got 3 at index 3"),
    ((4, 3), np.array([0, 1, -1, 2]), ValueError, r"labels must be in \[0, 3\)"),
    ((4, 3), np.array([0, 1, np.nan, 2]), ValueError, "labels must be integers, got nan at index 2"),
    ((4, 3), np.array([0, 1, 1.5, 2]), ValueError, "labels must be integers"),
    ((4, 3), np.array(["a", "b", "c", "d"]), TypeError, "labels must hold integers"),
    ((4, 3), np.zeros((4, 4)), ValueError, r"got shape \(4, 4\)"),
    ((12,), np.zeros(12, np.int64), ValueError, r"expected y_pred of shape \(N, num_classes\), got shape \(12,\)"),
])
def test_categorical_errors(y_pred, y_true, error, message, rng):
    with pytest.raises(error, match=message):
        metrics.get("accuracy", "cross_entropy")(rng.standard_normal(y_pred), y_true)


def test_binary_errors(rng):
    with pytest.raises(ValueError, match=r"expected y_true of shape \(4, 3\) .* got shape \(4,\)"):
        metrics.get("accuracy", "binary_cross_entropy")(rng.standard_normal((4, 3)), np.zeros(4))


def test_empty_batch_is_nan():
    assert np.isnan(metrics.get("accuracy")(np.zeros((0, 3)), np.zeros(0, np.int64)))
    assert np.isnan(metrics.get("accuracy", "binary_cross_entropy")(np.zeros((0, 3)), np.zeros((0, 3))))


def test_get():
    metric = metrics.get("accuracy", "cross_entropy")
    assert metric.name == "accuracy" and metric.get_config() == {"name": "accuracy", "mode": "categorical"}
    assert metrics.get("ACC", losses.BinaryCrossEntropy()).mode == "binary"
    assert metrics.get("accuracy", {"name": "mse"}).mode == "regression"

    def custom(y_pred, y_true):
        return 0.0

    assert metrics.get(custom, "mse") is custom
    with pytest.raises(ValueError, match="valid names: 'accuracy'"):
        metrics.get("f1")
    with pytest.raises(TypeError, match="name"):
        metrics.get(3)
    with pytest.raises(ValueError, match="unknown loss"):
        metrics.get("accuracy", "hinge")


def test_accuracy_is_vectorised(rng):
    y_pred = rng.standard_normal((100_000, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 100_000)
    metric = metrics.get("accuracy", "cross_entropy")
    start = time.perf_counter()
    metric(y_pred, labels)
    assert time.perf_counter() - start < 0.5  # a Python loop over rows takes seconds
