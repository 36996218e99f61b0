"""Property-based tests (hypothesis) of every layer, the containers, the losses and the
optimizers, against the float64 references of tests/reference.py (the functional ops themselves
are in test_properties.py, whose docstring gives the profiles and commands).

Layers run a drawn sequence of one to three inputs (batch sizes 0, 1 and odd ones; the spatial
size may change between calls), on their own (fresh arrays) or with ``reuse_buffers`` on (as in
a model: cached plans and output arrays, a smaller batch seeing a view of the larger one's
buffer), and every forward output, input gradient and parameter gradient is held to the
reference with TESTING.md's tolerances. Invalid settings raise ValueError (at construction or at
the first forward that does not fit).

Covered: Conv2d, Conv1d, MaxPool2d, MaxPool1d, AvgPool2d, AvgPool1d, GlobalAvgPool2d, LPPool2d,
AdaptiveAvgPool2d, ZeroPad2d, Linear, ReLU, Sigmoid, Tanh, Softmax, Flatten, Dropout (eval:
identity; train: mask values, scaling, keep rate, reproducibility), BatchNorm2d and BatchNorm1d
(train and eval, momentum None, affine off, track_running_stats off), LocallyConnected2d,
Residual (identity and explicit shortcut), Concat, the losses CrossEntropy (labels and class
probabilities), BinaryCrossEntropy, MeanSquaredError, and the optimizers SGD (momentum,
Nesterov, weight decay) and Adam over several steps against their update formulas. A random
Sequential (fused ReLU + MaxPool2d, in-place activations and gradients, reused buffers, changing
batch sizes) must give bit for bit what its layers give run one by one on fresh arrays.
"""
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import assume, event, example, given, strategies as st  # noqa: E402

import cnnkit  # noqa: E402
from cnnkit import layers as L, losses, optim  # noqa: E402

import reference as R  # noqa: E402
from helpers import assert_scaled_close  # noqa: E402
from test_properties import (RTOL, batches, close, conv_cases, conv_valid, counts, data, kinds,  # noqa: E402
                             pool_cases, pool_valid, resolve_pads, seeds)


def check(actual, expected, scale, what, rtol=RTOL, atol=1e-7):
    assert_scaled_close(actual, expected, scale, rtol=rtol, atol=atol, what=what)


def run(layer, x, dy):
    """(y, dx, grads) copies: with reuse_buffers the layer's arrays are overwritten next call."""
    y = np.array(layer.forward(x), copy=True)
    dx = layer.backward(dy)
    return y, None if dx is None else np.array(dx, copy=True), {k: g.copy() for k, g in layer.grads.items()}


# --- convolution layers ------------------------------------------------------------------------

@given(case=conv_cases(2), later=st.lists(batches, max_size=2), reuse=st.booleans(), trainable=st.booleans(),
       input_grad=st.booleans(), seed=seeds)
