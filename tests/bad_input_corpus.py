"""The bad-input corpus: malformed and unusual calls across cnnkit's public API, each with its
documented outcome (README "Errors"). tests/test_bad_input.py runs every entry in its own
forked process; ``judge`` is what the child runs.

An entry either raises -- ``exc`` (the documented type; a subclass passes) with a message
matching ``match`` (re.search), which names expected and actual shapes or values -- or returns
a result that ``check`` accepts (valid but unusual input: non-contiguous, read-only, empty
batches, NaN/Inf, which propagate as in PyTorch). Arrays are built inside the calls, so the
server process never runs a cnnkit op (and never starts an OpenMP thread pool) itself.
"""
import gzip
import os
import re
import struct
import tempfile
import zipfile

import numpy as np

import cnnkit
import cnnkit.functional as F
from cnnkit import callbacks, cli, datasets, layers as L, losses, metrics, models, optim
from cnnkit.saving import CheckpointError

CATEGORIES = ("dtype", "ndim", "shape", "nan_inf", "empty", "overflow32", "sizes", "noncontiguous",
              "readonly", "labels", "xy_mismatch", "foreign", "checkpoint", "datasets", "zoo",
              "config", "cli", "lifecycle")


class Entry:
    __slots__ = ("id", "category", "call", "exc", "match", "check", "timeout")

    def __init__(self, id, category, call, exc=None, match=None, check=None, timeout=None):
        assert (exc is None) != (check is None), id
        self.id, self.category, self.call, self.exc, self.match, self.check = id, category, call, exc, match, check
        self.timeout = timeout  # seconds; None: the harness's default


ENTRIES = []


def bad(id, category, call, exc, match, timeout=None):
    ENTRIES.append(Entry(id, category, call, exc=exc, match=match, timeout=timeout))


def ok(id, category, call, check):
    ENTRIES.append(Entry(id, category, call, check=check))


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"array shape {value.shape} dtype {value.dtype}"
    return repr(value)[:200]


def _names(exc):
    return " or ".join(e.__name__ for e in exc) if isinstance(exc, tuple) else exc.__name__


def judge(entry):
    """(passed, detail) for one entry: run it and compare with its documented outcome."""
    try:
        result = entry.call()
    except BaseException as e:  # noqa: BLE001 - SystemExit and MemoryError are outcomes too
        got = f"{type(e).__name__}: {e}"
        if entry.exc is None:
            return False, f"raised {got}; expected a result"
        if not isinstance(e, entry.exc):
            return False, f"raised {got}; expected {_names(entry.exc)}"
        if entry.match is not None and not re.search(entry.match, str(e)):
            return False, f"raised {got}; the message does not match {entry.match!r}"
        return True, got
    if entry.exc is not None:
        return False, f"returned {_describe(result)}; expected {_names(entry.exc)} matching {entry.match!r}"
    try:
        entry.check(result)
    except AssertionError as e:
        return False, f"returned {_describe(result)}: {e}"
    return True, "result as documented"


# --- data -----------------------------------------------------------------------------------

f32 = np.float32


def z(*shape, dtype=f32):
    return np.zeros(shape, dtype)


def r(*shape, seed=0):
    """Integer-valued floats in [-4, 4]: float32 sums exact, so copies must agree bit for bit."""
    return np.random.default_rng(seed).integers(-4, 5, size=shape).astype(f32)


def huge(*shape):
    """A zero-stride read-only view of 0.0 of any size: no memory behind it."""
    return np.broadcast_to(f32(0), shape)


HUGE = (1, 1, 70000, 70000)            # 4.9e9 elements: over 2**32
HUGE_OVERFLOW = (2**32, 2**32, 2**32, 2**32)   # element count overflows int64


def same_as(reference):
    """A check: the result equals reference() bit for bit (arrays or tuples of arrays)."""
    def check(result):
        want = reference()
        got_items = result if isinstance(result, tuple) else (result,)
        want_items = want if isinstance(want, tuple) else (want,)
        assert len(got_items) == len(want_items), f"{len(got_items)} results, expected {len(want_items)}"
        for g, w in zip(got_items, want_items):
            if w is None:
                assert g is None, "expected None"
                continue
            g, w = np.asarray(g), np.asarray(w)
            assert g.shape == w.shape, f"shape {g.shape}, expected {w.shape}"
            assert np.array_equal(g, w, equal_nan=True), "differs from the contiguous call"
    return check


def empty_of(shape):
    def check(result):
        items = result if isinstance(result, tuple) else (result,)
        first = np.asarray(items[0])
        assert first.shape == shape, f"shape {first.shape}, expected {shape}"
    return check


def nan_where(mask_fn):
    """A check: the result is NaN exactly where mask_fn(result) says (NaN propagates)."""
    def check(result):
        y = np.asarray(result[0] if isinstance(result, tuple) else result)
        want = mask_fn(y)
        got = np.isnan(y)
        assert got.shape == want.shape, f"mask shape {want.shape} vs result {got.shape}"
        assert np.array_equal(got, want), (f"NaN at {np.argwhere(got).tolist()[:6]}, expected at "
                                           f"{np.argwhere(want).tolist()[:6]}")
    return check


def is_nan(result):
    assert np.isnan(result), f"{result!r} is not NaN"


def noncontig(a):
    """a's values in a non-contiguous array (every other element of a wider buffer)."""
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    wide[..., ::2] = a
    v = wide[..., ::2]
    assert not v.flags.c_contiguous or a.size <= 1
    return v


def fortran(a):
    return np.asfortranarray(a)


def readonly(a):
    a = np.array(a)
    a.setflags(write=False)
    return a


def _tmpdir():
    return tempfile.mkdtemp(prefix="cnnkit_bad_input_")


def _lenet_small():
    cnnkit.set_random_seed(0)
    m = cnnkit.Sequential([L.Conv2d(1, 2, 3), L.ReLU(), L.MaxPool2d(2), L.Flatten(), L.Linear(2 * 3 * 3, 3)],
                          input_shape=(1, 8, 8))
    return m


def _compiled():
    m = _lenet_small()
    m.compile(optimizer=optim.SGD(learning_rate=0.01), loss="cross_entropy", metrics=["accuracy"])
    return m


X8 = lambda n=4: r(n, 1, 8, 8)  # noqa: E731
Y3 = lambda n=4: np.arange(n) % 3  # noqa: E731


# --- dtype: wrong element types -> TypeError naming the dtype ---------------------------------

BAD_DTYPES = {
    "complex": lambda s: np.zeros(s, np.complex64),
    "str": lambda s: np.full(s, "a"),
    "object": lambda s: np.full(s, None, dtype=object),
    "datetime": lambda s: np.zeros(s, "datetime64[s]"),
}
DTYPE_NAME = {"complex": "complex64", "str": "<U1", "object": "object", "datetime": "datetime64"}

# op name -> (call taking a bad-dtype array builder, the argument's shape)
DTYPE_OPS = {
    "relu": (lambda b: F.relu(b((2, 3))), None),
    "sigmoid": (lambda b: F.sigmoid(b((2, 3))), None),
    "tanh": (lambda b: F.tanh(b((2, 3))), None),
    "softmax": (lambda b: F.softmax(b((2, 3))), None),
    "conv2d_x": (lambda b: F.conv2d(b((1, 1, 4, 4)), z(1, 1, 3, 3)), None),
    "conv2d_w": (lambda b: F.conv2d(z(1, 1, 4, 4), b((1, 1, 3, 3))), None),
    "conv2d_bias": (lambda b: F.conv2d(z(1, 1, 4, 4), z(2, 1, 3, 3), b((2,))), None),
    "conv1d_x": (lambda b: F.conv1d(b((1, 1, 6)), z(1, 1, 3)), None),
    "max_pool2d": (lambda b: F.max_pool2d(b((1, 1, 4, 4)), 2), None),
    "avg_pool2d": (lambda b: F.avg_pool2d(b((1, 1, 4, 4)), 2), None),
    "max_pool1d": (lambda b: F.max_pool1d(b((1, 1, 4)), 2), None),
    "avg_pool1d": (lambda b: F.avg_pool1d(b((1, 1, 4)), 2), None),
    "global_avg_pool2d": (lambda b: F.global_avg_pool2d(b((1, 1, 4, 4))), None),
    "linear_x": (lambda b: F.linear(b((2, 3)), z(4, 3)), None),
    "linear_w": (lambda b: F.linear(z(2, 3), b((4, 3))), None),
    "batch_norm": (lambda b: F.batch_norm(b((2, 3, 2, 2)), z(3), np.ones(3, f32), training=True), None),
    "adaptive_avg_pool2d": (lambda b: F.adaptive_avg_pool2d(b((1, 1, 4, 4)), 2), None),
    "zero_pad2d": (lambda b: F.zero_pad2d(b((1, 1, 4, 4)), 1), None),
    "lp_pool2d": (lambda b: F.lp_pool2d(b((1, 1, 4, 4)), 2, 2), None),
    "cross_entropy_logits": (lambda b: F.cross_entropy(b((2, 3)), [0, 1]), None),
    "relu_backward_grad": (lambda b: F.relu_backward(b((2, 3)), z(2, 3)), None),
    "linear_layer_forward": (lambda b: L.Linear(3, 2).forward(b((2, 3))), None),
    "conv2d_layer_forward": (lambda b: L.Conv2d(1, 2, 3).forward(b((1, 1, 4, 4))), None),
}
for op, (call, _) in DTYPE_OPS.items():
    for dname, builder in BAD_DTYPES.items():
        bad(f"dtype_{op}_{dname}", "dtype", (lambda call=call, builder=builder: call(builder)), TypeError,
            rf"(real numbers|must be an array).*{re.escape(DTYPE_NAME[dname])}|{re.escape(DTYPE_NAME[dname])}")

# integer, bool and float64 inputs are converted (documented): same as the float32 call
for dname, dt in {"int32": np.int32, "uint8": np.uint8, "bool": np.bool_, "float64": np.float64, "float16": np.float16}.items():
    ok(f"dtype_relu_{dname}_converted", "dtype", lambda dt=dt: F.relu(r(3, 4).astype(dt)),
       same_as(lambda dt=dt: F.relu(r(3, 4).astype(dt).astype(f32))))
    ok(f"dtype_conv2d_{dname}_converted", "dtype", lambda dt=dt: F.conv2d(r(1, 1, 5, 5).astype(dt), r(2, 1, 3, 3)),
       same_as(lambda dt=dt: F.conv2d(r(1, 1, 5, 5).astype(dt).astype(f32), r(2, 1, 3, 3))))
bad("dtype_labels_complex", "dtype", lambda: F.cross_entropy(z(2, 3), np.zeros(2, np.complex64)), TypeError,
    r"labels must hold integers, got dtype complex64")
bad("dtype_labels_bool", "dtype", lambda: F.cross_entropy(z(2, 3), np.zeros(2, bool)), TypeError,
    r"labels must hold integers, got dtype bool")
bad("dtype_fit_y_strings", "dtype", lambda: _compiled().fit(X8(), np.array(["a"] * 4), verbose=0), TypeError,
    r"y must hold numbers, got dtype <U1")
bad("dtype_predict_x_strings", "dtype", lambda: _lenet_small().predict(np.full((2, 1, 8, 8), "a")), TypeError,
    r"expected a batch of real numbers, got dtype <U1")
bad("dtype_fit_x_complex", "dtype", lambda: _compiled().fit(np.zeros((4, 1, 8, 8), np.complex64), Y3(), verbose=0), TypeError,
    r"got dtype complex64")
bad("dtype_evaluate_x_object", "dtype", lambda: _compiled().evaluate(np.full((4, 1, 8, 8), None), Y3()), TypeError,
    r"got dtype object")
bad("dtype_indices_float", "dtype",
    lambda: F.max_pool2d_backward(z(1, 1, 2, 2), z(1, 1, 2, 2), (1, 1, 4, 4), 2), TypeError, r"indices must be an integer")
bad("dtype_optimizer_param_float64", "dtype",
    lambda: optim.SGD().step([np.zeros(3)], [np.zeros(3)]), TypeError, r"params\[0\] must have dtype float32, got float64")


# --- ndim: wrong rank -> ValueError naming the expected layout and the actual shape ----------

def _ndim_cases():
    s = re.escape
    cases = {
        "conv2d_x_3d": (lambda: F.conv2d(z(1, 4, 4), z(1, 1, 3, 3)), "(1, 4, 4)"),
        "conv2d_x_5d": (lambda: F.conv2d(z(1, 1, 1, 4, 4), z(1, 1, 3, 3)), "(1, 1, 1, 4, 4)"),
        "conv2d_x_0d": (lambda: F.conv2d(f32(1), z(1, 1, 3, 3)), "()"),
        "conv2d_w_2d": (lambda: F.conv2d(z(1, 1, 4, 4), z(3, 3)), "(3, 3)"),
        "conv2d_backward_x_3d": (lambda: F.conv2d_backward(z(1, 1, 2, 2), z(1, 4, 4), z(1, 1, 3, 3)), "(1, 4, 4)"),
        "conv1d_x_2d": (lambda: F.conv1d(z(1, 6), z(1, 1, 3)), "(1, 6)"),
        "conv1d_w_4d": (lambda: F.conv1d(z(1, 1, 6), z(1, 1, 1, 3)), "(1, 1, 1, 3)"),
        "max_pool2d_3d": (lambda: F.max_pool2d(z(1, 4, 4), 2), "(1, 4, 4)"),
        "max_pool2d_1d": (lambda: F.max_pool2d(z(4), 2), "(4,)"),
        "avg_pool2d_5d": (lambda: F.avg_pool2d(z(1, 1, 1, 4, 4), 2), "(1, 1, 1, 4, 4)"),
        "max_pool1d_2d": (lambda: F.max_pool1d(z(1, 4), 2), "(1, 4)"),
        "avg_pool1d_4d": (lambda: F.avg_pool1d(z(1, 1, 4, 4), 2), "(1, 1, 4, 4)"),
        "global_avg_pool2d_2d": (lambda: F.global_avg_pool2d(z(2, 3)), "(2, 3)"),
        "linear_w_3d": (lambda: F.linear(z(2, 3), z(1, 4, 3)), "(1, 4, 3)"),
        "linear_x_0d": (lambda: F.linear(f32(1), z(4, 1)), "()"),
        "cross_entropy_logits_3d": (lambda: F.cross_entropy(z(2, 3, 1), [0, 1]), "(2, 3, 1)"),
        "batch_norm_1d": (lambda: F.batch_norm(z(3), z(3), np.ones(3, f32)), "(3,)"),
        "adaptive_avg_pool2d_3d": (lambda: F.adaptive_avg_pool2d(z(1, 4, 4), 2), "(1, 4, 4)"),
        "lp_pool2d_3d": (lambda: F.lp_pool2d(z(1, 4, 4), 2, 2), "(1, 4, 4)"),
        "locally_connected2d_x_3d": (lambda: F.locally_connected2d(z(1, 4, 4), z(2, 2, 1, 1, 3, 3)), "(1, 4, 4)"),
        "zero_pad2d_1d": (lambda: F.zero_pad2d(z(4), 1), "(4,)"),
    "pad_backward_0d": (lambda: F.pad_backward(f32(1), (1, 1)), "()"),
        "layer_conv2d_3d": (lambda: L.Conv2d(1, 2, 3).forward(z(1, 4, 4)), "(1, 4, 4)"),
        "layer_conv1d_4d": (lambda: L.Conv1d(1, 2, 3).forward(z(1, 1, 4, 4)), "(1, 1, 4, 4)"),
        "layer_maxpool2d_3d": (lambda: L.MaxPool2d(2).forward(z(1, 4, 4)), "(1, 4, 4)"),
        "layer_avgpool1d_2d": (lambda: L.AvgPool1d(2).forward(z(1, 4)), "(1, 4)"),
        "layer_linear_1d": (lambda: L.Linear(3, 2).forward(z(3)), "(3,)"),
        "layer_batchnorm2d_3d": (lambda: L.BatchNorm2d(3).forward(z(2, 3, 4)), "(2, 3, 4)"),
        "layer_batchnorm1d_4d": (lambda: L.BatchNorm1d(3).forward(z(2, 3, 4, 4)), "(2, 3, 4, 4)"),
        "layer_globalavgpool_3d": (lambda: L.GlobalAvgPool2d().forward(z(2, 3, 4)), "(2, 3, 4)"),
        "layer_adaptive_3d": (lambda: L.AdaptiveAvgPool2d(1).forward(z(2, 3, 4)), "(2, 3, 4)"),
        "layer_zeropad_3d": (lambda: L.ZeroPad2d(1).forward(z(2, 3, 4)), "(2, 3, 4)"),
        "layer_lppool_3d": (lambda: L.LPPool2d(2, 2).forward(z(2, 4, 4)), "(2, 4, 4)"),
        "layer_locally_connected_3d": (lambda: L.LocallyConnected2d(1, 2, 3, (4, 4)).forward(z(1, 4, 4)), "(1, 4, 4)"),
        "model_predict_3d": (lambda: _lenet_small().predict(z(1, 8, 8)), "(1, 8, 8)"),
        "model_predict_scalar": (lambda: _lenet_small().predict(f32(0)), "scalar"),
        "model_fit_x_2d": (lambda: _compiled().fit(z(4, 64), Y3(), verbose=0), "(4, 64)"),
        "model_evaluate_x_5d": (lambda: _compiled().evaluate(z(4, 1, 1, 8, 8), Y3()), "(4, 1, 1, 8, 8)"),
        "softmax_0d": (lambda: F.softmax(f32(1)), "()"),
        "flatten_0d": (lambda: L.Flatten().forward(f32(1)), "()"),
    }
    for name, (call, shape) in cases.items():
        bad(f"ndim_{name}", "ndim", call, ValueError, s(shape))


