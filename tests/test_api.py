"""Package-level behaviour: configuration, zero-copy input, conversion of other dtypes and
layouts, the GIL released during compute, and the module's public surface."""
import io
import re
import threading
import time

import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F


def test_version_matches_pyproject():
    import os
    text = open(os.path.join(os.path.dirname(__file__), "..", "pyproject.toml")).read()
    assert re.search(r'^version = "([^"]+)"', text, re.M).group(1) == cnnkit.__version__


def test_show_config_reports_version_openmp_threads_and_tier():
    out = io.StringIO()
    cnnkit.show_config(file=out)
    text = out.getvalue()
    assert cnnkit.__version__ in text
    assert re.search(r"OpenMP:\s+(on|off)", text)
    assert re.search(rf"threads:\s+{cnnkit.get_num_threads()}\b", text)
    assert re.search(rf"SIMD tier:\s+{cnnkit._core.simd_tier()}\b", text)


def test_set_num_threads_round_trips():
    before = cnnkit.get_num_threads()
    try:
        for n in (1, 3, 2):
            cnnkit.set_num_threads(n)
            assert cnnkit.get_num_threads() == n
    finally:
        cnnkit.set_num_threads(before)


def test_thread_count_set_in_one_python_thread_applies_in_another():
    before = cnnkit.get_num_threads()
    seen = []
    try:
        cnnkit.set_num_threads(1)
        t = threading.Thread(target=lambda: seen.append(cnnkit.get_num_threads()))
        t.start()
        t.join()
    finally:
        cnnkit.set_num_threads(before)
    assert seen == [1]


def test_float32_c_contiguous_input_is_not_copied():
    x = np.ones((4, 5), np.float32)
    assert cnnkit._core._float32_input_address(x) == x.ctypes.data
    ro = x.copy()
    ro.flags.writeable = False
    assert cnnkit._core._float32_input_address(ro) == ro.ctypes.data


@pytest.mark.parametrize("make", [
    lambda x: x.astype(np.float64),
    lambda x: np.asfortranarray(x),
    lambda x: np.repeat(x, 2, axis=3)[:, :, :, ::2],      # strided view
    lambda x: x.astype(np.int16),
    lambda x: x.tolist(),
], ids=["float64", "fortran", "strided", "int16", "list"])
def test_other_dtypes_and_layouts_are_converted_once(make, rng):
    x = rng.integers(-3, 4, size=(2, 3, 6, 6)).astype(np.float32)
    w = rng.integers(-3, 4, size=(4, 3, 3, 3)).astype(np.float32)
    other = make(x)
    if isinstance(other, np.ndarray):
        assert cnnkit._core._float32_input_address(other) != other.ctypes.data
    y = F.conv2d(other, w, padding=1)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    np.testing.assert_array_equal(y, F.conv2d(x, w, padding=1))
    np.testing.assert_array_equal(F.relu(other), F.relu(x))


