"""Batch normalisation: the functional op (training and evaluation, forward and every gradient)
against the float64 references on named shapes, the C++ __ref loops and thread counts against
the fast path, BatchNorm2d / BatchNorm1d against PyTorch over several training steps (running
statistics, num_batches_tracked, eval mode), buffers in state_dict and checkpoints but not in
the optimizer, frozen layers and bad input."""
import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F
import cnnkit.layers as L
import reference as ref
from cnnkit import _core
from helpers import assert_close, assert_scaled_close, needs_torch, torch

# name: (input shape, offset added to the data: a large mean must not cancel the variance away)
BN_CASES = {
    "2d": ((4, 3, 5, 6), 0.0),
    "2d_n1": ((1, 2, 3, 4), 0.0),
    "2d_c1_odd": ((3, 1, 7, 5), 1.0),
    "2d_large_mean": ((2, 3, 6, 6), 100.0),
    "2d_long_plane": ((2, 2, 40, 33), 0.5),  # planes longer than the kernel's float blocks
    "1d_nc": ((8, 5), 0.0),
    "1d_nc_n2": ((2, 3), 3.0),
    "1d_ncl": ((5, 4, 7), -2.0),
}


def bn_data(rng, shape, offset):
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 + offset).astype(np.float32)
    w = rng.standard_normal(c).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    return x, w, b


def forward_scale(x, mean, var, w, b, eps):
    """Bound on the size of the terms of y = (x - mean) * invstd * w + b, for the tolerance."""
    ch = ref._channel
    return (np.abs(x) + np.abs(ch(mean, x.ndim))) / np.sqrt(ch(var, x.ndim) + eps) * np.abs(ch(w, x.ndim)) \
        + np.abs(ch(b, x.ndim))


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("case", BN_CASES.values(), ids=BN_CASES.keys())
def test_batch_norm_training_against_reference(case, affine, rng):
    shape, offset = case
    x, w, b = bn_data(rng, shape, offset)
    if not affine:
        w = b = None
    c, eps, momentum = shape[1], 1e-5, 0.25
    rm0, rv0 = rng.standard_normal(c).astype(np.float32), (rng.random(c) + 0.5).astype(np.float32)
    rm, rv = rm0.copy(), rv0.copy()
    y, mean, invstd = F.batch_norm(x, rm, rv, w, b, training=True, momentum=momentum, eps=eps, return_stats=True)
    m_ref, var_ref, unbiased = ref.batch_norm_stats(x)
    y_ref = ref.batch_norm_train(x, w, b, eps)
    ones, zeros = np.ones(c), np.zeros(c)
    assert_scaled_close(y, y_ref, forward_scale(x, m_ref, var_ref, ones if w is None else w,
                                                zeros if b is None else b, eps), 1e-5, 1e-6, "y")
    assert_close(mean, m_ref, 1e-6, 1e-5 * (1 + abs(offset)), "mean")
    assert_close(invstd, 1 / np.sqrt(var_ref + eps), 1e-5, 0, "invstd")
    assert_close(rm, (1 - momentum) * rm0 + momentum * m_ref, 1e-6, 1e-5 * (1 + abs(offset)), "running_mean")
    assert_close(rv, (1 - momentum) * rv0 + momentum * unbiased, 1e-5, 1e-6, "running_var")

    dy = rng.standard_normal(shape).astype(np.float32)
    dx, dw, db = F.batch_norm_backward(dy, x, w, mean, invstd, training=True)
    dx_ref, dw_ref, db_ref = ref.batch_norm_train_backward(dy, x, w, eps)
    assert_close(dx, dx_ref, what="dx")
    assert_close(dw, dw_ref, what="dweight")
    assert_close(db, db_ref, what="dbias")


