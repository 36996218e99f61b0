"""Layers: forward/backward against the float64 references, PyTorch's initialisation, live
params/grads, shape inference, frozen layers, buffer reuse inside a model, and clear errors."""
import numpy as np
import pytest

import cnnkit.layers as L
import reference as ref
from cnnkit._random import set_random_seed
from helpers import assert_close, assert_exact, exact_ints

# name: (layer factory, input shape with batch)
LAYERS = {
    "conv2d": (lambda: L.Conv2d(3, 5, 3, padding=1), (2, 3, 7, 6)),
    "conv2d_rect_stride_same": (lambda: L.Conv2d(2, 4, (3, 2), stride=2, padding="same"), (2, 2, 9, 8)),
    "conv2d_dilated_nobias": (lambda: L.Conv2d(2, 3, 3, dilation=2, bias=False), (1, 2, 9, 9)),
    "conv1d": (lambda: L.Conv1d(3, 4, 5, stride=2, padding=2), (2, 3, 17)),
    "conv2d_groups2": (lambda: L.Conv2d(4, 6, 3, padding=1, groups=2), (2, 4, 7, 6)),
    "conv2d_depthwise_mult2_stride2": (lambda: L.Conv2d(3, 6, 3, 2, "same", groups=3, bias=False), (2, 3, 9, 8)),
    "conv1d_depthwise": (lambda: L.Conv1d(5, 5, 3, padding=1, dilation=2, groups=5), (2, 5, 13)),
    "maxpool2d": (lambda: L.MaxPool2d(2), (2, 3, 8, 6)),
    "maxpool2d_s1_p1": (lambda: L.MaxPool2d(3, 1, 1), (2, 2, 5, 5)),
    "avgpool2d": (lambda: L.AvgPool2d(2, padding=1, count_include_pad=False), (2, 3, 7, 7)),
    "maxpool1d": (lambda: L.MaxPool1d(3, 2), (2, 3, 11)),
    "avgpool1d": (lambda: L.AvgPool1d(2), (2, 3, 10)),
    "global_avg_pool": (lambda: L.GlobalAvgPool2d(), (3, 4, 5, 5)),
    "linear": (lambda: L.Linear(12, 7), (5, 12)),
    "relu": (lambda: L.ReLU(), (3, 4, 5)),
    "sigmoid": (lambda: L.Sigmoid(), (3, 6)),
    "tanh": (lambda: L.Tanh(), (3, 6)),
    "softmax": (lambda: L.Softmax(), (4, 10)),
    "flatten": (lambda: L.Flatten(), (2, 3, 4, 5)),
}


def reference_forward_backward(layer, x, dy):
    """(y, dx, {param: grad}) from tests/reference.py for each layer type."""
    p = {k: v.astype(np.float64) for k, v in layer.params.items()}
    if isinstance(layer, L.Conv2d):
        pads = layer._pads(x.shape)
        args = dict(stride=layer.stride, pads=pads, dilation=layer.dilation, groups=layer.groups)
        dx, dw, db = ref.conv2d_backward(dy, x, p["weight"], **args)
        return ref.conv2d(x, p["weight"], p.get("bias"), **args), dx, {"weight": dw, "bias": db}
    if isinstance(layer, L.Conv1d):
        args = dict(stride=layer.stride, pads=layer._pads(x.shape), dilation=layer.dilation, groups=layer.groups)
        dx, dw, db = ref.conv1d_backward(dy, x, p["weight"], **args)
        return ref.conv1d(x, p["weight"], p.get("bias"), **args), dx, {"weight": dw, "bias": db}
    if isinstance(layer, L.MaxPool1d):
        y, idx = ref.max_pool1d(x, layer.kernel_size[0], layer.stride[0], layer._pads(x.shape))
        dx = ref.max_pool2d_backward(dy[:, :, None, :], idx[:, :, None, :], (x.shape[0], x.shape[1], 1, x.shape[2]))
        return y, dx[:, :, 0, :], {}
    if isinstance(layer, L.MaxPool2d):
        y, idx = ref.max_pool2d(x, layer.kernel_size, layer.stride, layer._pads(x.shape))
        return y, ref.max_pool2d_backward(dy, idx, x.shape), {}
    if isinstance(layer, L.AvgPool1d):
        args = (layer.kernel_size[0], layer.stride[0], layer._pads(x.shape), layer.count_include_pad)
        return ref.avg_pool1d(x, *args), ref.avg_pool1d_backward(dy, x.shape, *args), {}
    if isinstance(layer, L.AvgPool2d):
        args = (layer.kernel_size, layer.stride, layer._pads(x.shape), layer.count_include_pad)
        return ref.avg_pool2d(x, *args), ref.avg_pool2d_backward(dy, x.shape, *args), {}
    if isinstance(layer, L.GlobalAvgPool2d):
        return ref.global_avg_pool2d(x), ref.global_avg_pool2d_backward(dy, x.shape), {}
    if isinstance(layer, L.Linear):
        dx, dw, db = ref.linear_backward(dy, x, p["weight"])
        return ref.linear(x, p["weight"], p.get("bias")), dx, {"weight": dw, "bias": db}
    if isinstance(layer, L.Flatten):
        return x.reshape(len(x), -1), dy.reshape(x.shape), {}
    fwd, bwd = {L.ReLU: (ref.relu, ref.relu_backward), L.Sigmoid: (ref.sigmoid, ref.sigmoid_backward),
                L.Tanh: (ref.tanh, ref.tanh_backward), L.Softmax: (ref.softmax, ref.softmax_backward)}[type(layer)]
    y = fwd(x)
    return y, bwd(dy, y), {}


