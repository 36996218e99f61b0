"""Property-based tests (hypothesis) of every op in cnnkit.functional (and the core functions
behind it), forward and backward, against the float64 references of tests/reference.py.

Each property draws random shapes, strides, paddings (symmetric, per-dimension, asymmetric via
the core, "same", "valid"), dilations, groups (depthwise with channel multipliers too) and batch
sizes (0, 1 and odd ones), with channel counts and widths that are not multiples of the SIMD
widths (8 / 16 floats) and sizes around tile edges, and then holds the float32 result to the
reference with TESTING.md's tolerances: |y - ref| <= 1e-5 * conv(|x|, |w|) + 1e-7 for the
conv-like ops (the gradients likewise scaled by the backward of the absolute values), bit for
bit where the inputs are integer-valued (exact float32 sums). Draws that are invalid (kernel
larger than the padded input, pool padding over half the kernel, crops larger than the input)
are not filtered out: the property asserts that they raise ValueError.

Ops covered here: conv2d, conv1d (+ backward; asymmetric padding through _core), max_pool2d,
avg_pool2d, max_pool1d, avg_pool1d (+ backward, count_include_pad), the fused
max_pool2d_relu forward/backward, global_avg_pool2d, linear, relu, sigmoid, tanh, softmax (any
axis), softmax_cross_entropy / cross_entropy (+ backward), batch_norm (train and eval, ranks
2-4, running statistics, + backward), locally_connected2d (+ backward, shared and per-position
bias), lp_pool2d, adaptive_avg_pool2d, zero_pad2d, pad (1-D and 2-D, negative pads crop), and
the merge ops _core.add / concat / concat_backward. Also: backward calls asking for only some
gradients (the others None), 1-3 threads, max-pool backward rejecting indices outside the plane,
and any layout (float64, transposed, strided, list, Fortran order) giving the float32
C-contiguous result bit for bit. The layers, containers (Residual, Concat), Sequential's
in-place shortcuts, Flatten, Dropout, the losses and the optimizers are in
test_properties_layers.py.

Profiles (registered in tests/conftest.py): "ci" (the default: 100 examples per property,
derandomized, so every run tests the same cases) and "thorough" (2,000 fresh examples each):

    CNNKIT_HYPOTHESIS_PROFILE=thorough python -m pytest tests/test_properties*.py
    python -m pytest --hypothesis-profile=thorough tests/test_properties*.py

Add --hypothesis-show-statistics for the example counts per property.
"""
import contextlib

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import assume, event, example, given, note, strategies as st  # noqa: E402

import cnnkit  # noqa: E402
from cnnkit import _core, functional as F  # noqa: E402

import reference as R  # noqa: E402
from helpers import assert_scaled_close  # noqa: E402

RTOL = 1e-5  # TESTING.md: |y - ref| <= 1e-5 * scale + 1e-7

seeds = st.integers(0, 2**32 - 1)
# values: standard normal, or integers in [-4, 4] with ~half zeros (exact float32 sums)
kinds = st.sampled_from(["normal", "ints"])
# a channel / feature count: mostly small, sometimes just around a SIMD width or tile edge
counts = st.one_of(st.integers(1, 5), st.sampled_from([7, 8, 9, 15, 16, 17, 31, 33]))
batches = st.sampled_from([0, 1, 2, 3, 5])


def data(rng, kind, *shape):
    if kind == "ints":
        v = rng.integers(-4, 5, size=shape)
        v[rng.random(shape) < 0.5] = 0
        return v.astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def check(actual, expected, scale, kind, what, rtol=RTOL, atol=1e-7):
    """Scaled tolerance; bit for bit when the inputs were integer-valued."""
    if kind == "ints":
        np.testing.assert_array_equal(np.asarray(actual, np.float64), expected, err_msg=what)
    else:
        assert_scaled_close(actual, expected, scale, rtol=rtol, atol=atol, what=what)


def close(actual, expected, rtol=1e-5, atol=1e-6, what="result"):
    actual = np.asarray(actual)
    assert actual.shape == np.shape(expected), f"{what}: shape {actual.shape} != {np.shape(expected)}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


@contextlib.contextmanager
def threads(n):
    """cnnkit on n threads for the block (the work splits differ: 3 oversubscribes 2 cores)."""
    before = cnnkit.get_num_threads()
    cnnkit.set_num_threads(n)
    try:
        yield
    finally:
        cnnkit.set_num_threads(before)


thread_counts = st.sampled_from([1, 2, 3])
# which gradients a backward call asks for (dx, dw, db): the others must come back None
needs = st.tuples(st.booleans(), st.booleans(), st.booleans())


def check_grads(got, want, scales, need, kind, op):
    for name, g, r, sc, asked in zip(("grad_input", "grad_weight", "grad_bias"), got, want, scales, need):
        if not asked:
            assert g is None, f"{op} {name}: not asked for, got an array"
        else:
            check(g, r, sc, kind, f"{op} {name}")


def raises_value_error(fn, *args, **kwargs):
    with pytest.raises(ValueError):
        fn(*args, **kwargs)


# --- convolution --------------------------------------------------------------------------------