def test_conv2d_layer_matches_reference(case, later, reuse, trainable, input_grad, seed):
    n, c, oc, g, (h, w), kernel, stride, dil, padding, with_bias, _ = case
    if isinstance(padding, tuple) and len(padding) == 4:
        padding = padding[::2]  # layers pad symmetrically: (top, left)
    rng = np.random.default_rng(seed)
    layer = L.Conv2d(c, oc, kernel, stride=stride, padding=padding, dilation=dil, groups=g, bias=with_bias)
    layer.reuse_buffers = reuse
    layer.trainable, layer.input_grad = trainable, input_grad  # frozen: no weight gradients written
    stale = {k: np.full_like(v, np.nan) for k, v in layer.grads.items()}
    for k, v in stale.items():
        layer.grads[k][...] = v
    wt = data(rng, "normal", oc, c // g, *kernel)
    layer.params["weight"][...] = wt
    b = data(rng, "normal", oc) if with_bias else None
    if with_bias:
        layer.params["bias"][...] = b
    pads = resolve_pads(padding, (n, c, h, w), kernel, stride, dil)
    if not conv_valid((h, w), kernel, dil, pads):
        event("invalid: ValueError")
        with pytest.raises(ValueError):
            layer.forward(np.zeros((n, c, h, w), np.float32))
        return
    for m in [n] + later:
        x = data(rng, "normal", m, c, h, w)
        ref = R.conv2d(x, wt, b, stride, pads, dil, g)
        dy = data(rng, "normal", *ref.shape)
        y, dx, grads = run(layer, x, dy)
        check(y, ref, R.conv2d(np.abs(x), np.abs(wt), None if b is None else np.abs(b), stride, pads, dil, g),
              "Conv2d forward")
        rdx, rdw, rdb = R.conv2d_backward(dy, x, wt, stride, pads, dil, g)
        sdx, sdw, sdb = R.conv2d_backward(np.abs(dy), np.abs(x), np.abs(wt), stride, pads, dil, g)
        if input_grad:
            check(dx, rdx, sdx, "Conv2d grad_input")
        else:
            assert dx is None
        if not trainable:  # the grads arrays are left alone
            for k, v in grads.items():
                np.testing.assert_array_equal(v, stale[k])
            continue
        check(grads["weight"], rdw, sdw, "Conv2d grad_weight")
        if with_bias:
            check(grads["bias"], rdb, sdb, "Conv2d grad_bias")
    assert layer.output_shape((c, h, w)) == ref.shape[1:]


@given(case=conv_cases(1), later=st.lists(batches, max_size=2), reuse=st.booleans(), seed=seeds)
def test_conv1d_layer_matches_reference(case, later, reuse, seed):
    n, c, oc, g, (length,), (k,), (s,), (d,), padding, with_bias, _ = case
    if isinstance(padding, tuple):
        padding = padding[0]
    rng = np.random.default_rng(seed)
    layer = L.Conv1d(c, oc, k, stride=s, padding=padding, dilation=d, groups=g, bias=with_bias)
    layer.reuse_buffers = reuse
    wt = data(rng, "normal", oc, c // g, k)
    layer.params["weight"][...] = wt
    b = data(rng, "normal", oc) if with_bias else None
    if with_bias:
        layer.params["bias"][...] = b
    pads = resolve_pads(padding, (n, c, length), (k,), (s,), (d,))
    if not conv_valid((length,), (k,), (d,), pads):
        event("invalid: ValueError")
        with pytest.raises(ValueError):
            layer.forward(np.zeros((n, c, length), np.float32))
        return
    for m in [n] + later:
        x = data(rng, "normal", m, c, length)
        ref = R.conv1d(x, wt, b, s, pads, d, g)
        dy = data(rng, "normal", *ref.shape)
        y, dx, grads = run(layer, x, dy)
        check(y, ref, R.conv1d(np.abs(x), np.abs(wt), None if b is None else np.abs(b), s, pads, d, g),
              "Conv1d forward")
        rdx, rdw, rdb = R.conv1d_backward(dy, x, wt, s, pads, d, g)
        sdx, sdw, sdb = R.conv1d_backward(np.abs(dy), np.abs(x), np.abs(wt), s, pads, d, g)
        check(dx, rdx, sdx, "Conv1d grad_input")
        check(grads["weight"], rdw, sdw, "Conv1d grad_weight")
        if with_bias:
            check(grads["bias"], rdb, sdb, "Conv1d grad_bias")


@given(c=st.integers(1, 17), oc=st.integers(1, 17), g=st.integers(1, 5), k=st.integers(-1, 3),
       s=st.integers(-1, 3), d=st.integers(-1, 3), p=st.integers(-2, 2))
def test_conv_layer_settings_are_checked_at_construction(c, oc, g, k, s, d, p):
    valid = c % g == 0 and oc % g == 0 and k >= 1 and s >= 1 and d >= 1 and p >= 0
    for cls in (L.Conv2d, L.Conv1d):
        if valid:
            cls(c, oc, k, stride=s, padding=p, dilation=d, groups=g)
        else:
            event("invalid: ValueError")
            with pytest.raises(ValueError):
                cls(c, oc, k, stride=s, padding=p, dilation=d, groups=g)


# --- pooling and padding layers ----------------------------------------------------------------

def pool1d_settings(kernel, stride, padding):
    """A 2-D pool case's 1-D counterpart on (N, C, W), made of the second entry of every
    setting: the 1-D layer's (kernel, stride, padding) arguments, and the same pool as the 2-D
    reference sees it (h = 1, kernel (1, k), stride (1, s), padding (0, p) or the string)."""
    pad = padding if isinstance(padding, (int, str)) else padding[1]
    args = (kernel[1], None if stride is None else stride[1], pad)
    return args, (1, (1, kernel[1]), None if stride is None else (1, stride[1]),
                  pad if isinstance(pad, str) else (0, pad))


def pool_geometry_or_refusal(layer, one_d, n, c, h, w, kernel, stride, padding):
    """(stride, pads) of a pool layer's case for the reference; for an invalid case (window
    larger than the padded input, padding over half the window) None, after checking that
    the layer's forward raises ValueError."""
    s = kernel if stride is None else stride
    pads = resolve_pads(padding, (n, c, h, w), kernel, s, (1, 1))
    if pool_valid((h, w), kernel, pads):
        return s, pads
    event("invalid: ValueError")
    with pytest.raises(ValueError):
        layer.forward(np.zeros((n, c, w) if one_d else (n, c, h, w), np.float32))
    return None


@pytest.mark.parametrize("one_d", [False, True], ids=["MaxPool2d", "MaxPool1d"])
@given(case=pool_cases(2), later=st.lists(batches, max_size=2), reuse=st.booleans(), kind=kinds, seed=seeds)
def test_max_pool_layers_match_reference(case, one_d, later, reuse, kind, seed):
    n, c, (h, w), kernel, stride, padding = case
    if isinstance(padding, tuple) and len(padding) == 4:
        padding = padding[::2]
    if one_d:
        args, (h, kernel, stride, padding) = pool1d_settings(kernel, stride, padding)
        layer = L.MaxPool1d(*args)
    else:
        layer = L.MaxPool2d(kernel, stride, padding)
    layer.reuse_buffers = reuse
    geometry = pool_geometry_or_refusal(layer, one_d, n, c, h, w, kernel, stride, padding)
    if geometry is None:
        return
    s, pads = geometry
    rng = np.random.default_rng(seed)
    for m in [n] + later:
        x4 = (rng.integers(-2, 3, size=(m, c, h, w)) if kind == "ints" else rng.standard_normal((m, c, h, w)))
        x4 = x4.astype(np.float32)
        ry, ridx = R.max_pool2d(x4, kernel, s, pads)
        dy4 = data(rng, "normal", *ry.shape)
        squeeze = (lambda a: a[:, :, 0, :]) if one_d else (lambda a: a)
        y, dx, _ = run(layer, squeeze(x4), squeeze(dy4))
        np.testing.assert_array_equal(y, squeeze(ry), err_msg="MaxPool forward")
        close(dx, squeeze(R.max_pool2d_backward(dy4, ridx, x4.shape)), rtol=1e-6, atol=1e-6,
              what="MaxPool grad_input")


@pytest.mark.parametrize("one_d", [False, True], ids=["AvgPool2d", "AvgPool1d"])
@given(case=pool_cases(2), count_include_pad=st.booleans(), later=st.lists(batches, max_size=2),
       reuse=st.booleans(), seed=seeds)
def test_avg_pool_layers_match_reference(case, one_d, count_include_pad, later, reuse, seed):
    n, c, (h, w), kernel, stride, padding = case
    if isinstance(padding, tuple) and len(padding) == 4:
        padding = padding[::2]
    if one_d:
        args, (h, kernel, stride, padding) = pool1d_settings(kernel, stride, padding)
        layer = L.AvgPool1d(*args, count_include_pad)
    else:
        layer = L.AvgPool2d(kernel, stride, padding, count_include_pad)
    layer.reuse_buffers = reuse
    geometry = pool_geometry_or_refusal(layer, one_d, n, c, h, w, kernel, stride, padding)
    if geometry is None:
        return
    s, pads = geometry
    rng = np.random.default_rng(seed)
    squeeze = (lambda a: a[:, :, 0, :]) if one_d else (lambda a: a)
    for m in [n] + later:
        x4 = data(rng, "normal", m, c, h, w)
        ref = R.avg_pool2d(x4, kernel, s, pads, count_include_pad)
        dy4 = data(rng, "normal", *ref.shape)
        y, dx, _ = run(layer, squeeze(x4), squeeze(dy4))
        check(y, squeeze(ref), squeeze(R.avg_pool2d(np.abs(x4), kernel, s, pads, count_include_pad)),
              "AvgPool forward")
        check(dx, squeeze(R.avg_pool2d_backward(dy4, x4.shape, kernel, s, pads, count_include_pad)),
              squeeze(R.avg_pool2d_backward(np.abs(dy4), x4.shape, kernel, s, pads, count_include_pad)),
              "AvgPool grad_input")


@pytest.mark.parametrize("layer_kind", ["global", "adaptive", "lp"],
                         ids=["GlobalAvgPool2d", "AdaptiveAvgPool2d", "LPPool2d"])
@given(sizes=st.lists(st.tuples(batches, st.integers(1, 12), st.integers(1, 40)), min_size=1, max_size=3),
       c=counts, oh=st.one_of(st.none(), st.integers(1, 9)),
       ow=st.integers(1, 9), p=st.sampled_from([1.0, 2.0, 3.0]), kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       reuse=st.booleans(), seed=seeds)
def test_global_adaptive_lp_pool_layers_match_reference(sizes, c, layer_kind, oh, ow, p, kernel, reuse, seed):
    rng = np.random.default_rng(seed)
    layer = {"global": lambda: L.GlobalAvgPool2d(), "adaptive": lambda: L.AdaptiveAvgPool2d((oh, ow)),
             "lp": lambda: L.LPPool2d(p, kernel)}[layer_kind]()
    layer.reuse_buffers = reuse
    for n, h, w in sizes:
        x = data(rng, "normal", n, c, h, w)
        if layer_kind == "lp":
            x = np.abs(x) + np.float32(0.05)
            if kernel[0] > h or kernel[1] > w:
                with pytest.raises(ValueError):
                    layer.forward(x)
                continue
            ref = R.lp_pool2d(x, p, kernel, kernel)
        elif layer_kind == "adaptive":
            size = (h if oh is None else oh, ow)
            ref = R.adaptive_avg_pool2d(x, size)
        else:
            ref = R.global_avg_pool2d(x)
        dy = data(rng, "normal", *ref.shape)
        y, dx, _ = run(layer, x, dy)
        if layer_kind == "lp":
            close(y, ref, rtol=2e-5, atol=1e-6, what="LPPool2d forward")
            check(dx, R.lp_pool2d_backward(dy, x, p, kernel, kernel),
                  R.lp_pool2d_backward(np.abs(dy), x, p, kernel, kernel), "LPPool2d grad_input", rtol=1e-4, atol=1e-6)
        elif layer_kind == "adaptive":
            check(y, ref, R.adaptive_avg_pool2d(np.abs(x), size), "AdaptiveAvgPool2d forward")
            check(dx, R.adaptive_avg_pool2d_backward(dy, x.shape), R.adaptive_avg_pool2d_backward(np.abs(dy), x.shape),
                  "AdaptiveAvgPool2d grad_input")
        else:
            check(y, ref, R.global_avg_pool2d(np.abs(x)), "GlobalAvgPool2d forward")
            check(dx, R.global_avg_pool2d_backward(dy, x.shape), R.global_avg_pool2d_backward(np.abs(dy), x.shape),
                  "GlobalAvgPool2d grad_input")


@given(sizes=st.lists(st.tuples(batches, st.integers(1, 12), st.integers(1, 40)), min_size=1, max_size=3),
       c=counts, padding=st.one_of(st.integers(-3, 4), st.tuples(*[st.integers(-4, 4)] * 4)), reuse=st.booleans(),
       seed=seeds)
def test_zero_pad2d_layer_matches_reference(sizes, c, padding, reuse, seed):
    rng = np.random.default_rng(seed)
    layer = L.ZeroPad2d(padding)
    layer.reuse_buffers = reuse
    l, r, t, b = (padding,) * 4 if isinstance(padding, int) else padding
    tblr = (t, b, l, r)
    for n, h, w in sizes:
        x = data(rng, "normal", n, c, h, w)
        if h + min(t, 0) + min(b, 0) < 0 or w + min(l, 0) + min(r, 0) < 0:
            event("invalid: ValueError")
            with pytest.raises(ValueError):
                layer.forward(x)
            with pytest.raises(ValueError):
                layer.output_shape((c, h, w))
            continue
        ref = R.pad2d(x, tblr)
        dy = data(rng, "normal", *ref.shape)
        y, dx, _ = run(layer, x, dy)
        np.testing.assert_array_equal(y, ref, err_msg="ZeroPad2d forward")
        np.testing.assert_array_equal(dx, R.pad2d_backward(dy, x.shape, tblr), err_msg="ZeroPad2d grad_input")
        assert layer.output_shape((c, h, w)) == ref.shape[1:]


# --- dense, activations, reshaping, dropout -------------------------------------------------------

@given(leads=st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=3), min_size=1, max_size=3), fin=counts,
       fout=counts, with_bias=st.booleans(), reuse=st.booleans(), seed=seeds)