@pytest.mark.parametrize("reuse", [False, True], ids=["fresh", "reused"])
@pytest.mark.parametrize("name", LAYERS)
def test_layer_against_reference(name, reuse, rng):
    factory, shape = LAYERS[name]
    layer = factory()
    layer.reuse_buffers = reuse
    exact = name.startswith(("conv", "maxpool", "linear", "flatten", "relu"))
    x = exact_ints(rng, *shape) if exact else rng.standard_normal(shape).astype(np.float32)
    for k in layer.params:  # integer-valued weights keep float32 sums exact
        layer.params[k][...] = exact_ints(rng, *layer.params[k].shape) if exact else layer.params[k]
    y = layer.forward(x)
    assert y.shape == (shape[0],) + tuple(layer.output_shape(shape[1:]))
    dy = exact_ints(rng, *y.shape) if exact else rng.standard_normal(y.shape).astype(np.float32)
    y_ref, dx_ref, grads_ref = reference_forward_backward(layer, x, dy)
    dx = layer.backward(dy)
    check = assert_exact if exact else (lambda a, b, what: assert_close(a, b, 1e-5, 1e-6, what))
    check(y, y_ref, "y")
    check(dx, dx_ref, "dx")
    for k, g in grads_ref.items():
        if k in layer.grads:
            check(layer.grads[k], g, k)


def test_initialisation_is_pytorch_default():
    set_random_seed(1)
    conv = L.Conv2d(3, 64, 5)
    bound = 1 / np.sqrt(3 * 5 * 5)
    for a in conv.params.values():
        assert a.dtype == np.float32 and a.flags.c_contiguous
        assert np.abs(a).max() <= bound and np.abs(a).max() > 0.9 * bound
    w = conv.params["weight"]
    assert abs(w.mean()) < 0.05 * bound and abs(w.std() - bound / np.sqrt(3)) < 0.05 * bound  # U(-b, b)
    lin = L.Linear(400, 120)
    assert np.abs(lin.params["weight"]).max() <= 1 / 20 and lin.params["bias"].shape == (120,)


def test_grouped_initialisation_uses_the_fan_in_of_one_group():
    # PyTorch: fan_in = in_channels / groups * KH * KW, the channels each output sums.
    set_random_seed(2)
    conv = L.Conv2d(64, 128, 3, groups=4)
    assert conv.params["weight"].shape == (128, 16, 3, 3)
    bound = 1 / np.sqrt(16 * 3 * 3)
    for a in conv.params.values():
        assert np.abs(a).max() <= bound and np.abs(a).max() > 0.9 * bound
    dw = L.Conv1d(32, 64, 5, groups=32)
    assert dw.params["weight"].shape == (64, 1, 5)
    assert 0.9 / np.sqrt(5) < np.abs(dw.params["weight"]).max() <= 1 / np.sqrt(5)


def test_seed_makes_initialisation_reproducible():
    set_random_seed(7)
    a = L.Conv2d(2, 3, 3).params["weight"].copy()
    set_random_seed(7)
    b = L.Conv2d(2, 3, 3).params["weight"]
    np.testing.assert_array_equal(a, b)
    set_random_seed(8)
    assert not np.array_equal(a, L.Conv2d(2, 3, 3).params["weight"])


def test_params_and_grads_are_live_arrays(rng):
    lin = L.Linear(3, 2)
    w_id, g_id = id(lin.params["weight"]), id(lin.grads["weight"])
    lin.params["weight"][...] = 0
    lin.params["bias"][...] = [1, 2]
    x = rng.standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_array_equal(lin.forward(x), np.tile([1, 2], (4, 1)))
    lin.backward(np.ones((4, 2), np.float32))
    first = lin.grads["weight"].copy()
    lin.forward(x)
    lin.backward(np.ones((4, 2), np.float32))
    np.testing.assert_array_equal(lin.grads["weight"], first)  # overwritten, not accumulated
    assert id(lin.params["weight"]) == w_id and id(lin.grads["weight"]) == g_id


