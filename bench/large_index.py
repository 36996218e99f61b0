"""On demand: ops whose operands hold more than 2^31 elements, checked against float64 references
on slices (integer-valued data, so float32 sums are exact and every slice must match bit for
bit). Needs ~40 GiB of memory and about two minutes on 16 cores; tests/test_large_index.py covers
what fits a test run (the refusals, a 2 GiB conv2d input).

  python bench/large_index.py [case ...]      (cases: linear conv2d conv2d_backward
                                                max_pool2d conv2d_plane conv1d_long)

Each case prints its sizes, its time and "exact" or the first mismatch; the exit status is 1
if any case mismatched.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import reference as ref  # noqa: E402

from cnnkit import _core, functional as F  # noqa: E402

RNG = np.random.default_rng(2026)
FAILED = []


def ints(shape, lo=-3, hi=4):
    return RNG.integers(lo, hi, shape).astype(np.float32)


def check(name, got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape == want.shape and np.array_equal(got, want):
        return "exact"
    FAILED.append(name)
    if got.shape != want.shape:
        return f"MISMATCH {name}: shape {got.shape} != {want.shape}"
    i = np.unravel_index(np.argmax(np.abs(got - want)), got.shape)
    return f"MISMATCH {name}: at {i} got {got[i]} want {want[i]}"


def patterned(shape, period=13):
    """A large float32 array of small integers without drawing each element: row r of the last
    two axes' flattening is table[r % period] scaled by a per-row sign, so offsets that wrap or
    truncate read a different value."""
    rows = int(np.prod(shape[:-1]))
    table = ints((period, shape[-1]))
    out = np.empty((rows, shape[-1]), np.float32)
    step = 1 << 16
    for r0 in range(0, rows, step):
        r = np.arange(r0, min(rows, r0 + step))
        out[r0:r0 + len(r)] = table[r % period] * ((r % 3) - 1)[:, None]
    return out.reshape(shape)


def case_linear():
    # weight [32769, 65536]: 2^31 + 65536 elements (8 GiB); rows past 2^31 elements checked.
    IN, OUT = 65536, 32769
    w = patterned((OUT, IN))
    b = ints(OUT)
    picks = np.array([0, 1, 32767, 32768])
    for N in (2, 24):  # dot products (gemv) and the GEMM
        x = ints((N, IN))
        t = time.perf_counter()
        y = F.linear(x, w, b)
        dt = time.perf_counter() - t
        want = x.astype(np.float64) @ w[picks].astype(np.float64).T + b[picks]
        print(f"linear N={N} IN={IN} OUT={OUT} (weight {w.size:.3g} elements): {dt:.2f} s,",
              check(f"linear N={N}", y[:, picks], want))
    # backward: dw [OUT, IN] = dy^T x, dx = dy w
    N = 4
    x, dy = ints((N, IN)), ints((N, OUT))
    t = time.perf_counter()
    dx, dw, db = F.linear_backward(dy, x, w)
    dt = time.perf_counter() - t
    want_dw = dy[:, picks].astype(np.float64).T @ x.astype(np.float64)
    want_dx = dy.astype(np.float64) @ w.astype(np.float64)[:, :8]
    print(f"linear_backward N={N}: {dt:.2f} s,", check("linear dw", dw[picks], want_dw), "/",
          check("linear dx", dx[:, :8], want_dx))


def conv_input(C, H, W):
    x = np.zeros((1, C, H, W), np.float32)
    for c in sorted({0, 1, C // 2, C - 2, C - 1}):
        x[0, c] = ints((1, W)) * (np.arange(H) % 5 - 2)[:, None]
    return x


def case_conv2d():
    # x [1, 520, 2048, 2048]: 2.18e9 elements (8.1 GiB); im2col operand 4680 x 4.2e6 = 2e10.
    C, H, W = 520, 2048, 2048
    x = conv_input(C, H, W)
    w = ints((2, C, 3, 3), -2, 3)
    t = time.perf_counter()
    y = F.conv2d(x, w, padding=1)
    dt = time.perf_counter() - t
    out = []
    for r0 in (0, 1023, H - 8):
        lo, hi = max(0, r0 - 1), min(H, r0 + 9)
        want = ref.conv2d(x[:, :, lo:hi], w, pads=(int(r0 == 0), int(r0 + 9 > H), 1, 1))
        out.append(check(f"conv2d rows {r0}", y[:, :, r0:r0 + want.shape[2]], want))
    print(f"conv2d x {x.shape} ({x.size:.3g} elements): {dt:.2f} s,", ", ".join(out))


def case_conv2d_backward():
    C, H, W = 520, 2048, 2048
    x = conv_input(C, H, W)
    w = ints((2, C, 3, 3), -2, 3)
    dy = ints((1, 2, H, W))
    t = time.perf_counter()
    dx, dw, db = _core.conv2d_backward(dy, x, w, (1, 1), (1, 1, 1, 1), (1, 1), True, True, True)
    dt = time.perf_counter() - t
    # dw [oc, c, kh, kw] = sum_{i, j} dy[oc, i, j] * xpad[c, i + kh, j + kw], for a few channels
    out = []
    for c in (0, C // 2, C - 1, 3):
        xp = np.pad(x[0, c].astype(np.float64), 1)
        want = np.array([[[np.sum(dy[0, oc] * xp[kh:kh + H, kw:kw + W]) for kw in range(3)]
                          for kh in range(3)] for oc in range(2)])
        out.append(check(f"conv2d_backward dw channel {c}", dw[:, c], want))
    # dx [c, i, j] = sum_{oc, kh, kw} dypad[oc, i + 2 - kh, j + 2 - kw] * w[oc, c, kh, kw]
    for r0 in (0, H - 8):
        lo = r0 - 1
        slab = np.zeros((2, 10, W + 2))
        for k in range(10):
            if 0 <= lo + k < H:
                slab[:, k, 1:-1] = dy[0, :, lo + k]
        want = np.zeros((C, 8, W))
        for kh in range(3):
            for kw in range(3):
                want += np.einsum("oij,oc->cij", slab[:, 2 - kh:10 - kh, 2 - kw:W + 2 - kw],
                                  w[:, :, kh, kw].astype(np.float64))
        out.append(check(f"conv2d_backward dx rows {r0}", dx[0, :, r0:r0 + 8], want))
    print(f"conv2d_backward x {x.shape}: {dt:.2f} s,", ", ".join(out))


def case_max_pool2d():
    x = patterned((1, 520, 2048, 2048))
    t = time.perf_counter()
    y = F.max_pool2d(x, 2)
    dt = time.perf_counter() - t
    out = [check(f"max_pool2d channel {c}", y[0, c], x[0, c].reshape(1024, 2, 1024, 2).max(axis=(1, 3)))
           for c in (0, 259, 519)]
    print(f"max_pool2d x {x.shape}: {dt:.2f} s,", ", ".join(out))


def case_conv2d_plane():
    # one plane of 46341 x 46341 = 2^31 + 4633 elements, 3x3 with padding 1 (the SIMD im2col
    # packs fall back to their 64-bit loops)
    H = W = 46341
    x = patterned((1, 1, H, W))
    w = ints((1, 1, 3, 3))
    t = time.perf_counter()
    y = F.conv2d(x, w, padding=1)
    dt = time.perf_counter() - t
    out = [check(f"conv2d_plane rows {r0}", y[:, :, r0 + 1:r0 + 5], ref.conv2d(x[:, :, r0:r0 + 6], w, pads=(0, 0, 1, 1)))
           for r0 in (0, H // 2, H - 6)]
    print(f"conv2d one plane {H} x {W} ({H * W} elements): {dt:.2f} s,", ", ".join(out))


def case_conv1d_long():
    # a length of 2^31 + 5 elements
    L = 2 ** 31 + 5
    x = patterned((1, 1, L // 4 + 1, 4)).reshape(-1)[:L].reshape(1, 1, L)
    w = ints((1, 1, 3))
    t = time.perf_counter()
    y = F.conv1d(x, w, padding=1)
    dt = time.perf_counter() - t
    tail = ref.conv1d(x[:, :, L - 64:], w, pads=(0, 1))
    head = ref.conv1d(x[:, :, :64], w, pads=(1, 0))
    print(f"conv1d L={L}: {dt:.2f} s,", check("conv1d head", y[:, :, :63], head[:, :, :63]), "/",
          check("conv1d tail", y[:, :, L - 63:], tail))


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}

if __name__ == "__main__":
    names = sys.argv[1:] or list(CASES)
    print(f"cnnkit {_core.__version__}, tier {_core.simd_tier()}, threads {_core.get_num_threads()}")
    for name in names:
        CASES[name]()
    sys.exit(1 if FAILED else 0)