def test_linear_layer_matches_reference(leads, fin, fout, with_bias, reuse, seed):
    rng = np.random.default_rng(seed)
    layer = L.Linear(fin, fout, bias=with_bias)
    layer.reuse_buffers = reuse
    w = data(rng, "normal", fout, fin)
    layer.params["weight"][...] = w
    b = data(rng, "normal", fout) if with_bias else None
    if with_bias:
        layer.params["bias"][...] = b
    for lead in leads:
        x = data(rng, "normal", *lead, fin)
        if x.ndim < 2:
            with pytest.raises(ValueError):
                layer.forward(x)
            continue
        dy = data(rng, "normal", *lead, fout)
        y, dx, grads = run(layer, x, dy)
        check(y, R.linear(x, w, b), R.linear(np.abs(x), np.abs(w), None if b is None else np.abs(b)),
              "Linear forward")
        rdx, rdw, rdb = R.linear_backward(dy, x, w)
        sdx, sdw, sdb = R.linear_backward(np.abs(dy), np.abs(x), np.abs(w))
        check(dx, rdx, sdx, "Linear grad_input")
        check(grads["weight"], rdw, sdw, "Linear grad_weight")
        if with_bias:
            check(grads["bias"], rdb, sdb, "Linear grad_bias")
    with pytest.raises(ValueError):
        layer.forward(data(rng, "normal", 2, fin + 1))