def test_outputs_are_fresh_arrays(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    y = F.relu(x)
    assert not np.shares_memory(x, y)


def test_gil_is_released_during_compute():
    """While one thread runs a long conv, another thread keeps running Python code."""
    w = np.ones((32, 32, 3, 3), np.float32)
    n = 2
    while True:  # size the batch so that one call takes ~0.1 s, whatever the kernel speed
        x = np.ones((n, 32, 32, 32), np.float32)
        t0 = time.perf_counter()
        F.conv2d(x, w, padding=1)
        if time.perf_counter() - t0 > 0.1 or n >= 4096:
            break
        n *= 2
    ticks = []
    done = threading.Event()

    def spin():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    spinner = threading.Thread(target=spin)
    spinner.start()
    time.sleep(0.01)
    start = time.perf_counter()
    F.conv2d(x, w, padding=1)
    end = time.perf_counter()
    done.set()
    spinner.join()
    during = [t for t in ticks if start < t < end]
    # With the GIL held for the whole call the spinner could not tick at all meanwhile.
    assert len(during) >= 5, f"only {len(during)} ticks in {end - start:.3f} s: GIL held?"


def test_public_functional_surface():
    for name in ["conv2d", "conv1d", "max_pool2d", "avg_pool2d", "max_pool1d", "avg_pool1d", "linear",
                 "relu", "sigmoid", "tanh", "softmax", "cross_entropy", "global_avg_pool2d"]:
        assert callable(getattr(F, name)), name
    assert set(F.__all__) <= set(dir(F))


# --- writing into caller-owned arrays (what layers do to reuse memory across steps) --------------

def test_out_arrays_are_written_in_place(rng):
    core = cnnkit._core
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    y = np.full((2, 4, 8, 8), np.nan, np.float32)
    ws = core.Workspace()
    r = core.conv2d_forward(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), out=y, workspace=ws)
    assert r is y or np.shares_memory(r, y)
    np.testing.assert_array_equal(y, F.conv2d(x, w, padding=1))
    dx, dw, db = (np.full(a.shape, np.nan, np.float32) for a in (x, w, np.zeros(4)))
    got = core.conv2d_backward(y, x, w, (1, 1), (1, 1, 1, 1), (1, 1), True, True, True, out=(dx, dw, db),
                               workspace=ws)
    for g, o, want in zip(got, (dx, dw, db), F.conv2d_backward(y, x, w, padding=1)):
        assert np.shares_memory(g, o)
        np.testing.assert_array_equal(o, want)
    # in place elementwise: out may be the input itself
    z = rng.standard_normal(10).astype(np.float32)
    want = F.relu(z)
    core.relu_forward(z, out=z)
    np.testing.assert_array_equal(z, want)


@pytest.mark.parametrize("bad,exc,msg", [
    (np.zeros((2, 4, 8, 8), np.float64), TypeError, "dtype float32, got float64"),
    (np.zeros((2, 4, 8, 7), np.float32), ValueError, r"shape \(2, 4, 8, 8\), got shape \(2, 4, 8, 7\)"),
    (np.zeros((2, 4, 8, 16), np.float32)[:, :, :, ::2], ValueError, "C-contiguous"),
    ([0.0], TypeError, "must be a numpy array, got list"),
])
def test_bad_out_arrays_are_rejected_not_converted(bad, exc, msg):
    x = np.zeros((2, 3, 8, 8), np.float32)
    with pytest.raises(exc, match=msg):
        cnnkit._core.conv2d_forward(x, np.zeros((4, 3, 3, 3), np.float32), None, (1, 1), (1, 1, 1, 1), (1, 1),
                                    out=bad)


def test_out_overlapping_an_input_is_rejected():
    buf = np.zeros(2 * 3 * 8 * 8 + 10, np.float32)
    x = buf[:2 * 3 * 8 * 8].reshape(2, 3, 8, 8)
    y = buf[10:10 + 2 * 3 * 8 * 8].reshape(2, 3, 8, 8)
    with pytest.raises(ValueError, match="overlaps an input"):
        cnnkit._core.conv2d_forward(x, np.zeros((3, 3, 1, 1), np.float32), None, (1, 1), (0, 0, 0, 0), (1, 1),
                                    out=y)
    with pytest.raises(ValueError, match="overlaps an input"):
        cnnkit._core.relu_forward(x, out=y)  # a shifted alias is not in-place


def test_read_only_out_is_rejected():
    y = np.zeros(4, np.float32)
    y.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        cnnkit._core.relu_forward(np.ones(4, np.float32), out=y)


def test_backward_out_must_be_a_triple():
    x, w = np.zeros((1, 1, 3, 3), np.float32), np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(TypeError, match="sequence of 3"):
        cnnkit._core.conv2d_backward(x, x, w, (1, 1), (0, 0, 0, 0), (1, 1), True, True, True, out=(None, None))
    with pytest.raises(TypeError, match="Workspace"):
        cnnkit._core.conv2d_forward(x, w, None, (1, 1), (0, 0, 0, 0), (1, 1), workspace="scratch")