@st.composite
def conv_cases(draw, ndim):
    """(N, C, OC, groups, spatial sizes, kernel, stride, dilation, padding spec, bias, kind).

    A first draw aims at one of the core's paths, so each is drawn often: "direct" (stride and
    dilation 1), "phase" (stride 3 along the width with a wider kernel and >= 16 outputs),
    "plane" (planes over 7x7 outputs: im2col + GEMM), "tiny" (planes of 1-3, where kernels often
    do not fit), or "any"; the structure is dense, grouped
    or depthwise (groups == C, with channel multipliers)."""
    aim = draw(st.sampled_from(["any", "any", "direct", "phase", "plane", "tiny"]))
    structure = draw(st.sampled_from(["dense", "dense", "grouped", "depthwise"]))
    if aim == "phase" and structure == "depthwise":  # depthwise has kernels of its own
        structure = "grouped"
    if structure == "depthwise":  # one input channel per group, a channel multiplier
        groups, cg, ocg = draw(st.sampled_from([2, 3, 4, 7, 9, 16, 17])), 1, draw(st.integers(1, 3))
    elif structure == "grouped":
        groups, cg, ocg = draw(st.integers(2, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    else:
        groups, cg, ocg = 1, draw(counts), draw(counts)
    n = draw(batches)
    # widths to 40, and a few past 47 so that stride-3 convolutions can reach 16 outputs
    widths = st.one_of(st.integers(1, 40), st.sampled_from([47, 48, 49, 63, 64]))
    sizes = [draw(st.integers(1, 12) if i < ndim - 1 else widths) for i in range(ndim)]
    kernel = [draw(st.integers(1, 5)) for _ in range(ndim)]
    stride = [draw(st.sampled_from([1, 1, 2, 3])) for _ in range(ndim)]
    dilation = [draw(st.sampled_from([1, 1, 1, 2, 3])) for _ in range(ndim)]
    if aim == "direct":
        stride, dilation = [1] * ndim, [1] * ndim
    elif aim == "phase":
        stride[-1], dilation[-1] = 3, 1
        kernel[-1] = draw(st.integers(4, 5))
        sizes[-1] = draw(st.integers(46, 64))
        sizes[:-1] = [draw(st.integers(3, 6)) for _ in range(ndim - 1)]  # OH * OW > 49: not "batched"
        n = min(n, 2)
    elif aim == "plane":
        sizes = [draw(st.integers(8, 12)) for _ in range(ndim - 1)] + [draw(st.integers(20, 40))]
        stride[-1] = min(stride[-1], 2)
        kernel = [min(k, 3) for k in kernel]
    elif aim == "tiny":  # planes of 1-3: the kernel often does not fit (must raise)
        sizes = [draw(st.integers(1, 3)) for _ in range(ndim)]
    sizes, kernel, stride, dilation = tuple(sizes), tuple(kernel), tuple(stride), tuple(dilation)
    mode = draw(st.sampled_from(["int", "tuple", "asym", "same", "valid"]))
    if mode == "int":
        padding = draw(st.integers(0, 4))
    elif mode == "tuple":
        padding = tuple(draw(st.integers(0, 4)) for _ in range(ndim))
    elif mode == "asym":
        padding = tuple(draw(st.integers(0, 4)) for _ in range(2 * ndim))
    else:
        padding = mode
    # keep each example to milliseconds: the float64 reference is an einsum over every term
    assume(max(n, 1) * groups * cg * ocg * np.prod(sizes) * np.prod(kernel) <= 300_000)
    return (n, groups * cg, groups * ocg, groups, sizes, kernel, stride, dilation, padding,
            draw(st.booleans()), draw(kinds))


def resolve_pads(padding, shape, kernel, stride, dilation):
    """The per-side pads (before, after per dimension, flat) the op will use."""
    n = len(kernel)
    if isinstance(padding, tuple) and len(padding) == 2 * n:
        return padding
    return F._flat(F._padding(padding, shape, kernel, stride, dilation, "test"))


def conv_path(c, oc, g, sizes, kernel, stride, dilation, pads):
    """Which of the core's conv2d forward paths a shape takes (src/ops/conv2d.cpp's dispatch,
    approximately), recorded as a hypothesis event so the statistics show each is drawn."""
    out = [(s + pads[2 * i] + pads[2 * i + 1] - d * (k - 1) - 1) // st_ + 1
           for i, (s, k, st_, d) in enumerate(zip(sizes, kernel, stride, dilation))]
    oh, ow = (1, out[0]) if len(out) == 1 else out
    kh, kw = (1, kernel[0]) if len(kernel) == 1 else kernel
    if g > 1 and g == c:
        return "depthwise"
    if c // g <= 64 and all(v == 1 for v in stride + dilation) and oh * ow <= 64 * 64:
        return "direct"
    if oh * ow <= 49:
        return "batched"
    if stride[-1] >= 3 and kw > stride[-1] and ow >= 16:
        return "phase" if g == 1 else "gemm, grouped with phase-path sizes"
    return "gemm"


def conv_valid(sizes, kernel, dilation, pads):
    return all(d * (k - 1) + 1 <= s + pads[2 * i] + pads[2 * i + 1]
               for i, (s, k, d) in enumerate(zip(sizes, kernel, dilation)))


def check_conv(name, forward, backward, sizes, geometry, ref, ref_backward, x, wt, b, rng, kind, need, nthreads):
    """The conv property once the case is drawn: an invalid geometry (kernel larger than the
    padded input) must raise ValueError from forward and backward; a valid one must match the
    float64 reference, forward and the gradients asked for, on `nthreads` threads."""
    c, oc, g, kernel, stride, dil, pads = geometry
    if not conv_valid(sizes, kernel, dil, pads):
        event("invalid: ValueError")
        raises_value_error(forward)
        raises_value_error(backward, np.zeros((x.shape[0], oc) + (1,) * len(sizes), np.float32))
        return
    event("path " + conv_path(c, oc, g, sizes, kernel, stride, dil, pads))
    with threads(nthreads):
        y = forward()
    want = ref(x, wt, b)
    check(y, want, ref(np.abs(x), np.abs(wt), None if b is None else np.abs(b)), kind, f"{name} forward")

    dy = data(rng, kind, *want.shape)
    with threads(nthreads):
        got = backward(dy)
    check_grads(got, ref_backward(dy, x, wt), ref_backward(np.abs(dy), np.abs(x), np.abs(wt)), need, kind, name)


@given(case=conv_cases(2), need=needs, nthreads=thread_counts, seed=seeds)
# found by the thorough profile: a grouped convolution of the phase path's sizes
@example(case=(2, 4, 2, 2, (4, 63), (4, 4), (1, 3), (1, 1), "same", True, "ints"), need=(True, True, True),
         nthreads=2, seed=13405)
def test_conv2d_matches_reference(case, need, nthreads, seed):
    n, c, oc, g, (h, w), kernel, stride, dil, padding, with_bias, kind = case
    rng = np.random.default_rng(seed)
    x = data(rng, kind, n, c, h, w)
    wt = data(rng, kind, oc, c // g, *kernel)
    b = data(rng, kind, oc) if with_bias else None
    pads = resolve_pads(padding, x.shape, kernel, stride, dil)
    note(f"pads (top, bottom, left, right) = {pads}")
    asym = isinstance(padding, tuple) and len(padding) == 4

    def forward():
        if asym:
            return _core.conv2d_forward(x, wt, b, stride, pads, dil, groups=g)
        return F.conv2d(x, wt, b, stride=stride, padding=padding, dilation=dil, groups=g)

    def backward(dy):
        if asym:
            return _core.conv2d_backward(dy, x, wt, stride, pads, dil, *need, groups=g)
        return F.conv2d_backward(dy, x, wt, stride=stride, padding=padding, dilation=dil, groups=g,
                                 input_grad=need[0], weight_grad=need[1], bias_grad=need[2])

    event("padding " + (padding if isinstance(padding, str) else "asym" if asym else type(padding).__name__))
    check_conv("conv2d", forward, backward, (h, w), (c, oc, g, kernel, stride, dil, pads),
               lambda *a: R.conv2d(*a, stride, pads, dil, g), lambda *a: R.conv2d_backward(*a, stride, pads, dil, g),
               x, wt, b, rng, kind, need, nthreads)


@given(case=conv_cases(1), need=needs, nthreads=thread_counts, seed=seeds)
def test_conv1d_matches_reference(case, need, nthreads, seed):
    n, c, oc, g, (length,), (k,), (s,), (d,), padding, with_bias, kind = case
    rng = np.random.default_rng(seed)
    x = data(rng, kind, n, c, length)
    wt = data(rng, kind, oc, c // g, k)
    b = data(rng, kind, oc) if with_bias else None
    pads = resolve_pads(padding, x.shape, (k,), (s,), (d,))
    asym = isinstance(padding, tuple) and len(padding) == 2
    if isinstance(padding, tuple) and not asym:
        padding = padding[0]

    def forward():
        if asym:
            return _core.conv1d_forward(x, wt, b, s, pads, d, groups=g)
        return F.conv1d(x, wt, b, stride=s, padding=padding, dilation=d, groups=g)

    def backward(dy):
        if asym:
            return _core.conv1d_backward(dy, x, wt, s, pads, d, *need, groups=g)
        return F.conv1d_backward(dy, x, wt, stride=s, padding=padding, dilation=d, groups=g,
                                 input_grad=need[0], weight_grad=need[1], bias_grad=need[2])

    check_conv("conv1d", forward, backward, (length,), (c, oc, g, (k,), (s,), (d,), pads),
               lambda *a: R.conv1d(*a, s, pads, d, g), lambda *a: R.conv1d_backward(*a, s, pads, d, g),
               x, wt, b, rng, kind, need, nthreads)


# --- pooling ------------------------------------------------------------------------------------

@st.composite
def pool_cases(draw, ndim):
    """(N, C, sizes, kernel, stride or None, padding spec): padding may exceed half the kernel
    and the kernel the padded input (both must raise)."""
    n, c = draw(batches), draw(counts)
    sizes = tuple(draw(st.integers(1, 12 if i < ndim - 1 else 40)) for i in range(ndim))
    kernel = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    stride = None if draw(st.booleans()) else tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    mode = draw(st.sampled_from(["int", "tuple", "asym", "same"]))
    # mostly at most half the kernel (valid); one draw in four up to 3 (often over: must raise)
    over = draw(st.sampled_from([False, False, False, True]))
    pad = (lambda k: st.integers(0, 3 if over else k // 2))
    if mode == "int":
        padding = draw(pad(min(kernel)))
    elif mode == "tuple":
        padding = tuple(draw(pad(k)) for k in kernel)
    elif mode == "asym":
        padding = tuple(draw(pad(k)) for k in kernel for _ in range(2))
    else:
        padding = "same"
    assume(max(n, 1) * c * np.prod(sizes) <= 20_000)
    return n, c, sizes, kernel, stride, padding


def pool_valid(sizes, kernel, pads):
    return all(2 * max(pads[2 * i], pads[2 * i + 1]) <= k and k <= s + pads[2 * i] + pads[2 * i + 1]
               for i, (s, k) in enumerate(zip(sizes, kernel)))


def tie_heavy(rng, kind, *shape):
    """Max pooling inputs: normal values, or few distinct ones (many ties: the first maximum
    of a window must win, as PyTorch)."""
    if kind == "ints":
        return rng.integers(-2, 3, size=shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


@given(case=pool_cases(2), kind=kinds, fused_relu=st.booleans(), nthreads=thread_counts, seed=seeds)
def test_max_pool2d_matches_reference(case, kind, fused_relu, nthreads, seed):
    n, c, (h, w), kernel, stride, padding = case
    rng = np.random.default_rng(seed)
    x = tie_heavy(rng, kind, n, c, h, w)
    s = kernel if stride is None else stride
    pads = resolve_pads(padding, x.shape, kernel, s, (1, 1))
    asym = isinstance(padding, tuple) and len(padding) == 4

    def forward():
        if fused_relu:  # the fused ReLU + max pool a model runs: max_pool2d(relu(x))
            return _core.max_pool2d_relu_forward(x, kernel, s, pads, None)
        if asym:
            return _core.max_pool2d_forward(x, kernel, s, pads)
        return F.max_pool2d(x, kernel, stride, padding, return_indices=True)

    if not pool_valid((h, w), kernel, pads):
        event("invalid: ValueError")
        raises_value_error(forward)
        return
    with threads(nthreads):
        y, idx = forward()
    ry, ridx = R.max_pool2d(np.maximum(x, 0) if fused_relu else x, kernel, s, pads)
    np.testing.assert_array_equal(y, ry, err_msg="max_pool2d forward")
    np.testing.assert_array_equal(idx, ridx, err_msg="max_pool2d indices")

    dy = data(rng, "normal", *ry.shape)
    if fused_relu:
        dx = _core.max_pool2d_relu_backward(dy, idx, y, x.shape, kernel, s, pads, None)
        rdx = R.max_pool2d_backward(dy * (ry > 0), ridx, x.shape)
    elif asym:
        dx = _core.max_pool2d_backward(dy, idx, x.shape, kernel, s, pads)
        rdx = R.max_pool2d_backward(dy, ridx, x.shape)
    else:
        dx = F.max_pool2d_backward(dy, idx, x.shape, kernel, stride, padding)
        rdx = R.max_pool2d_backward(dy, ridx, x.shape)
    sdx = R.max_pool2d_backward(np.abs(dy), ridx, x.shape)
    check(dx, rdx, sdx, "normal", "max_pool2d grad_input")


@given(case=pool_cases(2), count_include_pad=st.booleans(), kind=kinds, nthreads=thread_counts, seed=seeds)
def test_avg_pool2d_matches_reference(case, count_include_pad, kind, nthreads, seed):
    n, c, (h, w), kernel, stride, padding = case
    rng = np.random.default_rng(seed)
    x = data(rng, kind, n, c, h, w)
    s = kernel if stride is None else stride
    pads = resolve_pads(padding, x.shape, kernel, s, (1, 1))
    asym = isinstance(padding, tuple) and len(padding) == 4

    def forward():
        if asym:
            return _core.avg_pool2d_forward(x, kernel, s, pads, count_include_pad)
        return F.avg_pool2d(x, kernel, stride, padding, count_include_pad)

    if not pool_valid((h, w), kernel, pads):
        event("invalid: ValueError")
        raises_value_error(forward)
        return
    with threads(nthreads):
        y = forward()
    ref = R.avg_pool2d(x, kernel, s, pads, count_include_pad)
    check(y, ref, R.avg_pool2d(np.abs(x), kernel, s, pads, count_include_pad), "normal", "avg_pool2d forward")

    dy = data(rng, kind, *ref.shape)
    if asym:
        dx = _core.avg_pool2d_backward(dy, x.shape, kernel, s, pads, count_include_pad)
    else:
        dx = F.avg_pool2d_backward(dy, x.shape, kernel, stride, padding, count_include_pad)
    rdx = R.avg_pool2d_backward(dy, x.shape, kernel, s, pads, count_include_pad)
    sdx = R.avg_pool2d_backward(np.abs(dy), x.shape, kernel, s, pads, count_include_pad)
    check(dx, rdx, sdx, "normal", "avg_pool2d grad_input")


@given(case=pool_cases(1), count_include_pad=st.booleans(), kind=kinds, seed=seeds)
def test_pool1d_matches_reference(case, count_include_pad, kind, seed):
    n, c, (length,), (k,), stride, padding = case
    rng = np.random.default_rng(seed)
    x = tie_heavy(rng, kind, n, c, length)
    s = k if stride is None else stride[0]
    pads = resolve_pads(padding, x.shape, (k,), (s,), (1,))
    asym = isinstance(padding, tuple) and len(padding) == 2
    if isinstance(padding, tuple) and not asym:
        padding = padding[0]
    st_arg = None if stride is None else s

    def max_fwd():
        if asym:
            return _core.max_pool1d_forward(x, k, s, pads)
        return F.max_pool1d(x, k, st_arg, padding, return_indices=True)

    def avg_fwd():
        if asym:
            return _core.avg_pool1d_forward(x, k, s, pads, count_include_pad)
        return F.avg_pool1d(x, k, st_arg, padding, count_include_pad)

    if not pool_valid((length,), (k,), pads):
        event("invalid: ValueError")
        raises_value_error(max_fwd)
        raises_value_error(avg_fwd)
        return
    y, idx = max_fwd()
    ry, ridx = R.max_pool1d(x, k, s, pads)
    np.testing.assert_array_equal(y, ry, err_msg="max_pool1d forward")
    np.testing.assert_array_equal(idx, ridx, err_msg="max_pool1d indices")
    dy = data(rng, "normal", *ry.shape)
    if asym:
        dx = _core.max_pool1d_backward(dy, idx, x.shape, k, s, pads)
    else:
        dx = F.max_pool1d_backward(dy, idx, x.shape, k, st_arg, padding)
    rdx = R.max_pool2d_backward(dy[:, :, None, :], ridx[:, :, None, :], (n, c, 1, length))[:, :, 0, :]
    close(dx, rdx, rtol=1e-6, atol=1e-6, what="max_pool1d grad_input")

    ya = avg_fwd()
    ra = R.avg_pool1d(x, k, s, pads, count_include_pad)
    check(ya, ra, R.avg_pool1d(np.abs(x), k, s, pads, count_include_pad), "normal", "avg_pool1d forward")
    if asym:
        dxa = _core.avg_pool1d_backward(dy, x.shape, k, s, pads, count_include_pad)
    else:
        dxa = F.avg_pool1d_backward(dy, x.shape, k, st_arg, padding, count_include_pad)
    rdxa = R.avg_pool1d_backward(dy, x.shape, k, s, pads, count_include_pad)
    sdxa = R.avg_pool1d_backward(np.abs(dy), x.shape, k, s, pads, count_include_pad)
    check(dxa, rdxa, sdxa, "normal", "avg_pool1d grad_input")


@given(n=batches, c=counts, h=st.integers(1, 12), w=st.integers(1, 40), seed=seeds)
def test_global_avg_pool2d_matches_reference(n, c, h, w, seed):
    rng = np.random.default_rng(seed)
    x = data(rng, "normal", n, c, h, w)
    y = F.global_avg_pool2d(x)
    check(y, R.global_avg_pool2d(x), R.global_avg_pool2d(np.abs(x)), "normal", "global_avg_pool2d")
    dy = data(rng, "normal", n, c)
    dx = F.global_avg_pool2d_backward(dy, x.shape)
    check(dx, R.global_avg_pool2d_backward(dy, x.shape), R.global_avg_pool2d_backward(np.abs(dy), x.shape),
          "normal", "global_avg_pool2d grad_input")


@st.composite
def lp_cases(draw):
    n, c = draw(batches), draw(counts)
    h, w = draw(st.integers(1, 10)), draw(st.integers(1, 33))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = None if draw(st.booleans()) else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = draw(st.sampled_from([1.0, 2.0, 3.0, 1.5, 4.0]))
    assume(max(n, 1) * c * h * w <= 20_000)
    return n, c, h, w, kernel, stride, p


@given(case=lp_cases(), seed=seeds)
def test_lp_pool2d_matches_reference(case, seed):
    n, c, h, w, kernel, stride, p = case
    rng = np.random.default_rng(seed)
    # x > 0 for non-integer powers (x ** 1.5 of a negative is NaN, as in PyTorch); any sign for p = 2
    x = data(rng, "normal", n, c, h, w)
    if p != 2.0:
        x = np.abs(x) + np.float32(0.05)
    s = kernel if stride is None else stride
    if kernel[0] > h or kernel[1] > w:
        raises_value_error(F.lp_pool2d, x, p, kernel, stride)
        return
    y = F.lp_pool2d(x, p, kernel, stride)
    ref = R.lp_pool2d(x, p, kernel, s)
    close(y, ref, rtol=2e-5, atol=1e-6, what=f"lp_pool2d forward p={p}")
    dy = data(rng, "normal", *ref.shape)
    dx = F.lp_pool2d_backward(dy, x, p, kernel, stride)
    rdx = R.lp_pool2d_backward(dy, x, p, kernel, s)
    sdx = R.lp_pool2d_backward(np.abs(dy), np.abs(x), p, kernel, s)
    assert_scaled_close(dx, rdx, sdx, rtol=1e-4, atol=1e-6, what=f"lp_pool2d grad_input p={p}")


@given(n=batches, c=counts, h=st.integers(1, 17), w=st.integers(1, 33), oh=st.integers(1, 20),
       ow=st.integers(1, 20), seed=seeds)
def test_adaptive_avg_pool2d_matches_reference(n, c, h, w, oh, ow, seed):
    assume(max(n, 1) * c * h * w <= 20_000)
    rng = np.random.default_rng(seed)
    x = data(rng, "normal", n, c, h, w)
    y = F.adaptive_avg_pool2d(x, (oh, ow))
    check(y, R.adaptive_avg_pool2d(x, (oh, ow)), R.adaptive_avg_pool2d(np.abs(x), (oh, ow)), "normal",
          "adaptive_avg_pool2d forward")
    dy = data(rng, "normal", n, c, oh, ow)
    dx = F.adaptive_avg_pool2d_backward(dy, x.shape)
    check(dx, R.adaptive_avg_pool2d_backward(dy, x.shape), R.adaptive_avg_pool2d_backward(np.abs(dy), x.shape),
          "normal", "adaptive_avg_pool2d grad_input")


# --- dense, activations, softmax, cross-entropy ---------------------------------------------------

@given(lead=st.lists(st.integers(0, 5), min_size=1, max_size=3), fin=counts, fout=counts,
       with_bias=st.booleans(), kind=kinds, need=needs, nthreads=thread_counts, seed=seeds)
def test_linear_matches_reference(lead, fin, fout, with_bias, kind, need, nthreads, seed):
    rng = np.random.default_rng(seed)
    x = data(rng, kind, *lead, fin)
    w = data(rng, kind, fout, fin)
    b = data(rng, kind, fout) if with_bias else None
    with threads(nthreads):
        y = F.linear(x, w, b)
    check(y, R.linear(x, w, b), R.linear(np.abs(x), np.abs(w), None if b is None else np.abs(b)), kind,
          "linear forward")
    dy = data(rng, kind, *lead, fout)
    with threads(nthreads):
        got = F.linear_backward(dy, x, w, input_grad=need[0], weight_grad=need[1], bias_grad=need[2])
    check_grads(got, R.linear_backward(dy, x, w), R.linear_backward(np.abs(dy), np.abs(x), np.abs(w)), need, kind,
                "linear")


shapes = st.lists(st.integers(0, 19), min_size=1, max_size=4).filter(lambda s: int(np.prod(s)) <= 4000)
magnitudes = st.sampled_from([0.1, 1.0, 5.0, 30.0])  # 30: saturates sigmoid and tanh


@pytest.mark.parametrize("op", ["relu", "sigmoid", "tanh"])  # 100 examples each
@given(shape=shapes, mag=magnitudes, seed=seeds)
def test_activations_match_reference(op, shape, mag, seed):
    rng = np.random.default_rng(seed)
    x = data(rng, "normal", *shape) * np.float32(mag)
    fwd, bwd = getattr(F, op), getattr(F, op + "_backward")
    y = fwd(x)
    close(y, getattr(R, op)(x), rtol=2e-6, atol=1e-7, what=f"{op} forward")
    dy = data(rng, "normal", *shape)
    # the backward is a function of the forward output: compare with the reference at y
    close(bwd(dy, y), getattr(R, op + "_backward")(dy, y), rtol=1e-6, atol=1e-7, what=f"{op} backward")


@given(shape=st.lists(st.integers(1, 19), min_size=1, max_size=4).filter(lambda s: int(np.prod(s)) <= 4000),
       axis_pick=st.integers(0, 7), mag=magnitudes, seed=seeds)
def test_softmax_matches_reference(shape, axis_pick, mag, seed):
    rng = np.random.default_rng(seed)
    axis = axis_pick % len(shape) - (len(shape) if axis_pick >= 4 else 0)  # negative axes too
    x = data(rng, "normal", *shape) * np.float32(mag)
    y = F.softmax(x, axis=axis)
    ref = R.softmax(x, axis=axis)
    close(y, ref, rtol=1e-5, atol=1e-7, what="softmax forward")
    np.testing.assert_allclose(np.sum(y, axis=axis, dtype=np.float64), 1.0, rtol=0, atol=1e-5)
    dy = data(rng, "normal", *shape)
    scale = np.abs(ref) * (np.abs(dy) + np.sum(np.abs(dy) * ref, axis=axis, keepdims=True))
    assert_scaled_close(F.softmax_backward(dy, y, axis=axis), R.softmax_backward(dy, y, axis=axis), scale,
                        rtol=1e-5, atol=1e-7, what="softmax backward")


@given(n=st.integers(1, 17), k=st.integers(1, 40), mag=magnitudes, grad=st.floats(-3, 3), seed=seeds)
def test_cross_entropy_matches_reference(n, k, mag, grad, seed):
    rng = np.random.default_rng(seed)
    x = data(rng, "normal", n, k) * np.float32(mag)
    labels = rng.integers(0, k, size=n)
    loss, probs = F.softmax_cross_entropy(x, labels)
    ref = R.cross_entropy(x, labels)
    assert abs(loss - ref) <= 1e-5 * max(1.0, abs(ref)), (loss, ref)
    assert F.cross_entropy(x, labels) == loss
    close(probs, R.softmax(x, axis=1), rtol=1e-5, atol=1e-7, what="softmax_cross_entropy probs")
    rg = R.cross_entropy_backward(x, labels, grad)
    close(F.cross_entropy_backward(x, labels, grad), rg, rtol=1e-5, atol=1e-7, what="cross_entropy_backward")
    close(F.cross_entropy_backward(x, labels, grad, probs=probs), rg, rtol=1e-5, atol=1e-7,
          what="cross_entropy_backward(probs=)")
    bad = labels.copy()
    bad[rng.integers(0, n)] = k if rng.random() < 0.5 else -1
    raises_value_error(F.softmax_cross_entropy, x, bad)


# --- batch normalisation -------------------------------------------------------------------------

@given(rank=st.sampled_from([2, 3, 4]), n=st.integers(1, 6), c=counts, plane=st.tuples(st.integers(1, 7),
       st.integers(1, 19)), affine=st.booleans(), training=st.booleans(), momentum=st.floats(0, 1),
       eps=st.sampled_from([1e-5, 1e-3, 0.1]), shift=st.sampled_from([0.0, 3.0]), seed=seeds)
def test_batch_norm_matches_reference(rank, n, c, plane, affine, training, momentum, eps, shift, seed):
    rng = np.random.default_rng(seed)
    spatial = {2: (), 3: (plane[1],), 4: plane}[rank]
    x = data(rng, "normal", n, c, *spatial) + np.float32(shift)
    w = data(rng, "normal", c) if affine else None
    b = data(rng, "normal", c) if affine else None
    rm0 = data(rng, "normal", c)
    rv0 = (np.abs(data(rng, "normal", c)) + 0.5).astype(np.float32)
    rm, rv = rm0.copy(), rv0.copy()
    per_channel = x.size // c
    if training and per_channel == 1:
        raises_value_error(F.batch_norm, x, rm, rv, w, b, training=True, momentum=momentum, eps=eps)
        np.testing.assert_array_equal(rm, rm0)  # nothing updated by a failed call
        return
    y, mean, invstd = F.batch_norm(x, rm, rv, w, b, training=training, momentum=momentum, eps=eps,
                                   return_stats=True)
    if training:
        bm, bvar, bvar_unbiased = R.batch_norm_stats(x)
        ref = R.batch_norm(x, bm, bvar, w, b, eps)
        close(mean, bm, rtol=1e-5, atol=1e-6, what="batch mean")
        close(invstd, 1 / np.sqrt(bvar + eps), rtol=1e-4, atol=1e-6, what="batch invstd")
        close(rm, (1 - momentum) * rm0 + momentum * bm, rtol=1e-5, atol=1e-6, what="running_mean")
        close(rv, (1 - momentum) * rv0 + momentum * bvar_unbiased, rtol=1e-4, atol=1e-6, what="running_var")
    else:
        ref = R.batch_norm(x, rm0, rv0, w, b, eps)
        np.testing.assert_array_equal(rm, rm0)
        np.testing.assert_array_equal(rv, rv0)
    close(y, ref, rtol=1e-4, atol=1e-4, what="batch_norm forward")

    dy = data(rng, "normal", *x.shape)
    dx, dw, db = F.batch_norm_backward(dy, x, w, mean, invstd, training=training)
    if training:
        rdx, rdw, rdb = R.batch_norm_train_backward(dy, x, w, eps)
    else:
        rdx, rdw, rdb = R.batch_norm_eval_backward(dy, x, rm0, rv0, w, eps)
    close(dx, rdx, rtol=1e-3, atol=1e-3, what="batch_norm grad_input")
    if affine:
        close(dw, rdw, rtol=1e-3, atol=1e-3, what="batch_norm grad_weight")
        close(db, rdb, rtol=1e-3, atol=1e-3, what="batch_norm grad_bias")


# --- locally connected ---------------------------------------------------------------------------

@given(n=batches, c=st.integers(1, 5), oc=st.integers(1, 9), h=st.integers(1, 9), w=st.integers(1, 17),
       kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)), stride=st.tuples(st.integers(1, 3),
       st.integers(1, 3)), padding=st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)),
       st.just("same")), bias=st.sampled_from(["none", "shared", "position"]), kind=kinds, seed=seeds)
def test_locally_connected2d_matches_reference(n, c, oc, h, w, kernel, stride, padding, bias, kind, seed):
    rng = np.random.default_rng(seed)
    x = data(rng, kind, n, c, h, w)
    pads = F._flat(F._padding(padding, x.shape, kernel, stride, (1, 1), "test"))
    oh = (h + pads[0] + pads[1] - kernel[0]) // stride[0] + 1
    ow = (w + pads[2] + pads[3] - kernel[1]) // stride[1] + 1
    if oh < 1 or ow < 1:
        wt = data(rng, kind, 1, 1, oc, c, *kernel)
        raises_value_error(F.locally_connected2d, x, wt, None, stride, padding)
        return
    wt = data(rng, kind, oh, ow, oc, c, *kernel)
    b = {"none": None, "shared": data(rng, kind, oc), "position": data(rng, kind, oc, oh, ow)}[bias]
    y = F.locally_connected2d(x, wt, b, stride, padding)
    ref = R.locally_connected2d(x, wt, b, stride, pads)
    scale = R.locally_connected2d(np.abs(x), np.abs(wt), None if b is None else np.abs(b), stride, pads)
    check(y, ref, scale, kind, "locally_connected2d forward")
    dy = data(rng, kind, *ref.shape)
    pos = bias == "position"
    dx, dw, db = F.locally_connected2d_backward(dy, x, wt, stride, padding, position_bias=pos)
    rdx, rdw, rdb = R.locally_connected2d_backward(dy, x, wt, stride, pads, pos)
    sdx, sdw, sdb = R.locally_connected2d_backward(np.abs(dy), np.abs(x), np.abs(wt), stride, pads, pos)
    check(dx, rdx, sdx, kind, "locally_connected2d grad_input")
    check(dw, rdw, sdw, kind, "locally_connected2d grad_weight")
    check(db, rdb, sdb, kind, "locally_connected2d grad_bias")
    # a weight of the wrong output size is an error, not a silent misread
    raises_value_error(F.locally_connected2d, x, data(rng, kind, oh + 1, ow, oc, c, *kernel), None, stride, padding)


# --- padding ---------------------------------------------------------------------------------------

@given(lead=st.lists(st.integers(0, 4), min_size=0, max_size=2), h=st.integers(1, 12), w=st.integers(1, 40),
       pad=st.tuples(*[st.integers(-5, 5)] * 4), one_dim=st.booleans(), zero=st.booleans(),
       value=st.sampled_from([0.0, -1.5, 7.0]), seed=seeds)
def test_pad_matches_reference(lead, h, w, pad, one_dim, zero, value, seed):
    rng = np.random.default_rng(seed)
    x = data(rng, "normal", *lead, h, w)
    l, r, t, b = pad
    if one_dim:
        t = b = 0
    tblr = (t, b, l, r)
    valid = h + min(t, 0) + min(b, 0) >= 0 and w + min(l, 0) + min(r, 0) >= 0
    if zero:
        args = (x, (l, r, t, b))
        fwd, bwd, value = F.zero_pad2d, F.zero_pad2d_backward, 0.0
        if x.ndim < 2:
            return
    else:
        args = (x, (l, r) if one_dim else (l, r, t, b))
        fwd, bwd = (lambda a, p: F.pad(a, p, value=value)), F.pad_backward
    if not valid:
        raises_value_error(fwd, *args)
        return
    y = fwd(*args)
    ref = R.pad2d(x, tblr, value)
    np.testing.assert_array_equal(y, ref, err_msg="pad forward")
    dy = data(rng, "normal", *ref.shape)
    dx = bwd(dy, args[1])
    np.testing.assert_array_equal(dx, R.pad2d_backward(dy, x.shape, tblr), err_msg="pad backward")


# --- merging branches ------------------------------------------------------------------------------

@given(n=batches, sizes=st.lists(counts, min_size=1, max_size=4), plane=st.lists(st.integers(1, 9), max_size=2),
       seed=seeds)
def test_add_and_concat_match_reference(n, sizes, plane, seed):
    rng = np.random.default_rng(seed)
    xs = [data(rng, "normal", n, c, *plane) for c in sizes]
    other = data(rng, "normal", *xs[0].shape)
    np.testing.assert_array_equal(_core.add(xs[0], other), (xs[0] + other), err_msg="add")
    y = _core.concat(xs)
    np.testing.assert_array_equal(y, R.concat(xs), err_msg="concat")
    parts = _core.concat_backward(y, sizes)
    assert len(parts) == len(sizes)
    for p, x in zip(parts, xs):
        np.testing.assert_array_equal(p, x, err_msg="concat_backward")
    if len(xs) > 1 and plane:
        bad = xs[1][..., :-1] if plane[-1] > 1 else data(rng, "normal", n, sizes[1], *plane[:-1], 2)
        raises_value_error(_core.concat, [xs[0], bad])


# --- regressions found by the properties above -----------------------------------------------------

@pytest.mark.parametrize("n, c, oc, g, hw, kernel, stride, pads", [
    (2, 4, 2, 2, (4, 63), (4, 4), (1, 3), (1, 2, 0, 1)),
    (1, 10, 16, 2, (8, 56), (1, 5), (1, 3), (2, 2, 3, 0)),
    (1, 6, 9, 3, (6, 64), (3, 5), (1, 3), (0, 0, 0, 0)),
])
def test_grouped_conv_with_phase_path_sizes(n, c, oc, g, hw, kernel, stride, pads):
    """A grouped convolution with a stride >= 3 along the width, a wider kernel and >= 16 outputs
    per row went to the dense-only phase path: the dispatch asked conv2d_phase_applies about the
    per-group shape, whose G is always 1, so w was read as (OC, C, KH, KW), past its end:
    garbage, NaN or 1e36 outputs. The grouped conv now takes the im2col + GEMM path."""
    rng = np.random.default_rng(0)
    x = data(rng, "normal", n, c, *hw)
    w = data(rng, "normal", oc, c // g, *kernel)
    b = data(rng, "normal", oc)
    y = _core.conv2d_forward(x, w, b, stride, pads, (1, 1), groups=g)
    ref = R.conv2d(x, w, b, stride, pads, (1, 1), g)
    assert_scaled_close(y, ref, R.conv2d(np.abs(x), np.abs(w), np.abs(b), stride, pads, (1, 1), g))


@pytest.mark.parametrize("fused_relu", [False, True])
@pytest.mark.parametrize("x_shape, kernel, stride, pads", [
    ((1, 2, 1, 1), (1, 3), (1, 3), (0, 0, 1, 1)),   # one column, a tap on each side of it
    ((1, 1, 2, 2), (4, 4), (2, 2), (1, 1, 1, 1)),   # a 2x2 plane inside a 4x4 window
    ((2, 3, 1, 2), (1, 4), (1, 2), (0, 0, 1, 1)),
])
def test_max_pool_tap_right_of_a_short_row_is_skipped(x_shape, kernel, stride, pads, fused_relu):
    """A kernel tap lying right of the row (kw - pad_left > W - 1) with stride > 1 was read
    anyway: (W - 1 - off) / SW truncated to 0, so the output took x[row][off] from past the row
    (the next plane, or past the array) and its argmax pointed outside the plane."""
    x = -np.arange(1, np.prod(x_shape) + 1, dtype=np.float32).reshape(x_shape)  # all < 0: padding never wins
    fwd = _core.max_pool2d_relu_forward if fused_relu else _core.max_pool2d_forward
    y, idx = fwd(x, kernel, stride, pads, None)
    ry, ridx = R.max_pool2d(np.maximum(x, 0) if fused_relu else x, kernel, stride, pads)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(idx, ridx)
    assert idx.min() >= 0 and idx.max() < x_shape[2] * x_shape[3]
    if x_shape[2] == 1 and not fused_relu:  # the same through the 1-D op
        y1, idx1 = _core.max_pool1d_forward(x[:, :, 0, :], kernel[1], stride[1], pads[2:])
        np.testing.assert_array_equal(y1, ry[:, :, 0, :])
        np.testing.assert_array_equal(idx1, ridx[:, :, 0, :])


# --- layouts: any array-like gives the float32 C-contiguous result ---------------------------------

LAYOUT_OPS = {  # name -> (input rank, op of (x, weights of the input's sizes))
    "conv2d": (4, lambda x, p: F.conv2d(x, p["w2"], padding=1)),
    "conv1d": (3, lambda x, p: F.conv1d(x, p["w1"], padding=1, stride=2)),
    "max_pool2d": (4, lambda x, p: F.max_pool2d(x, 2, 1, return_indices=True)),
    "avg_pool2d": (4, lambda x, p: F.avg_pool2d(x, 2, 1, padding=1, count_include_pad=False)),
    "max_pool1d": (3, lambda x, p: F.max_pool1d(x, 3, 2, padding=1, return_indices=True)),
    "linear": (4, lambda x, p: F.linear(x, p["wl"])),
    "relu": (4, lambda x, p: F.relu(x)),
    "sigmoid": (3, lambda x, p: F.sigmoid(x)),
    "softmax": (4, lambda x, p: F.softmax(x, axis=1)),
    "batch_norm": (4, lambda x, p: F.batch_norm(x, None, None, training=True)),
    "adaptive_avg_pool2d": (4, lambda x, p: F.adaptive_avg_pool2d(x, (2, 3))),
    "lp_pool2d": (4, lambda x, p: F.lp_pool2d(x, 2.0, 2)),
    "pad": (4, lambda x, p: F.pad(x, (1, -1, 2, 0), value=0.5)),
    "locally_connected2d": (4, lambda x, p: F.locally_connected2d(x, p["wlc"])),
}


def relayout(x, layout):
    """x's values in another memory layout or type."""
    if layout == "float64":
        return x.astype(np.float64)
    if layout == "transposed":  # a channels-last array seen channels-first
        return np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)
    if layout == "strided":  # every other element of a larger array
        big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), np.float32)
        big[..., ::2] = x
        return big[..., ::2]
    if layout == "list":
        return x.tolist()
    return np.asfortranarray(x)