layer_shapes = st.lists(st.integers(0, 9), min_size=1, max_size=4).filter(lambda s: int(np.prod(s)) <= 3000)


@pytest.mark.parametrize("op", ["ReLU", "Sigmoid", "Tanh", "Softmax"])
@given(shapes=st.lists(layer_shapes, min_size=1, max_size=3),
       axis=st.integers(-4, 3), mag=st.sampled_from([0.1, 1.0, 30.0]), reuse=st.booleans(), seed=seeds)
def test_activation_layers_match_reference(op, shapes, axis, mag, reuse, seed):
    rng = np.random.default_rng(seed)
    layer = L.Softmax(axis) if op == "Softmax" else getattr(L, op)()
    layer.reuse_buffers = reuse
    for shape in shapes:
        x = data(rng, "normal", *shape) * np.float32(mag)
        dy = data(rng, "normal", *shape)
        if op == "Softmax":
            if not -len(shape) <= axis < len(shape):
                with pytest.raises(ValueError):
                    layer.forward(x)
                continue
            y, dx, _ = run(layer, x, dy)
            if x.size == 0:
                assert y.shape == dx.shape == x.shape
                continue
            ref = R.softmax(x, axis=axis)
            close(y, ref, rtol=1e-5, atol=1e-7, what="Softmax forward")
            scale = np.abs(ref) * (np.abs(dy) + np.sum(np.abs(dy) * ref, axis=axis, keepdims=True))
            check(dx, R.softmax_backward(dy, ref, axis=axis), scale, "Softmax grad_input", rtol=2e-5)
            continue
        name = op.lower()
        y, dx, _ = run(layer, x, dy)
        close(y, getattr(R, name)(x), rtol=2e-6, atol=1e-7, what=f"{op} forward")
        close(dx, getattr(R, name + "_backward")(dy, y), rtol=1e-6, atol=1e-7, what=f"{op} grad_input")


@given(shape=st.lists(st.integers(0, 6), min_size=1, max_size=5), start=st.integers(-5, 4), end=st.integers(-5, 4),
       seed=seeds)
def test_flatten_matches_reshape(shape, start, end, seed):
    rng = np.random.default_rng(seed)
    x = data(rng, "normal", *shape)
    layer = L.Flatten(start, end)
    nd = len(shape)
    if not (-nd <= start < nd and -nd <= end < nd) or start % nd > end % nd:
        event("invalid: ValueError")
        with pytest.raises(ValueError):
            layer.forward(x)
        return
    s, e = start % nd, end % nd
    want = shape[:s] + [int(np.prod(shape[s:e + 1]))] + shape[e + 1:]
    y = layer.forward(x)
    assert y.shape == tuple(want)
    np.testing.assert_array_equal(y.reshape(-1), x.reshape(-1))
    dy = data(rng, "normal", *want)
    dx = layer.backward(dy)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx.reshape(-1), dy.reshape(-1))


@given(shape=st.lists(st.integers(0, 40), min_size=1, max_size=3).filter(lambda s: int(np.prod(s)) <= 20_000),
       p=st.one_of(st.sampled_from([0.0, 0.1, 0.5, 0.9]), st.floats(0, 0.99)), seed=st.integers(0, 2**31),
       reuse=st.booleans())
def test_dropout_mask_properties(shape, p, seed, reuse):
    rng = np.random.default_rng(seed)
    x = data(rng, "normal", *shape)
    dy = data(rng, "normal", *shape)
    layer = L.Dropout(p)
    layer.reuse_buffers = reuse
    layer.eval()  # evaluation: the identity, forward and backward
    assert layer.forward(x) is x
    assert layer.backward(dy) is dy
    layer.train()
    cnnkit.set_random_seed(seed)
    y = np.array(layer.forward(x), copy=True)
    dx = np.array(layer.backward(dy), copy=True)
    if p == 0.0:
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(dx, dy)
        return
    scale = np.float32(1.0) / (np.float32(1.0) - np.float32(p))
    mask = layer._mask
    assert set(np.unique(mask)).issubset({np.float32(0.0), scale}), np.unique(mask)
    np.testing.assert_array_equal(y, R.dropout(x, mask).astype(np.float32))
    np.testing.assert_array_equal(dx, R.dropout(dy, mask).astype(np.float32))
    kept = int(np.count_nonzero(mask))
    n = mask.size
    sd = np.sqrt(n * p * (1 - p))
    assert abs(kept - n * (1 - p)) <= 6 * sd + 1, (kept, n, p)  # binomial: 6 sigma
    cnnkit.set_random_seed(seed)  # the same seed draws the same mask
    np.testing.assert_array_equal(layer.forward(x), y)


# --- batch normalisation -------------------------------------------------------------------------

@given(rank=st.sampled_from([2, 3, 4]), c=counts, steps=st.lists(st.tuples(st.integers(1, 5), st.integers(1, 6),
       st.integers(1, 13)), min_size=1, max_size=3), momentum=st.one_of(st.none(), st.floats(0, 1)),
       affine=st.booleans(), track=st.booleans(), eps=st.sampled_from([1e-5, 1e-2]), reuse=st.booleans(), seed=seeds)