_ndim_cases()


# --- shape: sizes that do not agree -> ValueError naming expected and actual -----------------

x4, w4 = (lambda: r(2, 3, 8, 8)), (lambda: r(4, 3, 3, 3))
SHAPE_CASES = {
    "conv2d_channels": (lambda: F.conv2d(x4(), r(4, 2, 3, 3)), r"3 channels.*\(4, 2, 3, 3\)"),
    "conv2d_groups_channels": (lambda: F.conv2d(x4(), r(4, 3, 3, 3), groups=3), r"groups"),
    "conv2d_groups_not_dividing": (lambda: F.conv2d(r(1, 4, 5, 5), r(3, 2, 3, 3), groups=2), r"groups"),
    "conv2d_groups_zero": (lambda: F.conv2d(x4(), w4(), groups=0), r"groups.*0"),
    "conv2d_bias_len": (lambda: F.conv2d(x4(), w4(), r(5)), r"bias of shape \(4,\), got shape \(5,\)"),
    "conv2d_bias_2d": (lambda: F.conv2d(x4(), w4(), r(4, 1)), r"bias of shape \(4,\), got shape \(4, 1\)"),
    "conv2d_kernel_larger": (lambda: F.conv2d(r(1, 1, 2, 2), r(1, 1, 3, 3)), r"kernel \(3, 3\).*\(2, 2\)"),
    "conv2d_backward_grad": (lambda: F.conv2d_backward(r(2, 4, 5, 5), x4(), w4()), r"\(2, 4, 6, 6\).*\(2, 4, 5, 5\)"),
    "conv2d_backward_grad_channels": (lambda: F.conv2d_backward(r(2, 5, 6, 6), x4(), w4()), r"\(2, 4, 6, 6\).*\(2, 5, 6, 6\)"),
    "conv1d_channels": (lambda: F.conv1d(r(2, 3, 8), r(4, 2, 3)), r"3 channels.*\(4, 2, 3\)"),
    "conv1d_backward_grad": (lambda: F.conv1d_backward(r(2, 4, 7), r(2, 3, 8), r(4, 3, 3)), r"\(2, 4, 6\).*\(2, 4, 7\)"),
    "conv1d_kernel_larger": (lambda: F.conv1d(r(1, 1, 2), r(1, 1, 3)), r"kernel 3.*2"),
    "linear_features": (lambda: F.linear(r(2, 5), r(3, 4)), r"\(2, 5\).*4 features.*\(3, 4\)"),
    "linear_bias": (lambda: F.linear(r(2, 4), r(3, 4), r(2)), r"bias of shape \(3,\), got shape \(2,\)"),
    "linear_backward_grad": (lambda: F.linear_backward(r(2, 2), r(2, 4), r(3, 4)), r"\(2, 3\).*\(2, 2\)"),
    "linear_backward_x": (lambda: F.linear_backward(r(2, 3), r(2, 5), r(3, 4)), r"5|\(2, 5\)"),
    "max_pool2d_kernel_larger": (lambda: F.max_pool2d(r(1, 1, 3, 3), 4), r"kernel \(4, 4\).*\(3, 3\)"),
    "max_pool2d_backward_grad": (lambda: F.max_pool2d_backward(r(1, 1, 3, 3), np.zeros((1, 1, 3, 3), np.int64), (1, 1, 4, 4), 2),
                                 r"\(1, 1, 2, 2\).*\(1, 1, 3, 3\)"),
    "max_pool2d_backward_indices": (lambda: F.max_pool2d_backward(r(1, 1, 2, 2), np.zeros((1, 1, 2, 3), np.int64), (1, 1, 4, 4), 2),
                                    r"indices of shape \(1, 1, 2, 2\), got shape \(1, 1, 2, 3\)"),
    "max_pool2d_backward_input_shape_len": (lambda: F.max_pool2d_backward(r(1, 1, 2, 2), np.zeros((1, 1, 2, 2), np.int64), (1, 4, 4), 2),
                                            r"4 entries, got 3"),
    "max_pool2d_backward_index_range": (lambda: F.max_pool2d_backward(r(1, 1, 2, 2), np.full((1, 1, 2, 2), 16, np.int64), (1, 1, 4, 4), 2),
                                        r"\[0, 16\).*16"),
    "max_pool2d_backward_index_negative": (lambda: F.max_pool2d_backward(r(1, 1, 2, 2), np.full((1, 1, 2, 2), -1, np.int64), (1, 1, 4, 4), 2),
                                           r"\[0, 16\).*-1"),
    "max_pool1d_backward_grad": (lambda: F.max_pool1d_backward(r(1, 1, 3), np.zeros((1, 1, 3), np.int64), (1, 1, 4), 2),
                                 r"\(1, 1, 2\).*\(1, 1, 3\)"),
    "avg_pool2d_backward_grad": (lambda: F.avg_pool2d_backward(r(1, 1, 3, 3), (1, 1, 4, 4), 2), r"\(1, 1, 2, 2\).*\(1, 1, 3, 3\)"),
    "avg_pool1d_backward_grad": (lambda: F.avg_pool1d_backward(r(1, 1, 3), (1, 1, 4), 2), r"\(1, 1, 2\).*\(1, 1, 3\)"),
    "avg_pool2d_backward_input_shape_negative": (lambda: F.avg_pool2d_backward(r(1, 1, 2, 2), (1, 1, -4, 4), 2), r"-4"),
    "global_avg_pool2d_backward_grad": (lambda: F.global_avg_pool2d_backward(r(2, 4), (2, 3, 4, 4)), r"\(2, 3\).*\(2, 4\)"),
    "global_avg_pool2d_backward_input_shape_len": (lambda: F.global_avg_pool2d_backward(r(2, 3), (2, 3, 4)), r"4 entries|\(2, 3, 4\)"),
    "relu_backward": (lambda: F.relu_backward(r(2, 3), r(3, 2)), r"\(3, 2\).*\(2, 3\)"),
    "sigmoid_backward": (lambda: F.sigmoid_backward(r(2, 3), r(2, 4)), r"\(2, 4\).*\(2, 3\)"),
    "tanh_backward": (lambda: F.tanh_backward(r(6), r(2, 3)), r"\(2, 3\).*\(6,\)"),
    "softmax_backward": (lambda: F.softmax_backward(r(2, 3), r(2, 4)), r"\(2, 4\).*\(2, 3\)"),
    "softmax_axis": (lambda: F.softmax(r(2, 3), axis=-3), r"axis -3.*\(2, 3\)"),
    "cross_entropy_backward_probs": (lambda: F.cross_entropy_backward(r(2, 3), [0, 1], probs=r(2, 4)), r"\(2, 3\).*\(2, 4\)"),
    "batch_norm_running_mean": (lambda: F.batch_norm(r(2, 3, 2, 2), z(4), np.ones(3, f32)), r"\(3,\).*\(4,\)"),
    "batch_norm_running_var": (lambda: F.batch_norm(r(2, 3, 2, 2), z(3), np.ones(2, f32)), r"\(3,\).*\(2,\)"),
    "batch_norm_weight": (lambda: F.batch_norm(r(2, 3, 2, 2), z(3), np.ones(3, f32), weight=r(4)), r"\(3,\).*\(4,\)"),
    "batch_norm_bias": (lambda: F.batch_norm(r(2, 3, 2, 2), z(3), np.ones(3, f32), bias=r(2)), r"\(3,\).*\(2,\)"),
    "batch_norm_training_one_value": (lambda: F.batch_norm(r(1, 3), z(3), np.ones(3, f32), training=True), r"more than 1 value|one value|1 value"),
    "batch_norm_backward_grad": (lambda: F.batch_norm_backward(r(2, 3, 2, 3), r(2, 3, 2, 2), None, z(3), np.ones(3, f32)),
                                 r"\(2, 3, 2, 2\).*\(2, 3, 2, 3\)"),
    "locally_connected2d_weight_positions": (lambda: F.locally_connected2d(r(1, 1, 4, 4), r(3, 3, 2, 1, 3, 3)), r"\(2, 2"),
    "locally_connected2d_weight_channels": (lambda: F.locally_connected2d(r(1, 2, 4, 4), r(2, 2, 2, 1, 3, 3)), r"2 channels|\(2, 2, 2, 2, 3, 3\)"),
    "locally_connected2d_bias": (lambda: F.locally_connected2d(r(1, 1, 4, 4), r(2, 2, 2, 1, 3, 3), r(3)), r"\(2,\)|\(2, 2, 2\).*\(3,\)"),
    "adaptive_avg_pool2d_zero": (lambda: F.adaptive_avg_pool2d(r(1, 1, 4, 4), 0), r"output_size.*0|>= 1"),
    "adaptive_avg_pool2d_backward_grad": (lambda: F.adaptive_avg_pool2d_backward(r(1, 2, 2, 2), (1, 1, 4, 4)), r"\(1, 1,.*\(1, 2, 2, 2\)|channels"),
    "lp_pool2d_kernel_larger": (lambda: F.lp_pool2d(r(1, 1, 3, 3), 2, 4), r"kernel \(4, 4\).*\(3, 3\)"),
    "lp_pool2d_backward_grad": (lambda: F.lp_pool2d_backward(r(1, 1, 3, 3), r(1, 1, 4, 4), 2, 2), r"\(1, 1, 2, 2\).*\(1, 1, 3, 3\)"),
    "zero_pad2d_crop_too_much": (lambda: F.zero_pad2d(r(1, 1, 4, 4), -3), r"crop|\(4, 4\)|-3"),
    "pad_wrong_length": (lambda: F.pad(r(1, 1, 4, 4), (1, 1, 1)), r"\(1, 1, 1\)"),
    "pad_backward_crop_too_much": (lambda: F.pad_backward(r(1, 1, 2, 2), (2, 2, 2, 2)), r"crop|\(1, 1, 2, 2\)|-2"),
    "layer_conv2d_channels": (lambda: L.Conv2d(3, 4, 3).forward(r(2, 2, 8, 8)), r"3 channels.*\(2, 2, 8, 8\)"),
    "layer_conv2d_channels_last_hint": (lambda: L.Conv2d(3, 4, 3).forward(r(2, 8, 8, 3)), r"channels-last"),
    "layer_conv1d_channels": (lambda: L.Conv1d(3, 4, 3).forward(r(2, 2, 8)), r"3 channels.*\(2, 2, 8\)"),
    "layer_linear_features": (lambda: L.Linear(4, 2).forward(r(2, 5)), r"\(N, \.\.\., 4\).*\(2, 5\)"),
    "layer_linear_backward_grad": (lambda: (lambda l: (l.forward(r(2, 4)), l.backward(r(2, 3))))(L.Linear(4, 2)),
                                   r"\(2, 2\).*\(2, 3\)"),
    "layer_conv2d_backward_grad": (lambda: (lambda l: (l.forward(r(1, 1, 4, 4)), l.backward(r(1, 2, 3, 3))))(L.Conv2d(1, 2, 3)),
                                   r"\(1, 2, 2, 2\).*\(1, 2, 3, 3\)"),
    "layer_maxpool_backward_grad": (lambda: (lambda l: (l.forward(r(1, 1, 4, 4)), l.backward(r(1, 1, 4, 4))))(L.MaxPool2d(2)),
                                    r"\(1, 1, 2, 2\).*\(1, 1, 4, 4\)"),
    "layer_relu_backward_grad": (lambda: (lambda l: (l.forward(r(2, 3)), l.backward(r(3, 2))))(L.ReLU()), r"\(2, 3\).*\(3, 2\)"),
    "layer_batchnorm_channels": (lambda: L.BatchNorm2d(3).forward(r(2, 4, 2, 2)), r"3 channels.*\(2, 4, 2, 2\)"),
    "layer_batchnorm1d_channels": (lambda: L.BatchNorm1d(3).forward(r(2, 4)), r"3 channels.*\(2, 4\)"),
    "layer_batchnorm_train_batch1": (lambda: L.BatchNorm1d(3).forward(r(1, 3)), r"more than 1 value|1 value"),
    "layer_locally_connected_size": (lambda: L.LocallyConnected2d(1, 2, 3, (5, 5)).forward(r(1, 1, 4, 4)), r"\(5, 5\).*\(4, 4\)"),
    "layer_flatten_start_dim_out_of_range": (lambda: L.Flatten(start_dim=2**62).forward(r(2, 3)),
                                             r"Flatten\(start_dim=4611686018427387904, end_dim=-1\) does not fit shape \(2, 3\)"),
    "layer_flatten_end_dim_out_of_range": (lambda: L.Flatten(end_dim=3).forward(r(2, 3)), r"end_dim=3\) does not fit shape \(2, 3\)"),
    "layer_softmax_axis_out_of_range": (lambda: L.Softmax(axis=5).forward(r(2, 3)), r"axis 5 is out of range.*\(2, 3\)"),
    "layer_softmax_axis_out_of_range_negative": (lambda: L.Softmax(axis=-4).forward(r(2, 3)), r"axis -4 is out of range"),
    "layer_flatten_backward_size": (lambda: (lambda l: (l.forward(r(2, 3, 2)), l.backward(r(2, 5))))(L.Flatten()), r"10|\(2, 3, 2\)|size"),
    "layer_dropout_backward_grad": (lambda: (lambda l: (l.forward(r(2, 3)), l.backward(r(3, 3))))(L.Dropout(0.5)), r"\(2, 3\).*\(3, 3\)"),
    "layer_softmax_backward_grad": (lambda: (lambda l: (l.forward(r(2, 3)), l.backward(r(2, 4))))(L.Softmax()), r"\(2, 3\).*\(2, 4\)"),
    "residual_shortcut_channels": (lambda: L.Residual(L.Conv2d(1, 2, 3), shortcut=L.Conv2d(1, 3, 3)).forward(r(1, 1, 5, 5)),
                                   r"\(1, 2, 3, 3\).*\(1, 3, 3, 3\)|\(1, 3, 3, 3\).*\(1, 2, 3, 3\)"),
    "concat_mismatched_branches": (lambda: L.Concat(L.Conv2d(1, 2, 3), L.Conv2d(1, 2, 1)).forward(r(1, 1, 5, 5)), r"\(.*\).*\(.*\)"),
    "sequential_layer_does_not_fit": (lambda: cnnkit.Sequential([L.Conv2d(1, 2, 3), L.Linear(10, 2)], input_shape=(1, 8, 8)),
                                      r"layer 1 \(Linear\) does not fit"),
    "sequential_input_shape_channels": (lambda: cnnkit.Sequential([L.Conv2d(3, 2, 3)], input_shape=(1, 8, 8)),
                                        r"\(3, H, W\).*\(1, 8, 8\)"),
    "model_predict_wrong_shape": (lambda: _lenet_small().predict(r(2, 1, 9, 9)), r"\(N, 1, 8, 8\).*\(2, 1, 9, 9\)"),
    "model_fit_wrong_shape": (lambda: _compiled().fit(r(4, 2, 8, 8), Y3(), verbose=0), r"\(N, 1, 8, 8\).*\(4, 2, 8, 8\)"),
    "model_load_state_dict_shape": (lambda: (lambda m: m.load_state_dict(dict(m.state_dict(), **{"0.weight": z(2, 1, 5, 5)})))(_lenet_small()),
                                    r"0.weight has shape \(2, 1, 5, 5\).*\(2, 1, 3, 3\)"),
    "model_load_state_dict_missing": (lambda: (lambda m: m.load_state_dict({k: v for k, v in m.state_dict().items() if k != "0.bias"}))(_lenet_small()),
                                      r"missing keys \['0.bias'\]"),
    "model_load_state_dict_unexpected": (lambda: (lambda m: m.load_state_dict(dict(m.state_dict(), extra=z(1))))(_lenet_small()),
                                         r"unexpected keys \['extra'\]"),
    "optimizer_grad_shape": (lambda: optim.SGD().step([z(3)], [z(4)]), r"grads\[0\] has shape \(4,\).*\(3,\)"),
    "optimizer_len_mismatch": (lambda: optim.Adam().step([z(3), z(2)], [z(3)]), r"2 params but 1 grads"),
    "loss_mse_shapes": (lambda: losses.get("mse")(r(2, 3), r(2, 4)), r"\(2, 3\).*\(2, 4\)|\(2, 4\).*\(2, 3\)"),
    "loss_bce_shapes": (lambda: losses.get("binary_cross_entropy")(r(2, 3), z(3, 2)), r"\(2, 3\).*\(3, 2\)|\(3, 2\).*\(2, 3\)"),
    "loss_ce_onehot_width": (lambda: losses.get("cross_entropy")(r(2, 3), np.eye(4, dtype=f32)[:2]), r"\(2, 3\).*\(2, 4\)|\(2, 4\)"),
    "metric_accuracy_pred_1d": (lambda: metrics.accuracy(r(3), [0, 1, 2]), r"\(N, num_classes\).*\(3,\)"),
    "metric_binary_accuracy_shapes": (lambda: metrics.binary_accuracy(r(2, 3), z(2, 2)), r"\(2, 3\).*\(2, 2\)"),
}
for name, (call, pattern) in SHAPE_CASES.items():
    bad(f"shape_{name}", "shape", call, ValueError, pattern)