@pytest.mark.parametrize("case", BN_CASES.values(), ids=BN_CASES.keys())
def test_batch_norm_evaluation_against_reference(case, rng):
    shape, offset = case
    x, w, b = bn_data(rng, shape, offset)
    c, eps = shape[1], 1e-3
    rm = (rng.standard_normal(c) + offset).astype(np.float32)
    rv = (rng.random(c) * 4 + 0.1).astype(np.float32)
    keep = rm.copy(), rv.copy()
    y, mean, invstd = F.batch_norm(x, rm, rv, w, b, training=False, eps=eps, return_stats=True)
    np.testing.assert_array_equal(rm, keep[0])  # evaluation never writes the running statistics
    np.testing.assert_array_equal(rv, keep[1])
    assert_scaled_close(y, ref.batch_norm(x, rm, rv, w, b, eps), forward_scale(x, rm, rv, w, b, eps), 1e-5, 1e-6)
    dy = rng.standard_normal(shape).astype(np.float32)
    got = F.batch_norm_backward(dy, x, w, mean, invstd, training=False)
    for g, r, what in zip(got, ref.batch_norm_eval_backward(dy, x, rm, rv, w, eps), ("dx", "dweight", "dbias")):
        assert_close(g, r, what=what)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (8, 5), (3, 2, 9)])
def test_batch_norm_fast_path_matches_the_cpp_reference_loops(shape, training, rng):
    x, w, b = bn_data(rng, shape, 1.0)
    c = shape[1]
    outs = []
    for use_ref in (False, True):
        rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
        y, mean, invstd = _core.batch_norm_forward(x, w, b, rm, rv, training, 0.1, 1e-5, ref=use_ref)
        dy = np.linspace(-1, 1, x.size, dtype=np.float32).reshape(shape)
        grads = _core.batch_norm_backward(dy, x, w, mean, invstd, training, True, True, True, ref=use_ref)
        outs.append((y, mean, invstd, rm, rv) + tuple(grads))
    for fast, slow, what in zip(*outs, ("y", "mean", "invstd", "rm", "rv", "dx", "dw", "db")):
        np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5, err_msg=what)


def test_batch_norm_results_do_not_depend_on_the_thread_count(rng):
    x, w, b = bn_data(rng, (8, 16, 32, 32), 0.5)  # enough work for several threads
    dy = rng.standard_normal(x.shape).astype(np.float32)
    before = cnnkit.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            cnnkit.set_num_threads(n)
            rm, rv = np.zeros(16, np.float32), np.ones(16, np.float32)
            y, mean, invstd = F.batch_norm(x, rm, rv, w, b, training=True, return_stats=True)
            results.append((y, rm, rv) + F.batch_norm_backward(dy, x, w, mean, invstd))
    finally:
        cnnkit.set_num_threads(before)
    for a, b_ in zip(*results):
        np.testing.assert_array_equal(a, b_)


def test_batch_norm_backward_skips_what_is_not_asked_for(rng):
    x, w, b = bn_data(rng, (3, 2, 4, 4), 0.0)
    y, mean, invstd = F.batch_norm(x, None, None, w, b, training=True, return_stats=True)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    full = F.batch_norm_backward(dy, x, w, mean, invstd)
    dx, dw, db = F.batch_norm_backward(dy, x, w, mean, invstd, weight_grad=False, bias_grad=False)
    assert dw is None and db is None
    np.testing.assert_array_equal(dx, full[0])
    dx, dw, db = F.batch_norm_backward(dy, x, w, mean, invstd, input_grad=False)
    assert dx is None
    np.testing.assert_array_equal(dw, full[1])
    np.testing.assert_array_equal(db, full[2])


def test_batch_norm_empty_batch_keeps_the_running_statistics():
    rm, rv = np.full(3, 0.5, np.float32), np.full(3, 2.0, np.float32)
    y = F.batch_norm(np.zeros((0, 3, 4, 4), np.float32), rm, rv, training=True)
    assert y.shape == (0, 3, 4, 4)
    np.testing.assert_array_equal(rm, 0.5)
    np.testing.assert_array_equal(rv, 2.0)


# --- layers against PyTorch ------------------------------------------------------------------------

def torch_bn(layer):
    nn = torch.nn
    cls = nn.BatchNorm2d if isinstance(layer, L.BatchNorm2d) else nn.BatchNorm1d
    t = cls(layer.num_features, eps=layer.eps, momentum=layer.momentum, affine=layer.affine,
            track_running_stats=layer.track_running_stats).double()
    if layer.affine:
        with torch.no_grad():
            t.weight.copy_(torch.from_numpy(layer.params["weight"].astype(np.float64)))
            t.bias.copy_(torch.from_numpy(layer.params["bias"].astype(np.float64)))
    return t