def test_batch_norm_layers_match_reference(rank, c, steps, momentum, affine, track, eps, reuse, seed):
    rng = np.random.default_rng(seed)
    cls = L.BatchNorm2d if rank == 4 else L.BatchNorm1d
    layer = cls(c, eps=eps, momentum=momentum, affine=affine, track_running_stats=track)
    layer.reuse_buffers = reuse
    w = data(rng, "normal", c) if affine else None
    b = data(rng, "normal", c) if affine else None
    if affine:
        layer.params["weight"][...] = w
        layer.params["bias"][...] = b
    rm, rv = np.zeros(c), np.ones(c)
    for t, (n, hh, ww) in enumerate(steps):
        spatial = {2: (), 3: (ww,), 4: (hh, ww)}[rank]
        x = data(rng, "normal", n, c, *spatial) + np.float32(1.5)
        if x.size // c == 1:  # one value per channel: training is undefined
            event("invalid: ValueError")
            with pytest.raises(ValueError):
                layer.forward(x)
            continue
        dy = data(rng, "normal", *x.shape)
        y, dx, grads = run(layer, x, dy)
        mean, var, var_u = R.batch_norm_stats(x)
        close(y, R.batch_norm(x, mean, var, w, b, eps), rtol=1e-4, atol=1e-4, what="BatchNorm train forward")
        rdx, rdw, rdb = R.batch_norm_train_backward(dy, x, w, eps)
        close(dx, rdx, rtol=1e-3, atol=1e-3, what="BatchNorm train grad_input")
        if affine:
            close(grads["weight"], rdw, rtol=1e-3, atol=1e-3, what="BatchNorm grad_weight")
            close(grads["bias"], rdb, rtol=1e-3, atol=1e-3, what="BatchNorm grad_bias")
        if track:
            tracked = int(layer.buffers["num_batches_tracked"])
            mom = 1.0 / tracked if momentum is None else momentum
            rm, rv = (1 - mom) * rm + mom * mean, (1 - mom) * rv + mom * var_u
            close(layer.buffers["running_mean"], rm, rtol=1e-5, atol=1e-5, what="running_mean")
            close(layer.buffers["running_var"], rv, rtol=1e-4, atol=1e-5, what="running_var")
    layer.eval()
    n, hh, ww = steps[0]
    x = data(rng, "normal", n, c, *{2: (), 3: (ww,), 4: (hh, ww)}[rank])
    dy = data(rng, "normal", *x.shape)
    if not track:  # no running statistics: evaluation uses the batch's, as in training
        if x.size // c == 1:
            with pytest.raises(ValueError):
                layer.forward(x)
            return
        mean, var, _ = R.batch_norm_stats(x)
        y, dx, _ = run(layer, x, dy)
        close(y, R.batch_norm(x, mean, var, w, b, eps), rtol=1e-4, atol=1e-4, what="BatchNorm eval (untracked)")
        return
    rm32, rv32 = layer.buffers["running_mean"].copy(), layer.buffers["running_var"].copy()
    y, dx, grads = run(layer, x, dy)
    close(y, R.batch_norm(x, rm32, rv32, w, b, eps), rtol=1e-5, atol=1e-5, what="BatchNorm eval forward")
    rdx, rdw, rdb = R.batch_norm_eval_backward(dy, x, rm32, rv32, w, eps)
    close(dx, rdx, rtol=1e-4, atol=1e-5, what="BatchNorm eval grad_input")
    np.testing.assert_array_equal(layer.buffers["running_mean"], rm32)  # evaluation does not update them


# --- locally connected ---------------------------------------------------------------------------

@given(later=st.lists(batches, min_size=1, max_size=3), c=st.integers(1, 5), oc=st.integers(1, 9),
       h=st.integers(1, 9), w=st.integers(1, 17), kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), padding=st.one_of(st.integers(0, 2), st.just("same")),
       with_bias=st.booleans(), position_bias=st.booleans(), reuse=st.booleans(), seed=seeds)
def test_locally_connected2d_layer_matches_reference(later, c, oc, h, w, kernel, stride, padding, with_bias,
                                                     position_bias, reuse, seed):
    pads = resolve_pads(padding, (1, c, h, w), kernel, stride, (1, 1))
    if kernel[0] > h + pads[0] + pads[1] or kernel[1] > w + pads[2] + pads[3]:
        event("invalid: ValueError")
        with pytest.raises(ValueError):
            L.LocallyConnected2d(c, oc, kernel, (h, w), stride, padding, with_bias, position_bias)
        return
    rng = np.random.default_rng(seed)
    layer = L.LocallyConnected2d(c, oc, kernel, (h, w), stride, padding, with_bias, position_bias)
    layer.reuse_buffers = reuse
    wt = data(rng, "normal", *layer.params["weight"].shape)
    layer.params["weight"][...] = wt
    b = None
    if with_bias:
        b = data(rng, "normal", *layer.params["bias"].shape)
        layer.params["bias"][...] = b
    for n in later:
        x = data(rng, "normal", n, c, h, w)
        ref = R.locally_connected2d(x, wt, b, stride, pads)
        dy = data(rng, "normal", *ref.shape)
        y, dx, grads = run(layer, x, dy)
        check(y, ref, R.locally_connected2d(np.abs(x), np.abs(wt), None if b is None else np.abs(b), stride, pads),
              "LocallyConnected2d forward")
        rdx, rdw, rdb = R.locally_connected2d_backward(dy, x, wt, stride, pads, position_bias)
        sdx, sdw, sdb = R.locally_connected2d_backward(np.abs(dy), np.abs(x), np.abs(wt), stride, pads, position_bias)
        check(dx, rdx, sdx, "LocallyConnected2d grad_input")
        check(grads["weight"], rdw, sdw, "LocallyConnected2d grad_weight")
        if with_bias:
            check(grads["bias"], rdb, sdb, "LocallyConnected2d grad_bias")
    with pytest.raises(ValueError):  # its weights are per position: another input size does not fit
        layer.forward(data(rng, "normal", 1, c, h + 1, w))


# --- containers ------------------------------------------------------------------------------------

@given(n=batches, c=st.integers(1, 9), h=st.integers(1, 9), w=st.integers(1, 20), k=st.integers(1, 4),
       shortcut=st.sampled_from(["identity", "conv"]), oc=st.integers(1, 9), stride=st.integers(1, 2),
       reuse=st.booleans(), seed=seeds)
