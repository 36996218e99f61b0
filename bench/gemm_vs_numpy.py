"""cnnkit's GEMM (_core.gemm, the active SIMD tier) against np.matmul (OpenBLAS) in float32 on
the shapes of bench/shapes/gemm.txt, with 1 and 2 threads on both sides: one subprocess per
thread count (OPENBLAS_NUM_THREADS must be set before numpy loads; threadpoolctl, when
installed, also limits it), alternating bursts A B A B after a warm-up, medians reported.

    flock /tmp/cnnkit-bench.lock python3 bench/gemm_vs_numpy.py [--threads 1,2] [--filter S]
        [--tier avx2]         a given SIMD tier instead of the active one
        [--openblas-native]   unset OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: OpenBLAS then picks
                              its kernel for this CPU (AVX-512 on Zen 4/5) instead of Haswell's
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = os.path.join(HERE, "shapes", "gemm.txt")


def read_shapes(filter_):
    rows = []
    with open(SHAPES) as f:
        for line in f:
            tok = line.split("#")[0].split()
            if len(tok) >= 4 and filter_ in tok[0]:
                rows.append((tok[0], int(tok[1]), int(tok[2]), int(tok[3])))
    return rows


def child(threads, filter_, tier):
    """Runs in the subprocess: times both sides on every shape, prints one JSON line each."""
    import numpy as np

    import cnnkit
    from cnnkit import _core

    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)
    except ImportError:
        pass  # OPENBLAS_NUM_THREADS, set by the parent, already holds
    cnnkit.set_num_threads(threads)
    rng = np.random.default_rng(0)
    for name, M, N, K in read_shapes(filter_):
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        ours = lambda: _core.gemm(a, b, tier=tier)  # noqa: E731
        theirs = lambda: np.matmul(a, b)  # noqa: E731
        diff = np.max(np.abs(ours() - theirs())) / max(1e-30, np.max(np.abs(theirs())))
        once = time.perf_counter()
        ours(), theirs()
        once = time.perf_counter() - once
        # Alternate in short bursts (~0.1 s a side, 6 rounds), pausing between sides: both
        # thread pools spin for a while after a call, and a spinning pool would steal the
        # other side's second core.
        burst = int(min(100, max(2, 0.2 / max(once, 1e-6))))
        t_ours, t_theirs = [], []
        for _ in range(6):
            for f, acc in ((ours, t_ours), (theirs, t_theirs)):
                time.sleep(0.2)
                for _ in range(burst):
                    t = time.perf_counter()
                    f()
                    acc.append(time.perf_counter() - t)
        flop = 2.0 * M * N * K
        print(json.dumps({"name": name, "M": M, "N": N, "K": K, "diff": float(diff),
                          "ours": flop / np.median(t_ours) * 1e-9,
                          "numpy": flop / np.median(t_theirs) * 1e-9}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--filter", default="")
    p.add_argument("--tier", default=None)
    p.add_argument("--openblas-native", action="store_true")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.filter, args.tier)

    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
    from cnnkit import _core
    env = dict(os.environ)
    if args.openblas_native:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(os.path.dirname(HERE), "python"),
                                         env.get("PYTHONPATH", "")])
    print(f"# cnnkit tier {args.tier or _core.simd_tier()} vs numpy/OpenBLAS, float32; "
          f"OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE', '(unset)')} "
          f"OPENBLAS_L2_SIZE={env.get('OPENBLAS_L2_SIZE', '(unset)')}")
    print(f"{'shape':<22} {'M':>6} {'N':>6} {'K':>6} {'thr':>3} {'cnnkit':>9} {'numpy':>9} "
          f"{'ratio':>6}  (GFLOP/s, medians)")
    for threads in [int(t) for t in args.threads.split(",")]:
        env_t = dict(env, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child",
                                 str(threads), "--filter", args.filter]
                                + (["--tier", args.tier] if args.tier else []),
                                env=env_t, stdout=subprocess.PIPE, text=True)
        for line in proc.stdout:
            r = json.loads(line)
            flag = "" if r["diff"] < 1e-4 else f"   <-- differs from numpy by {r['diff']:.2e}"
            print(f"{r['name']:<22} {r['M']:>6} {r['N']:>6} {r['K']:>6} {threads:>3} "
                  f"{r['ours']:>9.1f} {r['numpy']:>9.1f} {r['ours'] / r['numpy']:>6.2f}{flag}",
                  flush=True)
        if proc.wait() != 0:
            sys.exit(f"child for {threads} threads failed")


if __name__ == "__main__":
    main()