# --- sizes: zero or negative kernel, stride, padding, dilation, channels, features ------------

SIZE_CASES = {
    "conv2d_stride_0": (lambda: F.conv2d(x4(), w4(), stride=0), r"stride must be >= 1.*0"),
    "conv2d_stride_neg": (lambda: F.conv2d(x4(), w4(), stride=-1), r"stride must be >= 1.*-1"),
    "conv2d_padding_neg": (lambda: F.conv2d(x4(), w4(), padding=(0, -1)), r"padding must be >= 0.*-1"),
    "conv2d_dilation_0": (lambda: F.conv2d(x4(), w4(), dilation=(1, 0)), r"dilation must be >= 1"),
    "conv2d_dilation_neg": (lambda: F.conv2d(x4(), w4(), dilation=-2), r"dilation must be >= 1"),
    "conv2d_kernel_0": (lambda: F.conv2d(x4(), z(4, 3, 0, 3)), r"kernel sizes >= 1|\(4, 3, 0, 3\)|\(4, 0, 3\)"),
    "conv2d_out_channels_0": (lambda: F.conv2d(x4(), z(0, 3, 3, 3)), r"out_channels.*>= 1"),
    "conv2d_backward_stride_0": (lambda: F.conv2d_backward(r(2, 4, 6, 6), x4(), w4(), stride=0), r"stride must be >= 1"),
    "conv2d_backward_padding_neg": (lambda: F.conv2d_backward(r(2, 4, 6, 6), x4(), w4(), padding=-1), r"padding must be >= 0"),
    "conv1d_stride_0": (lambda: F.conv1d(r(1, 1, 6), r(1, 1, 3), stride=0), r"stride must be >= 1"),
    "conv1d_padding_neg": (lambda: F.conv1d(r(1, 1, 6), r(1, 1, 3), padding=-2), r"padding must be >= 0"),
    "conv1d_dilation_0": (lambda: F.conv1d(r(1, 1, 6), r(1, 1, 3), dilation=0), r"dilation must be >= 1"),
    "conv1d_backward_stride_neg": (lambda: F.conv1d_backward(r(1, 1, 4), r(1, 1, 6), r(1, 1, 3), stride=-1), r"stride must be >= 1"),
    "max_pool2d_kernel_0": (lambda: F.max_pool2d(r(1, 1, 4, 4), 0), r"kernel_size must be >= 1"),
    "max_pool2d_kernel_neg": (lambda: F.max_pool2d(r(1, 1, 4, 4), (2, -2)), r"kernel_size must be >= 1"),
    "max_pool2d_stride_neg": (lambda: F.max_pool2d(r(1, 1, 4, 4), 2, -1), r"stride must be >= 1"),
    "max_pool2d_padding_neg": (lambda: F.max_pool2d(r(1, 1, 4, 4), 2, 2, -1), r"padding must be >= 0"),
    "max_pool2d_padding_over_half": (lambda: F.max_pool2d(r(1, 1, 4, 4), 3, 1, 2), r"half the kernel"),
    "avg_pool2d_kernel_0": (lambda: F.avg_pool2d(r(1, 1, 4, 4), 0), r"kernel_size must be >= 1"),
    "avg_pool2d_stride_0": (lambda: F.avg_pool2d(r(1, 1, 4, 4), 2, 0), r"stride must be >= 1"),
    "avg_pool2d_padding_over_half": (lambda: F.avg_pool2d(r(1, 1, 4, 4), 2, 2, 2), r"half the kernel"),
    "max_pool1d_kernel_0": (lambda: F.max_pool1d(r(1, 1, 4), 0), r"kernel_size must be >= 1"),
    "max_pool1d_stride_0": (lambda: F.max_pool1d(r(1, 1, 4), 2, 0), r"stride must be >= 1"),
    "avg_pool1d_padding_neg": (lambda: F.avg_pool1d(r(1, 1, 4), 2, 2, -1), r"padding must be >= 0"),
    "max_pool2d_backward_kernel_0": (lambda: F.max_pool2d_backward(r(1, 1, 2, 2), np.zeros((1, 1, 2, 2), np.int64), (1, 1, 4, 4), 0),
                                     r"kernel_size must be >= 1"),
    "avg_pool2d_backward_stride_0": (lambda: F.avg_pool2d_backward(r(1, 1, 2, 2), (1, 1, 4, 4), 2, 0), r"stride must be >= 1"),
    "lp_pool2d_kernel_0": (lambda: F.lp_pool2d(r(1, 1, 4, 4), 2, 0), r"kernel_size must be >= 1"),
    "lp_pool2d_stride_neg": (lambda: F.lp_pool2d(r(1, 1, 4, 4), 2, 2, -1), r"stride must be >= 1"),
    "lp_pool2d_norm_0": (lambda: F.lp_pool2d(r(1, 1, 4, 4), 0, 2), r"norm_type must be a finite number > 0"),
    "lp_pool2d_norm_nan": (lambda: F.lp_pool2d(r(1, 1, 4, 4), float("nan"), 2), r"norm_type must be a finite"),
    "locally_connected2d_stride_0": (lambda: F.locally_connected2d(r(1, 1, 4, 4), r(2, 2, 1, 1, 3, 3), stride=0), r"stride must be >= 1"),
    "locally_connected2d_padding_neg": (lambda: F.locally_connected2d(r(1, 1, 4, 4), r(2, 2, 1, 1, 3, 3), padding=-1), r"padding must be >= 0"),
    "adaptive_avg_pool2d_neg": (lambda: F.adaptive_avg_pool2d(r(1, 1, 4, 4), (2, -1)), r"-1|>= 1"),
    "batch_norm_eps_neg": (lambda: F.batch_norm(r(2, 3), z(3), np.ones(3, f32), eps=-1.0), r"eps must be a finite number >= 0"),
    "batch_norm_momentum_inf": (lambda: F.batch_norm(r(2, 3), z(3), np.ones(3, f32), momentum=float("inf")), r"momentum must be a finite"),
    "layer_conv2d_kernel_0": (lambda: L.Conv2d(1, 2, 0), r"kernel_size must be >= 1"),
    "layer_conv2d_stride_0": (lambda: L.Conv2d(1, 2, 3, stride=0), r"stride must be >= 1"),
    "layer_conv2d_padding_neg": (lambda: L.Conv2d(1, 2, 3, padding=-1), r"padding must be >= 0"),
    "layer_conv2d_dilation_0": (lambda: L.Conv2d(1, 2, 3, dilation=0), r"dilation must be >= 1"),
    "layer_conv2d_in_0": (lambda: L.Conv2d(0, 2, 3), r"in_channels must be >= 1"),
    "layer_conv2d_out_neg": (lambda: L.Conv2d(1, -2, 3), r"out_channels must be >= 1"),
    "layer_conv2d_groups_0": (lambda: L.Conv2d(2, 2, 3, groups=0), r"groups must be >= 1"),
    "layer_conv2d_groups_not_dividing": (lambda: L.Conv2d(3, 4, 3, groups=2), r"divisible by groups \(2\)"),
    "layer_conv2d_padding_word": (lambda: L.Conv2d(1, 2, 3, padding="full"), r"'valid' or 'same'.*'full'"),
    "layer_conv2d_kernel_3_ints": (lambda: L.Conv2d(1, 2, (3, 3, 3)), r"2 ints.*\(3, 3, 3\)"),
    "layer_conv1d_kernel_neg": (lambda: L.Conv1d(1, 2, -3), r"kernel_size must be >= 1"),
    "layer_conv1d_stride_0": (lambda: L.Conv1d(1, 2, 3, stride=0), r"stride must be >= 1"),
    "layer_conv1d_padding_neg": (lambda: L.Conv1d(1, 2, 3, padding=-1), r"padding must be >= 0"),
    "layer_maxpool2d_kernel_0": (lambda: L.MaxPool2d(0), r"kernel_size must be >= 1"),
    "layer_maxpool2d_stride_neg": (lambda: L.MaxPool2d(2, -1), r"stride must be >= 1"),
    "layer_maxpool2d_padding_over_half": (lambda: L.MaxPool2d(2, padding=2).forward(r(1, 1, 8, 8)), r"half the kernel"),
    "layer_avgpool2d_padding_neg": (lambda: L.AvgPool2d(2, padding=-1), r"padding must be >= 0"),
    "layer_maxpool1d_kernel_neg": (lambda: L.MaxPool1d(-1), r"kernel_size must be >= 1"),
    "layer_avgpool1d_stride_0": (lambda: L.AvgPool1d(2, 0), r"stride must be >= 1"),
    "layer_lppool_norm_neg": (lambda: L.LPPool2d(-1, 2), r"norm_type must be a finite number > 0"),
    "layer_lppool_kernel_0": (lambda: L.LPPool2d(2, 0), r"kernel_size must be >= 1"),
    "layer_linear_in_0": (lambda: L.Linear(0, 2), r"in_features must be >= 1"),
    "layer_linear_out_neg": (lambda: L.Linear(2, -1), r"out_features must be >= 1"),
    "layer_batchnorm_features_0": (lambda: L.BatchNorm2d(0), r"num_features must be >= 1"),
    "layer_batchnorm_eps_neg": (lambda: L.BatchNorm1d(3, eps=-1e-5), r"eps must be a finite number >= 0"),
    "layer_batchnorm_momentum_nan": (lambda: L.BatchNorm1d(3, momentum=float("nan")), r"momentum must be a finite"),
    "layer_dropout_p_1": (lambda: L.Dropout(1.0), r"p must be a number in \[0, 1\), got 1.0"),
    "layer_dropout_p_neg": (lambda: L.Dropout(-0.1), r"p must be a number in \[0, 1\)"),
    "layer_dropout_p_nan": (lambda: L.Dropout(float("nan")), r"p must be a number in \[0, 1\)"),
    "layer_locally_connected_kernel_larger": (lambda: L.LocallyConnected2d(1, 2, 5, (4, 4)), r"kernel \(5, 5\).*\(4, 4\)"),
    "layer_locally_connected_input_size_0": (lambda: L.LocallyConnected2d(1, 2, 3, (0, 4)), r"input_size must be >= 1"),
    "layer_adaptive_output_0": (lambda: L.AdaptiveAvgPool2d(0), r"output_size must be >= 1"),
    "layer_adaptive_output_3": (lambda: L.AdaptiveAvgPool2d((1, 2, 3)), r"int or 2 entries"),
    "layer_zeropad_5": (lambda: L.ZeroPad2d((1, 1, 1, 1, 1)), r"\(left, right, top, bottom\)"),
    "model_fit_batch_size_0": (lambda: _compiled().fit(X8(), Y3(), batch_size=0, verbose=0), r"batch_size must be >= 1, got 0"),
    "model_fit_epochs_neg": (lambda: _compiled().fit(X8(), Y3(), epochs=-1, verbose=0), r"epochs must be >= \d, got -1"),
    "model_fit_validation_split_1": (lambda: _compiled().fit(X8(), Y3(), validation_split=1.0, verbose=0), r"validation_split must be in \[0, 1\)"),
    "model_predict_batch_size_neg": (lambda: _lenet_small().predict(X8(), batch_size=-1), r"batch_size must be >= 1, got -1"),
    "model_evaluate_batch_size_0": (lambda: _compiled().evaluate(X8(), Y3(), batch_size=0), r"batch_size must be >= 1, got 0"),
    "model_input_shape_zero": (lambda: cnnkit.Sequential([L.ReLU()], input_shape=(1, 0, 8)), r"positive sizes.*\(1, 0, 8\)"),
    "optimizer_lr_neg": (lambda: optim.SGD(learning_rate=-0.1), r"learning_rate must be a finite number >= 0"),
    "optimizer_lr_nan": (lambda: optim.Adam(learning_rate=float("nan")), r"learning_rate must be a finite number >= 0"),
    "optimizer_momentum_neg": (lambda: optim.SGD(momentum=-0.5), r"momentum must be a finite number >= 0"),
    "optimizer_betas_1": (lambda: optim.Adam(betas=(0.9, 1.0)), r"betas\[1\] must be in \[0, 1\)"),
    "optimizer_nesterov_no_momentum": (lambda: optim.SGD(nesterov=True), r"nesterov momentum requires momentum > 0"),
    "callback_early_stopping_patience_neg": (lambda: callbacks.EarlyStopping(patience=-1), r"patience.*-1"),
    "set_num_threads_0": (lambda: cnnkit.set_num_threads(0), r"n must be >= 1, got 0"),
    "set_num_threads_neg": (lambda: cnnkit.set_num_threads(-3), r"n must be >= 1, got -3"),
    "set_random_seed_neg": (lambda: cnnkit.set_random_seed(-1), r"seed must be >= 0, got -1"),
    "callback_mode_bad": (lambda: callbacks.EarlyStopping(mode="sideways"), r"mode must be \"auto\", \"min\" or \"max\", got 'sideways'"),
    "checkpoint_mode_bad": (lambda: callbacks.ModelCheckpoint("m.cnnkit", mode="sideways"), r"got 'sideways'"),
    "scheduler_returns_nan": (lambda: _compiled().fit(X8(), Y3(), verbose=0, callbacks=[callbacks.LearningRateScheduler(lambda e: NAN)]),
                              r"schedule must return a finite number >= 0, got nan for epoch 0"),
    "scheduler_returns_str": (lambda: _compiled().fit(X8(), Y3(), verbose=0, callbacks=[callbacks.LearningRateScheduler(lambda e: "x")]),
                              r"got 'x' for epoch 0"),
    "fit_verbose_7": (lambda: _compiled().fit(X8(), Y3(), verbose=7), r"verbose must be 0, 1, 2.*got 7"),
    "adam_load_state_dict_missing": (lambda: optim.Adam().load_state_dict({"step": 1}), r"missing keys \['learning_rate'\]"),
    "sgd_load_state_dict_state_shape": (lambda: (lambda o: (o.step([z(3)], [np.ones(3, f32)]),
                                                            o.load_state_dict({k: (z(5) if getattr(v, "shape", None) == (3,) else v)
                                                                               for k, v in o.state_dict().items()})))(optim.SGD(momentum=0.9)),
                                        r"momentum_buffer has shape \(5,\) but params\[0\] has shape \(3,\)"),
    "metrics_get_unknown": (lambda: metrics.get("f1"), r"unknown metric 'f1'"),
    "losses_get_unknown": (lambda: losses.get("hinge"), r"unknown loss 'hinge'"),
    "accuracy_mode_bad": (lambda: metrics.Accuracy("fuzzy"), r"mode must be one of.*'fuzzy'"),
}
for name, (call, pattern) in SIZE_CASES.items():
    bad(f"sizes_{name}", "sizes", call, ValueError, pattern)


