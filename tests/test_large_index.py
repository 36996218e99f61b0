"""64-bit indexing: what the core cannot index is refused, with a ValueError naming the sizes,
before any input is copied or output allocated; what it can, works past 2^31 elements and bytes.

The one 32-bit limit: the SIMD pooling kernels address one image plane (H x W) with int32
lanes, so a pooling input plane may hold at most 2^31 - 1 elements. Everything else indexes
with int64_t: batch and channel offsets, GEMM packing, the Workspace, the im2col operand
(C*KH*KW x OH*OW, packed panel by panel, never materialised; its SIMD packs use int32 lanes
but fall back to 64-bit scalar loops for planes of 2^29 elements or more). bench/large_index.py
checks that on demand with real memory (measured on a 128 GiB machine: an 8 GiB Linear
weight of 2^31 + 65536 elements, forward and backward; conv2d forward and backward with an
input of 2.18e9 elements; max pooling over 2.18e9 elements; a conv1d of length 2^31 + 5 and a
conv2d plane of 46341 x 46341 = 2^31 + 4633 elements: all exact against the float64
reference on slices).

Shapes are checked before inputs are converted: the refusals are tested on read-only
zero-stride views (np.broadcast_to) of 8 GiB and more, in a child process whose address
space is capped at 3 GiB: were a view converted (copied) before the check, the copy would
fail there with MemoryError instead of the ValueError.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import child_env
import reference as ref

PLANE = 46341  # 46341^2 = 2^31 + 4633: one pooling plane over the limit

CHILD = r"""
import json, os, resource
# ASan's shadow memory does not fit under an address-space cap; there its
# max_allocation_size_mb (tests/sanitize.sh) makes a copy of a huge view fail the same way
if "libasan" not in os.environ.get("LD_PRELOAD", ""):
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import numpy as np
import cnnkit
from cnnkit import _core, functional as F, layers as L

P = %d
big2d = np.broadcast_to(np.float32(1), (1, 1, P, P))          # 8 GiB as float32, 4 bytes real
big1d = np.broadcast_to(np.float32(1), (2, 1, 2 ** 31))         # 16 GiB
w3 = np.ones((2, 3, 3, 3), np.float32)                          # wants 3 input channels
dy2 = np.broadcast_to(np.float32(1), (1, 2, P, P))
cases = {
    "max_pool2d": lambda: F.max_pool2d(big2d, 2),
    "avg_pool2d": lambda: F.avg_pool2d(big2d, 2),
    "max_pool1d": lambda: F.max_pool1d(np.broadcast_to(np.float32(1), (1, 1, 2 ** 31)), 2),
    "max_pool2d_layer": lambda: L.MaxPool2d(2)(big2d),
    "conv2d": lambda: F.conv2d(big2d, w3, padding=1),
    "conv2d_backward": lambda: _core.conv2d_backward(dy2, big2d, w3, (1, 1), (1, 1, 1, 1), (1, 1), True, True,
                                                     True),
    "conv1d": lambda: F.conv1d(big1d, np.ones((2, 2, 3), np.float32)),
    "conv2d_kernel": lambda: F.conv2d(big2d, np.ones((1, 1, P + 3, 1), np.float32)),
    "model": lambda: cnnkit.Sequential([L.Conv2d(1, 2, 3, padding=1), L.MaxPool2d(2)]).predict(big2d),
}
out = {}
for name, call in cases.items():
    try:
        call()
        out[name] = "no error"
    except Exception as e:  # reported to the test, which names what it expected
        out[name] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
""" % PLANE


@pytest.fixture(scope="module")
def refusals():
    out = subprocess.run([sys.executable, "-c", CHILD], env=child_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


PLANE_MSG = f"({PLANE}, {PLANE}) has {PLANE ** 2} elements, more than the 2147483647"


@pytest.mark.parametrize("case, message", [
    ("max_pool2d", f"pool: an input plane (H, W) = {PLANE_MSG}"),
    ("avg_pool2d", f"pool: an input plane (H, W) = {PLANE_MSG}"),
    ("max_pool1d", f"pool: an input plane (H, W) = (1, {2 ** 31}) has {2 ** 31} elements"),
    ("max_pool2d_layer", f"pool: an input plane (H, W) = {PLANE_MSG}"),
    ("conv2d", "has 1 channels but weight of shape (2, 3, 3, 3) expects 3"),
    ("conv2d_backward", "has 1 channels but weight of shape (2, 3, 3, 3) expects 3"),
    ("conv1d", "has 1 channels but weight of shape (2, 2, 3) expects 2"),
    ("conv2d_kernel", f"kernel ({PLANE + 3}, 1) is larger than the padded input ({PLANE}, {PLANE})"),
    # the conv's output plane is over the pooling limit: refused when the model infers its
    # shapes from the first batch, before predict converts (copies) the batch
    ("model", f"pool: an input plane (H, W) = {PLANE_MSG}"),
])
def test_refused_before_any_copy(refusals, case, message):
    got = refusals[case]
    assert got.startswith("ValueError") and message in got, f"{case}: expected ValueError with {message!r}, got {got}"


def test_pool_plane_limit_is_exact():
    from cnnkit import _core
    # 46340 x 46341 = 2^31 - 41548: fits; one more row does not
    assert _core.pool2d_output_size((1, 46340, 46341), (2, 2), (2, 2), (0, 0, 0, 0)) == (23170, 23170)
    with pytest.raises(ValueError, match=r"\(46341, 46341\) has 2147488281 elements"):
        _core.pool2d_output_size((1, 46341, 46341), (2, 2), (2, 2), (0, 0, 0, 0))
    # convolutions have no plane limit: a 46341 x 46341 plane has an output size
    assert _core.conv2d_output_size((1, PLANE, PLANE), (1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)) == (PLANE, PLANE)


def _mem_available_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return 0.0


@pytest.mark.skipif(_mem_available_gib() < 6, reason="needs ~2.1 GiB of address space backed by memory")
def test_conv2d_input_over_2gib_matches_reference_on_slices():
    # x [1, 130, 2048, 2048]: 2.03 GiB, offsets past 2^31 bytes from channel 128 on; the im2col
    # operand is 1170 x 4194304 = 4.9e9 elements (never materialised). x is np.zeros (pages
    # the kernel maps on first touch, reading zeros costs little) with a few channels filled,
    # the two past 2^31 bytes among them. Integer inputs: float32 sums are exact, so slices
    # must match the float64 reference bit for bit.
    C, H, W = 130, 2048, 2048
    rng = np.random.default_rng(11)
    x = np.zeros((1, C, H, W), np.float32)
    for c in (0, 1, 77, 127, 128, 129):
        x[0, c] = rng.integers(-4, 5, (1, W)).astype(np.float32) * (np.arange(H) % 5 - 2)[:, None]
    w = rng.integers(-2, 3, (1, C, 3, 3)).astype(np.float32)
    from cnnkit import functional as F
    y = F.conv2d(x, w, padding=1)
    assert y.shape == (1, 1, H, W)
    for r0 in (0, 1023, H - 8):
        lo, hi = max(0, r0 - 1), min(H, r0 + 9)
        want = ref.conv2d(x[:, :, lo:hi], w, pads=(int(r0 == 0), int(r0 + 9 > H), 1, 1))
        np.testing.assert_array_equal(y[:, :, r0:r0 + want.shape[2]], want, err_msg=f"rows {r0}..")
    # the channels past 2^31 bytes count: without them the result differs
    x[0, 128:] = 0
    assert not np.array_equal(F.conv2d(x[:, :, :16], w, padding=1)[:, :, :8], y[:, :, :8])
