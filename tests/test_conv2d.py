"""conv2d forward and every gradient against the float64 references (tests/reference.py): named
edge cases (one helper, parametrized), integer-valued inputs bit for bit, the real shapes of
bench/shapes/conv2d.txt, the direct path's cases under every SIMD tier, thread-count
independence, and PyTorch as a second opinion on random configurations."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import cnnkit
import reference as ref
from cnnkit import _core
from cnnkit import functional as F
from helpers import (assert_exact, assert_scaled_close, child_env, exact_ints, needs_torch, randn, torch)

SHAPES = os.path.join(os.path.dirname(__file__), "..", "bench", "shapes", "conv2d.txt")
BENCH = os.path.join(os.path.dirname(__file__), "..", "build", "bench", "bench_conv2d")


def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def resolve_pads(padding, hw, kernel, stride, dilation):
    """(top, bottom, left, right) from padding as functional.conv2d takes it, or already per
    side; "same" by TensorFlow's rule for any stride: out = ceil(in / stride), odd pad last."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        pads = []
        for size, k, s, d in zip(hw, kernel, stride, dilation):
            total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return tuple(pads)
    if isinstance(padding, tuple) and len(padding) == 4:
        return padding
    ph, pw = pair(padding)
    return (ph, ph, pw, pw)


