"""Linear layer y = x W^T + b: forward and every gradient against the float64 reference."""
import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F
import reference as ref
from helpers import assert_exact, assert_scaled_close, exact_ints, needs_torch, torch

# name: (input shape, out_features)
CASES = {
    "lenet_fc1": ((64, 400), 120),
    "n1": ((1, 7), 3),
    "in1_out1": ((5, 1), 1),
    "odd_sizes": ((13, 37), 29),
    "leading_dims": ((2, 3, 17), 11),
    "wide": ((4, 1000), 70),
    # up to 4 rows: the forward runs dot products (kernels/gemv.hpp), not the GEMM
    "n1_lenet_fc1": ((1, 400), 120),
    "n2_tail": ((2, 130), 17),
    "n3_in_below_vector": ((3, 5), 9),
    "n5_gemm_again": ((5, 70), 10),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_linear_exact(case, rng):
    shape, out = case
    x, w, b = exact_ints(rng, *shape), exact_ints(rng, out, shape[-1]), exact_ints(rng, out)
    y = F.linear(x, w, b)
    assert_exact(y, ref.linear(x, w, b), "y")
    assert_exact(F.linear(x, w), ref.linear(x, w), "y without bias")
    dy = exact_ints(rng, *y.shape)
    dx, dw, db = F.linear_backward(dy, x, w)
    dx_r, dw_r, db_r = ref.linear_backward(dy, x, w)
    assert_exact(dx, dx_r, "dx")
    assert_exact(dw, dw_r, "dw")
    assert_exact(db, db_r, "db")


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_linear_random(case, rng):
    shape, out = case
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((out, shape[-1])).astype(np.float32)
    b = rng.standard_normal(out).astype(np.float32)
    # scaled tolerance (TESTING.md): error relative to the sum of |terms|, not to the result
    assert_scaled_close(F.linear(x, w, b), ref.linear(x, w, b), ref.linear(abs(x), abs(w), abs(b)), what="y")
    dy = rng.standard_normal(shape[:-1] + (out,)).astype(np.float32)
    scales = ref.linear_backward(abs(dy), abs(x), abs(w))
    for got, want, scale, name in zip(F.linear_backward(dy, x, w), ref.linear_backward(dy, x, w), scales,
                                      "dx dw db".split()):
        assert_scaled_close(got, want, scale, what=name)


def test_linear_gradient_subsets(rng):
    x, w, dy = exact_ints(rng, 6, 5), exact_ints(rng, 4, 5), exact_ints(rng, 6, 4)
    dx_r, dw_r, db_r = ref.linear_backward(dy, x, w)
    dx, dw, db = F.linear_backward(dy, x, w, weight_grad=False, bias_grad=False)
    assert dw is None and db is None
    assert_exact(dx, dx_r)
    dx, dw, db = F.linear_backward(dy, x, w, input_grad=False)
    assert dx is None
    assert_exact(dw, dw_r)
    assert_exact(db, db_r)


def test_linear_empty_batch():
    x, w = np.zeros((0, 5), np.float32), np.ones((3, 5), np.float32)
    assert F.linear(x, w).shape == (0, 3)
    dx, dw, db = F.linear_backward(np.zeros((0, 3), np.float32), x, w)
    assert dx.shape == (0, 5)
    assert_exact(dw, np.zeros((3, 5)))
    assert_exact(db, np.zeros(3))


@pytest.mark.parametrize("n,i,o", [(256, 512, 300), (64, 400, 120), (64, 120, 84)])
def test_linear_same_for_one_and_two_threads(n, i, o, rng):
    # at 2 threads the backward runs dx and dw on one thread each (LeNet's fc1, fc2)
    x = rng.standard_normal((n, i)).astype(np.float32)
    w = rng.standard_normal((o, i)).astype(np.float32)
    dy = rng.standard_normal((n, o)).astype(np.float32)
    before = cnnkit.get_num_threads()
    try:
        runs = []
        for t in (1, 2):
            cnnkit.set_num_threads(t)
            runs.append((F.linear(x, w, w[0, :o]),) + F.linear_backward(dy, x, w))
    finally:
        cnnkit.set_num_threads(before)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_linear_few_rows_same_for_one_and_two_threads_and_close_to_gemm(n, rng):
    # 2 * n * 515 * 301 flops: enough work for two threads to split the outputs
    x = rng.standard_normal((n, 515)).astype(np.float32)
    w = rng.standard_normal((301, 515)).astype(np.float32)
    b = rng.standard_normal(301).astype(np.float32)
    before = cnnkit.get_num_threads()
    try:
        runs = []
        for t in (1, 2):
            cnnkit.set_num_threads(t)
            runs.append(F.linear(x, w, b))
    finally:
        cnnkit.set_num_threads(before)
    np.testing.assert_array_equal(runs[0], runs[1])
    # the rows inside a batch large enough for the GEMM: the same up to rounding
    batch = np.concatenate([x, np.zeros((16, 515), np.float32)])
    scale = ref.linear(abs(x), abs(w), abs(b))
    assert_scaled_close(runs[0], F.linear(batch, w, b)[:n], scale, what="y")


@needs_torch
@pytest.mark.parametrize("seed", range(10))
def test_linear_against_torch(seed):
    rng = np.random.default_rng(seed)
    n, i, o = (int(v) for v in rng.integers(1, 80, size=3))
    x = rng.standard_normal((n, i)).astype(np.float32)
    w = rng.standard_normal((o, i)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.linear(xt, wt, bt)
    dy = rng.standard_normal((n, o)).astype(np.float32)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(F.linear(x, w, b), yt.detach().numpy(), rtol=1e-4, atol=1e-4)
    for got, t in zip(F.linear_backward(dy, x, w), (xt, wt, bt)):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-4, atol=1e-4)