# --- NaN / Inf: propagate, unchecked, as PyTorch ---------------------------------------------

def _with(a, index, value):
    a = np.array(a)
    a[index] = value
    return a


NAN = float("nan")
INF = float("inf")
ok("nan_inf_relu_nan", "nan_inf", lambda: F.relu(_with(r(2, 3), (0, 1), NAN)),
   nan_where(lambda y: np.isin(np.arange(6), [1]).reshape(2, 3)))
ok("nan_inf_sigmoid_nan", "nan_inf", lambda: F.sigmoid(_with(r(2, 3), (1, 2), NAN)),
   nan_where(lambda y: np.isin(np.arange(6), [5]).reshape(2, 3)))
ok("nan_inf_tanh_nan", "nan_inf", lambda: F.tanh(_with(r(2, 3), (0, 0), NAN)),
   nan_where(lambda y: np.isin(np.arange(6), [0]).reshape(2, 3)))
ok("nan_inf_sigmoid_inf", "nan_inf", lambda: F.sigmoid(np.array([INF, -INF, 0], f32)),
   same_as(lambda: np.array([1.0, 0.0, 0.5], f32)))
ok("nan_inf_tanh_inf", "nan_inf", lambda: F.tanh(np.array([INF, -INF], f32)), same_as(lambda: np.array([1.0, -1.0], f32)))
ok("nan_inf_relu_inf", "nan_inf", lambda: F.relu(np.array([INF, -INF], f32)), same_as(lambda: np.array([INF, 0.0], f32)))
ok("nan_inf_softmax_nan_row", "nan_inf", lambda: F.softmax(_with(r(3, 4), (1, 2), NAN)),
   nan_where(lambda y: np.repeat(np.arange(3) == 1, 4).reshape(3, 4)))
ok("nan_inf_softmax_inf_row", "nan_inf", lambda: F.softmax(_with(z(2, 3), (0, 1), INF)),
   nan_where(lambda y: np.array([[True, True, True], [False, False, False]])))  # torch: inf - inf = nan
ok("nan_inf_conv2d_nan", "nan_inf", lambda: F.conv2d(_with(r(1, 1, 5, 5), (0, 0, 0, 0), NAN), r(1, 1, 3, 3)),
   nan_where(lambda y: np.pad(np.ones((1, 1, 1, 1), bool), ((0, 0), (0, 0), (0, 2), (0, 2)))))
ok("nan_inf_conv2d_weight_inf", "nan_inf", lambda: F.conv2d(r(1, 1, 4, 4) * 0 + 1, _with(z(1, 1, 3, 3), (0, 0, 0, 0), INF)),
   same_as(lambda: np.full((1, 1, 2, 2), INF, f32)))
ok("nan_inf_max_pool2d_nan", "nan_inf", lambda: F.max_pool2d(_with(r(1, 1, 4, 4), (0, 0, 3, 3), NAN), 2),
   nan_where(lambda y: np.array([[[[False, False], [False, True]]]])))
ok("nan_inf_max_pool2d_inf", "nan_inf", lambda: F.max_pool2d(_with(r(1, 1, 2, 2), (0, 0, 1, 1), INF), 2),
   same_as(lambda: np.full((1, 1, 1, 1), INF, f32)))
ok("nan_inf_avg_pool2d_nan", "nan_inf", lambda: F.avg_pool2d(_with(r(1, 1, 4, 4), (0, 0, 0, 0), NAN), 2),
   nan_where(lambda y: np.array([[[[True, False], [False, False]]]])))
ok("nan_inf_max_pool1d_nan", "nan_inf", lambda: F.max_pool1d(_with(r(1, 1, 4), (0, 0, 0), NAN), 2),
   nan_where(lambda y: np.array([[[True, False]]])))
ok("nan_inf_global_avg_nan", "nan_inf", lambda: F.global_avg_pool2d(_with(r(1, 2, 3, 3), (0, 1, 0, 0), NAN)),
   nan_where(lambda y: np.array([[False, True]])))
ok("nan_inf_linear_nan", "nan_inf", lambda: F.linear(_with(r(2, 3), (1, 0), NAN), r(4, 3)),
   nan_where(lambda y: np.repeat(np.arange(2) == 1, 4).reshape(2, 4)))
ok("nan_inf_cross_entropy_nan", "nan_inf", lambda: F.cross_entropy(_with(r(2, 3), (0, 0), NAN), [0, 1]), is_nan)
ok("nan_inf_batch_norm_nan_channel", "nan_inf",
   lambda: F.batch_norm(_with(r(4, 2), (0, 1), NAN), z(2), np.ones(2, f32), training=True),
   nan_where(lambda y: np.tile([False, True], (4, 1))))
ok("nan_inf_adaptive_nan", "nan_inf", lambda: F.adaptive_avg_pool2d(_with(r(1, 1, 4, 4), (0, 0, 0, 0), NAN), 2),
   nan_where(lambda y: np.array([[[[True, False], [False, False]]]])))
ok("nan_inf_relu_layer_nan", "nan_inf", lambda: L.ReLU().forward(_with(r(2, 2), (0, 0), NAN)),
   nan_where(lambda y: np.array([[True, False], [False, False]])))
ok("nan_inf_predict_nan", "nan_inf", lambda: _lenet_small().predict(_with(X8(2), (1, 0, 0, 0), NAN)),
   nan_where(lambda y: np.repeat(np.arange(2) == 1, 3).reshape(2, 3)))
ok("nan_inf_mse_inf", "nan_inf", lambda: losses.get("mse")(np.array([[INF]], f32), np.zeros((1, 1), f32)),
   lambda v: None if v == INF else (_ for _ in ()).throw(AssertionError(f"{v} != inf")))


def _fit_nan_terminates():
    m = _compiled()
    h = m.fit(_with(X8(8), (0, 0, 0, 0), NAN), Y3(8), batch_size=4, epochs=5, verbose=0,
              callbacks=[callbacks.TerminateOnNaN()])
    return h


def _check_terminated(h):
    assert len(h.history["loss"]) == 1, f"ran {len(h.history['loss'])} epochs, expected 1"
    assert np.isnan(h.history["loss"][0]), f"loss {h.history['loss'][0]} is not NaN"


ok("nan_inf_fit_terminate_on_nan", "nan_inf", _fit_nan_terminates, _check_terminated)
bad("nan_inf_cross_entropy_backward_grad_inf", "nan_inf", lambda: F.cross_entropy_backward(r(2, 3), [0, 1], grad=INF),
    ValueError, r"grad must be finite, got inf")
bad("nan_inf_pad_value_nan", "nan_inf", lambda: F.pad(r(1, 1, 2, 2), (1, 1), value=NAN), ValueError, r"value must be a finite")


# --- empty batches: an empty output of the right shape ----------------------------------------

EMPTY_CASES = {
    "conv2d": (lambda: F.conv2d(z(0, 3, 8, 8), w4()), (0, 4, 6, 6)),
    "conv2d_backward": (lambda: F.conv2d_backward(z(0, 4, 6, 6), z(0, 3, 8, 8), w4()), (0, 3, 8, 8)),
    "conv1d": (lambda: F.conv1d(z(0, 3, 8), r(4, 3, 3)), (0, 4, 6)),
    "max_pool2d": (lambda: F.max_pool2d(z(0, 3, 8, 8), 2), (0, 3, 4, 4)),
    "avg_pool2d": (lambda: F.avg_pool2d(z(0, 3, 8, 8), 2), (0, 3, 4, 4)),
    "max_pool1d": (lambda: F.max_pool1d(z(0, 3, 8), 2), (0, 3, 4)),
    "avg_pool1d": (lambda: F.avg_pool1d(z(0, 3, 8), 2), (0, 3, 4)),
    "global_avg_pool2d": (lambda: F.global_avg_pool2d(z(0, 3, 8, 8)), (0, 3)),
    "linear": (lambda: F.linear(z(0, 3), r(4, 3)), (0, 4)),
    "linear_backward": (lambda: F.linear_backward(z(0, 4), z(0, 3), r(4, 3)), (0, 3)),
    "relu": (lambda: F.relu(z(0, 5)), (0, 5)),
    "sigmoid": (lambda: F.sigmoid(z(0,)), (0,)),
    "softmax": (lambda: F.softmax(z(0, 10)), (0, 10)),
    "adaptive_avg_pool2d": (lambda: F.adaptive_avg_pool2d(z(0, 3, 8, 8), 2), (0, 3, 2, 2)),
    "lp_pool2d": (lambda: F.lp_pool2d(z(0, 3, 8, 8), 2, 2), (0, 3, 4, 4)),
    "zero_pad2d": (lambda: F.zero_pad2d(z(0, 3, 8, 8), 1), (0, 3, 10, 10)),
    "locally_connected2d": (lambda: F.locally_connected2d(z(0, 1, 4, 4), r(2, 2, 2, 1, 3, 3)), (0, 2, 2, 2)),
    "batch_norm_eval": (lambda: F.batch_norm(z(0, 3, 2, 2), z(3), np.ones(3, f32)), (0, 3, 2, 2)),
    "layer_conv2d": (lambda: L.Conv2d(3, 4, 3).forward(z(0, 3, 8, 8)), (0, 4, 6, 6)),
    "layer_linear": (lambda: L.Linear(3, 4).forward(z(0, 3)), (0, 4)),
    "layer_flatten": (lambda: L.Flatten().forward(z(0, 3, 2, 2)), (0, 12)),
    "layer_maxpool": (lambda: L.MaxPool2d(2).forward(z(0, 3, 8, 8)), (0, 3, 4, 4)),
    "layer_dropout_train": (lambda: L.Dropout(0.5).forward(z(0, 3)), (0, 3)),
    "model_predict": (lambda: _lenet_small().predict(z(0, 1, 8, 8)), (0, 3)),
    "model_predict_batch_size_1": (lambda: _lenet_small().predict(z(0, 1, 8, 8), batch_size=1), (0, 3)),
    "concat": (lambda: L.Concat(L.Conv2d(1, 2, 1), L.Conv2d(1, 3, 1)).forward(z(0, 1, 4, 4)), (0, 5, 4, 4)),
    "residual": (lambda: L.Residual(L.Conv2d(2, 2, 3, padding=1)).forward(z(0, 2, 4, 4)), (0, 2, 4, 4)),
}
for name, (call, shape) in EMPTY_CASES.items():
    ok(f"empty_{name}", "empty", call, empty_of(shape))
ok("empty_cross_entropy_is_nan", "empty", lambda: F.cross_entropy(z(0, 3), np.zeros(0, np.int64)), is_nan)
ok("empty_evaluate_loss_nan", "empty", lambda: _compiled().evaluate(z(0, 1, 8, 8), np.zeros(0, np.int64))["loss"], is_nan)
bad("empty_fit_no_samples", "empty", lambda: _compiled().fit(z(0, 1, 8, 8), np.zeros(0, np.int64), verbose=0), ValueError,
    r"no training samples \(x has shape \(0, 1, 8, 8\)\)")


def _batch_norm_empty_training():
    rm, rv = z(3), np.ones(3, f32)
    y = F.batch_norm(z(0, 3), rm, rv, training=True)
    return y, rm, rv


