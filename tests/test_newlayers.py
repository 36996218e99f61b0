"""LocallyConnected2d, LPPool2d, AdaptiveAvgPool2d and ZeroPad2d (and their functional ops):
forward and every gradient against the float64 references on named cases, PyTorch as a second
opinion, config and checkpoint round trips, a small model with BatchNorm2d that trains, and a
table of bad input."""
import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F
import cnnkit.layers as L
import reference as ref
from cnnkit import _core
from helpers import assert_close, assert_exact, assert_scaled_close, exact_ints, needs_torch, torch


def pads4(padding):
    p = (padding, padding) if isinstance(padding, int) else padding
    return (p[0], p[0], p[1], p[1])


def lc_out(size, k, s, p):
    return (size + 2 * p - k) // s + 1


# --- locally connected -----------------------------------------------------------------------------

# name: (input shape, out_channels, kernel, stride, padding, bias: None / "channel" / "position")
LC_CASES = {
    "3x3": ((2, 3, 6, 7), 4, (3, 3), (1, 1), (0, 0), "position"),
    "stride_pad": ((2, 2, 7, 8), 3, (3, 2), (2, 3), (1, 1), "channel"),
    "pad_only_rows": ((3, 2, 5, 5), 2, (2, 2), (1, 2), (1, 0), "position"),
    "no_bias": ((2, 3, 5, 6), 5, (2, 3), (1, 1), (0, 1), None),
    "n1_c1": ((1, 1, 4, 4), 1, (2, 2), (1, 1), (0, 0), "channel"),
    "batch_not_simd_multiple": ((11, 2, 5, 5), 3, (3, 3), (1, 1), (1, 1), "position"),
    "one_by_one": ((2, 4, 3, 5), 2, (1, 1), (1, 1), (0, 0), "channel"),
    "kernel_is_input": ((3, 2, 4, 5), 6, (4, 5), (1, 1), (0, 0), "position"),
}


def lc_params(rng, case, make=lambda rng, *s: rng.standard_normal(s).astype(np.float32)):
    shape, oc, k, s, p, bias = case
    oh, ow = lc_out(shape[2], k[0], s[0], p[0]), lc_out(shape[3], k[1], s[1], p[1])
    x = make(rng, *shape)
    w = make(rng, oh, ow, oc, shape[1], *k)
    b = None if bias is None else make(rng, *((oc, oh, ow) if bias == "position" else (oc,)))
    return x, w, b


@pytest.mark.parametrize("case", LC_CASES.values(), ids=LC_CASES.keys())
def test_locally_connected2d_against_reference(case, rng):
    _, _, _, s, p, bias = case
    x, w, b = lc_params(rng, case)
    pads = pads4(p)
    y = F.locally_connected2d(x, w, b, s, p)
    scale = ref.locally_connected2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), s, pads)
    assert_scaled_close(y, ref.locally_connected2d(x, w, b, s, pads), scale, what="y")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    got = F.locally_connected2d_backward(dy, x, w, s, p, position_bias=bias == "position")
    want = ref.locally_connected2d_backward(dy, x, w, s, pads, position_bias=bias == "position")
    for g, r, what in zip(got, want, ("dx", "dw", "db")):
        assert_close(g, r, what=what)


@pytest.mark.parametrize("case", LC_CASES.values(), ids=LC_CASES.keys())
def test_locally_connected2d_integer_data_is_exact_and_matches_the_cpp_loops(case, rng):
    """On integer data every float32 sum is exact: the GEMM path, the C++ __ref loops and the
    float64 reference agree bit for bit."""
    _, _, _, s, p, bias = case
    x, w, b = lc_params(rng, case, exact_ints)
    pads, pb = pads4(p), bias == "position"
    y = _core.locally_connected2d_forward(x, w, b, s, pads)
    assert_exact(y, ref.locally_connected2d(x, w, b, s, pads), "y")
    assert_exact(_core.locally_connected2d_forward(x, w, b, s, pads, ref=True), y, "y (__ref)")
    dy = exact_ints(rng, *y.shape)
    fast = _core.locally_connected2d_backward(dy, x, w, s, pads, True, True, b is not None, pb)
    slow = _core.locally_connected2d_backward(dy, x, w, s, pads, True, True, b is not None, pb, ref=True)
    want = ref.locally_connected2d_backward(dy, x, w, s, pads, position_bias=pb)
    for f, sl, r, what in zip(fast, slow, want, ("dx", "dw", "db")):
        if f is None:
            continue
        assert_exact(f, r, what)
        assert_exact(sl, r, what + " (__ref)")