def test_residual_matches_reference(n, c, h, w, k, shortcut, oc, stride, reuse, seed):
    rng = np.random.default_rng(seed)
    if shortcut == "identity":
        oc, stride = c, 1
    block = L.Conv2d(c, oc, k, stride=stride, padding="same")
    pads = resolve_pads("same", (n, c, h, w), (k, k), (stride, stride), (1, 1))
    wb = data(rng, "normal", *block.params["weight"].shape)
    bb = data(rng, "normal", oc)
    block.params["weight"][...], block.params["bias"][...] = wb, bb
    sc = None
    if shortcut == "conv":
        sc = L.Conv2d(c, oc, 1, stride=stride, bias=False)
        ws = data(rng, "normal", *sc.params["weight"].shape)
        sc.params["weight"][...] = ws
    res = L.Residual(block, sc)
    res.reuse_buffers = reuse
    x = data(rng, "normal", n, c, h, w)
    yb = R.conv2d(x, wb, bb, (stride, stride), pads)
    ys = x if sc is None else R.conv2d(x, ws, None, (stride, stride))
    if ys.shape != yb.shape:  # a 1x1 stride-2 conv and a "same" conv disagree on nothing: checked anyway
        with pytest.raises(ValueError):
            res.forward(x)
        return
    dy = data(rng, "normal", *yb.shape)
    y, dx, _ = run(res, x, dy)
    scale = R.conv2d(np.abs(x), np.abs(wb), np.abs(bb), (stride, stride), pads) + (
        np.abs(x) if sc is None else R.conv2d(np.abs(x), np.abs(ws), None, (stride, stride)))
    check(y, yb + ys, scale, "Residual forward")
    bdx, bdw, bdb = R.conv2d_backward(dy, x, wb, (stride, stride), pads)
    sbdx, sbdw, sbdb = R.conv2d_backward(np.abs(dy), np.abs(x), np.abs(wb), (stride, stride), pads)
    if sc is None:
        rdx, sdx = bdx + dy, sbdx + np.abs(dy)
    else:
        sdx_, sdw_, _ = R.conv2d_backward(dy, x, ws, (stride, stride))
        adx_, adw_, _ = R.conv2d_backward(np.abs(dy), np.abs(x), np.abs(ws), (stride, stride))
        rdx, sdx = bdx + sdx_, sbdx + adx_
        check(sc.grads["weight"], sdw_, adw_, "Residual shortcut grad_weight")
    check(dx, rdx, sdx, "Residual grad_input")
    check(block.grads["weight"], bdw, sbdw, "Residual block grad_weight")
    check(block.grads["bias"], bdb, sbdb, "Residual block grad_bias")


@given(n=batches, c=st.integers(1, 9), h=st.integers(1, 9), w=st.integers(1, 20),
       branches=st.lists(st.tuples(st.integers(1, 9), st.sampled_from([1, 3, 5])), min_size=1, max_size=4),
       with_pool=st.booleans(), reuse=st.booleans(), seed=seeds)
def test_concat_matches_reference(n, c, h, w, branches, with_pool, reuse, seed):
    rng = np.random.default_rng(seed)
    convs, weights = [], []
    for oc, k in branches:
        conv = L.Conv2d(c, oc, k, padding="same")
        wt, b = data(rng, "normal", oc, c, k, k), data(rng, "normal", oc)
        conv.params["weight"][...], conv.params["bias"][...] = wt, b
        convs.append(conv)
        weights.append((wt, b, k))
    pool = [L.MaxPool2d(3, stride=1, padding=1)] if with_pool else []
    cat = L.Concat(*(convs + pool))
    cat.reuse_buffers = reuse
    x = data(rng, "normal", n, c, h, w)
    outs = [R.conv2d(x, wt, b, (1, 1), resolve_pads("same", x.shape, (k, k), (1, 1), (1, 1))) for wt, b, k in weights]
    scales = [R.conv2d(np.abs(x), np.abs(wt), np.abs(b), (1, 1), resolve_pads("same", x.shape, (k, k), (1, 1), (1, 1)))
              for wt, b, k in weights]
    if with_pool:
        py, pidx = R.max_pool2d(x, (3, 3), (1, 1), (1, 1, 1, 1))
        outs.append(py)
        scales.append(np.abs(py))
    dy = data(rng, "normal", *R.concat(outs).shape)
    y, dx, _ = run(cat, x, dy)
    check(y, R.concat(outs), R.concat(scales), "Concat forward")
    rdx, sdx, start = 0.0, 0.0, 0
    for (wt, b, k), conv in zip(weights, convs):
        part = dy[:, start:start + wt.shape[0]]
        pads = resolve_pads("same", x.shape, (k, k), (1, 1), (1, 1))
        gx, gw, gb = R.conv2d_backward(part, x, wt, (1, 1), pads)
        ax, aw, ab = R.conv2d_backward(np.abs(part), np.abs(x), np.abs(wt), (1, 1), pads)
        check(conv.grads["weight"], gw, aw, "Concat branch grad_weight")
        check(conv.grads["bias"], gb, ab, "Concat branch grad_bias")
        rdx, sdx, start = rdx + gx, sdx + ax, start + wt.shape[0]
    if with_pool:
        part = dy[:, start:]
        rdx = rdx + R.max_pool2d_backward(part, pidx, x.shape)
        sdx = sdx + R.max_pool2d_backward(np.abs(part), pidx, x.shape)
    check(dx, rdx, sdx, "Concat grad_input")


# --- losses ---------------------------------------------------------------------------------------

@given(n=st.integers(1, 17), k=st.integers(1, 33), target=st.sampled_from(["labels", "soft", "one_hot"]),
       mag=st.sampled_from([0.1, 1.0, 20.0]), grad=st.floats(-3, 3), seed=seeds)