@given(op=st.sampled_from(sorted(LAYOUT_OPS)), n=st.integers(2, 4), c=st.integers(1, 5), h=st.integers(3, 9),
       w=st.integers(3, 20), layout=st.sampled_from(["float64", "transposed", "strided", "list", "fortran"]),
       seed=seeds)
def test_layouts_give_the_contiguous_result(op, n, c, h, w, layout, seed):
    rng = np.random.default_rng(seed)
    rank, fn = LAYOUT_OPS[op]
    x = data(rng, "normal", *(n, c, h, w)[:rank - 1], w)
    params = {"w2": data(rng, "normal", 4, c, 3, 3), "w1": data(rng, "normal", 4, c, 3),
              "wl": data(rng, "normal", 4, w), "wlc": data(rng, "normal", h - 2, w - 2, 4, c, 3, 3)}
    want, got = fn(x, params), fn(relayout(x, layout), params)
    for a, b in zip(want if isinstance(want, tuple) else (want,), got if isinstance(got, tuple) else (got,)):
        np.testing.assert_array_equal(b, a, err_msg=f"{op} on a {layout} input")


@given(n=st.integers(1, 3), c=counts, h=st.integers(1, 9), w=st.integers(1, 20), k=st.integers(1, 3),
       corrupt=st.sampled_from([None, "negative", "past_plane"]), one_d=st.booleans(), seed=seeds)
