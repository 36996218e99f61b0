"""ReLU, sigmoid, tanh and softmax: forward and backward against the float64 references."""
import numpy as np
import pytest

import cnnkit.functional as F
import reference as ref
from helpers import child_env, assert_close, needs_torch, torch

ACTIVATIONS = {
    "relu": (F.relu, F.relu_backward, ref.relu, ref.relu_backward),
    "sigmoid": (F.sigmoid, F.sigmoid_backward, ref.sigmoid, ref.sigmoid_backward),
    "tanh": (F.tanh, F.tanh_backward, ref.tanh, ref.tanh_backward),
}
SHAPES = [(1,), (7,), (3, 5), (2, 3, 4, 5), (64, 6, 28, 28), (0, 4)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation(name, shape, rng):
    fwd, bwd, fwd_ref, bwd_ref = ACTIVATIONS[name]
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    y = fwd(x)
    assert y.shape == x.shape and y.dtype == np.float32
    assert_close(y, fwd_ref(x), 1e-6, 1e-6, "y")
    dy = rng.standard_normal(shape).astype(np.float32)
    assert_close(bwd(dy, y), bwd_ref(dy, y), 1e-6, 1e-6, "dx")


def test_relu_is_exact_and_keeps_nan():
    x = np.array([-2.0, -0.0, 0.0, 1.5, np.nan, np.inf, -np.inf], np.float32)
    y = F.relu(x)
    np.testing.assert_array_equal(y[[0, 1, 2, 3, 5, 6]], [0, 0, 0, 1.5, np.inf, 0])
    assert np.isnan(y[4])
    np.testing.assert_array_equal(F.relu_backward(np.ones(7, np.float32), y), [0, 0, 0, 1, 0, 1, 0])


def test_sigmoid_and_tanh_saturate_without_overflow():
    x = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], np.float32)
    with np.errstate(all="raise"):
        s = F.sigmoid(x)
    assert np.isfinite(s).all()
    np.testing.assert_allclose(s, ref.sigmoid(x), rtol=1e-6, atol=1e-30)
    assert s[0] == 0.0 and s[-1] == 1.0 and s[3] == 0.5
    t = F.tanh(x)
    np.testing.assert_array_equal(t[[0, 6]], [-1.0, 1.0])


@pytest.mark.parametrize("shape,axis", [((4, 10), -1), ((4, 10), 0), ((2, 3, 5), 1), ((7,), 0), ((3, 1), -1)])
def test_softmax(shape, axis, rng):
    x = (rng.standard_normal(shape) * 5).astype(np.float32)
    y = F.softmax(x, axis=axis)
    assert_close(y, ref.softmax(x, axis=axis), 1e-6, 1e-7, "y")
    np.testing.assert_allclose(y.sum(axis=axis), 1.0, rtol=1e-6)
    dy = rng.standard_normal(shape).astype(np.float32)
    assert_close(F.softmax_backward(dy, y, axis=axis), ref.softmax_backward(dy, y, axis=axis), 1e-5, 1e-6, "dx")


def test_softmax_is_stable_for_huge_logits():
    x = np.array([[1e30, 0.0, -1e30], [88.0, 89.0, 90.0], [-1e4, -1e4, -1e4]], np.float32)
    y = F.softmax(x)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, ref.softmax(x), rtol=1e-6, atol=1e-30)


def test_softmax_nan_propagates_in_its_row():
    x = np.array([[1.0, np.nan, 2.0], [1.0, 2.0, 3.0]], np.float32)
    y = F.softmax(x)
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()


@needs_torch
@pytest.mark.parametrize("seed", range(5))
def test_activations_against_torch(seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((4, 3, 5, 6)) * 3).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    for mine, mine_b, theirs in [(F.relu, F.relu_backward, torch.relu), (F.sigmoid, F.sigmoid_backward, torch.sigmoid),
                                 (F.tanh, F.tanh_backward, torch.tanh),
                                 (lambda v: F.softmax(v, axis=1), lambda g, y: F.softmax_backward(g, y, axis=1),
                                  lambda t: torch.softmax(t, dim=1))]:
        xt = torch.tensor(x, requires_grad=True)
        yt = theirs(xt)
        yt.backward(torch.tensor(dy))
        y = mine(x)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(mine_b(dy, y), xt.grad.numpy(), rtol=1e-5, atol=1e-6)


def ulps(got, want):
    """|got - want| in units of the float32 spacing at want (float64 want)."""
    w32 = want.astype(np.float32)
    return np.abs(got.astype(np.float64) - want) / np.spacing(np.abs(w32)).astype(np.float64)


def test_sigmoid_and_tanh_are_within_3_ulp():
    """The vectorised exp/tanh (src/ops/vmath.hpp) against float64, over 450,000 values, magnitudes
    from 1e-30 to 100 of both signs: measured worst 2.8 ulp (sigmoid) and 1.5 ulp (tanh)."""
    mag = np.geomspace(1e-30, 100, 200_000)
    x = np.concatenate([mag, -mag, np.linspace(-9, 9, 50_001)]).astype(np.float32)
    x64 = x.astype(np.float64)
    s, t = F.sigmoid(x), F.tanh(x)
    assert ulps(s, 1 / (1 + np.exp(-x64))).max() <= 3
    assert ulps(t, np.tanh(x64)).max() <= 3
    assert np.array_equal(np.signbit(F.tanh(np.array([-0.0, 0.0], np.float32))), [True, False])
    special = np.array([np.nan, np.inf, -np.inf], np.float32)
    assert np.isnan(F.sigmoid(special)[0]) and np.isnan(F.tanh(special)[0])
    np.testing.assert_array_equal(F.sigmoid(special)[1:], [1, 0])
    np.testing.assert_array_equal(F.tanh(special)[1:], [1, -1])


TIER_CHILD = r"""
import hashlib, sys
import numpy as np
from cnnkit import _core
rng = np.random.default_rng(3)
x = (rng.standard_normal(10_007) * 6).astype(np.float32)
x[:6] = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-30]
digest = hashlib.sha256()
canonical = lambda a: np.where(np.isnan(a), np.float32(np.nan), a).tobytes()  # any NaN is a NaN
digest.update(canonical(_core.sigmoid_forward(x)))
digest.update(canonical(_core.tanh_forward(x)))
p, m, v, g = (rng.standard_normal(5_003).astype(np.float32) for _ in range(4))
v = np.abs(v)
for step in (1, 2):
    _core.adam_step(p, m, v, g, step, 1e-2, 0.9, 0.999, 1e-8, 0.01)
digest.update(p.tobytes() + m.tobytes() + v.tobytes())
print(_core.simd_tier(), digest.hexdigest())
"""


def test_sigmoid_tanh_adam_are_the_same_bits_on_every_tier():
    """Their loops are built per ISA (kernels/elementwise_*.cpp) from one source, without FMA
    contraction: each tier, run in its own process (CNNKIT_SIMD), gives the same bits."""
    import subprocess
    import sys
    from cnnkit import _core
    digests = {}
    for tier in _core.simd_tiers_supported():
        out = subprocess.run([sys.executable, "-c", TIER_CHILD], env=child_env(CNNKIT_SIMD=tier), capture_output=True,
                             text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        got_tier, digest = out.stdout.split()
        assert got_tier == tier
        digests[tier] = digest
    assert len(set(digests.values())) == 1, digests
