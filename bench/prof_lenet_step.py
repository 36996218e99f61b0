"""Where one LeNet-5 training step (batch 64) spends its time: each layer's forward and
backward as the model calls them, the loss and the optimizer, as medians over many steps
(robust to other work on the machine), plus whole train_on_batch steps. --model cifar: the
CIFAR-style CNN of e2e_vs_torch.py at batch 128 instead.

    python bench/prof_lenet_step.py [--threads 1] [--steps 300] [--model lenet|cifar]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

import cnnkit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_vs_torch import cnnkit_cifar  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--model", choices=["lenet", "cifar"], default="lenet")
    args = p.parse_args(argv)
    cnnkit.set_num_threads(args.threads)
    cnnkit.set_random_seed(0)
    m = cnnkit_cifar() if args.model == "cifar" else cnnkit.models.lenet5()
    m.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.05, momentum=0.9), loss="cross_entropy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 3, 32, 32) if args.model == "cifar" else (64, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, len(x))
    for _ in range(20):
        m.train_on_batch(x, y)
    clock = time.perf_counter
    samples = {}

    def timed(key, f, *a):
        t = clock()
        r = f(*a)
        samples.setdefault(key, []).append(clock() - t)
        return r

    # The model's stages (a ReLU followed by a max pool runs as one fused pass), in-place
    # activations included: the same calls, with the same flags, as Sequential makes them.
    index = {id(l): i for i, l in enumerate(m.layers)}
    stages = [(f"{index[id(l)]:2d} {'ReLU+' if fused else ''}{type(l).__name__}", l, fused)
              for l, fused, _ in m._stages]
    m.train()
    steps = []
    for _ in range(args.steps):
        t0 = clock()
        h, scratch = x, False
        for name, l, fused in stages:
            if not fused:
                l._input_is_scratch = scratch
            h = timed(f"{name} fwd", l._relu_forward if fused else l.forward, h)
            scratch = l._owns_output(h)
        timed("loss fwd", m.loss, h, y)
        g = timed("loss bwd", m.loss.backward)
        m.layers[0].input_grad, scratch = False, False
        for name, l, fused in reversed(stages):
            l._grad_is_scratch = scratch
            g_in = g
            g = timed(f"{name} bwd", l._relu_backward if fused else l.backward, g)
            scratch = g is not None and (l._owns(g) or (scratch and g is g_in))
        params, grads = m._trainable()
        timed("optimizer", m.optimizer.step, params, grads)
        steps.append(clock() - t0)
    med = {k: statistics.median(v) for k, v in samples.items()}
    total = sum(med.values())
    for k in sorted(med):
        print(f"{k:22s} {med[k] * 1e3:7.3f} ms  {100 * med[k] / total:5.1f}%")
    print(f"sum of medians {total * 1e3:.3f} ms; median step {statistics.median(steps) * 1e3:.3f} ms")
    ts = []
    for _ in range(args.steps):
        t = clock()
        m.train_on_batch(x, y)
        ts.append(clock() - t)
    print(f"train_on_batch median {statistics.median(ts) * 1e3:.3f} ms = {len(x) / statistics.median(ts):,.0f} img/s")


if __name__ == "__main__":
    main()
