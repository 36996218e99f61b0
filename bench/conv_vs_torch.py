"""cnnkit against PyTorch (CPU) on the conv shapes of bench/shapes/conv2d.txt and conv1d.txt.

For each shape and thread count (1, then 2; both libraries set to it), forward and
forward+backward (all of dx, dw, db) alternate between the two libraries, after a warm-up,
and each side's median time is kept. ratio = torch time / cnnkit time (> 1: cnnkit faster).
GFLOP/s count 2*N*OC*(C/groups)*KH*KW*OH*OW for the forward and 3x that for forward+backward.

    PYTHONPATH=python flock /tmp/cnnkit-bench.lock python3 bench/conv_vs_torch.py [--reps R]
        [--threads 1 2] [--filter NAME]
"""
import argparse

import numpy as np
import torch

import cnnkit
from _common import conv_cases as cases, conv_problem, timed


def compare(name, x_shape, w_shape, stride, padding, groups, one_d, reps):
    flops, cnnkit_fwd, cnnkit_all, torch_fwd, torch_all = conv_problem(
        torch, name, x_shape, w_shape, stride, padding, groups, one_d)
    row = []
    for pair in ((torch_fwd, cnnkit_fwd), (torch_all, cnnkit_all)):
        times = ([], [])
        for f in pair:  # warm-up
            f()
            f()
        for _ in range(reps):  # alternate A B A B ...
            for i, f in enumerate(pair):
                times[i].append(timed(f))
        row.append(tuple(float(np.median(t)) for t in times))
    return flops, row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--filter", default="")
    args = ap.parse_args()
    print(f"# torch {torch.__version__}, cnnkit {cnnkit.__version__} "
          f"(SIMD {cnnkit._core.simd_tier()}); medians of {args.reps} alternating runs; "
          "ratio = torch ms / cnnkit ms")
    for threads in args.threads:
        torch.set_num_threads(threads)
        cnnkit.set_num_threads(threads)
        print(f"\n## {threads} thread{'s' if threads > 1 else ''}")
        print(f"{'shape':<18} | {'fwd torch ms':>12} {'cnnkit ms':>9} {'GF/s t':>7} {'GF/s c':>7} "
              f"{'ratio':>6} | {'f+b torch ms':>12} {'cnnkit ms':>9} {'GF/s t':>7} {'GF/s c':>7} "
              f"{'ratio':>6}")
        for name, xs, ws, stride, padding, groups, one_d in cases():
            if args.filter and args.filter not in name:
                continue
            flops, ((tf, cf), (ta, ca)) = compare(name, xs, ws, stride, padding, groups, one_d,
                                                  args.reps)
            print(f"{name:<18} | {tf * 1e3:12.3f} {cf * 1e3:9.3f} {flops / tf * 1e-9:7.1f} "
                  f"{flops / cf * 1e-9:7.1f} {tf / cf:6.2f} | {ta * 1e3:12.3f} {ca * 1e3:9.3f} "
                  f"{3 * flops / ta * 1e-9:7.1f} {3 * flops / ca * 1e-9:7.1f} {ta / ca:6.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