def test_locally_connected2d_empty_batch(rng):
    w = rng.standard_normal((2, 2, 3, 2, 3, 3)).astype(np.float32)
    x = np.zeros((0, 2, 4, 4), np.float32)
    assert F.locally_connected2d(x, w).shape == (0, 3, 2, 2)
    dx, dw, db = F.locally_connected2d_backward(np.zeros((0, 3, 2, 2), np.float32), x, w, position_bias=True)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, np.zeros((3, 2, 2)))


def torch_locally_connected(x, w, b, stride, padding):
    """PyTorch has no locally connected layer: unfold + one einsum per position is its
    definition, differentiated by autograd."""
    n = x.shape[0]
    oh, ow, oc = w.shape[:3]
    cols = torch.nn.functional.unfold(x, w.shape[4:], padding=padding, stride=stride)  # (N, K, P)
    y = torch.einsum("nkp,pok->nop", cols, w.reshape(oh * ow, oc, -1)).reshape(n, oc, oh, ow)
    if b is not None:
        y = y + (b[None, :, None, None] if b.dim() == 1 else b[None])
    return y


@needs_torch
@pytest.mark.parametrize("position_bias", [True, False])
def test_locally_connected2d_layer_matches_pytorch(position_bias, rng):
    layer = L.LocallyConnected2d(3, 4, (3, 2), input_size=(7, 6), stride=(2, 1), padding=1,
                                 position_bias=position_bias)
    assert layer.params["bias"].shape == ((4, 4, 7) if position_bias else (4,))
    assert layer.params["weight"].shape == (4, 7, 4, 3, 3, 2)
    x = rng.standard_normal((5, 3, 7, 6)).astype(np.float32)
    y = layer.forward(x)
    assert y.shape == (5,) + layer.output_shape((3, 7, 6)) == (5, 4, 4, 7)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(layer.params["weight"], dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(layer.params["bias"], dtype=torch.float64, requires_grad=True)
    yt = torch_locally_connected(xt, wt, bt, (2, 1), (1, 1))
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    assert_close(y, yt.detach().numpy(), 1e-4, 1e-5, "y")
    assert_close(dx, xt.grad.numpy(), what="dx")
    assert_close(layer.grads["weight"], wt.grad.numpy(), what="dweight")
    assert_close(layer.grads["bias"], bt.grad.numpy(), what="dbias")


def test_locally_connected2d_layer_options(rng):
    shared = L.LocallyConnected2d(2, 3, 3, (5, 5), position_bias=False)
    per_position = L.LocallyConnected2d(2, 3, 3, (5, 5))
    assert per_position.position_bias  # the default: a separate bias at each location
    assert shared.count_params() == 3 * 3 * 3 * 2 * 9 + 3
    assert per_position.count_params() == 3 * 3 * 3 * 2 * 9 + 3 * 3 * 3
    no_bias = L.LocallyConnected2d(2, 3, 3, (5, 5), bias=False)
    assert list(no_bias.params) == ["weight"]
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    no_bias.forward(x)
    assert no_bias.backward(np.ones((2, 3, 3, 3), np.float32)).shape == x.shape
    frozen = L.LocallyConnected2d(2, 3, 3, (5, 5))
    frozen.trainable = False
    g0 = {k: v.copy() for k, v in frozen.grads.items()}
    frozen.forward(x)
    dx = frozen.backward(np.ones((2, 3, 3, 3), np.float32))
    for k in g0:
        np.testing.assert_array_equal(frozen.grads[k], g0[k])
    want = ref.locally_connected2d_backward(np.ones((2, 3, 3, 3)), x, frozen.params["weight"])[0]
    assert_close(dx, want, what="dx of a frozen layer")
    assert L.LocallyConnected2d(1, 2, 3, (8, 8), padding="same").output_shape((1, 8, 8)) == (2, 8, 8)


# --- Lp pooling ------------------------------------------------------------------------------------

# name: (input shape, norm_type, kernel, stride)
LP_CASES = {
    "l2_2x2": ((2, 3, 6, 6), 2.0, (2, 2), None),
    "l1_overlap": ((2, 2, 5, 7), 1.0, (3, 3), (1, 2)),
    "p3_rect": ((1, 3, 7, 6), 3.0, (2, 3), (2, 1)),
    "p1.5_odd": ((3, 1, 5, 5), 1.5, (3, 2), (2, 2)),
    "whole_plane": ((2, 2, 3, 4), 2.0, (3, 4), None),
}


@pytest.mark.parametrize("case", LP_CASES.values(), ids=LP_CASES.keys())
def test_lp_pool2d_against_reference(case, rng):
    shape, p, k, s = case
    stride = k if s is None else s
    x = (rng.random(shape) + 0.05).astype(np.float32)  # positive: fractional powers stay real
    if p == 2.0:
        x *= np.where(rng.random(shape) < 0.5, -1, 1).astype(np.float32)  # even powers take signs
    y = F.lp_pool2d(x, p, k, s)
    assert_close(y, ref.lp_pool2d(x, p, k, stride), 1e-5, 1e-6, "y")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    assert_close(F.lp_pool2d_backward(dy, x, p, k, s), ref.lp_pool2d_backward(dy, x, p, k, stride), what="dx")


@needs_torch
@pytest.mark.parametrize("case", LP_CASES.values(), ids=LP_CASES.keys())
def test_lp_pool2d_layer_matches_pytorch(case, rng):
    shape, p, k, s = case
    x = (rng.random(shape) + 0.05).astype(np.float32)
    x[0, 0, :2, :2] = 0  # an all-zero window: PyTorch passes it no gradient
    layer = L.LPPool2d(p, k, s)
    y = layer.forward(x)
    assert y.shape[1:] == layer.output_shape(shape[1:])
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    yt = torch.nn.LPPool2d(p, k, s)(xt)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    assert_close(y, yt.detach().numpy(), 1e-5, 1e-6, "y")
    assert_close(dx, xt.grad.numpy(), what="dx")
    assert np.isfinite(dx).all()


# --- adaptive average pooling ------------------------------------------------------------------------

# name: (input shape, output_size)
ADAPTIVE_CASES = {
    "divides": ((2, 3, 8, 6), (4, 3)),
    "overlapping_bins": ((2, 2, 7, 10), (3, 4)),
    "global": ((3, 4, 5, 6), 1),
    "larger_than_input": ((1, 2, 3, 2), (5, 4)),
    "keep_width": ((2, 2, 9, 5), (4, None)),
    "identity": ((2, 3, 4, 5), (4, 5)),
    "int_size": ((2, 1, 11, 9), 3),
}


def resolved(size, shape):
    size = (size, size) if isinstance(size, int) else size
    return tuple(shape[2 + i] if v is None else v for i, v in enumerate(size))


@pytest.mark.parametrize("case", ADAPTIVE_CASES.values(), ids=ADAPTIVE_CASES.keys())
def test_adaptive_avg_pool2d_against_reference(case, rng):
    shape, size = case
    x = rng.standard_normal(shape).astype(np.float32)
    y = F.adaptive_avg_pool2d(x, size)
    assert_close(y, ref.adaptive_avg_pool2d(x, resolved(size, shape)), 1e-6, 1e-6, "y")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    assert_close(F.adaptive_avg_pool2d_backward(dy, x.shape), ref.adaptive_avg_pool2d_backward(dy, shape),
                 1e-6, 1e-6, "dx")


@needs_torch
@pytest.mark.parametrize("case", ADAPTIVE_CASES.values(), ids=ADAPTIVE_CASES.keys())
def test_adaptive_avg_pool2d_layer_matches_pytorch(case, rng):
    shape, size = case
    x = rng.standard_normal(shape).astype(np.float32)
    layer = L.AdaptiveAvgPool2d(size)
    y = layer.forward(x)
    assert y.shape[1:] == layer.output_shape(shape[1:])
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.AdaptiveAvgPool2d(size)(xt)
    yt.backward(torch.from_numpy(dy))
    assert_close(y, yt.detach().numpy(), 1e-6, 1e-6, "y")
    assert_close(dx, xt.grad.numpy(), 1e-6, 1e-6, "dx")


# --- padding -------------------------------------------------------------------------------------------

# name: (input shape, ZeroPad2d padding)
PAD_CASES = {
    "int": ((2, 3, 4, 5), 2),
    "asymmetric": ((2, 2, 3, 4), (1, 0, 2, 3)),
    "crop": ((1, 2, 5, 6), (-1, 2, 0, -2)),
    "crop_all_rows": ((1, 1, 2, 3), (1, 1, -1, -1)),
    "zero": ((2, 1, 3, 3), 0),
}


@pytest.mark.parametrize("case", PAD_CASES.values(), ids=PAD_CASES.keys())
def test_zero_pad2d_against_reference_and_pytorch(case, rng):
    shape, padding = case
    l, r, t, b = (padding,) * 4 if isinstance(padding, int) else padding
    x = rng.standard_normal(shape).astype(np.float32)
    layer = L.ZeroPad2d(padding)
    y = layer.forward(x)
    assert_exact(y, ref.pad2d(x, (t, b, l, r)), "y")
    assert y.shape[1:] == layer.output_shape(shape[1:])
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    assert_exact(dx, ref.pad2d_backward(dy, shape, (t, b, l, r)), "dx")
    assert_exact(F.zero_pad2d(x, padding), y, "functional y")
    assert_exact(F.zero_pad2d_backward(dy, padding), dx, "functional dx")
    if torch is not None:
        xt = torch.tensor(x, requires_grad=True)
        yt = torch.nn.ZeroPad2d(padding)(xt)
        yt.backward(torch.from_numpy(dy))
        assert_exact(y, yt.detach().numpy(), "torch y")
        assert_exact(dx, xt.grad.numpy(), "torch dx")


@needs_torch
@pytest.mark.parametrize("pad", [(1, 2), (2, -1), (1, 0, 2, 1), (0, -1, -1, 2)])
def test_functional_pad_matches_pytorch(pad, rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.pad(xt, pad, value=1.5)
    y = F.pad(x, pad, value=1.5)
    assert_exact(y, yt.detach().numpy(), "y")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy))
    assert_exact(F.pad_backward(dy, pad), xt.grad.numpy(), "dx")
    x3 = x[0]  # 1-D padding of a (C, L) array works on its last dimension
    if len(pad) == 2:
        assert_exact(F.pad(x3, pad), torch.nn.functional.pad(torch.from_numpy(x3), pad).numpy(), "3-d y")


