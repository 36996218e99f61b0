"""conv2d forward of large strided kernels through the phase-split image (ops/conv2d_phase.hpp,
AlexNet conv1's path): against the float64 reference, bit for bit on integer-valued inputs
(also through the __ref loops), the same bits for 1 and 2 threads, and every case under every
SIMD tier (the AVX-512 split and pack, the portable ones, gemm__ref reading them one element at
a time)."""
import json
import subprocess
import sys

import numpy as np
import pytest

import reference as ref
from cnnkit import _core
from helpers import assert_exact, child_env, randn
from test_conv2d import Conv, check_conv, threads  # noqa: F401  (threads: a fixture)

# Stride >= 3 in width, kernel wider than the stride, >= 16 output columns, one group.
PHASE = {
    "alexnet_like": Conv((2, 3, 67, 71), 8, (11, 11), 4, 2),
    "alexnet_wide_rows": Conv((2, 3, 40, 200), 7, (11, 11), 4, 2),
    "alexnet_n1": Conv((1, 3, 71, 75), 9, (11, 11), 4, 2),
    "stride3_asym_pad": Conv((2, 2, 30, 64), 5, (5, 7), (2, 3), (1, 0, 3, 1)),
    "stride4_dilated": Conv((1, 3, 20, 80), 4, (3, 5), 4, 1, (1, 2)),
    "stride5_valid": Conv((3, 4, 25, 100), 6, (6, 7), 5),
    "stride4_pad_past_kernel": Conv((2, 3, 19, 70), 5, (5, 5), 4, (0, 1, 6, 7)),
}


def takes_phase_path(conv):
    """conv2d_phase_applies, restated (its shape conditions; the avx2 tier keeps the im2col
    path, which these cases then test there)."""
    (KH, KW), (PT, PB, PL, PR) = conv.kernel, conv.pads
    SW, DW = conv.stride[1], conv.dilation[1]
    OW = ref.conv2d_out_size(conv.x_shape[3], KW, SW, PL, PR, DW)
    return SW >= 3 and KW > SW and OW >= 16 and conv.groups == 1


def test_phase_cases_reach_the_phase_path():
    assert all(takes_phase_path(c) for c in PHASE.values())


@pytest.mark.parametrize("name", PHASE)
def test_conv2d_phase_random(name, rng):
    check_conv(PHASE[name], rng)


@pytest.mark.parametrize("name", PHASE)
def test_conv2d_phase_exact_ints(name, rng):
    check_conv(PHASE[name], rng, exact=True)


@pytest.mark.parametrize("name", ["alexnet_like", "stride3_asym_pad"])
def test_conv2d_phase_ref_path(name, rng):
    check_conv(PHASE[name], rng, exact=True, path="ref")


@pytest.mark.parametrize("name", PHASE)
def test_conv2d_phase_same_bits_for_1_and_2_threads(name, rng, threads):  # noqa: F811
    conv = PHASE[name]
    x, w, b, _ = conv.inputs(rng, randn)
    ys = []
    for n in (1, 2):
        threads(n)
        ys.append(conv.forward(x, w, b))
    assert_exact(ys[1], ys[0], "y")


# Runs in the child: every PHASE case, bit for bit on integer inputs and within tolerance on
# random ones, with the tier CNNKIT_SIMD chose.
TIER_CHILD = r"""
import json
import sys
sys.modules["torch"] = None
import numpy as np
from cnnkit import _core
import test_conv2d as t
import test_conv2d_phase as p

rng = np.random.default_rng(11)
for conv in p.PHASE.values():
    t.check_conv(conv, rng, exact=True)
    t.check_conv(conv, rng)
print(json.dumps({"tier": _core.simd_tier(), "cases": len(p.PHASE)}))
"""


@pytest.mark.parametrize("tier", _core.simd_tiers_supported())
def test_conv2d_phase_every_tier(tier):
    r = subprocess.run([sys.executable, "-c", TIER_CHILD], env=child_env(CNNKIT_SIMD=tier),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"tier": tier, "cases": len(PHASE)}
