"""conv1d (conv2d with H = KH = 1) forward and every gradient against the float64 references:
named edge cases, integer-valued inputs bit for bit, the real shapes of bench/shapes/conv1d.txt,
and PyTorch as a second opinion on random configurations."""
import os

import numpy as np
import pytest

import reference as ref
from cnnkit import _core
from cnnkit import functional as F
from helpers import assert_exact, assert_scaled_close, exact_ints, needs_torch, randn, torch

SHAPES = os.path.join(os.path.dirname(__file__), "..", "bench", "shapes", "conv1d.txt")


class Conv1d:
    """One conv1d configuration: x (N, C, L), weight (OC, C/groups, K); padding an int, "same",
    "valid" or (left, right) (through _core, which functional cannot express)."""

    def __init__(self, x_shape, oc, k, stride=1, padding=0, dilation=1, groups=1):
        self.x_shape, self.oc, self.k, self.groups = x_shape, oc, k, groups
        self.stride, self.padding, self.dilation = stride, padding, dilation
        if padding == "valid":
            self.pads = (0, 0)
        elif padding == "same":
            L = x_shape[2]
            total = max((-(-L // stride) - 1) * stride + dilation * (k - 1) + 1 - L, 0)
            self.pads = (total // 2, total - total // 2)
        else:
            self.pads = padding if isinstance(padding, tuple) else (padding, padding)

    def forward(self, x, w, b, path="api"):
        if path == "ref" or isinstance(self.padding, tuple):
            return _core.conv1d_forward(x, w, b, self.stride, self.pads, self.dilation,
                                        ref=path == "ref", groups=self.groups)
        return F.conv1d(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def backward(self, dy, x, w, path="api", need=(True, True, True)):
        if path == "ref" or isinstance(self.padding, tuple):
            return _core.conv1d_backward(dy, x, w, self.stride, self.pads, self.dilation, *need,
                                         ref=path == "ref", groups=self.groups)
        return F.conv1d_backward(dy, x, w, self.stride, self.padding, self.dilation, self.groups,
                                 input_grad=need[0], weight_grad=need[1], bias_grad=need[2])

    def reference(self, x, w, b):
        return ref.conv1d(x, w, b, self.stride, self.pads, self.dilation, self.groups)

    def reference_backward(self, dy, x, w):
        return ref.conv1d_backward(dy, x, w, self.stride, self.pads, self.dilation, self.groups)

    def inputs(self, rng, make):
        x = make(rng, *self.x_shape)
        w, b = make(rng, self.oc, self.x_shape[1] // self.groups, self.k), make(rng, self.oc)
        return x, w, b, make(rng, *self.reference(x, w, b).shape)


def check_conv1d(conv, rng, exact=False, path="api", need=(True, True, True)):
    """Forward and the requested gradients against the reference: bit for bit on integer
    inputs, else within 1e-5 of the same computation on absolute values."""
    x, w, b, dy = conv.inputs(rng, exact_ints if exact else randn)
    y = conv.forward(x, w, b, path)
    if exact:
        assert_exact(y, conv.reference(x, w, b), "y")
    else:
        assert_scaled_close(y, conv.reference(x, w, b), conv.reference(abs(x), abs(w), abs(b)),
                            what="y")
    grads = conv.backward(dy, x, w, path, need)
    wants = conv.reference_backward(dy, x, w)
    scales = conv.reference_backward(abs(dy), abs(x), abs(w))
    for name, got, want, scale, needed in zip(("dx", "dw", "db"), grads, wants, scales, need):
        if not needed:
            assert got is None, f"{name} computed though not asked for"
        elif exact:
            assert_exact(got, want, name)
        else:
            assert_scaled_close(got, want, scale, what=name)


CASES = {
    "k3_pad1": Conv1d((2, 4, 20), 5, 3, 1, 1),
    "k5_pad2": Conv1d((2, 4, 33), 6, 5, 1, 2),
    "valid": Conv1d((2, 3, 17), 4, 4, 1, "valid"),
    "same_even_kernel": Conv1d((2, 3, 17), 4, 4, 1, "same"),
    "same_stride2": Conv1d((2, 3, 17), 4, 3, 2, "same"),
    "stride3": Conv1d((2, 3, 25), 4, 3, 3, 1),
    "dilated": Conv1d((2, 3, 30), 4, 3, 1, 2, 3),
    "dilated_stride2": Conv1d((1, 2, 31), 3, 4, 2, 3, 2),
    "asym_pad": Conv1d((2, 3, 14), 4, 3, 1, (0, 2)),
    "pointwise": Conv1d((3, 7, 19), 5, 1),
    "pointwise_stride2": Conv1d((3, 7, 19), 5, 1, 2),
    "c1": Conv1d((3, 1, 40), 4, 5, 1, 2),
    "n1_c13": Conv1d((1, 13, 21), 7, 3, 1, 1),
    "kernel_equals_padded_input": Conv1d((2, 3, 5), 4, 9, 1, 2),
    "long_signal": Conv1d((2, 3, 300), 4, 7, 1, 3),
    "batch10": Conv1d((10, 2, 12), 3, 3, 1, 1),
    "c72_same": Conv1d((2, 72, 19), 5, 4, 1, "same"),  # dx through the rotated kernel
    "c16_dilated": Conv1d((2, 16, 40), 8, 3, 1, 2, 2),  # dw from the channels-last signal
    # The direct path (C <= 64, stride 1, K <= 7; test_conv2d.DIRECT has its edges in 2-D):
    # over width, with padding wider than the kernel, and over channels on a short signal.
    "direct_k7_pad3": Conv1d((2, 3, 37), 5, 7, 1, 3),
    "direct_k2_pad3": Conv1d((2, 2, 9), 3, 2, 1, 3),
    "direct_c16_k6_same": Conv1d((2, 16, 50), 9, 6, 1, "same"),
    "direct_channels_short_signal": Conv1d((2, 5, 6), 24, 3, 1, (2, 0)),
}


@pytest.mark.parametrize("name", CASES)
def test_conv1d_random(name, rng):
    check_conv1d(CASES[name], rng)


@pytest.mark.parametrize("name", CASES)
def test_conv1d_exact_ints(name, rng):
    check_conv1d(CASES[name], rng, exact=True)


@pytest.mark.parametrize("name", ["k3_pad1", "asym_pad", "dilated_stride2"])
def test_conv1d_ref_path(name, rng):
    check_conv1d(CASES[name], rng, exact=True, path="ref")


@pytest.mark.parametrize("need", [(True, False, False), (False, True, False),
                                  (False, False, True), (False, True, True)])
def test_conv1d_gradient_subsets(need, rng):
    check_conv1d(CASES["k5_pad2"], rng, exact=True, need=need)


def real_shapes():
    rows = []
    with open(SHAPES) as f:
        for line in f:
            tok = line.split("#")[0].split()
            if tok:
                rows.append((tok[0], [int(t) for t in tok[1:]]))
    return rows


REAL = real_shapes()


@pytest.mark.parametrize("name,sizes", REAL, ids=[r[0] for r in REAL])
def test_conv1d_real_shapes(name, sizes, rng):
    N, C, L, OC, K, S, P, G = sizes
    check_conv1d(Conv1d((2, C, L), OC, K, S, P, 1, G), rng)


def test_conv1d_empty_batch(rng):
    conv = Conv1d((0, 3, 10), 4, 3, 1, 1)
    x, w = randn(rng, 0, 3, 10), randn(rng, 4, 3, 3)
    y = conv.forward(x, w, None)
    assert y.shape == (0, 4, 10)
    dx, dw, db = conv.backward(y, x, w)
    assert dx.shape == (0, 3, 10)
    assert_exact(dw, np.zeros(w.shape))
    assert_exact(db, np.zeros(4))


def test_conv1d_nan_propagates(rng):
    conv = CASES["k3_pad1"]
    x, w, b, dy = conv.inputs(rng, randn)
    x[1, 2, 7] = np.nan
    y = conv.forward(x, w, b)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(conv.reference(x, w, b)))
    assert np.isnan(y).any()


@needs_torch
@pytest.mark.parametrize("seed", range(60))
def test_conv1d_vs_torch(seed):
    rng = np.random.default_rng(5000 + seed)
    k, s = int(rng.integers(1, 8)), int(rng.integers(1, 4))
    d = int(rng.integers(1, 3)) if rng.random() < 0.4 else 1
    padding = [int(rng.integers(0, 4)), "same", "valid",
               (int(rng.integers(0, 4)), int(rng.integers(0, 4)))][rng.integers(0, 4)]
    L = int(rng.integers(d * (k - 1) + 1, d * (k - 1) + 40))
    conv = Conv1d((int(rng.integers(1, 4)), int(rng.integers(1, 10)), L),
                  int(rng.integers(1, 10)), k, s, padding, d)
    x, w, b, dy = conv.inputs(rng, randn)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv1d(torch.nn.functional.pad(tx, conv.pads), tw, tb, stride=s,
                                    dilation=d)
    ty.backward(torch.tensor(dy))
    what = vars(conv)
    assert_scaled_close(conv.forward(x, w, b), ty.detach().numpy(),
                        conv.reference(abs(x), abs(w), abs(b)), rtol=1e-4, what=f"y {what}")
    scales = conv.reference_backward(abs(dy), abs(x), abs(w))
    for name, got, t, sc in zip(("dx", "dw", "db"), conv.backward(dy, x, w), (tx, tw, tb),
                                scales):
        assert_scaled_close(got, t.grad.numpy(), sc, rtol=1e-4, what=f"{name} {what}")


# Grouped conv1d runs conv2d's grouped paths on H = 1 (test_conv2d.GROUPED has the 2-D edges):
# groups 2 and 3, depthwise with multipliers 1 to 3, with stride, padding and dilation.
GROUPED = {
    "g2_k3_pad1": Conv1d((2, 4, 20), 6, 3, 1, 1, 1, 2),
    "g3_stride2_dilated": Conv1d((2, 9, 31), 6, 4, 2, 3, 2, 3),
    "g2_c64_same": Conv1d((1, 64, 19), 32, 4, 1, "same", 1, 2),
    "g3_pointwise": Conv1d((3, 12, 19), 9, 1, 1, 0, 1, 3),
    "dw_k3": Conv1d((2, 5, 37), 5, 3, 1, 1, 1, 5),
    "dw_k7_asym": Conv1d((1, 13, 50), 13, 7, 1, (3, 1), 1, 13),
    "dw_mult2_stride3": Conv1d((2, 4, 41), 8, 5, 3, 2, 1, 4),
    "dw_mult3_dilated": Conv1d((2, 3, 29), 9, 3, 1, 2, 2, 3),
    "dw_long_stride2": Conv1d((2, 6, 300), 6, 9, 2, 4, 1, 6),
}


@pytest.mark.parametrize("name", GROUPED)
def test_conv1d_grouped_random(name, rng):
    check_conv1d(GROUPED[name], rng)


@pytest.mark.parametrize("name", GROUPED)
def test_conv1d_grouped_exact_ints(name, rng):
    check_conv1d(GROUPED[name], rng, exact=True)


@pytest.mark.parametrize("name", ["g3_stride2_dilated", "dw_mult2_stride3"])
def test_conv1d_grouped_ref_path(name, rng):
    check_conv1d(GROUPED[name], rng, exact=True, path="ref")


@pytest.mark.parametrize("x_shape,w_shape,groups,match", [
    ((2, 6, 9), (4, 6, 3), 2, r"weight of shape \(4, 6, 3\).*expected weight shape \(4, 3, 3\)"),
    ((2, 6, 9), (6, 2, 3), 4, r"groups = 4 for \(C, OC\) = \(6, 6\)"),
    ((2, 6, 9), (6, 6, 3), 0, "groups must be >= 1"),
])
def test_conv1d_grouped_bad_inputs_raise(x_shape, w_shape, groups, match):
    with pytest.raises(ValueError, match=match):
        F.conv1d(np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32), groups=groups)


@needs_torch
@pytest.mark.parametrize("seed", range(20))
def test_conv1d_grouped_vs_torch(seed):
    rng = np.random.default_rng(7000 + seed)
    k, s = int(rng.integers(1, 8)), int(rng.integers(1, 4))
    d = int(rng.integers(1, 3)) if rng.random() < 0.4 else 1
    padding = [int(rng.integers(0, 4)), "same", "valid",
               (int(rng.integers(0, 4)), int(rng.integers(0, 4)))][rng.integers(0, 4)]
    L = int(rng.integers(d * (k - 1) + 1, d * (k - 1) + 40))
    if seed % 2:  # depthwise, multiplier 1 .. 3
        g = int(rng.integers(1, 13))
        c, oc = g, g * int(rng.integers(1, 4))
    else:
        g = int(rng.integers(1, 5))
        c, oc = g * int(rng.integers(1, 5)), g * int(rng.integers(1, 5))
    conv = Conv1d((int(rng.integers(1, 4)), c, L), oc, k, s, padding, d, g)
    x, w, b, dy = conv.inputs(rng, randn)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv1d(torch.nn.functional.pad(tx, conv.pads), tw, tb, stride=s,
                                    dilation=d, groups=g)
    ty.backward(torch.tensor(dy))
    what = vars(conv)
    assert_scaled_close(conv.forward(x, w, b), ty.detach().numpy(),
                        conv.reference(abs(x), abs(w), abs(b)), rtol=1e-4, what=f"y {what}")
    scales = conv.reference_backward(abs(dy), abs(x), abs(w))
    for name, got, t, sc in zip(("dx", "dw", "db"), conv.backward(dy, x, w), (tx, tw, tb),
                                scales):
        assert_scaled_close(got, t.grad.numpy(), sc, rtol=1e-4, what=f"{name} {what}")