# --- layers in a model -----------------------------------------------------------------------------------

NEW_LAYERS = [
    lambda: L.BatchNorm2d(3, eps=0.001),
    lambda: L.BatchNorm1d(3, momentum=None, affine=False),
    lambda: L.LocallyConnected2d(3, 2, 3, (6, 6), stride=2, padding=1),
    lambda: L.LocallyConnected2d(3, 2, (2, 3), (6, 6), bias=False, position_bias=False),
    lambda: L.LPPool2d(2, 2),
    lambda: L.LPPool2d(1.5, (3, 2), stride=(1, 2)),
    lambda: L.AdaptiveAvgPool2d((2, None)),
    lambda: L.AdaptiveAvgPool2d(1),
    lambda: L.ZeroPad2d((1, 0, 2, -1)),
    lambda: L.ZeroPad2d(1),
]


@pytest.mark.parametrize("make", NEW_LAYERS, ids=lambda f: repr(f()))
def test_config_round_trip_and_checkpoint(make, tmp_path, rng):
    layer = make()
    clone = type(layer).from_config(layer.get_config())
    assert repr(clone) == repr(layer)
    shape = (3, 6) if isinstance(layer, L.BatchNorm1d) else (3, 6, 6)
    m = cnnkit.Sequential([layer], input_shape=shape)
    assert m.summary(print_fn=None).count("\n") > 5
    x = (rng.random((4,) + shape) + 0.1).astype(np.float32)
    m.forward(x)  # a training-mode pass: BatchNorm's buffers move
    m.save(tmp_path / "m.cnnkit")
    back = cnnkit.load_model(tmp_path / "m.cnnkit")
    assert repr(back.layers[0]) == repr(layer)
    m.eval()
    back.eval()
    np.testing.assert_array_equal(back.forward(x), m.forward(x))


