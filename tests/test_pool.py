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


# --- every SIMD tier against the __ref loops, bit for bit (tier= is the bindings' hook) --------

TIERS = cnnkit._core.simd_tiers_supported()

# name: (input shape, kernel, stride, (top, bottom, left, right)). Cases for the vector
# kernels' paths and edges: the 2x2 stride-2 kernels (rows of 5 to 33 outputs, one and several
# 16-wide blocks, odd sizes leaving a row/column uncovered, bottom/right padding), the general
# forward at column stride 1 and 2 (left padding, kernels wider than 16 taps), the tiled
# backward with top/left padding and 1-row windows, and shapes left to the plain loops.
TIER_CASES = {
    "2x2_lenet_pool2_w10": ((2, 3, 10, 10), (2, 2), (2, 2), (0, 0, 0, 0)),
    "2x2_lenet_pool1_w28": ((2, 3, 28, 28), (2, 2), (2, 2), (0, 0, 0, 0)),
    "2x2_odd_h_w": ((2, 2, 9, 35), (2, 2), (2, 2), (0, 0, 0, 0)),
    "2x2_two_blocks_w64": ((1, 2, 4, 64), (2, 2), (2, 2), (0, 0, 0, 0)),
    "2x2_w33_same": ((1, 2, 7, 33), (2, 2), (2, 2), (0, 1, 0, 1)),
    "2x2_w17_rows_of_8": ((1, 3, 6, 17), (2, 2), (2, 2), (0, 0, 0, 0)),
    "2x2_top_left_pad": ((1, 2, 7, 19), (2, 2), (2, 2), (1, 0, 1, 0)),
    "3x3_s2_p1": ((2, 2, 13, 37), (3, 3), (2, 2), (1, 1, 1, 1)),
    "3x3_s1_p1": ((1, 3, 9, 21), (3, 3), (1, 1), (1, 1, 1, 1)),
    "3x2_s3x2": ((2, 2, 11, 30), (3, 2), (3, 2), (0, 1, 0, 1)),
    "1x2_rows": ((2, 2, 3, 41), (1, 2), (1, 2), (0, 0, 0, 0)),
    "wide_1x20_s1": ((1, 2, 2, 45), (1, 20), (1, 1), (0, 0, 3, 3)),
    "wide_1x19_s2": ((1, 2, 2, 60), (1, 19), (1, 2), (0, 0, 9, 9)),
    "stride3_plain_loops": ((1, 2, 10, 10), (3, 3), (3, 3), (0, 0, 0, 0)),
    "empty_batch": ((0, 3, 8, 8), (2, 2), (2, 2), (0, 0, 0, 0)),
}


def special_values(rng, shape):
    """Small integers (ties) with NaN, -inf, +inf and -0.0 sprinkled in."""
    x = rng.integers(-3, 4, shape).astype(np.float32)
    r = rng.random(shape)
    x[r < 0.05] = np.nan
    x[(r >= 0.05) & (r < 0.1)] = -np.inf
    x[(r >= 0.1) & (r < 0.12)] = np.inf
    x[(r >= 0.12) & (r < 0.2)] = -0.0
    return x


