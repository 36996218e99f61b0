"""LeNet-5 test accuracy after the issue's recipe, in cnnkit and in PyTorch 2.13, per seed.

Recipe: LeNet-5 as in DESIGN.md, full MNIST from ../shared/data/mnist scaled to [0, 1] and
normalised (mean 0.1307, std 0.3081), SGD lr 0.05 momentum 0.9, batch 64, shuffled, 2 epochs,
cross-entropy; test accuracy on the 10,000 test images. The same seeds drive both frameworks'
initialisation and shuffling (each its own generator, so the runs are not the same draws).

    python bench/lenet_accuracy.py [--seeds 0 1 2] [--epochs 2] [--lr 0.05] [--threads 2]
"""
import argparse
import os
import statistics

import numpy as np

import cnnkit
from cnnkit.cli import prepare

HERE = os.path.dirname(os.path.abspath(__file__))


def cnnkit_run(data, seed, args):
    (x, y), (xt, yt) = data
    cnnkit.set_random_seed(seed)
    m = cnnkit.models.lenet5()
    m.compile(optimizer=cnnkit.optim.SGD(learning_rate=args.lr, momentum=0.9), loss="cross_entropy",
              metrics=["accuracy"])
    m.fit(x, y, batch_size=64, epochs=args.epochs, verbose=0)
    return m.evaluate(xt, yt, batch_size=256)["accuracy"]


def torch_run(torch, data, seed, args):
    (x, y), (xt, yt) = (tuple(torch.from_numpy(a) for a in pair) for pair in data)
    torch.manual_seed(seed)
    nn = torch.nn
    m = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    opt = torch.optim.SGD(m.parameters(), lr=args.lr, momentum=0.9)
    for _ in range(args.epochs):
        order = torch.randperm(len(x))
        for s in range(0, len(x), 64):
            idx = order[s:s + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(m(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        return (m(xt).argmax(1) == yt).float().mean().item()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args(argv)

    (x, y), (xt, yt) = cnnkit.datasets.load_mnist(os.path.join(HERE, "..", "..", "shared", "data", "mnist"))
    data = ((prepare(x), y.astype(np.int64)), (prepare(xt), yt.astype(np.int64)))
    cnnkit.set_num_threads(args.threads)
    torch = None
    if not args.no_torch:
        import torch
        torch.set_num_threads(args.threads)

    print(f"# LeNet-5, MNIST, SGD lr {args.lr} momentum 0.9, batch 64, {args.epochs} epochs: test accuracy")
    print(f"{'seed':>4} {'cnnkit':>8} {'torch':>8}")
    ours, theirs = [], []
    for seed in args.seeds:
        ours.append(cnnkit_run(data, seed, args))
        theirs.append(torch_run(torch, data, seed, args) if torch else float("nan"))
        print(f"{seed:>4} {ours[-1]:>8.4f} {theirs[-1]:>8.4f}", flush=True)
    print(f"{'mean':>4} {statistics.mean(ours):>8.4f} {statistics.mean(theirs):>8.4f}")


if __name__ == "__main__":
    main()