# name: (layer factory, input shape)
BN_LAYERS = {
    "bn2d": (lambda: L.BatchNorm2d(3), (4, 3, 5, 5)),
    "bn2d_eps_momentum": (lambda: L.BatchNorm2d(2, eps=0.001, momentum=0.3), (3, 2, 4, 6)),
    "bn2d_cumulative": (lambda: L.BatchNorm2d(2, momentum=None), (3, 2, 4, 4)),
    "bn2d_no_affine": (lambda: L.BatchNorm2d(3, affine=False), (2, 3, 4, 4)),
    "bn2d_no_running_stats": (lambda: L.BatchNorm2d(3, track_running_stats=False), (2, 3, 4, 4)),
    "bn1d_nc": (lambda: L.BatchNorm1d(6), (10, 6)),
    "bn1d_ncl": (lambda: L.BatchNorm1d(4, momentum=0.5), (3, 4, 9)),
}


@needs_torch
@pytest.mark.parametrize("name", BN_LAYERS)
def test_batch_norm_layer_matches_pytorch_over_training_steps_then_eval(name, rng):
    factory, shape = BN_LAYERS[name]
    layer = factory()
    if layer.affine:
        layer.params["weight"][...] = rng.standard_normal(layer.num_features)
        layer.params["bias"][...] = rng.standard_normal(layer.num_features)
    t = torch_bn(layer)
    for step in range(4):
        for mode in ("train", "eval") if step == 3 else ("train",):
            layer.train(mode == "train")
            t.train(mode == "train")
            x = (rng.standard_normal(shape) * (1 + step) + step).astype(np.float32)
            dy = rng.standard_normal(shape).astype(np.float32)
            xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
            yt = t(xt)
            yt.backward(torch.from_numpy(dy.astype(np.float64)))
            y = layer.forward(x)
            dx = layer.backward(dy)
            what = f"step {step} {mode}"
            assert_close(y, yt.detach().numpy(), 1e-4, 1e-4, f"{what}: y")
            assert_close(dx, xt.grad.numpy(), what=f"{what}: dx")
            if layer.affine:
                assert_close(layer.grads["weight"], t.weight.grad.numpy(), what=f"{what}: dweight")
                assert_close(layer.grads["bias"], t.bias.grad.numpy(), what=f"{what}: dbias")
                t.weight.grad = t.bias.grad = None
            if layer.track_running_stats:
                assert_close(layer.buffers["running_mean"], t.running_mean.numpy(), 1e-5, 1e-5, f"{what}: rm")
                assert_close(layer.buffers["running_var"], t.running_var.numpy(), 1e-5, 1e-5, f"{what}: rv")
                assert layer.buffers["num_batches_tracked"] == t.num_batches_tracked.item()
    if layer.track_running_stats:
        assert layer.buffers["num_batches_tracked"].item() == 4


def test_batch_norm_buffers_are_pytorch_s():
    bn = L.BatchNorm2d(5)
    assert list(bn.params) == ["weight", "bias"]
    assert list(bn.buffers) == ["running_mean", "running_var", "num_batches_tracked"]
    nbt = bn.buffers["num_batches_tracked"]
    assert nbt.dtype == np.int64 and nbt.shape == ()
    np.testing.assert_array_equal(bn.buffers["running_mean"], np.zeros(5))
    np.testing.assert_array_equal(bn.buffers["running_var"], np.ones(5))
    np.testing.assert_array_equal(bn.params["weight"], np.ones(5))
    np.testing.assert_array_equal(bn.params["bias"], np.zeros(5))
    assert bn.count_params() == 10  # buffers are not parameters
    assert L.BatchNorm2d(5, affine=False).params == {}
    assert L.BatchNorm2d(5, track_running_stats=False).buffers == {}


def bn_model():
    return cnnkit.Sequential([L.Conv2d(2, 3, 3, padding=1), L.BatchNorm2d(3), L.ReLU(), L.Flatten(),
                              L.Linear(3 * 4 * 4, 2), L.BatchNorm1d(2)], input_shape=(2, 4, 4))


