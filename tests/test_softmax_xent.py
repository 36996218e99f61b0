"""Fused softmax cross-entropy: loss and gradient against the float64 reference."""
import numpy as np
import pytest

import cnnkit.functional as F
import reference as ref
from helpers import assert_close, needs_torch, torch


@pytest.mark.parametrize("n,k", [(1, 1), (1, 10), (64, 10), (7, 3), (256, 1000)])
def test_cross_entropy(n, k, rng):
    logits = (rng.standard_normal((n, k)) * 3).astype(np.float32)
    labels = rng.integers(0, k, size=n)
    loss, probs = F.softmax_cross_entropy(logits, labels)
    assert isinstance(loss, float)
    assert abs(loss - ref.cross_entropy(logits, labels)) <= 1e-6 * max(1.0, abs(loss))
    assert_close(probs, ref.softmax(logits), 1e-5, 1e-7, "probs")  # float32 sum of k exps
    assert F.cross_entropy(logits, labels) == loss
    want = ref.cross_entropy_backward(logits, labels)
    assert_close(F.cross_entropy_backward(logits, labels), want, 1e-5, 1e-7, "dlogits")
    assert_close(F.cross_entropy_backward(logits, labels, probs=probs), want, 1e-5, 1e-7, "dlogits from probs")
    assert_close(F.cross_entropy_backward(logits, labels, grad=0.5), want * 0.5, 1e-5, 1e-7, "scaled")


def test_cross_entropy_extreme_logits_stay_finite():
    logits = np.array([[1e4, -1e4, 0.0], [-3e38, 3e38, 0.0], [0.0, 0.0, 0.0]], np.float32)
    labels = np.array([1, 1, 2])
    loss = F.cross_entropy(logits, labels)
    assert np.isfinite(loss)
    assert abs(loss - ref.cross_entropy(logits, labels)) <= 1e-6 * abs(loss)
    assert np.isfinite(F.cross_entropy_backward(logits, labels)).all()


def test_labels_as_integral_floats_and_any_int_dtype(rng):
    logits = rng.standard_normal((5, 4)).astype(np.float32)
    labels = np.array([0, 3, 1, 2, 3])
    want = F.cross_entropy(logits, labels)
    for lab in (labels.astype(np.float64), labels.astype(np.uint8), labels.astype(np.int32), labels.tolist()):
        assert F.cross_entropy(logits, lab) == want


def test_empty_batch_gives_nan_like_torch():
    loss = F.cross_entropy(np.zeros((0, 3), np.float32), np.zeros(0, np.int64))
    assert np.isnan(loss)
    assert F.cross_entropy_backward(np.zeros((0, 3), np.float32), np.zeros(0, np.int64)).shape == (0, 3)


@needs_torch
@pytest.mark.parametrize("seed", range(10))
def test_cross_entropy_against_torch(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 300)), int(rng.integers(1, 50))
    logits = (rng.standard_normal((n, k)) * 4).astype(np.float32)
    labels = rng.integers(0, k, size=n)
    xt = torch.tensor(logits, requires_grad=True)
    lt = torch.nn.functional.cross_entropy(xt, torch.tensor(labels))
    lt.backward()
    assert abs(F.cross_entropy(logits, labels) - lt.item()) <= 1e-5 * max(1.0, lt.item())
    np.testing.assert_allclose(F.cross_entropy_backward(logits, labels), xt.grad.numpy(), rtol=1e-5, atol=1e-7)
