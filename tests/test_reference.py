"""The float64 references are themselves checked: each backward against central finite
differences of its forward (float64, step 1e-6: worst error ~1e-7 on this machine), on tiny
shapes with stride, padding (asymmetric too) and dilation."""
import numpy as np
import pytest

import reference as ref


def gradcheck(forward, backward_grads, inputs, rng, tol=1e-6):
    """forward(*inputs) -> y; backward_grads(dy, *inputs) -> grads of each input, in order.
    Checks d(sum(y * dy))/d(input) for every input."""
    y = forward(*inputs)
    dy = rng.standard_normal(np.shape(y))
    grads = backward_grads(dy, *inputs)
    for i, (x, g) in enumerate(zip(inputs, grads)):
        def loss(v, i=i):
            args = list(inputs)
            args[i] = v
            return float(np.sum(forward(*args) * dy))
        num = ref.numerical_grad(loss, x)
        np.testing.assert_allclose(g, num, rtol=tol, atol=tol, err_msg=f"input {i}")


CONV2D_CASES = {
    "plain": dict(shape=(2, 2, 5, 6), oc=3, k=(3, 3), stride=(1, 1), pads=(0, 0, 0, 0), dil=(1, 1)),
    "stride_pad": dict(shape=(1, 2, 6, 5), oc=2, k=(3, 2), stride=(2, 3), pads=(1, 1, 2, 2), dil=(1, 1)),
    "asym_pad": dict(shape=(1, 1, 5, 5), oc=2, k=(2, 2), stride=(2, 2), pads=(0, 1, 0, 1), dil=(1, 1)),
    "dilated": dict(shape=(1, 2, 7, 6), oc=2, k=(2, 3), stride=(1, 2), pads=(1, 0, 1, 1), dil=(2, 2)),
    "groups3": dict(shape=(2, 6, 5, 4), oc=9, k=(2, 2), stride=(1, 2), pads=(1, 0, 0, 1), dil=(1, 1), groups=3),
    "depthwise_mult2": dict(shape=(1, 3, 6, 5), oc=6, k=(3, 2), stride=(2, 1), pads=(1, 1, 0, 1), dil=(1, 2),
                            groups=3),
}