def _check_bn_empty(result):  # as PyTorch 2.13: an empty output, running statistics untouched
    y, rm, rv = result
    assert y.shape == (0, 3), y.shape
    assert np.array_equal(rm, z(3)) and np.array_equal(rv, np.ones(3, f32)), f"running stats now {rm}, {rv}"


ok("empty_batch_norm_training", "empty", _batch_norm_empty_training, _check_bn_empty)
ok("empty_sequential_summary_no_layers", "empty", lambda: cnnkit.Sequential().summary(print_fn=lambda s: None),
   lambda v: None)


# --- sizes whose element count overflows 32 bits (and 64), built without memory ---------------
# The child process's address space is capped 4 GiB above what it maps: a call that allocated
# the tens of gigabytes these would need raises MemoryError, so an entry documented to raise
# ValueError proves the rejection came before any allocation.

OVERFLOW_VALUE = {
    "conv2d_huge_x_wrong_channels": (lambda: F.conv2d(huge(1, 2, 70000, 70000), r(1, 3, 3, 3)), r"2 channels.*\(1, 3, 3, 3\)"),
    "conv2d_huge_x_wrong_rank": (lambda: F.conv2d(huge(70000, 70000), r(1, 1, 3, 3)), r"4 dimensions.*\(70000, 70000\)"),
    "conv2d_huge_weight_wrong_rank": (lambda: F.conv2d(r(1, 1, 4, 4), huge(70000, 70000)), r"4 dimensions.*\(70000, 70000\)"),
    "linear_huge_x_wrong_features": (lambda: F.linear(huge(70000, 70000), r(3, 4)), r"\(70000, 70000\).*4 features"),
    "linear_huge_weight_wrong_features": (lambda: F.linear(r(2, 3), huge(70000, 70000)), r"\(2, 3\).*70000 features"),
    "max_pool2d_huge_plane": (lambda: F.max_pool2d(huge(*HUGE), 2), r"plane \(H, W\) = \(70000, 70000\) has 4900000000 elements, more than the 2147483647"),
    "avg_pool2d_huge_plane": (lambda: F.avg_pool2d(huge(*HUGE), 2), r"plane \(H, W\) = \(70000, 70000\) has 4900000000 elements, more than the 2147483647"),
    "max_pool2d_huge_wrong_rank": (lambda: F.max_pool2d(huge(70000, 70000), 2), r"4 dimensions.*\(70000, 70000\)"),
    "relu_backward_huge_mismatch": (lambda: F.relu_backward(huge(70000, 70000), r(2, 2)), r"\(2, 2\).*\(70000, 70000\)"),
    "softmax_backward_huge_mismatch": (lambda: F.softmax_backward(r(2, 2), huge(70000, 70000)), r"\(70000, 70000\).*\(2, 2\)"),
    "cross_entropy_huge_labels": (lambda: F.cross_entropy(r(2, 3), np.broadcast_to(np.int64(0), (70000, 70000))), r"\(2,\).*\(70000, 70000\)"),
    "max_pool2d_backward_huge_input_shape": (
        lambda: F.max_pool2d_backward(r(1, 1, 2, 2), np.zeros((1, 1, 2, 2), np.int64), HUGE, 2), r"\(70000, 70000\) has 4900000000 elements, more than the 2147483647|\(1, 1, 35000, 35000\).*\(1, 1, 2, 2\)"),
    "avg_pool2d_backward_huge_input_shape": (lambda: F.avg_pool2d_backward(r(1, 1, 2, 2), HUGE, 2), r"\(70000, 70000\) has 4900000000 elements, more than the 2147483647|\(1, 1, 35000, 35000\).*\(1, 1, 2, 2\)"),
    "global_avg_pool2d_backward_int64_overflow": (lambda: F.global_avg_pool2d_backward(r(1, 1), (1, 1, 2**62, 2**62)), r"\(1, 1, 4611686018427387904, 4611686018427387904\) has more elements"),
    "avg_pool2d_backward_int64_overflow": (lambda: F.avg_pool2d_backward(r(1, 1, 1, 1), (1, 1, 2**62, 2**62), 2**62), r"elements, more than the 2147483647|has more elements"),
    "adaptive_backward_int64_overflow": (lambda: F.adaptive_avg_pool2d_backward(r(1, 1, 1, 1), (2**40, 2**40, 2**40, 1)), r"has more elements|\(1, 1, 1, 1\)"),
    "pad_int64_overflow": (lambda: F.pad(r(1, 1, 2, 2), (2**62, 2**62, 2**62, 2**62)), r"overflow 64 bits|has more elements"),
    "zero_pad2d_beyond_int64": (lambda: F.zero_pad2d(r(1, 1, 2, 2), 2**63), r"padding must fit in 64 bits, got 9223372036854775808"),
    "sequential_huge_input_shape_wrong": (lambda: cnnkit.Sequential([L.Linear(3, 2)], input_shape=(70000 * 70000,)), r"\(\.\.\., 3\).*4900000000"),
}
OVERFLOW_VALUE.update({
    "batch_norm_huge_1d": (lambda: F.batch_norm(huge(70000 * 70000), z(3), z(3)), r"at least 2 dimensions.*\(4900000000,\)"),
    "batch_norm_huge_wrong_running_mean": (lambda: F.batch_norm(huge(2, 3, 70000, 70000), z(4), z(4)),
                                           r"running_mean of shape \(3,\), got shape \(4,\)"),
    "batch_norm_backward_huge_grad": (lambda: F.batch_norm_backward(huge(2, 3, 70000, 70000), r(2, 3, 2, 2), None, z(3), z(3)),
                                      r"\(2, 3, 2, 2\), got shape \(2, 3, 70000, 70000\)"),
    "locally_connected2d_huge_wrong_rank": (lambda: F.locally_connected2d(huge(1, 70000, 70000), z(1, 1, 1, 1, 1, 1)),
                                            r"4 dimensions.*\(1, 70000, 70000\)"),
    "locally_connected2d_huge_wrong_channels": (lambda: F.locally_connected2d(huge(1, 2, 70000, 70000), z(1, 1, 1, 1, 1, 1)),
                                                r"has 2 channels but weight of shape \(1, 1, 1, 1, 1, 1\) expects 1"),
    "adaptive_huge_wrong_rank": (lambda: F.adaptive_avg_pool2d(huge(1, 70000, 70000), 2), r"4 dimensions.*\(1, 70000, 70000\)"),
    "lp_pool2d_huge_wrong_rank": (lambda: F.lp_pool2d(huge(1, 70000, 70000), 2, 2), r"4 dimensions.*\(1, 70000, 70000\)"),
    "global_avg_pool2d_huge_wrong_rank": (lambda: F.global_avg_pool2d(huge(1, 70000, 70000)), r"4 dimensions.*\(1, 70000, 70000\)"),
    "zero_pad2d_huge_1d": (lambda: F.zero_pad2d(huge(70000 * 70000), 1), r"at least 2 dimensions.*\(4900000000,\)"),
    "cross_entropy_huge_logits_3d": (lambda: F.cross_entropy(huge(2, 70000, 70000), [0, 1]), r"2 dimensions.*\(2, 70000, 70000\)"),
    "cross_entropy_huge_logits_labels": (lambda: F.cross_entropy(huge(70000, 70000), [0, 1]), r"labels of shape \(70000,\), got shape \(2,\)"),
    "mse_huge_mismatch": (lambda: losses.get("mse")(huge(70000, 70000), z(2, 2)), r"target of shape \(70000, 70000\), got shape \(2, 2\)"),
    "bce_huge_mismatch": (lambda: losses.get("binary_cross_entropy")(huge(70000, 70000), z(2, 2)), r"\(70000, 70000\), got shape \(2, 2\)"),
    "soft_cross_entropy_huge_mismatch": (lambda: losses.get("cross_entropy")(huge(70000, 70000), z(2, 2)), r"\(70000, 70000\), got shape \(2, 2\)"),
    "dropout_backward_huge_mismatch": (lambda: (lambda l: (l.forward(r(2, 2)), l.backward(huge(70000, 70000))))(L.Dropout(0.5)),
                                       r"\(2, 2\), got shape \(70000, 70000\)"),
    "layer_conv2d_huge_wrong_channels": (lambda: L.Conv2d(3, 1, 3).forward(huge(1, 2, 70000, 70000)), r"3 channels.*\(1, 2, 70000, 70000\)"),
    "optimizer_step_huge_grad": (lambda: optim.SGD().step([z(3)], [huge(70000, 70000)]), r"\(70000, 70000\).*\(3,\)|\(3,\).*\(70000, 70000\)"),
    "adam_step_huge_grad": (lambda: optim.Adam().step([z(3)], [huge(70000, 70000)]), r"\(70000, 70000\).*\(3,\)|\(3,\).*\(70000, 70000\)"),
    "residual_add_huge_mismatch": (lambda: cnnkit._core.add(z(2, 2), huge(70000, 70000)), r"b of shape \(2, 2\), got shape \(70000, 70000\)"),
    "model_predict_huge_wrong_shape": (lambda: _lenet_small().predict(huge(70000, 1, 8, 70000)), r"\(N, 1, 8, 8\).*\(70000, 1, 8, 70000\)"),
})
for name, (call, pattern) in OVERFLOW_VALUE.items():
    bad(f"overflow32_{name}", "overflow32", call, ValueError, pattern)

OVERFLOW64 = {
    "conv2d_padding_2_62": (lambda: F.conv2d(r(1, 1, 4, 4), r(1, 1, 3, 3), padding=2**62),
                            r"conv2d: the height sizes overflow 64 bits: input 4, padding \(4611686018427387904"),
    "conv2d_dilation_2_62": (lambda: F.conv2d(r(1, 1, 4, 4), r(1, 1, 3, 3), dilation=2**62),
                             r"conv2d: the height sizes overflow 64 bits.*dilation 4611686018427387904"),
    "conv2d_backward_padding_2_62": (lambda: F.conv2d_backward(r(1, 1, 2, 2), r(1, 1, 4, 4), r(1, 1, 3, 3), padding=2**62),
                                     r"sizes overflow 64 bits"),
    "conv1d_padding_2_62": (lambda: F.conv1d(r(1, 1, 4), r(1, 1, 3), padding=2**62), r"conv1d: the length sizes overflow 64 bits"),
    "max_pool2d_kernel_padding_overflow": (lambda: F.max_pool2d(r(1, 1, 4, 4), 2**63 - 1, padding=2**62),
                                           r"max_pool2d: the height sizes overflow 64 bits"),
    "avg_pool1d_kernel_padding_overflow": (lambda: F.avg_pool1d(r(1, 1, 4), 2**63 - 1, padding=2**62), r"sizes overflow 64 bits"),
    "avg_pool2d_backward_padding_overflow": (lambda: F.avg_pool2d_backward(r(1, 1, 1, 1), (1, 1, 4, 4), 2**63 - 1, padding=2**62),
                                             r"sizes overflow 64 bits"),
    "locally_connected2d_padding_overflow": (lambda: F.locally_connected2d(r(1, 1, 4, 4), r(1, 1, 1, 1, 3, 3), padding=2**62),
                                             r"sizes overflow 64 bits"),
    "layer_conv2d_padding_in_model": (lambda: cnnkit.Sequential([L.Conv2d(1, 1, 3, padding=2**62)], input_shape=(1, 4, 4)),
                                      r"layer 0 \(Conv2d\) does not fit: conv2d: the height sizes overflow 64 bits"),
    "layer_maxpool_in_model": (lambda: cnnkit.Sequential([L.MaxPool2d(2**63 - 1, padding=2**62)], input_shape=(1, 4, 4)),
                               r"pool: the height sizes overflow 64 bits"),
    "layer_conv2d_kernel_2_31": (lambda: L.Conv2d(1, 1, 2**31), r"array is too big"),
    "sequential_maxpool_input_shape_2_62": (lambda: cnnkit.Sequential([L.MaxPool2d(2)], input_shape=(1, 2**62, 2**62)),
                                            r"pool: input shape \(1, 4611686018427387904, 4611686018427387904\) has more elements"),
    "sequential_conv_input_shape_2_62": (lambda: cnnkit.Sequential([L.Conv2d(1, 1, 3)], input_shape=(1, 2**62, 2**62)),
                                         r"conv2d: input shape \(1, 4611686018427387904, 4611686018427387904\) has more elements"),
    "sequential_locally_connected_input_size_2_62": (lambda: L.LocallyConnected2d(1, 1, 1, (2**62, 2**62)),
                                                     r"input shape \(1, 4611686018427387904, 4611686018427387904\) has more elements"),
    "conv2d_depthwise_padded_plane_overflow": (lambda: F.conv2d(r(1, 2, 4, 4), r(2, 1, 3, 3), padding="same", dilation=2**30, groups=2),
                                               r"padded input \(C, H, W\) \(2, 2147483652, 2147483652\) has more elements"),
    "conv2d_same_dilation_padded_plane_overflow": (lambda: F.conv2d(r(1, 1, 4, 4), r(1, 1, 3, 3), padding="same", dilation=2**61),
                                                   r"padded input \(C, H, W\) \(1, 4611686018427387908, 4611686018427387908\) has more elements"),
    "adaptive_backward_bytes_overflow": (lambda: F.adaptive_avg_pool2d_backward(r(1, 1, 1, 1), (1, 1, 2**31, 2**31)),
                                         r"input_shape \(1, 1, 2147483648, 2147483648\) has more elements than a 64-bit byte count"),
    "layer_linear_2_62": (lambda: L.Linear(2**62, 2**62), r"array is too big"),
}
for name, (call, pattern) in OVERFLOW64.items():
    bad(f"overflow32_{name}", "overflow32", call, ValueError, pattern)

bad("overflow32_max_pool2d_huge_window_padded_plane", "overflow32", lambda: F.max_pool2d(r(1, 1, 4, 4), 2**40, padding=2**39),
    ValueError, r"padded input \(H, W\) \(1099511627780, 1099511627780\) has more elements", timeout=5)

# Huge windows padded by half their size are valid (PyTorch's rules): the one window holds
# the whole input. They crashed (portable max pool read past the row end), or never returned
# (portable max pool looped over all 2**40 taps; the AVX-512/AVX2 kernels prefetched
# stride * row bytes ahead, 2**44 of them).
ROW = lambda: np.array([[[1.0, 5.0, -2.0, 3.0]]], f32)  # noqa: E731
HUGE_WINDOWS = {
    "max_pool1d_window_2_40": (lambda: F.max_pool1d(ROW(), 2**40, padding=2**39), lambda: np.array([[[5.0]]], f32)),
    "max_pool1d_window_2_30": (lambda: F.max_pool1d(ROW(), 2**30, padding=2**29), lambda: np.array([[[5.0]]], f32)),
    "avg_pool1d_window_2_40_real_count": (lambda: F.avg_pool1d(ROW(), 2**40, padding=2**39, count_include_pad=False),
                                          lambda: np.array([[[1.75]]], f32)),
    "max_pool2d_tall_window_2_40": (lambda: F.max_pool2d(r(1, 1, 4, 4), (2**40, 2), padding=(2**39, 0)),
                                    lambda: r(1, 1, 4, 4).reshape(1, 1, 4, 2, 2).max(axis=(2, 4))[:, :, None, :]),
    "max_pool2d_wide_window_2_30": (lambda: F.max_pool2d(r(1, 1, 4, 4), (2, 2**30), padding=(0, 2**29)),
                                    lambda: r(1, 1, 4, 4).reshape(1, 1, 2, 2, 4).max(axis=(3, 4))[..., None]),
    "avg_pool2d_tall_window_2_40_real_count": (
        lambda: F.avg_pool2d(r(1, 1, 4, 4), (2**40, 2), padding=(2**39, 0), count_include_pad=False),
        lambda: r(1, 1, 4, 4).reshape(1, 1, 4, 2, 2).mean(axis=(2, 4), dtype=np.float64).astype(f32)[:, :, None, :]),
}
for name, (call, want) in HUGE_WINDOWS.items():
    ok(f"overflow32_{name}", "overflow32", call, same_as(want))


