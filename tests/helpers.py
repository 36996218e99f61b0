"""Shared test helpers: input generators and the comparisons that hold float32 results to the
float64 references with the tolerances measured in ../shared/TESTING.md."""
import os

import numpy as np

try:  # PyTorch is a second opinion only: tests that need it skip without it
    import torch
except ImportError:  # pragma: no cover
    torch = None

# True in tests/sanitize.sh's run (libasan preloaded): a few tests measure what ASan changes by
# design (resident memory held in its quarantine, its own SIGSEGV handler, its shadow memory under
# an address-space cap) and adapt or skip there.
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")

needs_torch = None
try:
    import pytest

    needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")
except ImportError:  # pragma: no cover
    pass


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def exact_ints(rng, *shape):
    """Integer values in [-4, 4] with about half zeros: float32 sums of these stay exact, so
    conv, linear, max pooling and power-of-two average pools must match a float64 reference
    bit for bit."""
    v = rng.integers(-4, 5, size=shape)
    v[rng.random(shape) < 0.5] = 0
    return v.astype(np.float32)


def assert_scaled_close(actual, expected, scale, rtol=1e-5, atol=1e-7, what="result"):
    """|actual - expected| <= rtol * scale + atol elementwise, where scale bounds the size of
    the terms that were summed (e.g. conv(|x|, |w|)), so cancellation near zero is not
    mistaken for error."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    bound = rtol * np.abs(np.asarray(scale, dtype=np.float64)) + atol
    err = np.abs(actual - expected)
    bad = ~(err <= bound)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), err.shape)
        raise AssertionError(f"{what}: {bad.sum()} of {err.size} elements out of tolerance; worst at "
                             f"{i}: got {actual[i]!r}, expected {expected[i]!r}, bound {bound[i]:.3g}")


def assert_close(actual, expected, rtol=1e-3, atol=1e-3, what="result"):
    """np.testing.assert_allclose with the gradient tolerance of TESTING.md."""
    actual = np.asarray(actual)
    assert actual.shape == np.shape(expected), f"{what}: shape {actual.shape} != {np.shape(expected)}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def assert_exact(actual, expected, what="result"):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_array_equal(actual, expected, err_msg=what)


def child_env(**extra):
    """Environment for a child Python process that must import the same cnnkit as this test
    run (installed or a development build) and the tests' own modules, plus `extra` variables."""
    from cnnkit import _core
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(_core.__file__)))
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, tests_dir, os.environ.get("PYTHONPATH")) if p)
    return env