class Conv:
    """One convolution configuration and its calls: path "api" goes through
    cnnkit.functional (per-side padding, which functional cannot express, through _core),
    "ref" through the direct C++ loops (_core with ref=True)."""

    def __init__(self, x_shape, oc, kernel, stride=1, padding=0, dilation=1, groups=1):
        self.x_shape, self.oc, self.kernel, self.groups = x_shape, oc, kernel, groups
        self.stride, self.dilation, self.padding = pair(stride), pair(dilation), padding
        self.pads = resolve_pads(padding, x_shape[2:], kernel, self.stride, self.dilation)
        self.w_shape = (oc, x_shape[1] // groups) + tuple(kernel)

    def _via_core(self, path):
        return path == "ref" or (isinstance(self.padding, tuple) and len(self.padding) == 4)

    def forward(self, x, w, b, path="api"):
        if self._via_core(path):
            return _core.conv2d_forward(x, w, b, self.stride, self.pads, self.dilation,
                                        ref=path == "ref", groups=self.groups)
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def backward(self, dy, x, w, path="api", need=(True, True, True)):
        if self._via_core(path):
            return _core.conv2d_backward(dy, x, w, self.stride, self.pads, self.dilation, *need,
                                         ref=path == "ref", groups=self.groups)
        return F.conv2d_backward(dy, x, w, self.stride, self.padding, self.dilation, self.groups,
                                 input_grad=need[0], weight_grad=need[1], bias_grad=need[2])

    def reference(self, x, w, b):
        return ref.conv2d(x, w, b, self.stride, self.pads, self.dilation, self.groups)

    def reference_backward(self, dy, x, w):
        return ref.conv2d_backward(dy, x, w, self.stride, self.pads, self.dilation, self.groups)

    def inputs(self, rng, make):
        x, w, b = make(rng, *self.x_shape), make(rng, *self.w_shape), make(rng, self.oc)
        dy = make(rng, *self.reference(x, w, b).shape)
        return x, w, b, dy


def check_conv(conv, rng, exact=False, path="api", need=(True, True, True), rtol=1e-5):
    """Forward and the requested gradients against the float64 reference: bit for bit on
    integer-valued inputs, else within rtol of conv(|x|, |w|) (the size of the summed terms)."""
    x, w, b, dy = conv.inputs(rng, exact_ints if exact else randn)
    y = conv.forward(x, w, b, path)
    want = conv.reference(x, w, b)
    if exact:
        assert_exact(y, want, "y")
    else:
        assert_scaled_close(y, want, conv.reference(abs(x), abs(w), abs(b)), rtol=rtol, what="y")
    grads = conv.backward(dy, x, w, path, need)
    wants = conv.reference_backward(dy, x, w)
    scales = conv.reference_backward(abs(dy), abs(x), abs(w))
    for name, got, want, scale, needed in zip(("dx", "dw", "db"), grads, wants, scales, need):
        if not needed:
            assert got is None, f"{name} computed though not asked for"
        elif exact:
            assert_exact(got, want, name)
        else:
            assert_scaled_close(got, want, scale, rtol=rtol, what=name)
    return y, grads


# name: Conv(x shape (N, C, H, W), OC, kernel, stride, padding, dilation[, groups]); padding is
# an int, a pair, "same", "valid", or (top, bottom, left, right).
CASES = {
    "plain_3x3": Conv((2, 3, 8, 9), 4, (3, 3)),
    "padded_3x3": Conv((2, 3, 8, 9), 4, (3, 3), 1, 1),
    "stride2_padded": Conv((2, 4, 9, 10), 5, (3, 3), 2, 1),
    "stride3x2_rect": Conv((1, 2, 11, 10), 3, (3, 2), (3, 2), (1, 0)),
    "pointwise": Conv((2, 7, 5, 6), 9, (1, 1)),
    "pointwise_stride2": Conv((2, 7, 5, 6), 9, (1, 1), 2),
    "pointwise_padded": Conv((2, 7, 5, 6), 9, (1, 1), 1, 1),
    "pointwise_stride2_padded": Conv((2, 7, 5, 6), 3, (1, 1), 2, (1, 2)),
    "pointwise_dilated": Conv((2, 5, 6, 6), 4, (1, 1), 1, 0, 3),
    "asym_pad": Conv((2, 3, 7, 8), 4, (3, 3), 1, (0, 2, 1, 0)),
    "asym_pad_stride2": Conv((2, 3, 9, 8), 4, (3, 2), 2, (2, 0, 0, 1)),
    "same_even_kernel": Conv((2, 3, 7, 8), 4, (4, 2), 1, "same"),
    "same_stride2": Conv((2, 3, 9, 10), 4, (3, 3), 2, "same"),
    "same_stride3_dilated": Conv((1, 2, 13, 11), 3, (2, 3), 3, "same", 2),
    "valid": Conv((2, 3, 7, 8), 4, (3, 2), 1, "valid"),
    "valid_stride2": Conv((2, 3, 7, 8), 4, (3, 3), 2, "valid"),
    "dilated": Conv((2, 3, 11, 12), 4, (3, 3), 1, 2, 2),
    "dilated_rect": Conv((1, 2, 12, 13), 3, (2, 3), 1, (1, 2), (3, 2)),
    "dilated_stride2": Conv((2, 3, 13, 12), 4, (3, 3), 2, 1, 2),
    "kernel_1x5": Conv((2, 3, 6, 12), 4, (1, 5), 1, (0, 2)),
    "kernel_5x1": Conv((2, 3, 12, 6), 4, (5, 1), 1, (2, 0)),
    "odd_sizes": Conv((3, 5, 13, 7), 11, (3, 3), 1, 1),
    "n1": Conv((1, 4, 9, 9), 6, (3, 3), 1, 1),
    "c1": Conv((3, 1, 10, 9), 6, (5, 5), 1, 2),
    "oc1": Conv((2, 4, 8, 8), 1, (3, 3), 1, 1),
    "c3_oc7": Conv((2, 3, 9, 9), 7, (3, 3), 1, 1),
    "c13_oc13": Conv((2, 13, 7, 7), 13, (3, 3), 1, 1),
    "kernel_equals_padded_input": Conv((2, 3, 4, 5), 4, (6, 7), 1, 1),
    "kernel_equals_input": Conv((2, 3, 5, 5), 4, (5, 5)),
    "pad_beyond_kernel": Conv((2, 2, 4, 4), 3, (3, 3), 1, 3),
    "pixel_input": Conv((2, 3, 1, 1), 4, (1, 1)),
    "wide_rows": Conv((2, 2, 3, 70), 5, (3, 3), 1, 1),
    "narrow_rows": Conv((3, 2, 9, 3), 4, (2, 2)),
    "deep_k": Conv((2, 80, 6, 6), 20, (3, 3), 1, 1),
    "stride4_k11": Conv((1, 3, 35, 35), 8, (11, 11), 4, 2),
    # OW >= 16 at stride 4 and 2: the AVX-512 pack's strided blocks across two output rows.
    "stride4_k11_wide": Conv((2, 3, 20, 80), 8, (11, 11), 4, 2),
    "stride2_wide": Conv((2, 5, 9, 41), 6, (3, 3), 2, 1),
    "batch9": Conv((9, 3, 6, 6), 5, (3, 3), 1, 1),
    # C >= 32 at stride 1 (and off the direct path: C > 64, or dilated): dx through the
    # rotated kernel; C % 8 == 0: dw from the image made channels-last (C = 24, 40: a 16-row
    # panel spans two taps).
    "rotated_same_even_kernel": Conv((2, 72, 7, 8), 5, (4, 2), 1, "same"),
    "rotated_dilated_asym": Conv((1, 32, 9, 10), 3, (3, 3), 1, (1, 2, 2, 0), 2),
    "c72_pad_beyond_kernel": Conv((1, 72, 5, 5), 4, (3, 3), 1, 3),
    "channels_last_c24_stride2_dilated": Conv((2, 24, 11, 10), 6, (3, 3), 2, 1, (2, 1)),
    "channels_last_c8_wide": Conv((2, 8, 4, 37), 5, (3, 5), 1, (1, 2)),
    # per image with N > 1: the GEMM reads the prepacked weights in place (panels()), here
    # over 2 row blocks (OC 152 > MC 144 at avx512) and 2 K slices; dx likewise (rotated).
    "prepacked_row_blocks_k_slices": Conv((2, 72, 8, 8), 152, (3, 3), 1, 1),
    # per image, grouped: each group's rotated kernel packed from its slice of w
    "prepacked_rotated_groups2": Conv((2, 144, 8, 8), 18, (3, 3), 1, 1, 1, 2),
}



def takes_direct_path(conv):
    """Whether conv2d runs this convolution on the direct kernels and, if so, its forward
    vectorised over "width" or "channels": kernels/conv_direct.cpp's conv_direct_plan,
    restated so that the DIRECT cases below are checked to reach what they are named for."""
    N, C, H, W = conv.x_shape
    (KH, KW), (PT, PB, PL, PR) = conv.kernel, conv.pads
    OH, OW = H + PT + PB - KH + 1, W + PL + PR - KW + 1
    if (C > 64 or C * KH * KW > 2048 or conv.stride != (1, 1) or conv.dilation != (1, 1)
            or max(KH, KW) > 7 or OH * OW > 64 * 64):
        return None
    fill = lambda n: n / (-(-n // 16) * 16)  # noqa: E731
    if C > 16:
        return "channels"
    return "width" if fill(OW) >= fill(OC := conv.oc) else "channels" if OC else None


# The direct path (src/kernels/conv_direct*): vectorised over output width (few channels) or
# over output channels (narrow rows), with edges from the kernels' blocking: kernels 1 .. 7,
# padding 0 .. 3 (wider than the kernel, asymmetric), widths that are not multiples of 8 or
# 16 and rows of more than 4 vectors, OC not a multiple of the vector width on both sides and
# more than 4 vectors of channels, an odd number of rows (blocks take pairs), N = 1.
DIRECT = {
    "direct_k1": Conv((2, 3, 5, 13), 5, (1, 1)),
    "direct_k2_pad3": Conv((2, 2, 6, 7), 3, (2, 2), 1, 3),
    "direct_k3_w33": Conv((2, 3, 9, 33), 7, (3, 3), 1, 1),
    "direct_k4x2_asym": Conv((2, 3, 7, 8), 5, (4, 2), 1, (1, 2, 0, 1)),
    "direct_lenet_conv1": Conv((2, 1, 28, 28), 6, (5, 5), 1, 2),
    "direct_lenet_conv2": Conv((2, 6, 14, 14), 16, (5, 5)),
    "direct_k6_same": Conv((2, 2, 9, 10), 4, (6, 6), 1, "same"),
    "direct_k7_pad3": Conv((1, 2, 9, 11), 3, (7, 7), 1, 3),
    "direct_k1x7": Conv((2, 2, 6, 19), 3, (1, 7), 1, (0, 3)),
    "direct_k7x1": Conv((2, 2, 19, 6), 3, (7, 1), 1, (3, 0)),
    "direct_rows_of_5_vectors": Conv((2, 2, 3, 70), 5, (3, 3), 1, 1),
    "direct_c16": Conv((2, 16, 6, 6), 24, (3, 3), 1, 1),
    "direct_n1": Conv((1, 3, 8, 8), 4, (3, 3), 1, 1),
    "direct_one_row": Conv((2, 3, 1, 20), 6, (1, 3), 1, (0, 0, 0, 1)),
    "direct_channels_oc24": Conv((2, 3, 6, 5), 24, (3, 3), 1, 1),
    "direct_channels_odd_rows": Conv((2, 4, 7, 9), 17, (3, 3)),
    "direct_channels_oc70": Conv((1, 2, 5, 3), 70, (3, 2), 1, (1, 0, 0, 1)),
    "direct_channels_k7": Conv((2, 2, 9, 9), 32, (7, 7), 1, 2),
    # Forward over width, dw over channels: lane partials of OC*K > 32768 weights would be big.
    "direct_width_many_weights": Conv((1, 16, 4, 16), 48, (7, 7), 1, 3),
    # 16 < C <= 64 (K <= 2048 taps): always over channels, OC below, at and above 64.
    "direct_channels_c17": Conv((2, 17, 5, 9), 20, (3, 3), 1, 1),
    "direct_channels_c40_k5": Conv((1, 40, 8, 7), 17, (5, 5), 1, 2),
    "direct_channels_c64": Conv((2, 64, 9, 11), 64, (3, 3), 1, 1),
    "direct_channels_c64_oc72": Conv((1, 64, 6, 21), 72, (3, 3), 1, (1, 0, 2, 1)),
    "direct_channels_c48_k5": Conv((1, 48, 7, 9), 20, (5, 5), 1, 2),  # K = 1200 taps
}


def test_direct_cases_reach_the_direct_path():
    kinds = {name: takes_direct_path(conv) for name, conv in DIRECT.items()}
    assert all(kinds.values()), [n for n, k in kinds.items() if not k]
    assert {k for n, k in kinds.items() if "channels" in n} == {"channels"}
    assert "width" in kinds.values()
    assert takes_direct_path(CASES["stride2_padded"]) is None
    assert takes_direct_path(CASES["deep_k"]) is None
    assert takes_direct_path(CASES["rotated_same_even_kernel"]) is None


@pytest.mark.parametrize("name", DIRECT)
def test_conv2d_direct_random(name, rng):
    check_conv(DIRECT[name], rng)


@pytest.mark.parametrize("name", DIRECT)
def test_conv2d_direct_exact_ints(name, rng):
    check_conv(DIRECT[name], rng, exact=True)


# Runs in the child: every DIRECT case, bit for bit on integer inputs and within tolerance on
# random ones, with the tier CNNKIT_SIMD chose (each tier has its own direct kernels).
TIER_CHILD = r"""
import json
import sys
sys.modules["torch"] = None  # not needed here; helpers then skip its slow import
import numpy as np
from cnnkit import _core
import test_conv2d as t

rng = np.random.default_rng(3)
for name, conv in t.DIRECT.items():
    t.check_conv(conv, rng, exact=True)
    t.check_conv(conv, rng)
print(json.dumps({"tier": _core.simd_tier(), "cases": len(t.DIRECT)}))
"""


@pytest.mark.parametrize("tier", _core.simd_tiers_supported())
def test_conv2d_direct_every_tier(tier):
    r = subprocess.run([sys.executable, "-c", TIER_CHILD], env=child_env(CNNKIT_SIMD=tier), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"tier": tier,
                                                             "cases": len(DIRECT)}


# Small output maps (at most 49 pixels, not depthwise, not direct) fold the batch into the
# GEMM's N dimension (src/ops/conv2d_batched.cpp). Stride-1 layers with at most 64 channels
# per group stay on the direct path, faster there (128x64x7x7 -> 64 fwd+bwd: 12.8 ms direct,
# 17.8 ms batched, 1 thread), so the stride-1 cases here have more. ResNet's late stages,
# strides into 1x1 and 2x2 maps, 1x1 projections, N = 1 and odd, groups, dilation with asymmetric padding, the
# 49-pixel threshold itself, and a batch split into chunks (col capped at 2^21 floats).
BATCHED = {
    "batched_resnet_l4_2x2": Conv((16, 512, 2, 2), 512, (3, 3), 1, 1),
    "batched_resnet_l3_4x4": Conv((16, 256, 4, 4), 256, (3, 3), 1, 1),
    "batched_s2_into_1x1": Conv((4, 24, 2, 2), 20, (3, 3), 2, 1),
    "batched_s2_into_2x2": Conv((5, 32, 4, 4), 24, (3, 3), 2, 1),
    "batched_proj_1x1_s2": Conv((6, 32, 8, 8), 40, (1, 1), 2),
    "batched_pointwise_2x2": Conv((3, 72, 2, 2), 12, (1, 1)),
    "batched_n1": Conv((1, 80, 3, 3), 24, (3, 3), 1, 1),
    "batched_n7_oc17": Conv((7, 72, 4, 4), 17, (3, 3), 1, 1),
    "batched_groups2": Conv((5, 160, 4, 4), 48, (3, 3), 1, 1, 1, 2),
    "batched_groups4_s2": Conv((3, 64, 6, 6), 32, (3, 3), 2, 1, 1, 4),
    "batched_dilated_asym": Conv((3, 24, 7, 7), 10, (3, 3), 1, (0, 1, 2, 0), 2),
    "batched_c3_s2": Conv((5, 3, 7, 7), 8, (3, 3), 2, 1),
    "batched_7x7": Conv((3, 72, 7, 7), 16, (3, 3), 1, 1),
    "batched_chunks_of_9": Conv((20, 256, 7, 7), 8, (3, 3), 1, 1),
    # dx as the forward conv of dy with the rotated kernel (>= 256 GEMM columns per chunk)
    "batched_rotated_groups2": Conv((16, 160, 4, 4), 48, (3, 3), 1, 1, 1, 2),
    "batched_rotated_dilated_asym": Conv((12, 72, 5, 5), 24, (3, 3), 1, (1, 2, 0, 1), 2),
}


def takes_batched_path(conv):
    """Whether conv2d folds the batch into the GEMM (conv2d_batched_applies, restated)."""
    N, C, H, W = conv.x_shape
    (KH, KW), (PT, PB, PL, PR) = conv.kernel, conv.pads
    (SH, SW), (DH, DW) = conv.stride, conv.dilation
    OH = ref.conv2d_out_size(H, KH, SH, PT, PB, DH)
    OW = ref.conv2d_out_size(W, KW, SW, PL, PR, DW)
    return (conv.groups != C and takes_direct_path(conv) is None and OH * OW <= 49)


def test_batched_cases_reach_the_batched_path():
    assert all(takes_batched_path(c) for c in BATCHED.values())
    assert not takes_batched_path(Conv((2, 24, 8, 8), 8, (3, 3), 1, 1))  # 64 pixels


@pytest.mark.parametrize("name", BATCHED)
def test_conv2d_batched_random(name, rng):
    check_conv(BATCHED[name], rng)


@pytest.mark.parametrize("name", BATCHED)
def test_conv2d_batched_exact_ints(name, rng):
    check_conv(BATCHED[name], rng, exact=True)


# Runs in the child: every BATCHED case but the two largest, bit for bit on integer inputs and
# within tolerance on random ones, with the tier CNNKIT_SIMD chose (its GEMM).
BATCHED_TIER_CHILD = r"""
import json
import sys
sys.modules["torch"] = None
import numpy as np
from cnnkit import _core
import test_conv2d as t

rng = np.random.default_rng(5)
names = [n for n in t.BATCHED if "resnet" not in n]
for name in names:
    t.check_conv(t.BATCHED[name], rng, exact=True)
    t.check_conv(t.BATCHED[name], rng)
print(json.dumps({"tier": _core.simd_tier(), "cases": len(names)}))
"""


@pytest.mark.parametrize("tier", _core.simd_tiers_supported())
def test_conv2d_batched_every_tier(tier):
    r = subprocess.run([sys.executable, "-c", BATCHED_TIER_CHILD], env=child_env(CNNKIT_SIMD=tier),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {
        "tier": tier, "cases": len([n for n in BATCHED if "resnet" not in n])}


@pytest.mark.parametrize("name", CASES)
def test_conv2d_random(name, rng):
    check_conv(CASES[name], rng)


@pytest.mark.parametrize("name", CASES)
def test_conv2d_exact_ints(name, rng):
    check_conv(CASES[name], rng, exact=True)


@pytest.mark.parametrize("name", ["padded_3x3", "stride2_padded", "asym_pad", "pointwise",
                                  "dilated_rect", "batch9"])
def test_conv2d_ref_path(name, rng):
    check_conv(CASES[name], rng, exact=True, path="ref")


SUBSETS = [(True, False, False), (False, True, False), (False, False, True),
           (True, True, False), (False, True, True), (True, False, True), (False, False, False)]


@pytest.mark.parametrize("need", SUBSETS, ids=lambda n: "+".join(
    g for g, k in zip(("dx", "dw", "db"), n) if k) or "none")
@pytest.mark.parametrize("name", ["padded_3x3", "stride2_padded", "pointwise", "batch9",
                                  "direct_lenet_conv1", "direct_lenet_conv2"])
def test_conv2d_gradient_subsets(name, need, rng):
    # Each subset is exact and equals the same gradient computed together with the others.
    conv = CASES.get(name) or DIRECT[name]
    check_conv(conv, rng, exact=True, need=need)
    x, w, b, dy = conv.inputs(rng, randn)
    full = conv.backward(dy, x, w)
    part = conv.backward(dy, x, w, need=need)
    for got, whole, needed in zip(part, full, need):
        assert (got is None) != needed
        if needed:
            assert_exact(got, whole)


def read_shapes(path):
    rows = []
    with open(path) as f:
        for line in f:
            tok = line.split("#")[0].split()
            if tok:
                rows.append((tok[0], [int(t) for t in tok[1:]]))
    return rows


REAL = read_shapes(SHAPES)


@pytest.mark.parametrize("name,sizes", REAL, ids=[r[0] for r in REAL])
def test_conv2d_real_shapes(name, sizes, rng):
    N, C, H, W, OC, KH, KW, SH, SW, PH, PW, G = sizes
    conv = Conv((min(N, 2 if H * W * C <= 64 * 32 * 32 else 1), C, H, W), OC, (KH, KW),
                (SH, SW), (PH, PW), 1, G)
    check_conv(conv, rng)


def test_conv2d_same_output_size():
    for size, k, s, d in [(7, 4, 1, 1), (9, 3, 2, 1), (10, 3, 3, 2), (5, 6, 4, 1), (1, 3, 2, 1)]:
        x = np.zeros((1, 1, size, size + 1), np.float32)
        w = np.zeros((1, 1, k, k), np.float32)
        y = F.conv2d(x, w, stride=s, padding="same", dilation=d)
        assert y.shape[2:] == (-(-size // s), -(-(size + 1) // s))


@pytest.mark.parametrize("oc", [4, 32])  # the direct path over width, over channels
def test_conv2d_empty_batch(oc, rng):
    conv = Conv((0, 3, 6, 7), oc, (3, 3), 1, 1)
    assert takes_direct_path(conv) == ("width" if oc == 4 else "channels")
    x, w = randn(rng, 0, 3, 6, 7), randn(rng, oc, 3, 3, 3)
    y = conv.forward(x, w, randn(rng, oc))
    assert y.shape == (0, oc, 6, 7)
    dx, dw, db = conv.backward(y, x, w)
    assert dx.shape == (0, 3, 6, 7)
    assert_exact(dw, np.zeros(w.shape))
    assert_exact(db, np.zeros(oc))

    wide = Conv((0, 72, 6, 7), 4, (3, 3), 1, 1)  # the GEMM path
    assert takes_direct_path(wide) is None
    x, w = randn(rng, 0, 72, 6, 7), randn(rng, 4, 72, 3, 3)
    assert wide.forward(x, w, None).shape == (0, 4, 6, 7)


def test_conv2d_noncontiguous_and_float64(rng):
    conv = CASES["stride2_padded"]
    x, w, b, dy = conv.inputs(rng, randn)
    y = conv.forward(x, w, b)
    grads = conv.backward(dy, x, w)
    # Strided views and float64 copies of the same values give the same bits.
    xs = np.zeros(x.shape[:3] + (2 * x.shape[3],), np.float32)[..., ::2]
    xs[...] = x
    wt = np.ascontiguousarray(w.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    assert not xs.flags.c_contiguous and not wt.flags.c_contiguous
    for xv, wv, bv, dyv in [(xs, wt, b, dy), (x.astype(np.float64), w.astype(np.float64),
                                              b.astype(np.float64), dy.astype(np.float64))]:
        assert_exact(conv.forward(xv, wv, bv), y)
        for got, want in zip(conv.backward(dyv, xv, wv), grads):
            assert_exact(got, want)


@pytest.fixture
def threads():
    old = cnnkit.get_num_threads()
    yield cnnkit.set_num_threads
    cnnkit.set_num_threads(old)


# Large enough for 2 threads: many small images (whole images per thread), one large image
# (the GEMM's threads), a batch not divisible by the weight-gradient groups, the col2im and
# rotated input-gradient paths, and the direct path over width and over channels (its dw
# partials summed per image group in group order, like the GEMM path's).
THREADED = {
    "many_small_images": Conv((16, 40, 12, 12), 8, (3, 3), 1, 1),
    "direct_lenet_conv1": Conv((16, 1, 28, 28), 6, (5, 5), 1, 2),
    "direct_lenet_conv2": Conv((16, 6, 14, 14), 16, (5, 5)),
    "direct_batch11": Conv((11, 3, 16, 16), 8, (3, 3), 1, 1),
    "one_large_image": Conv((1, 16, 40, 40), 16, (3, 3), 1, 1),
    "batch11_pointwise": Conv((11, 32, 10, 10), 16, (1, 1)),
    "strided_col2im": Conv((6, 16, 20, 20), 24, (3, 3), 2, 1),
    "rotated": Conv((4, 32, 12, 12), 16, (3, 3), 1, 1),
    # The batch folded into the GEMM: one GEMM over the threads, its gathers and scatters.
    "batched_resnet_l4_2x2": BATCHED["batched_resnet_l4_2x2"],
    "batched_groups2": BATCHED["batched_groups2"],
    "batched_chunks_of_9": BATCHED["batched_chunks_of_9"],
    "batched_n1": BATCHED["batched_n1"],
}


@pytest.mark.parametrize("name", THREADED)
def test_conv2d_same_bits_for_1_and_2_threads(name, rng, threads):
    conv = THREADED[name]
    x, w, b, dy = conv.inputs(rng, randn)
    results = []
    for n in (1, 2):
        threads(n)
        results.append([conv.forward(x, w, b)] + list(conv.backward(dy, x, w)))
    for one, two, what in zip(*results, ("y", "dx", "dw", "db")):
        assert_exact(two, one, what)


@pytest.mark.parametrize("conv", [CASES["padded_3x3"], CASES["stride2_padded"],
                                  DIRECT["direct_lenet_conv2"]], ids=["direct_width", "gemm",
                                                                      "direct_channels"])
def test_conv2d_nan_propagates(conv, rng):
    x, w, b, dy = conv.inputs(rng, randn)
    x[1, 2, 4, 5] = np.nan
    dy[0, 1, 3, 3] = np.nan
    y = conv.forward(x, w, b)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(conv.reference(x, w, b)))
    assert np.isnan(y).any()
    for got, want in zip(conv.backward(dy, x, w), conv.reference_backward(dy, x, w)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert np.isnan(got).any()


@pytest.mark.parametrize("x_shape,w_shape,kwargs,match", [
    ((1, 3, 4, 4), (2, 3, 6, 6), {}, "larger than the padded input"),
    ((1, 3, 4, 4), (2, 4, 3, 3), {}, "channels"),
    ((1, 3, 4, 4), (2, 3, 3, 3), {"stride": 0}, "stride"),
    ((1, 3, 4, 4), (2, 3, 3, 3), {"padding": -1}, "padding"),
    ((3, 4, 4), (2, 3, 3, 3), {}, "input"),
])
def test_conv2d_bad_shapes_raise(x_shape, w_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.conv2d(np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32), **kwargs)


def random_config(rng):
    """A small random conv2d: random sizes, KH != KW, stride, dilation, and padding as an int,
    a pair, "same" (asymmetric when the total is odd), "valid" or explicit per side."""
    KH, KW = rng.choice(np.arange(1, 6), size=2, replace=False)
    SH, SW = rng.integers(1, 4, size=2)
    DH, DW = rng.integers(1, 3, size=2) if rng.random() < 0.4 else (1, 1)
    kind = rng.integers(0, 5)
    padding = [int(rng.integers(0, 3)), (int(rng.integers(0, 3)), int(rng.integers(0, 3))),
               "same", "valid", tuple(int(p) for p in rng.integers(0, 4, size=4))][kind]
    N, C, OC = int(rng.integers(1, 4)), int(rng.integers(1, 10)), int(rng.integers(1, 10))
    # Input at least as large as the dilated kernel, so every configuration is valid.
    H = int(rng.integers(DH * (KH - 1) + 1, DH * (KH - 1) + 12))
    W = int(rng.integers(DW * (KW - 1) + 1, DW * (KW - 1) + 12))
    return Conv((N, C, H, W), OC, (int(KH), int(KW)), (int(SH), int(SW)), padding,
                (int(DH), int(DW)))


@needs_torch
@pytest.mark.parametrize("seed", range(200))
def test_conv2d_vs_torch(seed):
    rng = np.random.default_rng(1000 + seed)
    conv = random_config(rng)
    x, w, b, dy = conv.inputs(rng, randn)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    PT, PB, PL, PR = conv.pads
    ty = torch.nn.functional.conv2d(torch.nn.functional.pad(tx, (PL, PR, PT, PB)), tw, tb,
                                    stride=conv.stride, dilation=conv.dilation)
    ty.backward(torch.tensor(dy))
    y = conv.forward(x, w, b)
    scale = conv.reference(abs(x), abs(w), abs(b))
    assert_scaled_close(y, ty.detach().numpy(), scale, rtol=1e-4, what=f"y {vars(conv)}")
    scales = conv.reference_backward(abs(dy), abs(x), abs(w))
    for name, got, t, s in zip(("dx", "dw", "db"), conv.backward(dy, x, w), (tx, tw, tb), scales):
        assert_scaled_close(got, t.grad.numpy(), s, rtol=1e-4, what=f"{name} {vars(conv)}")


@pytest.mark.skipif(not os.path.exists(BENCH), reason="C++ benchmarks not built "
                    "(cmake -DCNNKIT_BUILD_BENCH=ON)")
def test_im2col_packs_and_direct_kernels_every_tier():
    # The GEMM of one tier asks for one panel width; bench_conv2d checks every pack (portable,
    # AVX2, AVX-512 where they run) at widths 1 .. 64 and odd sub-ranges against im2col, and
    # every entry point of each tier's direct and depthwise kernels against their __ref
    # kernels, bit for bit, on geometries at the edges of their blocks.
    r = subprocess.run([BENCH, "--filter", "no shape has this name"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# --- grouped convolution --------------------------------------------------------------------
# groups G: output channels [g*OC/G, (g+1)*OC/G) see input channels [g*C/G, (g+1)*C/G) only.
# Each group runs the paths above on its channels (direct kernels for few channels per group,
# else the GEMM paths: channels-last dw when C/G % 8 == 0, rotated dx from C/G = 32); G == C
# runs the depthwise kernels (src/kernels/conv_depthwise*), whose blocking gives the edges
# here: strides in either axis (phase-split columns, residue-split rows), strides beyond the
# kernel (dx pixels no tap reaches), rows of more than 4 vectors, more taps than one weight
# block (7x7, 11x11), channel multipliers M = OC/C > 1, C not a multiple of 8.
GROUPED = {
    "g2_direct": Conv((2, 4, 8, 9), 6, (3, 3), 1, 1, 1, 2),
    "g2_alexnet_5x5": Conv((2, 16, 13, 13), 24, (5, 5), 1, 2, 1, 2),
    "g2_direct_c48_5x5": Conv((1, 96, 9, 8), 40, (5, 5), 1, 2, 1, 2),
    "g2_rotated_channels_last": Conv((1, 96, 9, 9), 64, (3, 3), 1, 1, 1, 2),
    "g2_col2im_channels_last": Conv((2, 48, 7, 7), 10, (3, 3), 2, 1, 1, 2),
    "g2_transposed_stride2": Conv((2, 10, 9, 9), 4, (3, 3), 2, 1, 1, 2),
    "g3_stride2": Conv((2, 9, 11, 10), 6, (3, 3), 2, 1, 1, 3),
    "g3_dilated_asym": Conv((1, 6, 12, 11), 9, (3, 2), 1, (1, 2, 0, 1), 2, 3),
    "g3_pointwise": Conv((2, 12, 5, 6), 9, (1, 1), 1, 0, 1, 3),
    "g4_pointwise_stride2": Conv((2, 8, 7, 6), 12, (1, 1), 2, 0, 1, 4),
    "g3_n1_odd": Conv((1, 15, 7, 13), 21, (3, 3), 1, 1, 1, 3),
    "dw_3x3_pad1": Conv((2, 8, 9, 10), 8, (3, 3), 1, 1, 1, 8),
    "dw_3x3_stride2": Conv((2, 5, 11, 13), 5, (3, 3), 2, 1, 1, 5),
    "dw_c13_n1": Conv((1, 13, 7, 19), 13, (3, 3), 1, 1, 1, 13),
    "dw_5x5_dilated": Conv((2, 6, 13, 12), 6, (5, 5), 1, 4, 2, 6),
    "dw_stride3x2_rect": Conv((2, 4, 12, 17), 4, (3, 2), (3, 2), (1, 0), 1, 4),
    "dw_same_stride2_even_kernel": Conv((2, 3, 9, 10), 3, (4, 3), 2, "same", 1, 3),
    "dw_asym_pad": Conv((2, 3, 7, 8), 3, (3, 3), 1, (0, 2, 1, 0), 1, 3),
    # Stride 2 pads each row contiguously, then splits it into phases; rows of more than 4096
    # padded floats take the general split.
    "dw_stride2_pad_left3": Conv((2, 4, 9, 11), 4, (3, 3), 2, (0, 1, 3, 2), 1, 4),
    "dw_stride2_rows_over_4096": Conv((1, 2, 3, 4101), 2, (1, 3), 2, (0, 1), 1, 2),
    "dw_mult2": Conv((2, 6, 9, 9), 12, (3, 3), 1, 1, 1, 6),
    "dw_mult3_stride2_dilated": Conv((1, 5, 13, 12), 15, (3, 3), 2, 2, 2, 5),
    "dw_mult2_wide_rows": Conv((1, 3, 5, 70), 6, (3, 3), 1, 1, 1, 3),
    "dw_wide_rows_stride2": Conv((2, 4, 6, 100), 4, (3, 3), 2, 1, 1, 4),
    "dw_k1": Conv((2, 7, 5, 6), 7, (1, 1), 1, 0, 1, 7),
    "dw_k7_pad3": Conv((2, 4, 9, 11), 4, (7, 7), 1, 3, 1, 4),
    "dw_mult2_stride4_k11": Conv((1, 3, 35, 35), 6, (11, 11), 4, 2, 1, 3),
    "dw_stride_beyond_kernel": Conv((1, 2, 20, 7), 2, (3, 2), (5, 3), 1, 1, 2),
    "dw_pixel": Conv((2, 3, 1, 1), 3, (1, 1), 1, 0, 1, 3),
    "dw_pad_beyond_kernel": Conv((2, 3, 4, 4), 3, (3, 3), 1, 3, 1, 3),
    "dw_kernel_equals_padded_input": Conv((2, 3, 4, 5), 3, (6, 7), 1, 1, 1, 3),
    "dw_mobilenet_stride2": Conv((2, 32, 14, 14), 32, (3, 3), 2, 1, 1, 32),
    "dw_batch9": Conv((9, 4, 6, 6), 4, (3, 3), 1, 1, 1, 4),
}


@pytest.mark.parametrize("name", GROUPED)
def test_conv2d_grouped_random(name, rng):
    check_conv(GROUPED[name], rng)


@pytest.mark.parametrize("name", GROUPED)
def test_conv2d_grouped_exact_ints(name, rng):
    check_conv(GROUPED[name], rng, exact=True)


@pytest.mark.parametrize("name", ["g2_direct", "g3_dilated_asym", "dw_3x3_stride2", "dw_mult2"])
def test_conv2d_grouped_ref_path(name, rng):
    check_conv(GROUPED[name], rng, exact=True, path="ref")


@pytest.mark.parametrize("need", SUBSETS, ids=lambda n: "+".join(
    g for g, k in zip(("dx", "dw", "db"), n) if k) or "none")
@pytest.mark.parametrize("name", ["g2_alexnet_5x5", "dw_mult2"])
def test_conv2d_grouped_gradient_subsets(name, need, rng):
    conv = GROUPED[name]
    check_conv(conv, rng, exact=True, need=need)
    x, w, b, dy = conv.inputs(rng, randn)
    for got, whole, needed in zip(conv.backward(dy, x, w, need=need), conv.backward(dy, x, w), need):
        assert (got is None) != needed
        if needed:
            assert_exact(got, whole)


# Runs in the child: every GROUPED case with the tier CNNKIT_SIMD chose (the depthwise kernels
# have one instantiation per tier), bit for bit on integer inputs, within tolerance on random
# ones, and within tolerance of the ref tier's C++ loops (ref=True) on random ones.
GROUPED_TIER_CHILD = r"""
import json
import sys
sys.modules["torch"] = None
import numpy as np
from cnnkit import _core
import test_conv2d as t
from helpers import assert_scaled_close, randn

rng = np.random.default_rng(5)
for name, conv in t.GROUPED.items():
    t.check_conv(conv, rng, exact=True)
    y, grads = t.check_conv(conv, rng)
for name, conv in t.GROUPED.items():
    x, w, b, dy = conv.inputs(rng, randn)
    got = [conv.forward(x, w, b)] + list(conv.backward(dy, x, w))
    want = [conv.forward(x, w, b, "ref")] + list(conv.backward(dy, x, w, "ref"))
    scales = [conv.reference(abs(x), abs(w), abs(b))] + list(conv.reference_backward(abs(dy), abs(x), abs(w)))
    for g, r, s, what in zip(got, want, scales, ("y", "dx", "dw", "db")):
        assert_scaled_close(g, r, s, rtol=1e-5, what=name + " " + what)
print(json.dumps({"tier": _core.simd_tier(), "cases": len(t.GROUPED)}))
"""


@pytest.mark.parametrize("tier", _core.simd_tiers_supported())
def test_conv2d_grouped_every_tier(tier):
    r = subprocess.run([sys.executable, "-c", GROUPED_TIER_CHILD], env=child_env(CNNKIT_SIMD=tier),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"tier": tier, "cases": len(GROUPED)}


GROUPED_THREADED = {
    "dw_mobilenet": Conv((8, 32, 28, 28), 32, (3, 3), 1, 1, 1, 32),
    "dw_mult2_n1": Conv((1, 16, 30, 30), 32, (3, 3), 2, 1, 1, 16),
    "g2_alexnet": Conv((4, 48, 13, 13), 64, (3, 3), 1, 1, 1, 2),
    "g4_direct_batch11": Conv((11, 8, 16, 16), 8, (3, 3), 1, 1, 1, 4),
}


@pytest.mark.parametrize("name", GROUPED_THREADED)
def test_conv2d_grouped_same_bits_for_1_and_2_threads(name, rng, threads):
    conv = GROUPED_THREADED[name]
    x, w, b, dy = conv.inputs(rng, randn)
    results = []
    for n in (1, 2):
        threads(n)
        results.append([conv.forward(x, w, b)] + list(conv.backward(dy, x, w)))
    for one, two, what in zip(*results, ("y", "dx", "dw", "db")):
        assert_exact(two, one, what)


@pytest.mark.parametrize("name", ["dw_3x3_pad1", "dw_mult2_wide_rows", "g3_stride2"])
def test_conv2d_grouped_nan_propagates(name, rng):
    conv = GROUPED[name]
    x, w, b, dy = conv.inputs(rng, randn)
    x[0, 1, 2, 3] = np.nan
    dy[0, 1, 1, 2] = np.nan
    y = conv.forward(x, w, b)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(conv.reference(x, w, b)))
    for got, want in zip(conv.backward(dy, x, w), conv.reference_backward(dy, x, w)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


def test_conv2d_grouped_empty_batch(rng):
    for groups, oc in [(3, 6), (6, 12)]:
        conv = Conv((0, 6, 5, 5), oc, (3, 3), 1, 1, 1, groups)
        x, w = randn(rng, *conv.x_shape), randn(rng, *conv.w_shape)
        y = conv.forward(x, w, randn(rng, oc))
        assert y.shape == (0, oc, 5, 5)
        dx, dw, db = conv.backward(y, x, w)
        assert dx.shape == x.shape
        assert_exact(dw, np.zeros(w.shape))
        assert_exact(db, np.zeros(oc))


@pytest.mark.parametrize("x_shape,w_shape,groups,match", [
    ((1, 6, 5, 5), (4, 6, 3, 3), 2, r"weight of shape \(4, 6, 3, 3\).*expected weight shape \(4, 3, 3, 3\)"),
    ((1, 6, 5, 5), (6, 1, 3, 3), 3, r"expected weight shape \(6, 2, 3, 3\)"),
    ((1, 6, 5, 5), (6, 2, 3, 3), 4, r"groups = 4 for \(C, OC\) = \(6, 6\)"),
    ((1, 6, 5, 5), (9, 3, 3, 3), 2, r"groups = 2 for \(C, OC\) = \(6, 9\)"),
    ((1, 6, 5, 5), (6, 6, 3, 3), 0, "groups must be >= 1"),
    ((1, 6, 5, 5), (6, 6, 3, 3), -2, "groups must be >= 1"),
])
def test_conv2d_grouped_bad_inputs_raise(x_shape, w_shape, groups, match):
    x, w, dy = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32), np.zeros((1, w_shape[0], 3, 3), np.float32)
    with pytest.raises(ValueError, match=match):
        F.conv2d(x, w, groups=groups)
    with pytest.raises(ValueError, match=match):
        F.conv2d_backward(dy, x, w, groups=groups)


def test_conv2d_groups_must_be_an_int():
    with pytest.raises(TypeError, match="groups"):
        F.conv2d(np.zeros((1, 4, 5, 5), np.float32), np.zeros((4, 2, 3, 3), np.float32), groups=2.0)


def random_grouped_config(rng):
    """random_config's sizes with groups: G in 1 .. 4 with C/G and OC/G in 1 .. 4, or
    depthwise (G = C up to 12, multiplier 1 .. 3)."""
    conv = random_config(rng)
    N, _, H, W = conv.x_shape
    if rng.random() < 0.5:
        G = int(rng.integers(1, 13))
        C, OC = G, G * int(rng.integers(1, 4))
    else:
        G = int(rng.integers(1, 5))
        C, OC = G * int(rng.integers(1, 5)), G * int(rng.integers(1, 5))
    return Conv((N, C, H, W), OC, conv.kernel, conv.stride, conv.padding, conv.dilation, G)


@needs_torch
@pytest.mark.parametrize("seed", range(60))
def test_conv2d_grouped_vs_torch(seed):
    rng = np.random.default_rng(5000 + seed)
    conv = random_grouped_config(rng)
    x, w, b, dy = conv.inputs(rng, randn)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    PT, PB, PL, PR = conv.pads
    ty = torch.nn.functional.conv2d(torch.nn.functional.pad(tx, (PL, PR, PT, PB)), tw, tb,
                                    stride=conv.stride, dilation=conv.dilation, groups=conv.groups)
    ty.backward(torch.tensor(dy))
    y = conv.forward(x, w, b)
    scale = conv.reference(abs(x), abs(w), abs(b))
    assert_scaled_close(y, ty.detach().numpy(), scale, rtol=1e-4, what=f"y {vars(conv)}")
    scales = conv.reference_backward(abs(dy), abs(x), abs(w))
    for name, got, t, s in zip(("dx", "dw", "db"), conv.backward(dy, x, w), (tx, tw, tb), scales):
        assert_scaled_close(got, t.grad.numpy(), s, rtol=1e-4, what=f"{name} {vars(conv)}")