def _every_tier_max_pool_past_row_end():
    """A 1x3 window at column stride 2 over a 1-wide row, padded by 1: its last tap is past
    the row's end. The portable tier read the next row's element there ([5, 5, 2])."""
    x = np.array([1.0, 5.0, 2.0], f32).reshape(1, 1, 3, 1)
    return tuple(cnnkit._core.max_pool2d_forward(x, (1, 3), (1, 2), (0, 0, 1, 1), tier=t)[0]
                 for t in cnnkit._core.simd_tiers_supported())


ok("shape_max_pool2d_window_past_row_end_every_tier", "shape", _every_tier_max_pool_past_row_end,
   same_as(lambda: tuple(np.array([1.0, 5.0, 2.0], f32).reshape(1, 1, 3, 1)
                         for _ in cnnkit._core.simd_tiers_supported())))

# Valid but too big for this process: MemoryError (never a crash, never a silent wrap).
OVERFLOW_MEMORY = {
    "relu_huge_broadcast": lambda: F.relu(huge(*HUGE)),
    "conv2d_huge_broadcast": lambda: F.conv2d(huge(*HUGE), r(1, 1, 3, 3)),
    "global_avg_pool2d_backward_huge": lambda: F.global_avg_pool2d_backward(r(1, 1), HUGE),
    "pad_huge_output": lambda: F.pad(r(1, 1, 2, 2), (70000, 70000, 70000, 70000)),
    "linear_layer_2_20": lambda: L.Linear(2**20, 2**20),
    "conv2d_layer_2_16_channels": lambda: L.Conv2d(2**16, 2**16, 3),
    "adaptive_huge_output": lambda: F.adaptive_avg_pool2d(r(1, 1, 2, 2), 70000),
    "sigmoid_huge_broadcast": lambda: F.sigmoid(huge(70000, 70000)),
    "locally_connected_huge": lambda: L.LocallyConnected2d(1, 1, 1, (70000, 70000)),
    "conv2d_same_dilation_2_20": lambda: F.conv2d(r(1, 1, 4, 4), r(1, 1, 3, 3), padding="same", dilation=2**20),
    "conv1d_backward_same_dilation_2_40": lambda: F.conv1d_backward(r(1, 1, 4), r(1, 1, 4), r(1, 1, 3), padding="same", dilation=2**40),
    "dropout_huge_broadcast": lambda: L.Dropout(0.5).forward(huge(70000, 70000)),
    "batch_norm_huge_broadcast": lambda: F.batch_norm(huge(70000, 70000), z(70000), np.ones(70000, f32)),
}
for name, call in OVERFLOW_MEMORY.items():
    bad(f"overflow32_{name}", "overflow32", call, MemoryError, r"\S")


def _summary_huge():
    lines = []
    m = cnnkit.Sequential([L.Conv2d(1, 2, 3), L.Conv2d(2, 2, 2, stride=2)], input_shape=(1, 70000, 70000))
    m.summary(print_fn=lines.append)
    return m.output_shapes()


ok("overflow32_sequential_huge_shapes_only", "overflow32", _summary_huge,
   lambda s: None if tuple(s[-1]) == (2, 34999, 34999) else (_ for _ in ()).throw(AssertionError(str(s))))


# --- non-contiguous inputs: the same result as the contiguous copy -----------------------------

NONCONTIG = {
    "relu": (lambda a: F.relu(a(r(3, 4))),),
    "sigmoid": (lambda a: F.sigmoid(a(r(3, 4))),),
    "tanh": (lambda a: F.tanh(a(r(3, 4))),),
    "softmax": (lambda a: F.softmax(a(r(3, 4))),),
    "conv2d_x": (lambda a: F.conv2d(a(r(2, 3, 6, 6)), w4()),),
    "conv2d_w": (lambda a: F.conv2d(x4(), a(w4())),),
    "conv2d_backward": (lambda a: F.conv2d_backward(a(r(2, 4, 6, 6)), a(x4()), a(w4())),),
    "conv1d": (lambda a: F.conv1d(a(r(2, 3, 8)), a(r(4, 3, 3))),),
    "max_pool2d": (lambda a: F.max_pool2d(a(r(2, 3, 6, 6)), 2, return_indices=True),),
    "avg_pool2d": (lambda a: F.avg_pool2d(a(r(2, 3, 6, 6)), 2),),
    "max_pool1d": (lambda a: F.max_pool1d(a(r(2, 3, 6)), 2),),
    "global_avg_pool2d": (lambda a: F.global_avg_pool2d(a(r(2, 3, 4, 4))),),
    "linear": (lambda a: F.linear(a(r(5, 3)), a(r(4, 3)), a(r(4))),),
    "linear_backward": (lambda a: F.linear_backward(a(r(5, 4)), a(r(5, 3)), a(r(4, 3))),),
    "cross_entropy": (lambda a: F.cross_entropy(a(r(4, 3)), a(np.array([0, 1, 2, 0]))),),
    "batch_norm": (lambda a: F.batch_norm(a(r(4, 3)), np.zeros(3, f32), np.ones(3, f32), a(r(3)), a(r(3))),),
    "adaptive_avg_pool2d": (lambda a: F.adaptive_avg_pool2d(a(r(1, 2, 5, 5)), 2),),
    "zero_pad2d": (lambda a: F.zero_pad2d(a(r(1, 2, 3, 3)), 1),),
    "layer_conv2d": (lambda a: (cnnkit.set_random_seed(0), L.Conv2d(3, 2, 3).forward(a(x4())))[1],),
    "layer_linear": (lambda a: (cnnkit.set_random_seed(0), L.Linear(3, 2).forward(a(r(4, 3))))[1],),
    "model_predict": (lambda a: _lenet_small().predict(a(X8())),),
}
for name, (call,) in NONCONTIG.items():
    for how, view in {"strided": noncontig, "fortran": fortran}.items():
        ok(f"noncontiguous_{name}_{how}", "noncontiguous", lambda call=call, view=view: call(view),
           same_as(lambda call=call: call(np.ascontiguousarray)))
ok("noncontiguous_negative_strides", "noncontiguous", lambda: F.conv2d(x4()[:, :, ::-1, ::-1], w4()),
   same_as(lambda: F.conv2d(np.ascontiguousarray(x4()[:, :, ::-1, ::-1]), w4())))
ok("noncontiguous_fit_strided", "noncontiguous",
   lambda: (cnnkit.set_random_seed(1), _compiled().fit(noncontig(X8(8)), Y3(8)[::-1].copy()[::-1], verbose=0, shuffle=False).history["loss"])[1],
   same_as(lambda: (cnnkit.set_random_seed(1), _compiled().fit(X8(8), Y3(8), verbose=0, shuffle=False).history["loss"])[1]))
bad("noncontiguous_out_rejected", "noncontiguous", lambda: cnnkit._core.relu_forward(r(4, 4), out=np.zeros((4, 8), f32)[:, ::2]),
    ValueError, r"writable C-contiguous")


# --- read-only inputs: read, never written; outputs must be writable --------------------------

READONLY = {
    "relu": lambda a: F.relu(a(r(3, 4))),
    "conv2d": lambda a: F.conv2d(a(x4()), a(w4()), a(r(4))),
    "conv2d_backward": lambda a: F.conv2d_backward(a(r(2, 4, 6, 6)), a(x4()), a(w4())),
    "max_pool2d": lambda a: F.max_pool2d(a(r(2, 3, 6, 6)), 2),
    "linear": lambda a: F.linear(a(r(5, 3)), a(r(4, 3))),
    "softmax": lambda a: F.softmax(a(r(3, 4))),
    "cross_entropy": lambda a: F.cross_entropy(a(r(4, 3)), a(np.array([0, 1, 2, 0]))),
    "batch_norm_eval": lambda a: F.batch_norm(a(r(4, 3)), a(np.zeros(3, f32)), a(np.ones(3, f32))),
    "model_predict": lambda a: _lenet_small().predict(a(X8())),
    "layer_conv2d_forward_backward": lambda a: (lambda l: (l.forward(a(r(1, 1, 5, 5))), l.backward(a(r(1, 2, 3, 3))))[1])(
        (cnnkit.set_random_seed(0), L.Conv2d(1, 2, 3))[1]),
    "broadcast_input": lambda a: F.relu(np.broadcast_to(a(r(1, 4)), (3, 4))),
}
for name, call in READONLY.items():
    ok(f"readonly_{name}", "readonly", lambda call=call: call(readonly), same_as(lambda call=call: call(np.array)))
bad("readonly_out_rejected", "readonly", lambda: cnnkit._core.relu_forward(r(4), out=readonly(z(4))), ValueError, r"writable")
bad("readonly_batch_norm_running_mean_training", "readonly",
    lambda: F.batch_norm(r(4, 3), readonly(z(3)), np.ones(3, f32), training=True), ValueError, r"running_mean.*writ")
bad("readonly_batch_norm_running_var_training", "readonly",
    lambda: F.batch_norm(r(4, 3), z(3), readonly(np.ones(3, f32)), training=True), ValueError, r"running_var.*writ")
bad("readonly_batch_norm_running_mean_float64", "readonly",
    lambda: F.batch_norm(r(4, 3), np.zeros(3), np.ones(3, f32), training=True), (TypeError, ValueError), r"running_mean.*float32")
bad("readonly_optimizer_param", "readonly", lambda: optim.SGD().step([readonly(z(3))], [z(3)]), ValueError,
    r"params\[0\] must be a writable C-contiguous")
bad("readonly_optimizer_param_noncontiguous", "readonly", lambda: optim.SGD().step([z(6)[::2]], [z(3)]), ValueError,
    r"params\[0\] must be a writable C-contiguous")


def _readonly_params_load():
    m = _lenet_small()
    sd = {k: readonly(v) for k, v in m.state_dict().items()}
    m.load_state_dict(sd)
    m.compile(optimizer="sgd", loss="cross_entropy")
    m.fit(X8(), Y3(), verbose=0)
    return m.state_dict()["0.weight"]


ok("readonly_state_dict_loaded_then_trained", "readonly", _readonly_params_load,
   lambda w: None if w.flags.writeable and w.shape == (2, 1, 3, 3) else (_ for _ in ()).throw(AssertionError("bad weight")))


# --- labels ---------------------------------------------------------------------------------

LABEL_CASES = {
    "ce_out_of_range": (lambda: F.cross_entropy(r(3, 4), [0, 4, 1]), r"\[0, 4\), got 4 at index 1"),
    "ce_negative": (lambda: F.cross_entropy(r(3, 4), [0, 1, -2]), r"got -2 at index 2"),
    "ce_huge": (lambda: F.cross_entropy(r(3, 4), np.array([0, 1, 2**40])), r"got 1099511627776 at index 2"),
    "ce_uint64_huge": (lambda: F.cross_entropy(r(2, 4), np.array([0, 2**64 - 1], np.uint64)),
                       r"\[0, 4\), got 18446744073709551615 at index 1"),
    "ce_float_huge": (lambda: F.cross_entropy(r(2, 4), np.array([0.0, 1e20])), r"\[0, 4\), got 1e\+20 at index 1"),
    "ce_float_out_of_range": (lambda: F.cross_entropy(r(2, 4), np.array([4.0, 0.0])), r"\[0, 4\), got 4.0 at index 0"),
    "ce_too_short": (lambda: F.cross_entropy(r(3, 4), [0, 1]), r"\(3,\), got shape \(2,\)"),
    "ce_too_long": (lambda: F.cross_entropy(r(3, 4), [0, 1, 2, 3]), r"\(3,\), got shape \(4,\)"),
    "ce_scalar": (lambda: F.cross_entropy(r(3, 4), 1), r"\(3,\), got shape \(\)"),
    "ce_fraction": (lambda: F.cross_entropy(r(2, 4), [0.5, 1.0]), r"integers, got 0.5 at index 0"),
    "ce_inf": (lambda: F.cross_entropy(r(2, 4), [0.0, INF]), r"integers, got inf at index 1"),
    "ce_backward_out_of_range": (lambda: F.cross_entropy_backward(r(2, 4), [0, 9]), r"got 9 at index 1"),
    "ce_backward_with_probs_out_of_range": (lambda: F.cross_entropy_backward(r(2, 4), [0, 9], probs=F.softmax(r(2, 4))), r"got 9 at index 1"),
    "loss_ce_out_of_range": (lambda: losses.get("cross_entropy")(r(2, 3), np.array([0, 3])), r"got 3 at index 1"),
    "loss_ce_3d_targets": (lambda: losses.get("cross_entropy")(r(2, 3), z(2, 3, 1)), r"\(N,\).*\(2, 3, 1\)"),
    "metric_accuracy_out_of_range": (lambda: metrics.accuracy(r(2, 3), [0, 5]), r"\[0, 3\), got 5 at index 1"),
    "metric_accuracy_negative": (lambda: metrics.accuracy(r(2, 3), [-1, 0]), r"got -1 at index 0"),
    "metric_accuracy_fraction": (lambda: metrics.accuracy(r(2, 3), [0.5, 0]), r"integers, got 0.5"),
    "metric_accuracy_length": (lambda: metrics.accuracy(r(2, 3), [0, 1, 2]), r"\(2,\).*\(3,\)"),
    "fit_label_out_of_range": (lambda: _compiled().fit(X8(), np.array([0, 1, 2, 3]), verbose=0), r"\[0, 3\), got 3 at index"),
    "fit_label_negative": (lambda: _compiled().fit(X8(), np.array([0, -1, 2, 1]), verbose=0), r"got -1 at index"),
    "fit_label_fraction": (lambda: _compiled().fit(X8(), np.array([0, 1.5, 2, 1]), verbose=0), r"integers, got 1.5"),
    "evaluate_label_out_of_range": (lambda: _compiled().evaluate(X8(), np.array([0, 1, 7, 1])), r"got 7 at index"),
    "train_on_batch_label_out_of_range": (lambda: _compiled().train_on_batch(X8(), np.array([0, 1, 9, 1])), r"got 9 at index"),
    "fit_onehot_wrong_width": (lambda: _compiled().fit(X8(), np.eye(5, dtype=f32)[:4], verbose=0), r"\(4, 3\).*\(4, 5\)|\(4, 5\)"),
}
for name, (call, pattern) in LABEL_CASES.items():
    bad(f"labels_{name}", "labels", call, ValueError, pattern)


# --- x / y length mismatch -----------------------------------------------------------------------