@pytest.mark.parametrize("case", CONV2D_CASES.values(), ids=CONV2D_CASES.keys())
def test_conv2d_reference_gradients(case, rng):
    x = rng.standard_normal(case["shape"])
    groups = case.get("groups", 1)
    w = rng.standard_normal((case["oc"], case["shape"][1] // groups) + case["k"])
    b = rng.standard_normal(case["oc"])
    args = dict(stride=case["stride"], pads=case["pads"], dilation=case["dil"], groups=groups)
    gradcheck(lambda x, w, b: ref.conv2d(x, w, b, **args),
              lambda dy, x, w, b: ref.conv2d_backward(dy, x, w, **args), [x, w, b], rng)


def test_conv1d_reference_gradients(rng):
    x, w, b = rng.standard_normal((2, 2, 9)), rng.standard_normal((3, 2, 3)), rng.standard_normal(3)
    args = dict(stride=2, pads=(1, 2), dilation=2)
    gradcheck(lambda x, w, b: ref.conv1d(x, w, b, **args),
              lambda dy, x, w, b: ref.conv1d_backward(dy, x, w, **args), [x, w, b], rng)


def test_conv1d_grouped_reference_gradients(rng):
    x, w, b = rng.standard_normal((2, 4, 9)), rng.standard_normal((6, 2, 3)), rng.standard_normal(6)
    args = dict(stride=2, pads=(1, 2), dilation=2, groups=2)
    gradcheck(lambda x, w, b: ref.conv1d(x, w, b, **args),
              lambda dy, x, w, b: ref.conv1d_backward(dy, x, w, **args), [x, w, b], rng)


def test_conv2d_grouped_reference_by_definition(rng):
    """Groups from the formula: each output channel sums its own group's channels only, so a
    grouped conv is the per-group ordinary convs stacked along channels; the depthwise output
    oc = c*M + m is the 2-D correlation of channel c with kernel oc."""
    x, w = rng.standard_normal((2, 6, 5, 5)), rng.standard_normal((4, 3, 3, 3))
    y = ref.conv2d(x, w, pads=(1, 1, 1, 1), groups=2)
    parts = [ref.conv2d(x[:, 3 * g:3 * g + 3], w[2 * g:2 * g + 2], pads=(1, 1, 1, 1)) for g in range(2)]
    np.testing.assert_allclose(y, np.concatenate(parts, axis=1), rtol=1e-12)
    wd = rng.standard_normal((12, 1, 3, 3))
    yd = ref.conv2d(x, wd, stride=(2, 2), groups=6)
    assert yd.shape == (2, 12, 2, 2)
    assert np.isclose(yd[1, 7, 1, 0], np.sum(x[1, 3, 2:5, 0:3] * wd[7, 0]))


def test_conv2d_reference_by_definition(rng):
    """One output element summed by hand from the formula."""
    x, w = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((1, 2, 3, 3))
    y = ref.conv2d(x, w, stride=(2, 2), pads=(1, 1, 1, 1))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    assert y.shape == (1, 1, 3, 3)
    assert np.isclose(y[0, 0, 1, 2], np.sum(xp[0, :, 2:5, 4:7] * w[0]))


@pytest.mark.parametrize("pads", [(0, 0, 0, 0), (1, 0, 1, 1)])
def test_avg_pool_reference_gradients(pads, rng):
    x = rng.standard_normal((2, 2, 5, 6))
    for cip in (True, False):
        args = dict(kernel=(2, 3), stride=(2, 2), pads=pads, count_include_pad=cip)
        gradcheck(lambda x: ref.avg_pool2d(x, **args),
                  lambda dy, x: [ref.avg_pool2d_backward(dy, x.shape, **args)], [x], rng)


def test_max_pool_reference_gradients(rng):
    x = rng.permutation(2 * 2 * 5 * 6).reshape(2, 2, 5, 6).astype(np.float64)  # no ties
    args = dict(kernel=(3, 2), stride=(2, 2), pads=(1, 1, 1, 1))
    gradcheck(lambda x: ref.max_pool2d(x, **args)[0],
              lambda dy, x: [ref.max_pool2d_backward(dy, ref.max_pool2d(x, **args)[1], x.shape)],
              [x], rng)


def test_max_pool_reference_indices():
    x = np.array([[[[1.0, 5.0, 2.0], [7.0, 0.0, 7.0], [3.0, np.nan, 4.0]]]])
    y, idx = ref.max_pool2d(x, (2, 2), (1, 1))
    assert idx.tolist() == [[[[3, 5], [7, 7]]]]
    assert np.isnan(y[0, 0, 1]).all() and y[0, 0, 0].tolist() == [7.0, 7.0]


def test_dense_and_elementwise_reference_gradients(rng):
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    gradcheck(ref.linear, lambda dy, x, w, b: ref.linear_backward(dy, x, w), [x, w, b], rng)
    z = rng.standard_normal((3, 7)) * 3
    gradcheck(ref.sigmoid, lambda dy, z: [ref.sigmoid_backward(dy, ref.sigmoid(z))], [z], rng)
    gradcheck(ref.tanh, lambda dy, z: [ref.tanh_backward(dy, ref.tanh(z))], [z], rng)
    gradcheck(ref.relu, lambda dy, z: [ref.relu_backward(dy, ref.relu(z))], [z], rng)
    gradcheck(ref.softmax, lambda dy, z: [ref.softmax_backward(dy, ref.softmax(z))], [z], rng)
    gradcheck(lambda z: ref.softmax(z, axis=0),
              lambda dy, z: [ref.softmax_backward(dy, ref.softmax(z, axis=0), axis=0)], [z], rng)
    gradcheck(ref.global_avg_pool2d,
              lambda dy, x: [ref.global_avg_pool2d_backward(dy, x.shape)],
              [rng.standard_normal((2, 3, 2, 3))], rng)


def test_cross_entropy_reference(rng):
    z, labels = rng.standard_normal((4, 6)) * 5, np.array([0, 5, 2, 2])
    num = ref.numerical_grad(lambda v: ref.cross_entropy(v, labels), z)
    np.testing.assert_allclose(ref.cross_entropy_backward(z, labels), num, rtol=1e-6, atol=1e-7)
    # log-sum-exp with the max subtracted: huge logits stay finite
    assert np.isfinite(ref.cross_entropy(np.array([[1000.0, -1000.0]]), [1]))
    assert np.isclose(ref.cross_entropy(np.zeros((2, 4)), [1, 3]), np.log(4))


# --- batch norm, locally connected, Lp and adaptive pooling, padding ----------------------------

@pytest.mark.parametrize("shape", [(3, 2, 2, 3), (4, 3), (2, 3, 4)], ids=["2d", "1d_nc", "1d_ncl"])
def test_batch_norm_reference_gradients(shape, rng):
    x, w, b = rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    gradcheck(lambda x, w, b: ref.batch_norm_train(x, w, b, eps=1e-3),
              lambda dy, x, w, b: ref.batch_norm_train_backward(dy, x, w, eps=1e-3), [x, w, b], rng)
    mean, var = rng.standard_normal(shape[1]), rng.random(shape[1]) + 0.5
    gradcheck(lambda x, w, b: ref.batch_norm(x, mean, var, w, b, eps=1e-3),
              lambda dy, x, w, b: ref.batch_norm_eval_backward(dy, x, mean, var, w, eps=1e-3), [x, w, b], rng)


def test_batch_norm_reference_by_definition(rng):
    x = rng.standard_normal((5, 2, 3))
    y = ref.batch_norm_train(x, eps=0.0)
    np.testing.assert_allclose(y.mean(axis=(0, 2)), 0, atol=1e-12)
    np.testing.assert_allclose((y ** 2).mean(axis=(0, 2)), 1, atol=1e-12)
    _, var, unbiased = ref.batch_norm_stats(x)
    np.testing.assert_allclose(unbiased, x.transpose(1, 0, 2).reshape(2, -1).var(axis=1, ddof=1))
    np.testing.assert_allclose(var, x.transpose(1, 0, 2).reshape(2, -1).var(axis=1))


@pytest.mark.parametrize("position_bias", [True, False])
@pytest.mark.parametrize("stride,pads", [((1, 1), (0, 0, 0, 0)), ((2, 1), (1, 0, 1, 2))])
def test_locally_connected_reference_gradients(stride, pads, position_bias, rng):
    x = rng.standard_normal((2, 2, 4, 5))
    OH = (4 + pads[0] + pads[1] - 2) // stride[0] + 1
    OW = (5 + pads[2] + pads[3] - 3) // stride[1] + 1
    w = rng.standard_normal((OH, OW, 3, 2, 2, 3))
    b = rng.standard_normal((3, OH, OW) if position_bias else 3)
    gradcheck(lambda x, w, b: ref.locally_connected2d(x, w, b, stride, pads),
              lambda dy, x, w, b: ref.locally_connected2d_backward(dy, x, w, stride, pads, position_bias),
              [x, w, b], rng)


def test_locally_connected_reference_with_shared_weights_is_conv(rng):
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 2))
    args = dict(stride=(2, 1), pads=(1, 1, 0, 1))
    y = ref.conv2d(x, w, **args)
    wl = np.broadcast_to(w, y.shape[2:] + w.shape)
    np.testing.assert_allclose(ref.locally_connected2d(x, wl, **args), y, atol=1e-12)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 1.5])
