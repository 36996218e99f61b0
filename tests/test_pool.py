"""Max, average and global average pooling (2-D and 1-D), forward and backward, against the
float64 references on named edge cases, and against PyTorch as a second opinion."""
import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F
import reference as ref
from helpers import assert_close, assert_exact, exact_ints, needs_torch, torch


def distinct(rng, *shape):
    """Distinct float32 values (no ties), so the argmax is unambiguous."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.25 - 3.0).astype(np.float32)


def pads4(padding):
    p = (padding, padding) if isinstance(padding, int) else padding
    return (p[0], p[0], p[1], p[1])


# name: (input shape, kernel, stride, padding)
POOL2D_CASES = {
    "2x2_s2": ((2, 3, 8, 8), (2, 2), None, 0),
    "3x3_s2_p1": ((2, 2, 9, 7), (3, 3), (2, 2), 1),
    "3x3_s1_p1_overlap": ((1, 4, 6, 6), (3, 3), (1, 1), 1),
    "rect_kernel": ((2, 2, 7, 9), (2, 3), (1, 2), (1, 1)),
    "odd_sizes": ((3, 5, 13, 11), (3, 2), (2, 3), 0),
    "kernel_equals_padded_input": ((2, 3, 4, 6), (6, 8), (1, 1), (1, 1)),
    "n1_c1": ((1, 1, 5, 5), (2, 2), (1, 1), 0),
    "one_by_one": ((2, 3, 4, 4), (1, 1), (2, 2), 0),
    "stride_larger_than_kernel": ((1, 2, 10, 10), (2, 2), (3, 3), 0),
}


@pytest.mark.parametrize("case", POOL2D_CASES.values(), ids=POOL2D_CASES.keys())
def test_max_pool2d(case, rng):
    shape, k, s, p = case
    stride = k if s is None else s
    x = distinct(rng, *shape)
    y, idx = F.max_pool2d(x, k, s, p, return_indices=True)
    y_ref, idx_ref = ref.max_pool2d(x, k, stride, pads4(p))
    assert_exact(y, y_ref, "y")
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, idx_ref)
    dy = exact_ints(rng, *y.shape)
    dx = F.max_pool2d_backward(dy, idx, x.shape, k, s, p)
    assert_exact(dx, ref.max_pool2d_backward(dy, idx_ref, x.shape), "dx")


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", POOL2D_CASES.values(), ids=POOL2D_CASES.keys())
def test_avg_pool2d(case, count_include_pad, rng):
    shape, k, s, p = case
    stride = k if s is None else s
    x = rng.standard_normal(shape).astype(np.float32)
    y = F.avg_pool2d(x, k, s, p, count_include_pad=count_include_pad)
    assert_close(y, ref.avg_pool2d(x, k, stride, pads4(p), count_include_pad), 1e-6, 1e-6, "y")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = F.avg_pool2d_backward(dy, x.shape, k, s, p, count_include_pad=count_include_pad)
    want = ref.avg_pool2d_backward(dy, x.shape, k, stride, pads4(p), count_include_pad)
    assert_close(dx, want, 1e-6, 1e-6, "dx")


def test_avg_pool2d_power_of_two_windows_are_exact(rng):
    x = exact_ints(rng, 2, 3, 8, 8)
    assert_exact(F.avg_pool2d(x, 2), ref.avg_pool2d(x, (2, 2), (2, 2)))
    dy = exact_ints(rng, 2, 3, 4, 4)
    assert_exact(F.avg_pool2d_backward(dy, x.shape, 2), ref.avg_pool2d_backward(dy, x.shape, (2, 2), (2, 2)))


@pytest.mark.parametrize("shape,k,s", [((2, 3, 7, 10), 3, 2), ((1, 1, 5, 5), 2, 1), ((2, 2, 4, 9), (2, 3), 2)])
def test_same_and_valid_padding(shape, k, s, rng):
    """'same' follows TensorFlow: output ceil(in / stride), odd extra pad at bottom/right."""
    x = distinct(rng, *shape)
    kk = (k, k) if isinstance(k, int) else k
    y = F.max_pool2d(x, k, s, padding="same")
    assert y.shape[2:] == tuple(-(-n // s) for n in shape[2:])
    pads = []
    for n, kd in zip(shape[2:], kk):
        total = max((-(-n // s) - 1) * s + kd - n, 0)
        pads += [total // 2, total - total // 2]
    assert_exact(y, ref.max_pool2d(x, kk, (s, s), tuple(pads))[0])
    yv = F.avg_pool2d(x, k, s, padding="valid")
    assert_close(yv, ref.avg_pool2d(x, kk, (s, s)), 1e-6, 1e-6)


def test_pool2d_empty_batch():
    x = np.zeros((0, 3, 8, 8), np.float32)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert y.shape == (0, 3, 4, 4) and idx.shape == (0, 3, 4, 4)
    assert F.max_pool2d_backward(y, idx, x.shape, 2).shape == x.shape
    assert F.avg_pool2d(x, 2).shape == (0, 3, 4, 4)


def test_max_pool_nan_propagates():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 1, 1] = np.nan
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 5
    assert np.isfinite(y[0, 0, 1]).all()


def test_max_pool_ties_take_the_first():
    x = np.ones((1, 1, 2, 4), np.float32)
    _, idx = F.max_pool2d(x, 2, return_indices=True)
    assert idx.tolist() == [[[[0, 2]]]]


POOL1D_CASES = {
    "k2": ((2, 3, 10), 2, None, 0),
    "k3_s2_p1": ((2, 4, 11), 3, 2, 1),
    "k5_s1_p2": ((1, 1, 7), 5, 1, 2),
    "kernel_equals_input": ((3, 2, 6), 6, 1, 0),
}


@pytest.mark.parametrize("case", POOL1D_CASES.values(), ids=POOL1D_CASES.keys())
def test_pool1d(case, rng):
    shape, k, s, p = case
    stride = k if s is None else s
    x = distinct(rng, *shape)
    y, idx = F.max_pool1d(x, k, s, p, return_indices=True)
    y_ref, idx_ref = ref.max_pool1d(x, k, stride, (p, p))
    assert_exact(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    dy = exact_ints(rng, *y.shape)
    want = ref.max_pool2d_backward(dy[:, :, None, :], idx_ref[:, :, None, :],
                                   (shape[0], shape[1], 1, shape[2]))[:, :, 0, :]
    assert_exact(F.max_pool1d_backward(dy, idx, x.shape, k, s, p), want)
    for cip in (True, False):
        ya = F.avg_pool1d(x, k, s, p, count_include_pad=cip)
        assert_close(ya, ref.avg_pool1d(x, k, stride, (p, p), cip), 1e-6, 1e-6)
        dya = rng.standard_normal(ya.shape).astype(np.float32)
        assert_close(F.avg_pool1d_backward(dya, x.shape, k, s, p, count_include_pad=cip),
                     ref.avg_pool1d_backward(dya, x.shape, k, stride, (p, p), cip), 1e-6, 1e-6)


def test_global_avg_pool2d(rng):
    x = rng.standard_normal((3, 5, 7, 6)).astype(np.float32)
    y = F.global_avg_pool2d(x)
    assert y.shape == (3, 5)
    assert_close(y, ref.global_avg_pool2d(x), 1e-6, 1e-6)
    dy = rng.standard_normal((3, 5)).astype(np.float32)
    assert_close(F.global_avg_pool2d_backward(dy, x.shape), ref.global_avg_pool2d_backward(dy, x.shape),
                 1e-7, 1e-7)


def test_pool_results_do_not_depend_on_thread_count(rng):
    x = rng.standard_normal((8, 16, 32, 32)).astype(np.float32)
    before = cnnkit.get_num_threads()
    try:
        out = []
        for t in (1, 2):
            cnnkit.set_num_threads(t)
            y, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
            out.append((y, idx, F.avg_pool2d(x, 3, 2, 1), F.max_pool2d_backward(y, idx, x.shape, 3, 2, 1)))
        for a, b in zip(*out):
            np.testing.assert_array_equal(a, b)
    finally:
        cnnkit.set_num_threads(before)


def test_real_pool_shapes_from_bench(rng):
    """The pooling layers of bench/shapes/pool.txt (batch cut to 1) against the reference."""
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "bench", "shapes", "pool.txt")
    rows = [line.split("#")[0].split() for line in open(path)]
    rows = [r for r in rows if r]
    assert len(rows) >= 4
    for name, n, c, h, w, k, s, p in rows:
        c, h, w, k, s, p = map(int, (c, h, w, k, s, p))
        x = distinct(rng, 1, min(c, 8), h, w)
        y, idx = F.max_pool2d(x, k, s, p, return_indices=True)
        y_ref, idx_ref = ref.max_pool2d(x, (k, k), (s, s), (p,) * 4)
        assert_exact(y, y_ref, name)
        np.testing.assert_array_equal(idx, idx_ref, err_msg=name)


@pytest.mark.parametrize("case", POOL2D_CASES.values(), ids=POOL2D_CASES.keys())
def test_fast_pooling_matches_cpp_ref_bit_for_bit(case, rng):
    shape, k, s, p = case
    stride = k if s is None else s
    x = rng.standard_normal(shape).astype(np.float32)
    args = (k, stride, pads4(p))
    y, idx = cnnkit._core.max_pool2d_forward(x, *args)
    y_ref, idx_ref = cnnkit._core.max_pool2d_forward(x, *args, ref=True)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    for cip in (True, False):
        np.testing.assert_array_equal(cnnkit._core.avg_pool2d_forward(x, *args, cip),
                                      cnnkit._core.avg_pool2d_forward(x, *args, cip, ref=True))


# --- PyTorch as a second opinion ------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("seed", range(40))
def test_pool2d_against_torch(seed):
    rng = np.random.default_rng(seed)
    kh, kw = rng.integers(1, 5, size=2)
    sh, sw = rng.integers(1, 4, size=2)
    ph, pw = rng.integers(0, kh // 2 + 1), rng.integers(0, kw // 2 + 1)
    n, c = rng.integers(1, 4), rng.integers(1, 6)
    h, w = rng.integers(kh, kh + 9), rng.integers(kw, kw + 9)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    args = dict(kernel_size=(int(kh), int(kw)), stride=(int(sh), int(sw)), padding=(int(ph), int(pw)))
    xt = torch.tensor(x, requires_grad=True)
    yt, it = torch.nn.functional.max_pool2d(xt, return_indices=True, **args)
    dy = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.tensor(dy))
    y, idx = F.max_pool2d(x, return_indices=True, **args)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(idx, it.numpy())
    np.testing.assert_allclose(F.max_pool2d_backward(dy, idx, x.shape, **args), xt.grad.numpy(),
                               rtol=1e-6, atol=1e-6)
    for cip in (True, False):
        xt = torch.tensor(x, requires_grad=True)
        yt = torch.nn.functional.avg_pool2d(xt, count_include_pad=cip, **args)
        yt.backward(torch.tensor(dy))
        np.testing.assert_allclose(F.avg_pool2d(x, count_include_pad=cip, **args), yt.detach().numpy(),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(F.avg_pool2d_backward(dy, x.shape, count_include_pad=cip, **args),
                                   xt.grad.numpy(), rtol=1e-5, atol=1e-6)


@needs_torch
@pytest.mark.parametrize("seed", range(10))
def test_pool1d_against_torch(seed):
    rng = np.random.default_rng(100 + seed)
    k, s = int(rng.integers(1, 6)), int(rng.integers(1, 4))
    p = int(rng.integers(0, k // 2 + 1))
    x = rng.standard_normal((2, 3, int(rng.integers(k, k + 12)))).astype(np.float32)
    xt = torch.tensor(x)
    yt, it = torch.nn.functional.max_pool1d(xt, k, s, p, return_indices=True)
    y, idx = F.max_pool1d(x, k, s, p, return_indices=True)
    np.testing.assert_array_equal(y, yt.numpy())
    np.testing.assert_array_equal(idx, it.numpy())
    np.testing.assert_allclose(F.avg_pool1d(x, k, s, p), torch.nn.functional.avg_pool1d(xt, k, s, p).numpy(),
                               rtol=1e-5, atol=1e-6)