def test_max_pool_backward_checks_its_indices(n, c, h, w, k, corrupt, one_d, seed):
    """The indices are user data: any outside the plane must raise ValueError (not write past dx)."""
    assume(k <= h and k <= w)
    rng = np.random.default_rng(seed)
    shape = (n, c, w) if one_d else (n, c, h, w)
    x = data(rng, "normal", *shape)
    y, idx = (F.max_pool1d if one_d else F.max_pool2d)(x, k, return_indices=True)
    dy = data(rng, "normal", *y.shape)
    plane = w if one_d else h * w
    if corrupt is not None:
        flat = idx.reshape(-1)
        flat[rng.integers(0, flat.size)] = -1 if corrupt == "negative" else plane + int(rng.integers(0, 3))
        raises_value_error(F.max_pool1d_backward if one_d else F.max_pool2d_backward, dy, idx, shape, k)
        return
    dx = (F.max_pool1d_backward if one_d else F.max_pool2d_backward)(dy, idx, shape, k)
    as4 = (lambda a: a[:, :, None, :]) if one_d else (lambda a: a)
    want = R.max_pool2d_backward(as4(dy), as4(idx), as4(x).shape).reshape(shape)
    close(dx, want, rtol=1e-6, atol=1e-6, what="max_pool backward")


