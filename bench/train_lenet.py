"""LeNet-5 training throughput, cnnkit against PyTorch 2.13 CPU, same recipe, same process.

Recipe (issue 3): LeNet-5 as in DESIGN.md, SGD lr 0.05 momentum 0.9, cross-entropy, batch 64,
MNIST images scaled to [0, 1] and normalised (../shared/data/mnist, or random data with
--random). For each thread count the two frameworks alternate (A B A B ...): each round
trains one shuffled epoch over --images images after a warm-up epoch; the median images/s of
the rounds is reported, with ratio = cnnkit img/s / torch img/s.

    python bench/train_lenet.py [--images 12800] [--rounds 5] [--threads 1 2] [--batch-size 64]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

import cnnkit
from cnnkit import models
from cnnkit.cli import prepare

HERE = os.path.dirname(os.path.abspath(__file__))


def mnist(n):
    data = os.path.join(HERE, "..", "..", "shared", "data", "mnist")
    (x, y), _ = cnnkit.datasets.load_mnist(data)
    return prepare(x[:n]), y[:n].astype(np.int64)


def cnnkit_epoch(model, x, y, batch_size):
    t = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=True)
    return len(x) / (time.perf_counter() - t)


def torch_setup(torch):
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return model, opt


def torch_epoch(torch, model, opt, x, y, batch_size):
    """The same work as fit: a shuffled pass of forward, loss, backward, step per batch."""
    loss_fn = torch.nn.functional.cross_entropy
    t = time.perf_counter()
    order = torch.randperm(len(x))
    for start in range(0, len(x), batch_size):
        idx = order[start:start + batch_size]
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
    return len(x) / (time.perf_counter() - t)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=12800, help="images per timed epoch")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--random", action="store_true", help="random data instead of MNIST")
    args = p.parse_args(argv)

    import torch

    if args.random:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((args.images, 1, 28, 28)).astype(np.float32)
        y = rng.integers(0, 10, args.images).astype(np.int64)
    else:
        x, y = mnist(args.images)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    print(f"# LeNet-5 training, batch {args.batch_size}, {len(x)} images per epoch, median of {args.rounds} rounds")
    print(f"# cnnkit {cnnkit.__version__} (SIMD {cnnkit._core.simd_tier()}), torch {torch.__version__} "
          f"({torch.backends.cpu.get_cpu_capability()})")
    print(f"{'threads':>7} {'cnnkit img/s':>13} {'torch img/s':>12} {'ratio':>7}")
    for threads in args.threads:
        cnnkit.set_num_threads(threads)
        torch.set_num_threads(threads)
        cnnkit.set_random_seed(0)
        torch.manual_seed(0)
        model = models.lenet5()
        model.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.05, momentum=0.9), loss="cross_entropy")
        tmodel, topt = torch_setup(torch)
        cnnkit_epoch(model, x, y, args.batch_size)            # warm-up: buffers, caches, threads
        torch_epoch(torch, tmodel, topt, xt, yt, args.batch_size)
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(cnnkit_epoch(model, x, y, args.batch_size))
            theirs.append(torch_epoch(torch, tmodel, topt, xt, yt, args.batch_size))
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"{threads:>7} {a:>13,.0f} {b:>12,.0f} {a / b:>7.2f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