def test_conv_batchnorm_relu_adaptive_pool_model_trains(rng):
    cnnkit.set_random_seed(0)
    n = 96
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    x[y == 1, :, 2:6, 2:6] += 1.5  # class 1 has a bright centre
    m = cnnkit.Sequential([L.Conv2d(1, 4, 3, padding=1), L.BatchNorm2d(4), L.ReLU(), L.AdaptiveAvgPool2d(2),
                           L.Flatten(), L.Linear(16, 2)], input_shape=(1, 8, 8))
    m.compile(optimizer=cnnkit.optim.Adam(learning_rate=0.02), loss="cross_entropy", metrics=["accuracy"])
    before = m.evaluate(x, y)
    m.fit(x, y, batch_size=16, epochs=8, verbose=0)
    after = m.evaluate(x, y)
    loss = lambda r: r["loss"] if isinstance(r, dict) else r[0]  # noqa: E731
    assert loss(after) < 0.6 * loss(before)
    assert m.layers[1].buffers["num_batches_tracked"] == 8 * 6


# --- bad input ---------------------------------------------------------------------------------------------

x4 = np.zeros((2, 3, 6, 6), np.float32)
w_lc = np.zeros((4, 4, 2, 3, 3, 3), np.float32)

# name: (call, exception, regex the message must match)
BAD_CALLS = {
    "lc_x_3d": (lambda: F.locally_connected2d(x4[0], w_lc), ValueError, r"4 dimensions.*\(3, 6, 6\)"),
    "lc_w_4d": (lambda: F.locally_connected2d(x4, w_lc[0, 0]), ValueError, r"weight with 6 dimensions"),
    "lc_channels": (lambda: F.locally_connected2d(np.zeros((2, 2, 6, 6), np.float32), w_lc), ValueError,
                    r"\(2, 2, 6, 6\) has 2 channels but weight of shape \(4, 4, 2, 3, 3, 3\) expects 3"),
    "lc_positions": (lambda: F.locally_connected2d(np.zeros((2, 3, 7, 6), np.float32), w_lc), ValueError,
                     r"is for a \(4, 4\) output, but input of shape \(2, 3, 7, 6\) gives \(5, 4\)"),
    "lc_bias_shape": (lambda: F.locally_connected2d(x4, w_lc, np.zeros((2, 4, 3), np.float32)), ValueError,
                      r"bias of shape \(2, 4, 4\), got shape \(2, 4, 3\)"),
    "lc_layer_input_size": (lambda: L.LocallyConnected2d(3, 2, 3, (6, 6)).forward(np.zeros((2, 3, 7, 6), np.float32)),
                            ValueError, r"built for inputs of size \(H, W\) = \(6, 6\).*got input of shape "
                                        r"\(2, 3, 7, 6\)"),
    "lc_layer_channels": (lambda: L.LocallyConnected2d(3, 2, 3, (6, 6)).forward(np.zeros((2, 4, 6, 6), np.float32)),
                          ValueError, r"expected 3 channels at axis 1.*\(2, 4, 6, 6\)"),
    "lc_layer_output_shape": (lambda: L.LocallyConnected2d(3, 2, 3, (6, 6)).output_shape((3, 6, 7)), ValueError,
                              r"expected input shape \(3, 6, 6\).*got \(3, 6, 7\)"),
    "lc_kernel_too_big": (lambda: L.LocallyConnected2d(3, 2, 7, (6, 6)), ValueError,
                          r"kernel \(7, 7\) is larger than the padded input \(6, 6\)"),
    "lc_input_size_0": (lambda: L.LocallyConnected2d(3, 2, 3, (0, 6)), ValueError, r"input_size must be >= 1"),
    "lp_p_0": (lambda: F.lp_pool2d(x4, 0, 2), ValueError, r"norm_type must be a finite number > 0, got 0"),
    "lp_p_negative_layer": (lambda: L.LPPool2d(-1, 2), ValueError, r"norm_type must be a finite number > 0, got -1"),
    "lp_p_inf": (lambda: F.lp_pool2d(x4, float("inf"), 2), ValueError, r"norm_type must be a finite"),
    "lp_p_str": (lambda: L.LPPool2d("2", 2), TypeError, r"norm_type must be a number"),
    "lp_x_3d": (lambda: F.lp_pool2d(x4[0], 2, 2), ValueError, r"4 dimensions.*\(3, 6, 6\)"),
    "lp_kernel_too_big": (lambda: F.lp_pool2d(x4, 2, 7), ValueError, r"kernel \(7, 7\) is larger"),
    "lp_backward_grad_shape": (lambda: F.lp_pool2d_backward(np.zeros((2, 3, 2, 2)), x4, 2, 2), ValueError,
                               r"grad_output of shape \(2, 3, 3, 3\), got shape \(2, 3, 2, 2\)"),
    "adaptive_size_0": (lambda: F.adaptive_avg_pool2d(x4, 0), ValueError, r"output_size must be >= 1"),
    "adaptive_layer_size_0": (lambda: L.AdaptiveAvgPool2d((2, 0)), ValueError, r"output_size must be >= 1"),
    "adaptive_size_3": (lambda: L.AdaptiveAvgPool2d((2, 2, 2)), ValueError, r"an int or 2 entries"),
    "adaptive_x_3d": (lambda: F.adaptive_avg_pool2d(x4[0], 2), ValueError, r"4 dimensions.*\(3, 6, 6\)"),
    "adaptive_layer_x_3d": (lambda: L.AdaptiveAvgPool2d(2).forward(x4[0]), ValueError,
                            r"4 dimensions \(N, C, H, W\), got shape \(3, 6, 6\)"),
    "adaptive_backward_shape": (lambda: F.adaptive_avg_pool2d_backward(np.zeros((2, 3, 2, 2)), (2, 4, 6, 6)),
                                ValueError, r"\(2, 4, 2, 2\), got shape \(2, 3, 2, 2\)"),
    "pad_crop_too_much": (lambda: F.zero_pad2d(x4, (0, 0, -4, -3)), ValueError,
                          r"crops more than the input's \(6, 6\)"),
    "pad_layer_crop_too_much": (lambda: L.ZeroPad2d(-4).output_shape((3, 6, 6)), ValueError, r"crops more"),
    "pad_3_entries": (lambda: L.ZeroPad2d((1, 2, 3)), ValueError, r"int or \(left, right, top, bottom\)"),
    "pad_float": (lambda: L.ZeroPad2d(1.5), TypeError, r"padding must be an int"),
    "pad_layer_x_3d": (lambda: L.ZeroPad2d(1).forward(x4[0]), ValueError, r"4 dimensions.*\(3, 6, 6\)"),
    "pad_mode": (lambda: F.pad(x4, (1, 1), mode="reflect"), ValueError, r"mode must be 'constant'"),
    "pad_backward_grad_1d": (lambda: F.zero_pad2d_backward(np.zeros(3), 1), ValueError, r"at least 2 dimensions"),
}


