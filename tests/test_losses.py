"""Losses: values and gradients against float64 NumPy references written from the formulas and
against torch.nn.functional with autograd; extreme logits; errors for bad input."""
import numpy as np
import pytest

from cnnkit import _core, losses
from helpers import needs_torch, torch


# --- float64 references, from the formulas -------------------------------------------------

def f64(a):
    return np.asarray(a, dtype=np.float64)


def log_softmax_ref(x):
    x = f64(x)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def cross_entropy_ref(x, y):
    """(mean loss, d loss / d x) for integer labels (N,) or class probabilities (N, K)."""
    x = f64(x)
    N, K = x.shape
    t = np.eye(K)[np.asarray(y, np.int64)] if np.ndim(y) == 1 else f64(y)
    lsm = log_softmax_ref(x)
    loss = -(t * lsm).sum() / N
    grad = (np.exp(lsm) * t.sum(axis=1, keepdims=True) - t) / N
    return loss, grad


def bce_ref(x, t):
    x, t = f64(x), f64(t)
    loss = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    sig = np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))
    return loss.mean(), (sig - t) / x.size


def mse_ref(x, t):
    d = f64(x) - f64(t)
    return (d * d).mean(), 2 * d / d.size


# --- inputs --------------------------------------------------------------------------------

CE_SHAPES = [(1, 1), (1, 10), (7, 3), (32, 10), (64, 1000)]
ELEMENTWISE_SHAPES = [(1, 1), (5, 3), (32, 10), (4, 3, 5, 5), (300, 400)]