def test_frozen_layer_keeps_its_grads_and_still_passes_the_gradient_on(rng):
    conv = L.Conv2d(2, 3, 3)
    conv.trainable = False
    for g in conv.grads.values():
        g[...] = 42.0
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    dx = conv.backward(conv.forward(x))
    assert dx.shape == x.shape and np.abs(dx).sum() > 0
    assert all((g == 42.0).all() for g in conv.grads.values())


def test_first_layer_skips_the_input_gradient(rng):
    conv = L.Conv2d(1, 2, 3)
    conv.input_grad = False
    assert conv.backward(conv.forward(rng.standard_normal((2, 1, 5, 5)).astype(np.float32))) is None
    assert np.abs(conv.grads["weight"]).sum() > 0


def test_reused_buffers_are_stable_and_views_for_smaller_batches(rng):
    conv = L.Conv2d(1, 2, 3)
    conv.reuse_buffers = True
    y1 = conv.forward(rng.standard_normal((8, 1, 6, 6)).astype(np.float32))
    y2 = conv.forward(rng.standard_normal((8, 1, 6, 6)).astype(np.float32))
    assert y1 is not None and np.shares_memory(y1, y2) and y1.ctypes.data == y2.ctypes.data
    y3 = conv.forward(rng.standard_normal((3, 1, 6, 6)).astype(np.float32))
    assert y3.shape[0] == 3 and y3.ctypes.data == y1.ctypes.data and y3.flags.c_contiguous
    fresh = L.Conv2d(1, 2, 3)
    a = fresh.forward(np.ones((2, 1, 6, 6), np.float32))
    b = fresh.forward(np.ones((2, 1, 6, 6), np.float32))
    assert not np.shares_memory(a, b)  # used on its own, a layer returns fresh arrays