# --- every SIMD tier of the kernels that take one ---------------------------------------------------

tiers = st.sampled_from(_core.simd_tiers_supported())


@given(case=pool_cases(2), tier=tiers, count_include_pad=st.booleans(), kind=kinds, seed=seeds)
def test_pool_tiers_match_reference(case, tier, count_include_pad, kind, seed):
    """The pooling kernels of each SIMD tier (tier=: the tier tests' hook) against the reference:
    max pooling and its indices bit for bit, average pooling to the scaled tolerance."""
    n, c, (h, w), kernel, stride, padding = case
    s = kernel if stride is None else stride
    pads = resolve_pads(padding, (n, c, h, w), kernel, s, (1, 1))
    rng = np.random.default_rng(seed)
    x = tie_heavy(rng, kind, n, c, h, w)
    if not pool_valid((h, w), kernel, pads):
        event("invalid: ValueError")
        raises_value_error(_core.max_pool2d_forward, x, kernel, s, pads, tier=tier)
        raises_value_error(_core.avg_pool2d_forward, x, kernel, s, pads, count_include_pad, tier=tier)
        return
    for fused in (False, True):
        fwd = _core.max_pool2d_relu_forward if fused else _core.max_pool2d_forward
        y, idx = fwd(x, kernel, s, pads, tier=tier)
        ry, ridx = R.max_pool2d(np.maximum(x, 0) if fused else x, kernel, s, pads)
        np.testing.assert_array_equal(y, ry, err_msg=f"max_pool2d forward ({tier}, relu={fused})")
        np.testing.assert_array_equal(idx, ridx, err_msg=f"max_pool2d indices ({tier}, relu={fused})")
        dy = data(rng, "normal", *ry.shape)
        if fused:
            dx = _core.max_pool2d_relu_backward(dy, idx, y, x.shape, kernel, s, pads, tier=tier)
            rdx = R.max_pool2d_backward(dy * (ry > 0), ridx, x.shape)
        else:
            dx = _core.max_pool2d_backward(dy, idx, x.shape, kernel, s, pads, tier=tier)
            rdx = R.max_pool2d_backward(dy, ridx, x.shape)
        check(dx, rdx, R.max_pool2d_backward(np.abs(dy), ridx, x.shape), "normal", f"max_pool2d grad ({tier})")
    ya = _core.avg_pool2d_forward(x, kernel, s, pads, count_include_pad, tier=tier)
    check(ya, R.avg_pool2d(x, kernel, s, pads, count_include_pad),
          R.avg_pool2d(np.abs(x), kernel, s, pads, count_include_pad), "normal", f"avg_pool2d forward ({tier})")
    dy = data(rng, "normal", *ya.shape)
    dxa = _core.avg_pool2d_backward(dy, x.shape, kernel, s, pads, count_include_pad, tier=tier)
    check(dxa, R.avg_pool2d_backward(dy, x.shape, kernel, s, pads, count_include_pad),
          R.avg_pool2d_backward(np.abs(dy), x.shape, kernel, s, pads, count_include_pad), "normal",
          f"avg_pool2d grad ({tier})")


