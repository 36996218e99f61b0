"""A small ResNet on full Fashion-MNIST: test accuracy per epoch, wall time, and the same
network's training throughput against PyTorch 2.13 in the same run.

Network: cnnkit.models.resnet_small() — 3x3 stem conv + BN + ReLU at 16 channels, three stages
of two basic blocks at widths 16/32/64 (stride 2 and a 1x1 conv + BN projection at the start of
stages 2 and 3), global average pool, linear (174,970 parameters at 10 classes).
Recipe: images scaled to [0, 1] and normalised (mean 0.2860, std 0.3530), random horizontal
flips, SGD lr 0.1 momentum 0.9 nesterov, weight decay 5e-4, batch 128, learning rate annealed
per epoch on a cosine to 0 over --epochs.

    python bench/fashion_resnet.py [--epochs 6] [--threads 2] [--seed 0] [--no-torch]
    python bench/fashion_resnet.py --throughput-only [--steps 40] [--reps 5]

Throughput: cnnkit and torch each run --steps training steps at batch 128 on the same random
images, alternating, --reps times after a warm-up; the median images/s of each is printed with
the ratio (cnnkit / torch).
"""
import argparse
import math
import os
import statistics
import time

import numpy as np

import cnnkit

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "fashion-mnist")
MEAN, STD = 0.2860, 0.3530


def load():
    (x, y), (xt, yt) = cnnkit.datasets.load_fashion_mnist(DATA)

    def prep(images):
        return ((images.astype(np.float32) / 255.0 - MEAN) / STD).reshape(len(images), 1, 28, 28)

    return (prep(x), y.astype(np.int64)), (prep(xt), yt.astype(np.int64))


class FlipAugment(cnnkit.callbacks.Callback):
    """Re-draws the horizontal flips of the training set at each epoch's start (in place on a
    copy, so the epoch sees a fresh augmentation without a per-batch hook)."""

    def __init__(self, original, working, seed):
        super().__init__()
        self.original, self.working = original, working
        self.rng = np.random.default_rng(seed)

    def on_epoch_begin(self, epoch, logs=None):
        flip = self.rng.random(len(self.original)) < 0.5
        self.working[...] = self.original
        self.working[flip] = self.original[flip, :, :, ::-1]


class EpochReport(cnnkit.callbacks.Callback):
    def __init__(self, xt, yt, start):
        super().__init__()
        self.xt, self.yt, self.start = xt, yt, start
        self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self.start
        test = self.model.evaluate(self.xt, self.yt, batch_size=500)
        self.rows.append((epoch + 1, elapsed, logs["loss"], logs["accuracy"], test["accuracy"]))
        print(f"epoch {epoch + 1:>2}  {elapsed / 60:6.2f} min  lr {logs.get('learning_rate', float('nan')):.4f}  "
              f"train loss {logs['loss']:.4f} acc {logs['accuracy']:.4f}  test acc {test['accuracy']:.4f}",
              flush=True)


def train(args, data):
    (x, y), (xt, yt) = data
    cnnkit.set_random_seed(args.seed)
    model = cnnkit.models.resnet_small(num_classes=10)
    model.compile(optimizer=cnnkit.optim.SGD(learning_rate=args.lr, momentum=0.9, nesterov=True,
                                             weight_decay=5e-4),
                  loss="cross_entropy", metrics=["accuracy"])
    print(f"# resnet_small, {model.count_params():,} parameters; {args.epochs} epochs, batch {args.batch}, "
          f"{args.threads} threads")
    schedule = cnnkit.callbacks.LearningRateScheduler(
        lambda epoch: 0.5 * args.lr * (1 + math.cos(math.pi * epoch / args.epochs)))
    working = x.copy()
    start = time.perf_counter()
    report = EpochReport(xt, yt, start)
    model.fit(working, y, batch_size=args.batch, epochs=args.epochs, verbose=0,
              callbacks=[FlipAugment(x, working, args.seed), schedule, report])
    best = max(report.rows, key=lambda r: r[4])
    reached = next((r for r in report.rows if r[4] >= 0.92), None)
    print(f"final test accuracy {report.rows[-1][4]:.4f} after {args.epochs} epochs, "
          f"{report.rows[-1][1] / 60:.2f} min on {args.threads} threads (best {best[4]:.4f} at epoch {best[0]})")
    if reached:
        print(f">= 92% first at epoch {reached[0]}, {reached[1] / 60:.2f} min")
    else:
        print("did not reach 92%")
    return model


def torch_resnet_small(torch):
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
            self.short = (nn.Identity() if stride == 1 and c_in == c_out else
                          nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

        def forward(self, x):
            return torch.relu(self.body(x) + self.short(x))

    layers = [nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    c_in = 16
    for stage, width in enumerate((16, 32, 64)):
        for i in range(2):
            layers.append(Block(c_in, width, 2 if stage > 0 and i == 0 else 1))
            c_in = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)


def throughput(args, torch):
    rng = np.random.default_rng(0)
    n = args.batch * args.steps
    x = rng.standard_normal((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    model = cnnkit.models.resnet_small(num_classes=10)
    model.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.01, momentum=0.9, weight_decay=5e-4),
                  loss="cross_entropy")

    def run_cnnkit():
        t = time.perf_counter()
        model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0, shuffle=False)
        return n / (time.perf_counter() - t)

    if torch is not None:
        net = torch_resnet_small(torch)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def run_torch():
            t = time.perf_counter()
            for s in range(0, n, args.batch):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(tx[s:s + args.batch]), ty[s:s + args.batch]).backward()
                opt.step()
            return n / (time.perf_counter() - t)

    ours, theirs = [], []
    run_cnnkit()
    if torch is not None:
        run_torch()
    for _ in range(args.reps):
        ours.append(run_cnnkit())
        if torch is not None:
            theirs.append(run_torch())
    line = f"training throughput, batch {args.batch}, {args.threads} threads: cnnkit {statistics.median(ours):,.0f} img/s"
    if theirs:
        line += (f", torch {statistics.median(theirs):,.0f} img/s, ratio {statistics.median(ours) / statistics.median(theirs):.2f}"
                 f" (cnnkit runs {[round(v) for v in ours]}, torch {[round(v) for v in theirs]})")
    print(line, flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--throughput-only", action="store_true")
    args = p.parse_args(argv)

    cnnkit.set_num_threads(args.threads)
    torch = None
    if not args.no_torch:
        import torch
        torch.set_num_threads(args.threads)
    cnnkit.show_config()
    if torch is not None:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}")
    throughput(args, torch)
    if not args.throughput_only:
        train(args, load())


if __name__ == "__main__":
    main()