def test_cross_entropy_loss_matches_reference(n, k, target, mag, grad, seed):
    rng = np.random.default_rng(seed)
    x = data(rng, "normal", n, k) * np.float32(mag)
    labels = rng.integers(0, k, size=n)
    loss = losses.CrossEntropy()
    if target == "labels":
        value, ref, rgrad = loss(x, labels), R.cross_entropy(x, labels), R.cross_entropy_backward(x, labels, grad)
    else:
        t = np.eye(k, dtype=np.float32)[labels] if target == "one_hot" else R.softmax(
            data(rng, "normal", n, k), axis=1).astype(np.float32)
        value, ref, rgrad = loss(x, t), R.soft_cross_entropy(x, t), R.soft_cross_entropy_backward(x, t, grad)
    assert abs(value - ref) <= 1e-5 * max(1.0, abs(ref)), (value, ref)
    close(loss.backward(grad), rgrad, rtol=1e-5, atol=1e-7, what="CrossEntropy backward")


@pytest.mark.parametrize("kind", ["bce", "mse"])
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=3), mag=st.sampled_from([0.1, 1.0, 30.0]),
       grad=st.floats(-3, 3), seed=seeds)
# found by the thorough profile: x = 9.27, t = 1, where sigmoid(x) - t cancels
@example(shape=[1], mag=30.0, grad=3.0, seed=1)
def test_bce_and_mse_losses_match_reference(shape, kind, mag, grad, seed):
    rng = np.random.default_rng(seed)
    x = data(rng, "normal", *shape) * np.float32(mag)
    if kind == "bce":
        t = rng.random(shape).astype(np.float32)
        t[rng.random(shape) < 0.3] = 1.0
        loss, ref, rgrad = losses.BinaryCrossEntropy(), R.bce_logits(x, t), R.bce_logits_backward(x, t, grad)
        # (sigmoid(x) - t) cancels when t is near sigmoid(x) (x = 9, t = 1): float32 keeps the
        # terms' digits, not the difference's (torch computes the same), so scale by the terms
        scale = (R.sigmoid(x) + np.abs(t)) * abs(grad) / x.size
    else:
        t = data(rng, "normal", *shape)
        loss, ref, rgrad = losses.MeanSquaredError(), R.mse(x, t), R.mse_backward(x, t, grad)
        scale = 2 * (np.abs(x) + np.abs(t)) * abs(grad) / x.size
    value = loss(x, t)
    assert abs(value - ref) <= 1e-5 * max(1.0, abs(ref)), (value, ref)
    check(loss.backward(grad), rgrad, scale, f"{kind} backward", rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError):
        loss(x, np.zeros(tuple(shape) + (2,), np.float32))


# --- optimizers -----------------------------------------------------------------------------------

param_shapes = st.lists(st.lists(st.integers(1, 40), min_size=1, max_size=3).filter(lambda s: np.prod(s) <= 5000),
                        min_size=1, max_size=3)


@given(shapes=param_shapes, steps=st.integers(1, 4), lr=st.sampled_from([0.0, 1e-3, 0.1, 1.0]),
       momentum=st.sampled_from([0.0, 0.5, 0.9]), nesterov=st.booleans(), wd=st.sampled_from([0.0, 1e-2, 0.5]),
       seed=seeds)
def test_sgd_steps_match_formula(shapes, steps, lr, momentum, nesterov, wd, seed):
    nesterov = nesterov and momentum > 0
    rng = np.random.default_rng(seed)
    params = [data(rng, "normal", *s) for s in shapes]
    ref = [(p.astype(np.float64), None) for p in params]
    opt = optim.SGD(learning_rate=lr, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    for _ in range(steps):
        grads = [data(rng, "normal", *s) for s in shapes]
        opt.step(params, grads)
        ref = [R.sgd_step(p, g, buf, lr, momentum, nesterov, wd) for (p, buf), g in zip(ref, grads)]
        for i, (p, (rp, _)) in enumerate(zip(params, ref)):
            close(p, rp, rtol=1e-5, atol=1e-5, what=f"SGD params[{i}]")


@given(shapes=param_shapes, steps=st.integers(1, 4), lr=st.sampled_from([1e-3, 0.1]),
       betas=st.sampled_from([(0.9, 0.999), (0.5, 0.9), (0.0, 0.5)]), eps=st.sampled_from([1e-8, 1e-3]),
       wd=st.sampled_from([0.0, 1e-2]), seed=seeds)
def test_adam_steps_match_formula(shapes, steps, lr, betas, eps, wd, seed):
    rng = np.random.default_rng(seed)
    params = [data(rng, "normal", *s) for s in shapes]
    ref = [(p.astype(np.float64), np.zeros(p.shape), np.zeros(p.shape)) for p in params]
    opt = optim.Adam(learning_rate=lr, betas=betas, eps=eps, weight_decay=wd)
    for t in range(1, steps + 1):
        grads = [data(rng, "normal", *s) for s in shapes]
        opt.step(params, grads)
        ref = [R.adam_step(p, g, m, v, t, lr, betas[0], betas[1], eps, wd) for (p, m, v), g in zip(ref, grads)]
        for i, (p, (rp, _, _)) in enumerate(zip(params, ref)):
            # each step moves a parameter by about lr: its float32 error is a small part of that
            close(p, rp, rtol=1e-6, atol=1e-5 * lr + 1e-6, what=f"Adam params[{i}] step {t}")


# --- regressions found by the properties above -----------------------------------------------------

@pytest.mark.parametrize("start, end, shape", [(2, -1, (4, 3)), (0, 3, (4, 3, 2)), (1, -1, (5,)), (-3, -1, (4, 3))])
def test_flatten_dims_out_of_range_raise(start, end, shape):
    """Flatten wrapped its dims modulo the input's rank: Flatten(2) on (N, F) folded the batch
    into the features, (4, 3) -> (12,); PyTorch raises. Now a ValueError naming the range."""
    with pytest.raises(ValueError, match="dims must be in"):
        L.Flatten(start, end).forward(np.zeros(shape, np.float32))


@pytest.mark.parametrize("axis, shape", [(1, (5,)), (3, (2, 4)), (-3, (2, 4))])
def test_softmax_layer_axis_out_of_range_raises(axis, shape):
    """Softmax(axis) took any axis congruent to the last one modulo the rank as the last one:
    Softmax(axis=1) normalised a 1-D input along axis 0 (and its backward then raised)."""
    with pytest.raises(ValueError, match="out of range"):
        L.Softmax(axis).forward(np.zeros(shape, np.float32))


# --- a model's in-place shortcuts change nothing ----------------------------------------------------

@st.composite
def layer_stacks(draw):
    """(input (C, H, W), layers): a random stack that fits together, with ReLU -> MaxPool2d pairs
    (which a model fuses), activations after convolutions (which a model runs in place), batch
    norm, dropout, padding, residual blocks, and a Flatten -> Linear -> Softmax head or not."""
    c, h, w = draw(st.integers(1, 5)), draw(st.integers(2, 9)), draw(st.integers(2, 17))
    shape = in_shape = (c, h, w)
    stack = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["conv", "conv", "relu_pool", "act", "bn", "dropout", "pad", "avg", "residual"]))
        c, h, w = shape
        if kind == "conv":
            oc, k = draw(st.integers(1, 9)), draw(st.integers(1, 3))
            stack.append(L.Conv2d(c, oc, k, padding=draw(st.sampled_from(["same", 0, 1])),
                                  stride=draw(st.sampled_from([1, 1, 2]))))
        elif kind == "relu_pool" and h >= 2 and w >= 2:
            stack += [L.ReLU(), L.MaxPool2d(2, stride=draw(st.sampled_from([1, 2])))]
        elif kind == "act":
            stack.append(draw(st.sampled_from([L.ReLU, L.Sigmoid, L.Tanh]))())
        elif kind == "bn":
            stack.append(L.BatchNorm2d(c))
        elif kind == "dropout":
            stack.append(L.Dropout(draw(st.sampled_from([0.0, 0.3]))))
        elif kind == "pad":
            stack.append(L.ZeroPad2d(draw(st.integers(0, 2))))
        elif kind == "avg" and h >= 2 and w >= 2:
            stack.append(L.AvgPool2d(2, stride=1, padding=draw(st.integers(0, 1))))
        elif kind == "residual":
            stack.append(L.Residual(L.Conv2d(c, c, draw(st.sampled_from([1, 3])), padding="same")))
        else:
            continue
        try:
            shape = stack[-1].output_shape(stack[-2].output_shape(shape)) if kind == "relu_pool" \
                else stack[-1].output_shape(shape)
        except ValueError:
            stack.pop()
            if kind == "relu_pool":
                stack.pop()
    if draw(st.booleans()):
        stack += [L.Flatten(), L.Linear(int(np.prod(shape)), draw(st.integers(1, 9)))]
        if draw(st.booleans()):
            stack.append(L.Softmax())
    return in_shape, stack


