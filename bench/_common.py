"""What the Python comparisons with PyTorch share: the named conv shapes of bench/shapes/, one
conv problem as four closures (cnnkit and torch, forward and forward+backward) with its FLOP
count, and the alternating median timer.

Imported by conv_vs_torch.py and compare_torch.py (run as scripts, bench/ is on sys.path).
"""
import os
import statistics
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def read_shapes(name):
    """[(case name, [ints])] of bench/shapes/<name>, comments and blank lines skipped."""
    rows = []
    with open(os.path.join(HERE, "shapes", name)) as f:
        for line in f:
            tok = line.split("#")[0].split()
            if tok:
                rows.append((tok[0], [int(t) for t in tok[1:]]))
    return rows


def conv_cases():
    """(name, x shape, weight shape, stride, padding, groups, one_d) for every conv2d and conv1d
    shape."""
    for name, (N, C, H, W, OC, KH, KW, SH, SW, PH, PW, G) in read_shapes("conv2d.txt"):
        yield name, (N, C, H, W), (OC, C // G, KH, KW), (SH, SW), (PH, PW), G, False
    for name, (N, C, L, OC, K, S, P, G) in read_shapes("conv1d.txt"):
        yield name, (N, C, L), (OC, C // G, K), S, P, G, True


def conv_problem(torch, name, x_shape, w_shape, stride, padding, groups, one_d):
    """One convolution with random data, checked once (loosely) against torch. Returns (forward
    FLOPs = 2*N*OC*(C/groups)*KH*KW*OH*OW, cnnkit_fwd, cnnkit_all, torch_fwd, torch_all): *_all
    is the forward and the backward with every gradient (dx, dw, db), 3x the forward FLOPs."""
    from cnnkit import functional as F

    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    conv, conv_backward = (F.conv1d, F.conv1d_backward) if one_d else (F.conv2d, F.conv2d_backward)
    tconv = torch.nn.functional.conv1d if one_d else torch.nn.functional.conv2d
    y = conv(x, w, b, stride, padding, 1, groups)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    flops = 2.0 * y.size * np.prod(w_shape[1:])

    tx, tw, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, w, b))
    tdy = torch.from_numpy(dy)

    def torch_fwd():
        with torch.no_grad():
            tconv(tx, tw, tb, stride, padding, 1, groups)

    def torch_all():
        tx.grad = tw.grad = tb.grad = None
        tconv(tx, tw, tb, stride, padding, 1, groups).backward(tdy)

    def cnnkit_fwd():
        conv(x, w, b, stride, padding, 1, groups)

    def cnnkit_all():
        conv(x, w, b, stride, padding, 1, groups)
        conv_backward(dy, x, w, stride, padding, 1, groups)

    # Same answer first (a loose check; the tests hold both to the float64 reference).
    ty = tconv(tx, tw, tb, stride, padding, 1, groups).detach().numpy()
    assert np.allclose(y, ty, rtol=1e-3, atol=1e-3 * np.abs(ty).max()), name
    return flops, cnnkit_fwd, cnnkit_all, torch_fwd, torch_all


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def alternate(fns, reps, burst_s=0.02, pause_s=0.002):
    """Median seconds per call of each function in fns, timed alternately (A B A B ...).

    Two warm-up calls each, then reps rounds; in a round each side runs a burst of calls lasting
    about burst_s (at least one call) and its time per call is recorded. Bursts keep the timer's
    and Python's overhead out of microsecond-sized calls; the pause between sides lets the other
    library's idle OpenMP workers stop spinning before a side is timed, so neither pool steals
    the second core from the other.
    """
    once = []
    for f in fns:
        f()
        once.append(timed(f))
    counts = [max(1, min(1000, int(burst_s / max(t, 1e-7)))) for t in once]
    times = [[] for _ in fns]
    for _ in range(reps):
        for f, n, acc in zip(fns, counts, times):
            time.sleep(pause_s)
            t = time.perf_counter()
            for _ in range(n):
                f()
            acc.append((time.perf_counter() - t) / n)
    return [statistics.median(t) for t in times]