@given(m=st.one_of(st.integers(1, 40), st.sampled_from([47, 48, 49, 64, 65, 97])), n=st.integers(1, 70),
       k=st.integers(0, 70), trans_a=st.booleans(), trans_b=st.booleans(),
       alpha=st.sampled_from([1.0, -0.5, 2.0]), beta=st.sampled_from([0.0, 1.0, -0.75]), tier=tiers,
       kind=kinds, seed=seeds)
def test_gemm_tiers_match_reference(m, n, k, trans_a, trans_b, alpha, beta, tier, kind, seed):
    """C = alpha * op(A) op(B) + beta * C with each tier's GEMM, for sizes around the register
    tiles' edges (and K = 0)."""
    rng = np.random.default_rng(seed)
    a = data(rng, kind, *((k, m) if trans_a else (m, k)))
    b = data(rng, kind, *((n, k) if trans_b else (k, n)))
    c = data(rng, kind, m, n) if beta != 0.0 else None
    got = _core.gemm(a, b, trans_a, trans_b, alpha, beta, c, tier=tier)
    oa, ob = (a.T if trans_a else a).astype(np.float64), (b.T if trans_b else b).astype(np.float64)
    want = alpha * oa @ ob + (beta * c if c is not None else 0.0)
    scale = abs(alpha) * np.abs(oa) @ np.abs(ob) + (abs(beta) * np.abs(c) if c is not None else 0.0)
    check(got, want, scale, kind, f"gemm ({tier})")