def standalone_copy(layer):
    """A fresh layer of the same config with the same parameter and buffer values."""
    from cnnkit.containers import layer_from_spec, layer_spec, named_arrays
    twin = layer_from_spec(layer_spec(layer))
    theirs = dict(named_arrays(layer))
    for key, arr in named_arrays(twin):
        arr[...] = theirs[key]
    return twin


@given(case=layer_stacks(), batches_=st.lists(st.integers(1, 5), min_size=1, max_size=3), training=st.booleans(),
       seed=seeds)
def test_model_forward_backward_equal_the_layers_run_one_by_one(case, batches_, training, seed):
    """Sequential's shortcuts (in-place activations and gradients, the fused ReLU + max pool,
    reused output arrays, a smaller batch in a view of the larger buffer) must give bit for bit
    what the same layers give run one at a time on fresh arrays."""
    in_shape, stack = case
    assume(stack)
    for a, b in zip(stack, stack[1:]):
        if type(a) is L.ReLU and type(b) is L.MaxPool2d:
            event("fused ReLU + MaxPool2d")
        if isinstance(a, L.Conv2d) and type(b) in (L.ReLU, L.Sigmoid, L.Tanh):
            event("activation in place after a conv")
    rng = np.random.default_rng(seed)
    twins = [standalone_copy(layer) for layer in stack]
    model = cnnkit.Sequential(stack, input_shape=in_shape)
    model.train(training)
    for t in twins:
        t.train(training)
    for n in batches_:
        x = data(rng, "normal", n, *in_shape)
        if training and n == 1 and any(isinstance(layer, L.BatchNorm2d) for layer in stack):
            continue  # batch norm may see one value per channel: an error either way
        seed_drop = int(rng.integers(0, 2**31))  # the same dropout masks on both sides
        cnnkit.set_random_seed(seed_drop)
        y = model.forward(x)
        dy = data(rng, "normal", *y.shape)
        dx = model.backward(dy)
        cnnkit.set_random_seed(seed_drop)
        ry = x
        for t in twins:
            ry = t.forward(ry)
        rdx = dy
        for t in reversed(twins):
            rdx = t.backward(rdx)
        np.testing.assert_array_equal(y, ry, err_msg="model forward")
        np.testing.assert_array_equal(dx, rdx, err_msg="model input gradient")
        for layer, twin in zip(stack, twins):
            for (k, g), (_, tg) in zip(sorted(_grads(layer)), sorted(_grads(twin))):
                np.testing.assert_array_equal(g, tg, err_msg=f"{type(layer).__name__} {k} gradient")


def _grads(layer):
    from cnnkit.containers import leaves
    for i, leaf in enumerate(leaves(layer)):
        for k, g in leaf.grads.items():
            yield f"{i}.{k}", g


@pytest.mark.parametrize("loss", ["bce", "mse", "soft_cross_entropy"])
@given(n=st.integers(1, 4), k=st.integers(1, 6), grad=st.floats(-2, 2), seed=seeds)
def test_loss_references_gradcheck(n, k, loss, grad, seed):
    """The loss references added for these properties, held to central finite differences in
    float64 (as tests/test_reference.py does for the others)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k)) * 3
    t = rng.random((n, k)) if loss != "soft_cross_entropy" else R.softmax(rng.standard_normal((n, k)), axis=1)
    f = getattr(R, "bce_logits" if loss == "bce" else loss)
    df = getattr(R, ("bce_logits" if loss == "bce" else loss) + "_backward")
    np.testing.assert_allclose(df(x, t, grad), grad * R.numerical_grad(lambda v: f(v, t), x), rtol=1e-5, atol=1e-8)