def test_lp_pool_reference_gradients(p, rng):
    x = rng.random((2, 2, 5, 6)) + 0.1  # positive: fractional powers stay real
    gradcheck(lambda x: ref.lp_pool2d(x, p, (2, 3), (2, 2)),
              lambda dy, x: [ref.lp_pool2d_backward(dy, x, p, (2, 3), (2, 2))], [x], rng)


@pytest.mark.parametrize("size", [(3, 4), (1, 1), (5, 2), (7, 7)])
def test_adaptive_avg_pool_reference_gradients(size, rng):
    x = rng.standard_normal((2, 2, 5, 6))
    gradcheck(lambda x: ref.adaptive_avg_pool2d(x, size),
              lambda dy, x: [ref.adaptive_avg_pool2d_backward(dy, x.shape)], [x], rng)


def test_adaptive_bins_are_pytorch_s():
    assert ref.adaptive_bins(5, 3) == [(0, 2), (1, 4), (3, 5)]
    assert ref.adaptive_bins(4, 2) == [(0, 2), (2, 4)]
    assert ref.adaptive_bins(2, 5) == [(0, 1), (0, 1), (0, 2), (1, 2), (1, 2)]


@pytest.mark.parametrize("pads", [(1, 2, 0, 3), (-1, 2, 1, -2), (0, 0, 0, 0)])
def test_pad_reference_gradients(pads, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    gradcheck(lambda x: ref.pad2d(x, pads), lambda dy, x: [ref.pad2d_backward(dy, x.shape, pads)], [x], rng)