def test_channels_last_input_gets_a_hint():
    with pytest.raises(ValueError, match=r"expected 3 channels.*channels-last.*transpose\(0, 3, 1, 2\)"):
        L.Conv2d(3, 4, 3).forward(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"channels-last.*transpose\(0, 2, 1\)"):
        L.Conv1d(6, 4, 3).forward(np.zeros((2, 50, 6), np.float32))
    with pytest.raises(ValueError, match=r"expected 3 channels at axis 1.*\(2, 5, 8, 8\)$"):
        L.Conv2d(3, 4, 3).forward(np.zeros((2, 5, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"Linear expected input of shape \(N, \.\.\., 400\).*Flatten"):
        L.Linear(400, 10).forward(np.zeros((2, 16, 5, 5), np.float32))


def test_dropout(rng):
    set_random_seed(3)
    d = L.Dropout(0.25)
    x = rng.standard_normal((200, 50)).astype(np.float32)
    y = d.forward(x)
    dropped = y == 0
    assert 0.2 < dropped.mean() < 0.3
    np.testing.assert_allclose(y[~dropped], x[~dropped] / 0.75, rtol=1e-6)
    dy = np.ones_like(x)
    np.testing.assert_array_equal(d.backward(dy), np.where(dropped, 0, 1 / np.float32(0.75)))
    set_random_seed(3)
    np.testing.assert_array_equal(L.Dropout(0.25).forward(x), y)  # same seed, same mask
    d.eval()
    assert d.forward(x) is x and d.backward(dy) is dy
    with pytest.raises(ValueError, match=r"p must be a number in \[0, 1\)"):
        L.Dropout(1.0)


@pytest.mark.parametrize("name", LAYERS)
def test_config_round_trip(name, rng):
    factory, shape = LAYERS[name]
    layer = factory()
    clone = type(layer).from_config(layer.get_config())
    assert repr(clone) == repr(layer)
    for k in layer.params:
        clone.params[k][...] = layer.params[k]
    x = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(clone.forward(x), layer.forward(x))


@pytest.mark.parametrize("make,exc,msg", [
    (lambda: L.Conv2d(0, 4, 3), ValueError, "in_channels must be >= 1"),
    (lambda: L.Conv2d(3, 4, (3, 0)), ValueError, "kernel_size must be >= 1"),
    (lambda: L.Conv2d(3, 4, 3, stride=0), ValueError, "stride must be >= 1"),
    (lambda: L.Conv2d(3, 4, 3, padding=-1), ValueError, "padding must be >= 0"),
    (lambda: L.Conv2d(3, 4, 3, padding="full"), ValueError, "'valid' or 'same'"),
    (lambda: L.Conv2d(3.0, 4, 3), TypeError, "in_channels must be an int"),
    (lambda: L.Conv2d(6, 4, 3, groups=3), ValueError, r"out_channels \(4\) must both be divisible by groups \(3\)"),
    (lambda: L.Conv2d(5, 10, 3, groups=2), ValueError, r"in_channels \(5\) and out_channels"),
    (lambda: L.Conv2d(4, 4, 3, groups=0), ValueError, "groups must be >= 1"),
    (lambda: L.Conv1d(4, 4, 3, groups=-4), ValueError, "groups must be >= 1"),
    (lambda: L.Conv1d(4, 4, 3, groups=2.0), TypeError, "groups must be an int"),
    (lambda: L.MaxPool2d(0), ValueError, "kernel_size must be >= 1"),
    (lambda: L.Linear(10, -1), ValueError, "out_features must be >= 1"),
    (lambda: L.Dropout("half"), TypeError, "p must be a number"),
])
def test_bad_constructor_arguments(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


def test_per_shape_plans_follow_shape_and_setting_changes(rng):
    """Layers work out per input shape once (_plans): alternating shapes, a setting changed
    after construction and a bad input after good ones behave as on a first call."""
    pool = L.MaxPool2d(2)
    pool.reuse_buffers = True
    for shape in [(4, 3, 8, 8), (2, 3, 8, 8), (4, 3, 6, 10), (4, 3, 8, 8)]:
        x = exact_ints(rng, *shape)
        y = pool.forward(x)
        np.testing.assert_array_equal(y, ref.max_pool2d(x, (2, 2), (2, 2))[0])
        dy = exact_ints(rng, *y.shape)
        dx = pool.backward(dy)
        assert dx.shape == shape
    pool.padding = (1, 1)  # settings are part of the plan's key
    x = exact_ints(rng, 2, 3, 8, 8)
    np.testing.assert_array_equal(pool.forward(x), ref.max_pool2d(x, (2, 2), (2, 2), (1, 1, 1, 1))[0])
    with pytest.raises(ValueError, match=r"MaxPool2d expected input with 4 dimensions"):
        pool.forward(np.zeros((3, 8, 8), np.float32))
    conv = L.Conv2d(3, 2, 3)
    conv.reuse_buffers = True
    conv.forward(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"expected 3 channels at axis 1"):
        conv.forward(np.zeros((2, 4, 8, 8), np.float32))
    conv.padding = (1, 1)
    assert conv.forward(np.zeros((2, 3, 8, 8), np.float32)).shape == (2, 2, 8, 8)
    relu = L.ReLU()
    relu.reuse_buffers = True
    a = relu.forward(np.ones((4, 5), np.float32))
    b = relu.forward(np.ones((2, 5), np.float32))
    assert b.ctypes.data == a.ctypes.data  # still a view of the one buffer
    np.testing.assert_array_equal(relu.backward(np.full((2, 5), 3, np.float32)), np.full((2, 5), 3))
    flat = L.Flatten()
    assert flat.forward([[1, 2], [3, 4]]).shape == (2, 2)  # array-likes still accepted
    assert flat.backward([[1, 2], [3, 4]]).shape == (2, 2)


def test_depthwise_separable_block_trains_and_round_trips(tmp_path, rng):
    # MobileNet's block: depthwise 3x3 (groups = channels, here multiplier 2) then pointwise
    # 1x1; the loss must fall, and save / load must keep groups (config) and every weight.
    import cnnkit
    cnnkit.set_random_seed(3)
    m = cnnkit.Sequential([L.Conv2d(1, 8, 3, padding=1), L.ReLU(),
                           L.Conv2d(8, 16, 3, stride=2, padding=1, groups=8, bias=False), L.ReLU(),
                           L.Conv2d(16, 16, 1), L.ReLU(), L.Flatten(), L.Linear(256, 3)],
                          input_shape=(1, 8, 8))
    m.compile(optimizer="adam", loss="cross_entropy")
    x = rng.standard_normal((96, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 96)
    x[y == 1, :, :4] += 1.5  # learnable: class 1 is bright on top, class 2 on the left
    x[y == 2, :, :, :4] += 1.5
    first = m.evaluate(x, y, verbose=0)
    m.fit(x, y, epochs=15, batch_size=16, verbose=0)
    last = m.evaluate(x, y, verbose=0)
    first, last = (v["loss"] if isinstance(v, dict) else v for v in (first, last))
    assert last < 0.5 * first, (first, last)
    path = tmp_path / "dws.cnnkit"
    m.save(path)
    m2 = cnnkit.load_model(path)
    assert m2.layers[2].groups == 8 and m2.layers[2].params["weight"].shape == (16, 1, 3, 3)
    np.testing.assert_array_equal(m2.predict(x), m.predict(x))