@pytest.mark.parametrize("name", BAD_CALLS)
def test_bad_call_raises_documented_error(name):
    call, exc, pattern = BAD_CALLS[name]
    with pytest.raises(exc, match=pattern):
        call()


# --- non-contiguous input ----------------------------------------------------------------------------------

NONCONTIGUOUS_OPS = {
    "batch_norm": lambda x: F.batch_norm(x, None, None, training=True),
    "locally_connected2d": lambda x: F.locally_connected2d(x, np.ones((2, 3, 2, 3, 2, 2), np.float32)),
    "lp_pool2d": lambda x: F.lp_pool2d(x, 2, 2),
    "adaptive_avg_pool2d": lambda x: F.adaptive_avg_pool2d(x, (2, 3)),
    "zero_pad2d": lambda x: F.zero_pad2d(x, (1, 0, -1, 2)),
}


@pytest.mark.parametrize("name", NONCONTIGUOUS_OPS)
def test_non_contiguous_input_gives_the_same_result(name, rng):
    """(PyTorch's check) a strided view and its contiguous copy give identical results."""
    big = rng.standard_normal((2, 6, 3, 8)).astype(np.float32)
    view = big.transpose(0, 2, 1, 3)[:, :, ::2, ::2]  # (2, 3, 3, 4), strided every way
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(NONCONTIGUOUS_OPS[name](view), NONCONTIGUOUS_OPS[name](np.ascontiguousarray(view)))