@needs_torch
def test_state_dict_keys_match_pytorch_and_torch_weights_load():
    nn = torch.nn
    t = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                      nn.Linear(48, 2), nn.BatchNorm1d(2))
    t.train()
    t(torch.randn(5, 2, 4, 4))  # move the running statistics off their initial values
    m = bn_model()
    assert list(m.state_dict()) == list(t.state_dict())
    m.load_state_dict(t.state_dict())
    for k, v in t.state_dict().items():
        np.testing.assert_array_equal(m.state_dict()[k], v.numpy(), err_msg=k)
    assert m.state_dict()["1.num_batches_tracked"].dtype == np.int64
    m.eval()
    t.eval()
    x = np.random.default_rng(0).standard_normal((3, 2, 4, 4)).astype(np.float32)
    assert_close(m.forward(x), t(torch.from_numpy(x)).detach().numpy(), 1e-5, 1e-5)


def test_buffers_survive_save_and_load(tmp_path, rng):
    m = bn_model()
    m.compile(optimizer="sgd", loss="cross_entropy")
    x = rng.standard_normal((8, 2, 4, 4)).astype(np.float32)
    y = rng.integers(0, 2, 8)
    for _ in range(3):
        m.train_on_batch(x, y)
    path = tmp_path / "bn.cnnkit"
    m.save(path)
    back = cnnkit.load_model(path)
    before, after = m.state_dict(), back.state_dict()
    assert list(after) == list(before)
    for k in before:
        assert after[k].dtype == before[k].dtype and after[k].shape == before[k].shape, k
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    assert after["1.num_batches_tracked"].shape == () and after["1.num_batches_tracked"] == 3
    m.eval()
    back.eval()
    np.testing.assert_array_equal(back.forward(x), m.forward(x))


def test_optimizer_never_sees_the_buffers(rng):
    m = bn_model()
    m.compile(optimizer="adam", loss="cross_entropy")
    params, grads = m._trainable()
    buffers = [b for layer in m.layers for b in getattr(layer, "buffers", {}).values()]
    assert not any(p is b for p in params for b in buffers)
    assert len(params) == len(grads) == 8  # conv, bn, linear, bn: weight and bias each
    x = rng.standard_normal((6, 2, 4, 4)).astype(np.float32)
    mean, _, unbiased = ref.batch_norm_stats(m.layers[0].forward(x))  # the conv before the step
    m.train_on_batch(x, rng.integers(0, 2, 6))
    # the running statistics moved by the forward pass alone: one momentum step from (0, 1)
    bn = m.layers[1]
    assert bn.buffers["num_batches_tracked"] == 1
    assert_close(bn.buffers["running_mean"], 0.1 * mean, 1e-5, 1e-6)
    assert_close(bn.buffers["running_var"], 0.9 + 0.1 * unbiased, 1e-5, 1e-6)


def test_frozen_batch_norm_keeps_gamma_beta_but_tracks_statistics(rng):
    bn = L.BatchNorm2d(3)
    bn.trainable = False
    bn.grads["weight"][...] = 7.0
    x = (rng.standard_normal((4, 3, 3, 3)) + 2).astype(np.float32)
    y = bn.forward(x)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = bn.backward(dy)
    np.testing.assert_array_equal(bn.grads["weight"], 7.0)  # untouched
    assert_close(dx, ref.batch_norm_train_backward(dy, x, None)[0], what="dx")
    assert_close(bn.buffers["running_mean"], 0.1 * ref.batch_norm_stats(x)[0], 1e-5, 1e-6)
    assert y.shape == x.shape
    m = cnnkit.Sequential([L.Conv2d(3, 3, 1), bn, L.Flatten(), L.Linear(27, 2)], input_shape=(3, 3, 3))
    m.compile(optimizer="sgd", loss="cross_entropy")
    w0 = bn.params["weight"].copy()
    m.train_on_batch(x, np.array([0, 1, 0, 1]))
    np.testing.assert_array_equal(bn.params["weight"], w0)
    assert "Non-trainable params: 6" in m.summary(print_fn=None)