def logits(rng, shape, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def targets(rng, kind, shape):
    N, K = shape
    if kind == "labels":
        return rng.integers(0, K, size=N)
    if kind == "float_labels":
        return rng.integers(0, K, size=N).astype(np.float64)
    if kind == "one_hot":
        return np.eye(K)[rng.integers(0, K, size=N)]  # float64, as Keras users write it
    if kind == "probs":
        return rng.dirichlet(np.ones(K), size=N).astype(np.float32)
    if kind == "unnormalised":  # torch does not require rows to sum to 1
        return rng.random(shape).astype(np.float32) * 2
    raise AssertionError(kind)


def check(ours_loss, ours_grad, ref_loss, ref_grad, what):
    assert isinstance(ours_loss, float), what
    np.testing.assert_allclose(ours_loss, ref_loss, rtol=1e-5, atol=1e-7, err_msg=f"{what}: loss")
    assert ours_grad.dtype == np.float32 and ours_grad.shape == np.shape(ref_grad), what
    scale = float(np.abs(ref_grad).max(initial=0.0))
    np.testing.assert_allclose(ours_grad, ref_grad, rtol=1e-5, atol=1e-6 * scale, err_msg=f"{what}: grad")


# --- values and gradients --------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["labels", "float_labels", "one_hot", "probs", "unnormalised"])
@pytest.mark.parametrize("shape", CE_SHAPES, ids=str)
def test_cross_entropy(shape, kind, rng):
    x, y = logits(rng, shape), targets(rng, kind, shape)
    loss = losses.CrossEntropy()
    value = loss(x, y)
    ref_loss, ref_grad = cross_entropy_ref(x, y)
    check(value, loss.backward(), ref_loss, ref_grad, f"{kind} {shape}")
    check(value, loss.backward(0.25), ref_loss, 0.25 * ref_grad, f"{kind} {shape}, grad=0.25")


def test_cross_entropy_one_hot_equals_labels(rng):
    x = logits(rng, (16, 10))
    y = rng.integers(0, 10, size=16)
    hard, soft = losses.CrossEntropy(), losses.CrossEntropy()
    assert hard(x, y) == pytest.approx(soft(x, np.eye(10, dtype=np.float32)[y]), rel=1e-6)
    np.testing.assert_allclose(hard.backward(), soft.backward(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
def test_binary_cross_entropy(shape, rng):
    x = logits(rng, shape)
    t = (rng.random(shape) < 0.5).astype(np.float32)
    t[..., 0] = rng.random(shape[:-1])  # soft targets too
    loss = losses.BinaryCrossEntropy()
    ref_loss, ref_grad = bce_ref(x, t)
    check(loss(x, t), loss.backward(), ref_loss, ref_grad, str(shape))
    check(loss(x, t), loss.backward(-2.0), ref_loss, -2.0 * ref_grad, f"{shape}, grad=-2")


@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
def test_mean_squared_error(shape, rng):
    x, t = logits(rng, shape, 1.0), rng.standard_normal(shape)  # float64 targets are converted
    loss = losses.MeanSquaredError()
    ref_loss, ref_grad = mse_ref(x, t.astype(np.float32))
    check(loss(x, t), loss.backward(), ref_loss, ref_grad, str(shape))
    check(loss(x, t), loss.backward(3), ref_loss, 3 * ref_grad, f"{shape}, grad=3")


def test_bce_keeps_its_digits_for_large_logits_and_targets_near_one():
    # max(x, 0) - x * t in float32 would lose every digit of x * (1 - t) here
    x = np.array([[2000.0, -2000.0, 30.0]], np.float32)
    t = np.array([[0.9999, 0.0001, 0.999]], np.float32)
    loss = losses.BinaryCrossEntropy()
    ref_loss, _ = bce_ref(x, t)
    assert loss(x, t) == pytest.approx(ref_loss, rel=1e-5)


# --- against torch -------------------------------------------------------------------------------

def torch_loss_and_grad(fn, x, t, grad=1.0):
    tx = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    value = fn(tx, t)
    (value * grad).backward()
    return value.item(), tx.grad.numpy()


@needs_torch
@pytest.mark.parametrize("kind", ["labels", "one_hot", "probs", "unnormalised"])
@pytest.mark.parametrize("shape", [(1, 1), (8, 5), (64, 100)], ids=str)
def test_cross_entropy_against_torch(shape, kind, rng):
    x, y = logits(rng, shape), targets(rng, kind, shape)
    ty = torch.tensor(y) if kind == "labels" else torch.tensor(y, dtype=torch.float32)
    ref_loss, ref_grad = torch_loss_and_grad(torch.nn.functional.cross_entropy, x, ty, 0.5)
    loss = losses.get("categorical_crossentropy")
    check(loss(x, y), loss.backward(0.5), ref_loss, ref_grad, f"{kind} {shape}")


@needs_torch
@pytest.mark.parametrize("shape", [(1, 1), (8, 5), (4, 3, 6, 6)], ids=str)
def test_binary_cross_entropy_against_torch(shape, rng):
    x, t = logits(rng, shape), rng.random(shape).astype(np.float32)
    fn = torch.nn.functional.binary_cross_entropy_with_logits
    ref_loss, ref_grad = torch_loss_and_grad(fn, x, torch.tensor(t), 2.0)
    loss = losses.get("binary_crossentropy")
    check(loss(x, t), loss.backward(2.0), ref_loss, ref_grad, str(shape))


@needs_torch
@pytest.mark.parametrize("shape", [(1, 1), (8, 5), (4, 3, 6, 6)], ids=str)
def test_mean_squared_error_against_torch(shape, rng):
    x, t = logits(rng, shape), rng.standard_normal(shape).astype(np.float32)
    ref_loss, ref_grad = torch_loss_and_grad(torch.nn.functional.mse_loss, x, torch.tensor(t))
    loss = losses.get("mean_squared_error")
    check(loss(x, t), loss.backward(), ref_loss, ref_grad, str(shape))


@needs_torch
def test_extreme_logits_stay_finite_and_match_torch(rng):
    x = np.array([[1e4, -1e4, 0.0, 5.0], [-1e4, -1e4, -1e4, 1e4], [1e4, 1e4, -1e4, -1e4]], np.float32)
    labels = np.array([1, 0, 2])
    probs = np.array([[0.1, 0.7, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25], [0.5, 0.0, 0.0, 0.5]], np.float32)
    multi = np.array([[1, 0, 1, 0], [0, 1, 0.5, 1], [1, 1, 0, 0]], np.float32)
    F = torch.nn.functional
    cases = [(losses.CrossEntropy(), labels, F.cross_entropy, torch.tensor(labels)),
             (losses.CrossEntropy(), probs, F.cross_entropy, torch.tensor(probs)),
             (losses.BinaryCrossEntropy(), multi, F.binary_cross_entropy_with_logits, torch.tensor(multi)),
             (losses.MeanSquaredError(), multi, F.mse_loss, torch.tensor(multi))]
    for loss, t, fn, tt in cases:
        value, grad = loss(x, t), loss.backward()
        assert np.isfinite(value) and np.isfinite(grad).all(), loss
        ref_loss, ref_grad = torch_loss_and_grad(fn, x, tt)
        check(value, grad, ref_loss, ref_grad, repr(loss))


# --- buffers, state and errors ------------------------------------------------------------------

def test_backward_reuses_its_buffer_and_follows_the_last_call(rng):
    loss = losses.CrossEntropy()
    x1, y1 = logits(rng, (8, 5)), rng.integers(0, 5, 8)
    x2, y2 = logits(rng, (8, 5)), rng.random((8, 5)).astype(np.float32)
    loss(x1, y1)
    g1 = loss.backward()
    loss(x2, y2)
    g2 = loss.backward()
    assert g2 is g1  # same shape: the buffer is reused
    np.testing.assert_allclose(g2, cross_entropy_ref(x2, y2)[1], rtol=1e-5, atol=1e-7)
    loss(logits(rng, (3, 5)), rng.integers(0, 5, 3))
    assert loss.backward().shape == (3, 5)
    y = rng.integers(1, 5, 8)
    expected = cross_entropy_ref(x1, y)[1]
    loss(x1, y)
    y[:] = 0  # the labels were copied, so reusing the caller's array is harmless
    np.testing.assert_allclose(loss.backward(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("make", [losses.CrossEntropy, losses.BinaryCrossEntropy, losses.MeanSquaredError])
def test_backward_before_any_call_raises(make):
    with pytest.raises(RuntimeError, match="call the loss"):
        make().backward()


def test_failed_call_leaves_nothing_to_differentiate(rng):
    loss = losses.CrossEntropy()
    loss(logits(rng, (4, 3)), np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError):
        loss(logits(rng, (4, 3)), np.array([0, 1, 3, 0]))
    with pytest.raises(RuntimeError):
        loss.backward()


@pytest.mark.parametrize("loss,y_pred,y_true,error,message", [
    (losses.CrossEntropy(), (4, 3), np.array([0, 1, 2, 3]), ValueError, r"labels must be in \[0, 3\), got 3 at index 3"),
    (losses.CrossEntropy(), (4, 3), np.array([0, 1, -1, 0]), ValueError, r"labels must be in \[0, 3\)"),
    (losses.CrossEntropy(), (4, 3), np.array([0, 1, np.nan, 0]), ValueError, "labels must be integers, got nan"),
    (losses.CrossEntropy(), (4, 3), np.array([0, 1, 0.5, 0]), ValueError, "labels must be integers"),
    (losses.CrossEntropy(), (4, 3), np.array([0, 1, 2]), ValueError, r"expected labels of shape \(4,\), got shape \(3,\)"),
    (losses.CrossEntropy(), (4, 3), np.zeros((4, 4)), ValueError, r"of shape \(4, 3\), got shape \(4, 4\)"),
    (losses.CrossEntropy(), (4, 3), np.zeros((5, 3)), ValueError, r"of shape \(4, 3\), got shape \(5, 3\)"),
    (losses.CrossEntropy(), (4, 3), np.zeros((4, 3, 1)), ValueError, r"y_true of shape \(4, 3, 1\)"),
    (losses.CrossEntropy(), (4, 3), np.array(["a", "b", "c", "d"]), TypeError, "labels must hold integers"),
    (losses.CrossEntropy(), (12,), np.zeros(12, np.int64), ValueError, r"logits with 2 dimensions \(N, num_classes\), got shape \(12,\)"),
    (losses.CrossEntropy(), (4, 0), np.zeros(4, np.int64), ValueError, "no classes"),
    (losses.BinaryCrossEntropy(), (4, 3), np.zeros((4,)), ValueError, r"expected target of shape \(4, 3\), got shape \(4,\)"),
    (losses.BinaryCrossEntropy(), (4, 3), None, TypeError, "target must be an array, got None"),
    (losses.MeanSquaredError(), (4, 1), np.zeros(4), ValueError, r"expected target of shape \(4, 1\), got shape \(4,\)"),
    (losses.MeanSquaredError(), (4, 1), np.full((4, 1), "x"), TypeError, "target must hold real numbers"),
])
def test_bad_input_raises(loss, y_pred, y_true, error, message, rng):
    with pytest.raises(error, match=message):
        loss(logits(rng, y_pred), y_true)


def test_bad_backward_grad_raises(rng):
    loss = losses.MeanSquaredError()
    loss(logits(rng, (2, 2)), np.zeros((2, 2)))
    with pytest.raises(TypeError, match="grad must be a number"):
        loss.backward("1")
    with pytest.raises(ValueError, match="grad must be finite"):
        loss.backward(float("inf"))


def test_empty_batch_gives_nan_like_torch():
    for loss, t in [(losses.CrossEntropy(), np.zeros(0, np.int64)), (losses.CrossEntropy(), np.zeros((0, 3))),
                    (losses.BinaryCrossEntropy(), np.zeros((0, 3))), (losses.MeanSquaredError(), np.zeros((0, 3)))]:
        assert np.isnan(loss(np.zeros((0, 3), np.float32), t))
        assert loss.backward().shape == (0, 3)


def test_core_backward_out_must_fit(rng):
    x = logits(rng, (4, 3))
    t = rng.random((4, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"expected out of shape \(4, 3\)"):
        _core.bce_logits_backward(x, t, 1.0, out=np.empty((3, 4), np.float32))
    with pytest.raises(TypeError, match="float32"):
        _core.mse_backward(x, t, 1.0, out=np.empty((4, 3)))
    dx = _core.mse_backward(x, t, 1.0, out=x)  # in place is allowed for elementwise losses
    assert dx is x or np.shares_memory(dx, x)


def test_get():
    for name, cls in [("cross_entropy", losses.CrossEntropy), ("categorical_crossentropy", losses.CrossEntropy),
                      ("sparse_categorical_crossentropy", losses.CrossEntropy),
                      ("binary_cross_entropy", losses.BinaryCrossEntropy), ("binary_crossentropy", losses.BinaryCrossEntropy),
                      ("mse", losses.MeanSquaredError), ("Mean_Squared_Error", losses.MeanSquaredError)]:
        loss = losses.get(name)
        assert type(loss) is cls
        assert type(losses.get(loss.get_config())) is cls
    loss = losses.MeanSquaredError()
    assert losses.get(loss) is loss
    with pytest.raises(ValueError, match="valid names: 'cross_entropy'"):
        losses.get("hinge")
    with pytest.raises(TypeError, match="a Loss or a config dict"):
        losses.get(1.0)
    with pytest.raises(ValueError, match="unknown keys"):
        losses.get({"name": "mse", "reduction": "sum"})