def same_bits(a, b):
    """Bit for bit (so +0 and -0 differ), except that a NaN may be any NaN: which NaN an
    operation on two NaNs returns (inf - inf makes one) depends on the operand order the
    compiler picked, and differed between an -O1 and an -O3 build."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind != "f":
        return a.tobytes() == b.tobytes()
    nan = np.isnan(a)
    return np.array_equal(nan, np.isnan(b)) and a[~nan].tobytes() == b[~nan].tobytes()


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("case", TIER_CASES.values(), ids=TIER_CASES.keys())
def test_pool_tiers_match_ref_bit_for_bit(case, tier, rng):
    shape, k, s, pads = case
    core = cnnkit._core
    for x in (special_values(rng, shape), rng.standard_normal(shape).astype(np.float32)):
        y_ref, i_ref = core.max_pool2d_forward(x, k, s, pads, ref=True)
        y, i = core.max_pool2d_forward(x, k, s, pads, tier=tier)
        assert same_bits(y, y_ref) and same_bits(i, i_ref)
        dy = special_values(rng, y.shape)
        dx = core.max_pool2d_backward(dy, i, x.shape, k, s, pads, tier=tier)
        assert same_bits(dx, core.max_pool2d_backward(dy, i, x.shape, k, s, pads, tier="ref"))
        # indices from elsewhere (in range, mostly outside their windows): the scatter's sums
        other = rng.integers(0, shape[2] * shape[3], i.shape)
        dx = core.max_pool2d_backward(dy, other, x.shape, k, s, pads, tier=tier)
        assert same_bits(dx, core.max_pool2d_backward(dy, other, x.shape, k, s, pads, tier="ref"))
        # ReLU then max pooling, fused: the two ops' results bit for bit
        rx = core.relu_forward(x)
        yr_ref, ir_ref = core.max_pool2d_forward(rx, k, s, pads, ref=True)
        yr, ir = core.max_pool2d_relu_forward(x, k, s, pads, tier=tier)
        assert same_bits(yr, yr_ref) and same_bits(ir, ir_ref)
        want = core.relu_backward(core.max_pool2d_backward(dy, ir, x.shape, k, s, pads, tier="ref"), rx)
        assert same_bits(core.max_pool2d_relu_backward(dy, ir, yr, x.shape, k, s, pads, tier=tier), want)
        for cip in (True, False):
            a = core.avg_pool2d_forward(x, k, s, pads, cip, tier=tier)
            assert same_bits(a, core.avg_pool2d_forward(x, k, s, pads, cip, ref=True))
            da = core.avg_pool2d_backward(dy, x.shape, k, s, pads, cip, tier=tier)
            assert same_bits(da, core.avg_pool2d_backward(dy, x.shape, k, s, pads, cip, tier="ref"))


@pytest.mark.parametrize("tier", TIERS)
def test_pool1d_tiers_match_ref(tier, rng):
    x = special_values(rng, (2, 3, 37))
    core = cnnkit._core
    for k, s, p in ((2, 2, (0, 0)), (3, 2, (1, 1)), (2, 2, (0, 1))):
        y, i = core.max_pool1d_forward(x, k, s, p, tier=tier)
        y_ref, i_ref = core.max_pool2d_forward(x[:, :, None, :], (1, k), (1, s), (0, 0) + p, ref=True)
        assert same_bits(y, y_ref[:, :, 0]) and same_bits(i, i_ref[:, :, 0])
        dy = special_values(rng, y.shape)
        assert same_bits(core.max_pool1d_backward(dy, i, x.shape, k, s, p, tier=tier),
                         core.max_pool1d_backward(dy, i, x.shape, k, s, p, tier="ref"))
        for cip in (True, False):
            assert same_bits(core.avg_pool1d_forward(x, k, s, p, cip, tier=tier),
                             core.avg_pool1d_forward(x, k, s, p, cip, tier="ref"))
            assert same_bits(core.avg_pool1d_backward(dy, x.shape, k, s, p, cip, tier=tier),
                             core.avg_pool1d_backward(dy, x.shape, k, s, p, cip, tier="ref"))


@pytest.mark.parametrize("tier", TIERS)
def test_pool_tiers_do_not_depend_on_thread_count(tier, rng):
    x = special_values(rng, (4, 16, 28, 28))
    core = cnnkit._core
    before = cnnkit.get_num_threads()
    try:
        out = []
        for t in (1, 2):
            cnnkit.set_num_threads(t)
            y, i = core.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0, 0, 0), tier=tier)
            dx = core.max_pool2d_backward(y, i, x.shape, (2, 2), (2, 2), (0, 0, 0, 0), tier=tier)
            a = core.avg_pool2d_forward(x, (3, 3), (2, 2), (1, 1, 1, 1), False, tier=tier)
            da = core.avg_pool2d_backward(a, x.shape, (3, 3), (2, 2), (1, 1, 1, 1), False, tier=tier)
            out.append((y, i, dx, a, da))
        for u, v in zip(*out):
            assert same_bits(u, v)
    finally:
        cnnkit.set_num_threads(before)


@pytest.mark.parametrize("tier", TIERS)
def test_fused_relu_pool_checks_like_the_two_ops(tier):
    x = np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8) - 100
    y, idx = cnnkit._core.max_pool2d_relu_forward(x, (2, 2), (2, 2), (0, 0, 0, 0), tier=tier)
    bad = idx.copy()
    bad[0, 1, 3, 3] = 99
    with pytest.raises(ValueError, match=r"max_pool2d_relu_backward: indices must be in \[0, 64\) .* got 99$"):
        cnnkit._core.max_pool2d_relu_backward(y, bad, y, x.shape, (2, 2), (2, 2), (0, 0, 0, 0), tier=tier)
    with pytest.raises(ValueError, match=r"expected y of shape \(2, 3, 4, 4\)"):
        cnnkit._core.max_pool2d_relu_backward(y, idx, y[:1], x.shape, (2, 2), (2, 2), (0, 0, 0, 0), tier=tier)


@pytest.mark.parametrize("tier", TIERS)
def test_max_pool_backward_reports_the_first_bad_index_on_every_tier(tier):
    x = np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8)
    y, idx = cnnkit._core.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0, 0, 0))
    bad = idx.copy()
    bad[1, 0, 2, 1] = 64   # the first bad one in flat order
    bad[1, 2, 0, 0] = -1
    with pytest.raises(ValueError, match=r"indices must be in \[0, 64\) .* got 64$"):
        cnnkit._core.max_pool2d_backward(y, bad, x.shape, (2, 2), (2, 2), (0, 0, 0, 0), tier=tier)


def test_pool_tier_hook_rejects_unknown_tiers():
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="unknown SIMD tier"):
        cnnkit._core.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0, 0, 0), tier="sse9")


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