def test_batch_norm_layer_config_and_keras_style_construction(rng):
    bn = L.BatchNorm2d(4, eps=0.001)
    assert bn.get_config() == {"num_features": 4, "eps": 0.001, "momentum": 0.1, "affine": True,
                               "track_running_stats": True}
    for layer in (bn, L.BatchNorm1d(3, momentum=None, affine=False), L.BatchNorm2d(2, track_running_stats=False)):
        clone = type(layer).from_config(layer.get_config())
        assert repr(clone) == repr(layer)
    assert bn.output_shape((4, 7, 7)) == (4, 7, 7)
    assert L.BatchNorm1d(3).output_shape((3,)) == (3,)
    assert L.BatchNorm1d(3).output_shape((3, 9)) == (3, 9)


# name: (call, exception, regex the message must match)
BAD_BN = {
    "layer_2d_ndim": (lambda: L.BatchNorm2d(3).forward(np.zeros((2, 3, 4), np.float32)), ValueError,
                      r"BatchNorm2d expected input with 4 dimensions \(N, C, H, W\), got shape \(2, 3, 4\)"),
    "layer_1d_ndim": (lambda: L.BatchNorm1d(3).forward(np.zeros((2, 3, 4, 4), np.float32)), ValueError,
                      r"BatchNorm1d expected input with 2 or 3 dimensions.*got shape \(2, 3, 4, 4\)"),
    "layer_channels": (lambda: L.BatchNorm2d(3).forward(np.zeros((2, 4, 5, 5), np.float32)), ValueError,
                       r"expected 3 channels at axis 1, got shape \(2, 4, 5, 5\)"),
    "layer_channels_last_hint": (lambda: L.BatchNorm2d(3).forward(np.zeros((2, 5, 5, 3), np.float32)), ValueError,
                                 r"channels-last.*transpose\(0, 3, 1, 2\)"),
    "layer_output_shape": (lambda: L.BatchNorm2d(3).output_shape((4, 5, 5)), ValueError,
                           r"BatchNorm2d expected input shape \(C, H, W\) with C = 3, got \(4, 5, 5\)"),
    "one_value_per_channel": (lambda: L.BatchNorm1d(3).forward(np.zeros((1, 3), np.float32)), ValueError,
                              r"more than 1 value per channel when training"),
    "num_features_0": (lambda: L.BatchNorm2d(0), ValueError, r"num_features must be >= 1"),
    "num_features_float": (lambda: L.BatchNorm2d(3.0), TypeError, r"num_features must be an int"),
    "eps_negative": (lambda: L.BatchNorm2d(3, eps=-1.0), ValueError, r"eps must be a finite number >= 0"),
    "eps_str": (lambda: L.BatchNorm2d(3, eps="1e-5"), TypeError, r"eps must be a number, got str"),
    "momentum_nan": (lambda: L.BatchNorm2d(3, momentum=float("nan")), ValueError, r"momentum must be a finite"),
    "f_x_1d": (lambda: F.batch_norm(np.zeros(3, np.float32), None, None, training=True), ValueError,
               r"at least 2 dimensions \(N, C, \.\.\.\), got shape \(3,\)"),
    "f_weight_shape": (lambda: F.batch_norm(np.zeros((2, 3, 4), np.float32), None, None, np.ones(4, np.float32),
                                            training=True), ValueError, r"weight.*\(3,\).*\(4,\)"),
    "f_running_shape": (lambda: F.batch_norm(np.zeros((2, 3, 4), np.float32), np.zeros(2, np.float32),
                                             np.ones(2, np.float32)), ValueError, r"running_mean.*\(3,\).*\(2,\)"),
    "f_eval_without_stats": (lambda: F.batch_norm(np.zeros((2, 3), np.float32), None, None), ValueError,
                             r"running_mean and running_var are required"),
    "f_running_not_writable": (lambda: F.batch_norm(np.zeros((2, 3), np.float32), np.zeros(3), np.ones(3),
                                                    training=True), (ValueError, TypeError), r"running_mean"),
    "f_backward_dy_shape": (lambda: F.batch_norm_backward(np.zeros((2, 3, 5), np.float32), np.zeros((2, 3, 4)),
                                                          None, np.zeros(3), np.ones(3)), ValueError,
                            r"grad_output.*\(2, 3, 4\).*\(2, 3, 5\)"),
}


@pytest.mark.parametrize("name", BAD_BN)
def test_bad_batch_norm_input_raises(name):
    call, exc, pattern = BAD_BN[name]
    with pytest.raises(exc, match=pattern):
        call()