XY_CASES = {
    "fit_short_y": (lambda: _compiled().fit(X8(4), Y3(3), verbose=0), r"x has 4 samples but y has 3"),
    "fit_long_y": (lambda: _compiled().fit(X8(4), Y3(6), verbose=0), r"x has 4 samples but y has 6"),
    "fit_scalar_y": (lambda: _compiled().fit(X8(4), 1, verbose=0), r"x has 4 samples but y has no"),
    "fit_y_none": (lambda: _compiled().fit(X8(4), None, verbose=0), r"targets y are required"),
    "evaluate_short_y": (lambda: _compiled().evaluate(X8(4), Y3(2)), r"x has 4 samples but y has 2"),
    "train_on_batch_long_y": (lambda: _compiled().train_on_batch(X8(2), Y3(5)), r"x has 2 samples but y has 5"),
    "fit_validation_data_mismatch": (lambda: _compiled().fit(X8(4), Y3(4), validation_data=(X8(3), Y3(2)), verbose=0),
                                     r"x has 3 samples but y has 2"),
    "fit_validation_data_not_pair": (lambda: _compiled().fit(X8(4), Y3(4), validation_data=(X8(3),), verbose=0),
                                     r"validation_data must be \(x_val, y_val\)"),
    "fit_validation_split_leaves_none": (lambda: _compiled().fit(X8(2), Y3(2), validation_split=0.1, verbose=0), r"leaves no"),
    "loss_ce_length": (lambda: losses.get("cross_entropy")(r(3, 4), np.array([0, 1])), r"\(3,\), got shape \(2,\)"),
    "loss_mse_length": (lambda: losses.get("mse")(r(3, 1), r(2, 1)), r"\(3, 1\).*\(2, 1\)|\(2, 1\).*\(3, 1\)"),
    "metric_binary_length": (lambda: metrics.binary_accuracy(r(3, 1), r(2, 1)), r"\(3, 1\).*\(2, 1\)"),
}
for name, (call, pattern) in XY_CASES.items():
    bad(f"xy_mismatch_{name}", "xy_mismatch", call, ValueError, pattern)


# --- foreign objects -> TypeError naming what was given ------------------------------------------

class Foreign:
    pass


FOREIGN_TYPE = {
    "conv2d_x_none": (lambda: F.conv2d(None, w4()), r"input must be an array, got None"),
    "conv2d_x_dict": (lambda: F.conv2d({"a": 1}, w4()), r"real numbers|dtype object"),
    "conv2d_x_object": (lambda: F.conv2d(Foreign(), w4()), r"real numbers|dtype object"),
    "conv2d_stride_str": (lambda: F.conv2d(x4(), w4(), stride="2"), r"stride must be an int, got str"),
    "conv2d_stride_float": (lambda: F.conv2d(x4(), w4(), stride=2.0), r"stride must be an int, got float"),
    "conv2d_padding_none": (lambda: F.conv2d(x4(), w4(), padding=None), r"padding must be an int, got NoneType"),
    "conv2d_groups_float": (lambda: F.conv2d(x4(), w4(), groups=1.0), r"groups must be an int, got float"),
    "conv2d_dilation_list_of_str": (lambda: F.conv2d(x4(), w4(), dilation=["a", "b"]), r"dilation must be an int, got str"),
    "conv2d_bias_str": (lambda: F.conv2d(x4(), w4(), "bias"), r"bias must hold real numbers|<U4"),
    "linear_w_none": (lambda: F.linear(r(2, 3), None), r"weight must be an array, got None"),
    "linear_x_set": (lambda: F.linear({1, 2}, r(2, 2)), r"real numbers|object"),
    "relu_generator": (lambda: F.relu(i for i in range(3)), r"real numbers|object"),
    "relu_layer_object": (lambda: F.relu(L.ReLU()), r"real numbers|object"),
    "max_pool2d_kernel_str": (lambda: F.max_pool2d(r(1, 1, 4, 4), "2"), r"kernel_size must be an int, got str"),
    "max_pool2d_kernel_float": (lambda: F.max_pool2d(r(1, 1, 4, 4), 2.0), r"kernel_size must be an int, got float"),
    "max_pool2d_backward_indices_none": (lambda: F.max_pool2d_backward(r(1, 1, 2, 2), None, (1, 1, 4, 4), 2), r"indices must be an integer array"),
    "avg_pool2d_backward_input_shape_none": (lambda: F.avg_pool2d_backward(r(1, 1, 2, 2), None, 2), r"input_shape must be a tuple of ints"),
    "avg_pool2d_backward_input_shape_floats": (lambda: F.avg_pool2d_backward(r(1, 1, 2, 2), (1.0, 1.0, 4.0, 4.0), 2), r"input_shape must be a tuple of ints"),
    "softmax_axis_float": (lambda: F.softmax(r(2, 3), axis=1.0), r"axis must be an int, got float"),
    "cross_entropy_labels_none": (lambda: F.cross_entropy(r(2, 3), None), r"labels must be an array, got None"),
    "cross_entropy_labels_strings": (lambda: F.cross_entropy(r(2, 3), ["a", "b"]), r"labels must hold integers"),
    "cross_entropy_backward_grad_str": (lambda: F.cross_entropy_backward(r(2, 3), [0, 1], grad="1"), r"grad must be a number, got str"),
    "batch_norm_momentum_str": (lambda: F.batch_norm(r(2, 3), z(3), np.ones(3, f32), momentum="0.1"), r"momentum must be a number, got str"),
    "lp_pool2d_norm_str": (lambda: F.lp_pool2d(r(1, 1, 4, 4), "2", 2), r"norm_type must be a number, got str"),
    "pad_value_str": (lambda: F.pad(r(1, 1, 2, 2), (1, 1), value="0"), r"value must be a number, got str"),
    "pad_pad_float": (lambda: F.pad(r(1, 1, 2, 2), (1.0, 1.0)), r"pad must be an int, got float"),
    "layer_conv2d_in_str": (lambda: L.Conv2d("1", 2, 3), r"in_channels must be an int, got str"),
    "layer_conv2d_kernel_float": (lambda: L.Conv2d(1, 2, 3.0), r"kernel_size must be an int, got float"),
    "layer_linear_in_float": (lambda: L.Linear(2.5, 3), r"in_features must be an int, got float"),
    "layer_linear_out_none": (lambda: L.Linear(2, None), r"out_features must be an int, got NoneType"),
    "layer_maxpool_kernel_none": (lambda: L.MaxPool2d(None), r"kernel_size must be an int, got NoneType"),
    "layer_batchnorm_features_bool": (lambda: L.BatchNorm2d(True), r"num_features must be an int, got bool"),
    "layer_dropout_p_str": (lambda: L.Dropout("0.5"), r"p must be a number|str"),
    "layer_softmax_axis_str": (lambda: L.Softmax(axis="1"), r"axis must be an int, got str"),
    "layer_flatten_start_float": (lambda: L.Flatten(1.0), r"start_dim must be an int, got float"),
    "layer_forward_none": (lambda: L.Linear(2, 3).forward(None), r"None|must be an array"),
    "layer_conv_forward_list_of_str": (lambda: L.Conv2d(1, 1, 1).forward([[[["a"]]]]), r"real numbers|<U1"),
    "residual_block_not_layer": (lambda: L.Residual(lambda x: x), r"Layer"),
    "concat_branch_not_layer": (lambda: L.Concat(L.ReLU(), "relu"), r"Layer"),
    "sequential_layers_int": (lambda: cnnkit.Sequential(5), r"list|iterable|int"),
    "sequential_layers_contains_str": (lambda: cnnkit.Sequential(["relu"]), r"Layer, got str"),
    "sequential_add_function": (lambda: cnnkit.Sequential().add(np.tanh), r"Sequential.add expects a cnnkit Layer, got ufunc"),
    "sequential_add_class": (lambda: cnnkit.Sequential().add(L.ReLU), r"Layer, got type"),
    "sequential_setitem_str": (lambda: cnnkit.Sequential([L.ReLU()]).__setitem__(0, "x"), r"expected a cnnkit Layer, got str"),
    "sequential_input_shape_str": (lambda: cnnkit.Sequential([L.ReLU()], input_shape="abc"), r"input_shape must be a tuple of ints"),
    "sequential_input_shape_floats": (lambda: cnnkit.Sequential([L.ReLU()], input_shape=(1.0, 2.0)), r"input_shape must be a tuple of ints"),
    "compile_optimizer_object": (lambda: _lenet_small().compile(optimizer=Foreign()), r"optimizer must be a name"),
    "compile_loss_int": (lambda: _lenet_small().compile(loss=42), r"loss must be a name"),
    "compile_metric_int": (lambda: _lenet_small().compile(metrics=[42]), r"metric must be a name"),
    "compile_metrics_str_not_list": (lambda: _lenet_small().compile(metrics=3.5), r"metric|list"),
    "fit_x_none": (lambda: _compiled().fit(None, Y3(), verbose=0), r"None|array|real numbers"),
    "fit_batch_size_float": (lambda: _compiled().fit(X8(), Y3(), batch_size=2.5, verbose=0), r"batch_size must be an int, got float"),
    "fit_epochs_str": (lambda: _compiled().fit(X8(), Y3(), epochs="1", verbose=0), r"epochs must be an int, got str"),
    "fit_callbacks_object": (lambda: _compiled().fit(X8(), Y3(), callbacks=[Foreign()], verbose=0), r"Callback|Foreign"),
    "fit_validation_split_str": (lambda: _compiled().fit(X8(), Y3(), validation_split="0.5", verbose=0),
                                 r"validation_split must be a number, got str"),
    "summary_print_fn_int": (lambda: _lenet_small().summary(print_fn=5), r"int.*not callable|print_fn"),
    "sequential_getitem_str": (lambda: _lenet_small()["a"], r"indices must be integers|str"),
    "residual_shortcut_int": (lambda: L.Residual(L.ReLU(), shortcut=5), r"expected a cnnkit Layer, got int"),
    "set_random_seed_float": (lambda: cnnkit.set_random_seed(1.5), r"seed must be an int, got float"),
    "load_state_dict_complex": (lambda: (lambda m: m.load_state_dict({k: v.astype(np.complex64) for k, v in m.state_dict().items()}))(_lenet_small()),
                                r"0.weight has dtype complex64, expected numbers"),
    "fit_callbacks_not_list": (lambda: _compiled().fit(X8(), Y3(), callbacks=5, verbose=0), r"callbacks|int"),
    "predict_batch_size_str": (lambda: _lenet_small().predict(X8(), batch_size="8"), r"batch_size must be an int, got str"),
    "predict_batch_size_bool": (lambda: _lenet_small().predict(X8(), batch_size=True), r"batch_size must be an int, got bool"),
    "load_state_dict_none": (lambda: _lenet_small().load_state_dict(None), r"dict|NoneType"),
    "load_state_dict_list": (lambda: _lenet_small().load_state_dict([1, 2]), r"dict|list"),
    "load_state_dict_string_values": (lambda: (lambda m: m.load_state_dict({k: "x" for k in m.state_dict()}))(_lenet_small()),
                                      r"dtype|numbers|str"),
    "optimizer_step_params_none": (lambda: optim.SGD().step([None], [z(3)]), r"params\[0\] must be a numpy array, got NoneType"),
    "optimizer_step_grads_none": (lambda: optim.SGD().step([z(3)], [None]), r"grads\[0\] is None"),
    "optimizer_lr_str": (lambda: optim.SGD(learning_rate="0.1"), r"learning_rate must be a number, got str"),
    "optimizer_betas_str": (lambda: optim.Adam(betas="ab"), r"betas must be a pair of numbers"),
    "optimizer_nesterov_str": (lambda: optim.SGD(momentum=0.9, nesterov="yes"), r"nesterov must be a bool, got str"),
    "optimizer_get_int": (lambda: optim.get(3), r"optimizer must be a name"),
    "optimizer_load_state_dict_list": (lambda: optim.SGD().load_state_dict([]), r"expected a dict, got list"),
    "losses_get_none": (lambda: losses.get(None), r"loss must be a name"),
    "losses_backward_grad_str": (lambda: (lambda l: (l(r(2, 3), np.array([0, 1])), l.backward("1")))(losses.get("cross_entropy")),
                                 r"grad must be a number, got str"),
    "metrics_get_dict": (lambda: metrics.get({"a": 1}), r"metric must be a name"),
    "callback_scheduler_not_callable": (lambda: callbacks.LearningRateScheduler(0.1), r"callable|float"),
    "callback_checkpoint_path_int": (lambda: callbacks.ModelCheckpoint(5), r"filepath|str|path|int"),
    "callback_csvlogger_filename_none": (lambda: callbacks.CSVLogger(None), r"filename|str|path|None"),
    "set_num_threads_str": (lambda: cnnkit.set_num_threads("2"), r"must be an int, got str"),
    "set_num_threads_float": (lambda: cnnkit.set_num_threads(2.0), r"must be an int, got float"),
    "set_num_threads_bool": (lambda: cnnkit.set_num_threads(True), r"must be an int, got bool"),
    "set_num_threads_none": (lambda: cnnkit.set_num_threads(None), r"must be an int, got NoneType"),
    "set_random_seed_str": (lambda: cnnkit.set_random_seed("seed"), r"seed|str|int"),
    "load_model_path_int": (lambda: cnnkit.load_model(3.5), r"path|float|str"),
    "save_path_none": (lambda: _lenet_small().save(None), r"path|None|str"),
}
for name, (call, pattern) in FOREIGN_TYPE.items():
    bad(f"foreign_{name}", "foreign", call, TypeError, pattern)


# --- checkpoints: every loader failure is a CheckpointError (a ValueError) --------------------

def _saved():
    d = _tmpdir()
    path = os.path.join(d, "m.cnnkit")
    m = _compiled()
    m.save(path)
    return path


def _write(data, name="bad.cnnkit"):
    path = os.path.join(_tmpdir(), name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _rewrite_zip(path, edit):
    """A copy of the saved zip with edit(name, data) -> data or None (dropped) per entry."""
    with zipfile.ZipFile(path) as zin:
        items = [(n, zin.read(n)) for n in zin.namelist()]
    out = os.path.join(_tmpdir(), "edited.cnnkit")
    with zipfile.ZipFile(out, "w") as zout:
        for n, data in items:
            new = edit(n, data)
            if new is not None:
                zout.writestr(n, new)
    return out


def _flip_byte(path, where):
    data = bytearray(open(path, "rb").read())
    i = int(len(data) * where)
    data[i] ^= 0x40
    return _write(bytes(data))


def _npy_text(data, text):
    """A text entry (a uint8 .npy array) replaced by text."""
    import io
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(text.encode(), np.uint8))
    return buf.getvalue()


def _npy_with_shape(data, shape):
    """data (an .npy entry) with its header claiming `shape` (no data behind it)."""
    text = data[10:10 + struct.unpack("<H", data[8:10])[0]].decode("latin1")
    new = re.sub(r"'shape': \([^)]*\)", f"'shape': {shape!r}", text)
    header = new.strip().ljust(len(text) - 1) + "\n"
    return data[:8] + struct.pack("<H", len(header)) + header.encode("latin1") + data[10 + len(text):]


CHECKPOINT = {
    "random_bytes": lambda: cnnkit.load_model(_write(os.urandom(512))),
    "empty_file": lambda: cnnkit.load_model(_write(b"")),
    "text_file": lambda: cnnkit.load_model(_write(b"hello, not a model\n")),
    "truncated_half": lambda: cnnkit.load_model(_write(open(_saved(), "rb").read()[: os.path.getsize(_saved()) // 2])),
    "truncated_tail": lambda: cnnkit.load_model(_write(open(_saved(), "rb").read()[:-10])),
    "flipped_middle": lambda: cnnkit.load_model(_flip_byte(_saved(), 0.5)),
    "flipped_early": lambda: cnnkit.load_model(_flip_byte(_saved(), 0.1)),
    "flipped_late": lambda: cnnkit.load_model(_flip_byte(_saved(), 0.9)),
    "gzip_file": lambda: cnnkit.load_model(_write(gzip.compress(b"x" * 100))),
    "zip_without_entries": lambda: cnnkit.load_model(_rewrite_zip(_saved(), lambda n, d: None)),
    "zip_dropped_weight": lambda: cnnkit.load_model(_rewrite_zip(_saved(), lambda n, d: None if "0.weight" in n else d)),
    "zip_dropped_checksum": lambda: cnnkit.load_model(_rewrite_zip(_saved(), lambda n, d: None if "checksum" in n else d)),
    "zip_architecture_not_json": lambda: cnnkit.load_model(_rewrite_zip(_saved(), lambda n, d: _npy_text(d, "{not json") if "config" in n else d)),
    "zip_weight_huge_declared_shape": lambda: cnnkit.load_model(_rewrite_zip(_saved(), lambda n, d: _npy_with_shape(d, (2**20, 2**20)) if "0.weight" in n else d)),
    "zip_weight_int64_overflow_shape": lambda: cnnkit.load_model(_rewrite_zip(_saved(), lambda n, d: _npy_with_shape(d, (2**62, 2**62)) if "0.weight" in n else d)),
    "zip_weight_negative_shape": lambda: cnnkit.load_model(_rewrite_zip(_saved(), lambda n, d: _npy_with_shape(d, (-1, 9)) if "0.weight" in n else d)),
    "zip_entry_pickled_object": lambda: cnnkit.load_model(_rewrite_zip(_saved(), lambda n, d: d.replace(b"'<f4'", b"'|O' ") if "0.weight" in n else d)),
}
for name, call in CHECKPOINT.items():
    bad(f"checkpoint_{name}", "checkpoint", call, CheckpointError, r"\S")
bad("checkpoint_missing_file", "checkpoint", lambda: cnnkit.load_model(os.path.join(_tmpdir(), "nope.cnnkit")), FileNotFoundError,
    r"no such model file")
bad("checkpoint_directory", "checkpoint", lambda: cnnkit.load_model(_tmpdir()), (CheckpointError, IsADirectoryError), r"\S")
bad("checkpoint_save_into_missing_dir", "checkpoint", lambda: _lenet_small().save(os.path.join(_tmpdir(), "no", "such", "m.cnnkit")),
    FileNotFoundError, r"\S")
ok("checkpoint_roundtrip_after_bad_load", "checkpoint", lambda: cnnkit.load_model(_saved()).predict(X8(2)).shape,
   lambda s: None if s == (2, 3) else (_ for _ in ()).throw(AssertionError(str(s))))
ok("checkpoint_is_a_value_error", "checkpoint", lambda: issubclass(CheckpointError, ValueError),
   lambda v: None if v else (_ for _ in ()).throw(AssertionError("not a ValueError")))


# --- datasets ----------------------------------------------------------------------------------

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _idx(ndim, dims, data=None, magic_type=0x08):
    header = struct.pack(">HBB", 0, magic_type, ndim) + b"".join(struct.pack(">I", d) for d in dims)
    n = int(np.prod(dims)) if data is None else 0
    return header + (bytes(n) if data is None else data)


def _mnist_dir(overrides):
    d = _tmpdir()
    files = {IDX_NAMES[0]: _idx(3, (4, 28, 28)), IDX_NAMES[1]: _idx(1, (4,)),
             IDX_NAMES[2]: _idx(3, (2, 28, 28)), IDX_NAMES[3]: _idx(1, (2,))}
    files.update(overrides)
    for name, data in files.items():
        if data is not None:
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
    return d


DATASET_FILE_ERRORS = {
    "bad_magic": {IDX_NAMES[0]: b"\x12\x34\x08\x03" + _idx(3, (4, 28, 28))[4:]},
    "wrong_type_byte": {IDX_NAMES[0]: _idx(3, (4, 28, 28), magic_type=0x0D)},
    "wrong_ndim": {IDX_NAMES[1]: _idx(2, (4, 1))},
    "truncated": {IDX_NAMES[0]: _idx(3, (4, 28, 28))[:-5]},
    "trailing_bytes": {IDX_NAMES[3]: _idx(1, (2,)) + b"\0\0"},
    "header_only": {IDX_NAMES[2]: _idx(3, (2, 28, 28))[:8]},
    "empty_file": {IDX_NAMES[1]: b""},
    "count_mismatch": {IDX_NAMES[1]: _idx(1, (5,))},
    "huge_declared_dims": {IDX_NAMES[0]: _idx(3, (2**31, 2**16, 2**16), data=b"")},
    "not_gzip": {IDX_NAMES[0]: None, IDX_NAMES[0] + ".gz": b"plainly not gzip"},
    "gzip_of_garbage": {IDX_NAMES[0]: None, IDX_NAMES[0] + ".gz": gzip.compress(b"\x00" * 10)},
    "checksum_mismatch": {},  # a well-formed file with made-up contents
}
for name, files in DATASET_FILE_ERRORS.items():
    bad(f"datasets_mnist_{name}", "datasets", lambda files=files: datasets.load_mnist(_mnist_dir(files)),
        datasets.DatasetFileError, r"\S")
bad("datasets_fashion_truncated", "datasets", lambda: datasets.load_fashion_mnist(_mnist_dir({IDX_NAMES[3]: b"\0\0"})),
    datasets.DatasetFileError, r"\S")
bad("datasets_missing_directory", "datasets", lambda: datasets.load_mnist(os.path.join(_tmpdir(), "absent")),
    datasets.DatasetUnavailableError, r"absent")
bad("datasets_missing_file", "datasets", lambda: datasets.load_mnist(_mnist_dir({IDX_NAMES[2]: None})),
    datasets.DatasetUnavailableError, r"t10k-images")
bad("datasets_path_is_file", "datasets", lambda: datasets.load_mnist(_write(b"x")), (datasets.DatasetUnavailableError, NotADirectoryError),
    r"\S")
bad("datasets_path_int", "datasets", lambda: datasets.load_mnist(42), TypeError, r"path|int")
ok("datasets_sample_loads", "datasets", lambda: datasets.load_mnist_sample()[0][0].shape,
   lambda s: None if s == (2000, 28, 28) else (_ for _ in ()).throw(AssertionError(str(s))))


# --- the model zoo: bad num_classes / input_shape ------------------------------------------------

ZOO_VALUE = {
    "lenet5_classes_0": (lambda: models.lenet5(num_classes=0), r"out_features must be >= 1, got 0|num_classes"),
    "lenet5_classes_neg": (lambda: models.lenet5(num_classes=-3), r"-3"),
    "lenet5_input_too_small": (lambda: models.lenet5(input_shape=(1, 4, 4)), r"\(1, 4, 4\)|larger|does not fit"),
    "lenet5_input_2d": (lambda: models.lenet5(input_shape=(28, 28)), r"\(28, 28\)"),
    "lenet5_input_zero": (lambda: models.lenet5(input_shape=(1, 0, 28)), r"\(1, 0, 28\)"),
    "alexnet_classes_0": (lambda: models.alexnet(num_classes=0), r"alexnet: num_classes must be >= 1, got 0"),
    "vgg16_classes_0": (lambda: models.vgg16(num_classes=0, input_shape=(3, 32, 32)), r"0"),
    "resnet18_classes_0": (lambda: models.resnet18(num_classes=0, input_shape=(3, 32, 32)), r"0"),
    "resnet34_input_rank": (lambda: models.resnet34(input_shape=(3, 64)), r"input_shape must be \(C, H, W\), got \(3, 64\)"),
    "resnet50_input_channels_0": (lambda: models.resnet50(input_shape=(0, 64, 64)), r"\(0, 64, 64\)"),
    "googlenet_dropout_1": (lambda: models.googlenet(num_classes=10, input_shape=(3, 64, 64), dropout=1.0), r"p must be"),
    "resnet_small_mismatch": (lambda: models.resnet_small(widths=(16, 32), blocks_per_stage=(2, 2, 2)), r"widths \(16, 32\)"),
    "resnet_small_classes_neg": (lambda: models.resnet_small(num_classes=-1), r"-1"),
}
for name, (call, pattern) in ZOO_VALUE.items():
    bad(f"zoo_{name}", "zoo", call, ValueError, pattern)
ZOO_TYPE = {
    "lenet5_classes_str": (lambda: models.lenet5(num_classes="10"), r"str"),
    "lenet5_classes_float": (lambda: models.lenet5(num_classes=10.0), r"float"),
    "resnet18_input_str": (lambda: models.resnet18(input_shape="3x64x64"), r"input_shape|str"),
    "vgg16_input_none_entries": (lambda: models.vgg16(input_shape=(3, None, 64)), r"input_shape|None"),
}
for name, (call, pattern) in ZOO_TYPE.items():
    bad(f"zoo_{name}", "zoo", call, TypeError, pattern)
# valid but unusual: tiny inputs run (adaptive pooling before the head), as in torchvision
for name, call, shape in [("resnet18_input_4x4", lambda: models.resnet18(num_classes=10, input_shape=(3, 4, 4)), (10,)),
                          ("googlenet_input_8x8", lambda: models.googlenet(num_classes=10, input_shape=(3, 8, 8)), (10,)),
                          ("lenet5_input_3_channels", lambda: models.lenet5(input_shape=(3, 28, 28)), (10,))]:
    ok(f"zoo_{name}", "zoo", lambda call=call: call().output_shapes()[-1],
       lambda s, shape=shape: None if tuple(s) == shape else (_ for _ in ()).throw(AssertionError(str(s))))


# --- config ------------------------------------------------------------------------------------

def _threads_roundtrip():
    cnnkit.set_num_threads(1)
    return cnnkit.get_num_threads()


ok("config_set_num_threads_1", "config", _threads_roundtrip, lambda n: None if n == 1 else (_ for _ in ()).throw(AssertionError(n)))
bad("config_set_num_threads_huge", "config", lambda: cnnkit.set_num_threads(2**40), ValueError, r"n must be < 2\*\*31, got 1099511627776")
bad("config_set_num_threads_2_63", "config", lambda: cnnkit.set_num_threads(2**63), ValueError, r"n must be < 2\*\*31, got 9223372036854775808")
bad("config_show_config_file_str", "config", lambda: cnnkit.show_config(file="stdout"), (TypeError, AttributeError), r"write|str")
bad("config_core_gemm_bad_tier", "config", lambda: cnnkit._core.gemm(r(2, 3), r(3, 2), tier="avx9000"), ValueError,
    r"unknown SIMD tier 'avx9000'")


# --- cli: bad arguments exit non-zero with a message, never a traceback -------------------------

def _exit_code(argv):
    def call():
        try:
            code = cli.main(argv)
        except SystemExit as e:
            code = e.code
        return code
    return call


def _nonzero(code):
    assert code not in (0, None), f"exit code {code!r}"


CLI_CASES = {
    "unknown_command": ["bogus"],
    "train_epochs_negative": ["train", "--epochs", "-1"],
    "train_epochs_word": ["train", "--epochs", "many"],
    "train_batch_size_0": ["train", "--batch-size", "0"],
    "train_lr_nan": ["train", "--lr", "nan"],
    "train_threads_0": ["train", "--threads", "0"],
    "train_unknown_model": ["train", "--model", "nonet"],
    "train_unknown_dataset": ["train", "--dataset", "cifar99"],
    "train_data_missing_dir": ["train", "--dataset", "mnist", "--data", "/nonexistent/cnnkit-bad-input"],
    "train_verbose_bad": ["train", "--verbose", "loud"],
    "evaluate_missing_file": ["evaluate", "/nonexistent/model.cnnkit"],
    "evaluate_corrupt_file": None,  # filled below
    "summary_unknown_model": ["summary", "nonet"],
}
for name, argv in CLI_CASES.items():
    if argv is None:
        ok(f"cli_{name}", "cli", lambda: _exit_code(["evaluate", _write(os.urandom(64))])(), _nonzero)
    else:
        ok(f"cli_{name}", "cli", _exit_code(argv), _nonzero)


# --- lifecycle: calls in the wrong order -> a clear error ---------------------------------------

LIFECYCLE = {
    "fit_before_compile": (lambda: _lenet_small().fit(X8(), Y3(), verbose=0), RuntimeError, r"call model.compile"),
    "evaluate_before_compile": (lambda: _lenet_small().evaluate(X8(), Y3()), RuntimeError, r"call model.compile"),
    "train_on_batch_before_compile": (lambda: _lenet_small().train_on_batch(X8(), Y3()), RuntimeError, r"call model.compile"),
    "loss_backward_before_call": (lambda: losses.get("mse").backward(), RuntimeError, r"no loss to differentiate"),
    "pop_empty": (lambda: cnnkit.Sequential().pop(), IndexError, r"pop from an empty Sequential"),
    "getitem_out_of_range": (lambda: _lenet_small()[9], IndexError, r"out of range"),
    "csvlogger_into_directory": (lambda: _compiled().fit(X8(), Y3(), verbose=0, callbacks=[callbacks.CSVLogger(_tmpdir())]),
                                 IsADirectoryError, r"Is a directory"),
    "add_same_layer_twice": (lambda: (lambda l: cnnkit.Sequential([l, l]))(L.ReLU()), ValueError, r"already in this model"),
    "output_shapes_without_input_shape": (lambda: cnnkit.Sequential([L.ReLU()]).output_shapes(), ValueError,
                                          r"input shape is unknown"),
    "layer_backward_before_forward": (lambda: L.Linear(2, 2).backward(r(1, 2)), RuntimeError, r"forward"),
    "conv_backward_before_forward": (lambda: L.Conv2d(1, 1, 1).backward(r(1, 1, 2, 2)), RuntimeError, r"forward"),
    "maxpool_backward_before_forward": (lambda: L.MaxPool2d(2).backward(r(1, 1, 2, 2)), RuntimeError, r"forward"),
}
for name, (call, exc, pattern) in LIFECYCLE.items():
    bad(f"lifecycle_{name}", "lifecycle", call, exc, pattern)


# --- the harness's own checks (only when asked: tests/test_bad_input.py) -----------------------

if os.environ.get("CNNKIT_BAD_INPUT_SELFTEST"):
    import ctypes
    import time
    ok("selftest_segfault", "selftest", lambda: ctypes.string_at(0), lambda v: None)
    ok("selftest_hang", "selftest", lambda: time.sleep(60), lambda v: None)
    bad("selftest_wrong_error", "selftest", lambda: F.relu(None), ValueError, r".")
