"""The README's picture: LeNet-5's six first-layer filters after training on MNIST, and the
feature maps they give for one test digit.

Recipe (the issue's): LeNet-5, full MNIST from ../shared/data/mnist normalised (mean 0.1307,
std 0.3081), SGD lr 0.05 momentum 0.9, batch 64, 2 epochs, seed 0. Writes
bench/figures/lenet5_filters.png (filters on top, feature maps below) and prints the test
accuracy. Needs matplotlib.

    python bench/plot_lenet_filters.py [--threads 2] [--out bench/figures/lenet5_filters.png]
"""
import argparse
import os
import time

import numpy as np

import cnnkit
from cnnkit import plot
from cnnkit.cli import prepare

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(HERE, "figures", "lenet5_filters.png"))
    args = p.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec

    (x, y), (xt, yt) = cnnkit.datasets.load_mnist(os.path.join(HERE, "..", "..", "shared", "data", "mnist"))
    x, xt, y, yt = prepare(x), prepare(xt), y.astype(np.int64), yt.astype(np.int64)
    cnnkit.set_num_threads(args.threads)
    cnnkit.set_random_seed(args.seed)
    model = cnnkit.models.lenet5()
    model.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.05, momentum=0.9), loss="cross_entropy",
                  metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x, y, batch_size=64, epochs=2, verbose=0)
    seconds = time.perf_counter() - start
    accuracy = model.evaluate(xt, yt, batch_size=256)["accuracy"]
    print(f"LeNet-5 on MNIST, 2 epochs in {seconds:.1f} s on {args.threads} threads: test accuracy {accuracy:.4f}")

    # One figure of two rows: the filters (plot.filter_images: each scaled to its own range) and
    # the first conv's ReLU maps of one test digit (what plot.feature_maps draws), side by side.
    conv = model.layers[0]
    kernels = plot.filter_images(conv.params["weight"])
    digit = xt[0]
    maps = plot.activations(model, digit, 1)
    n = len(kernels)
    fig = plt.figure(figsize=(1.15 * (n + 1), 2.6))
    grid = GridSpec(2, n + 1, figure=fig, hspace=0.35, wspace=0.1)
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(digit[0], cmap="gray")
    ax.set_title(f"input ({yt[0]})", fontsize=8)
    ax.set_axis_off()
    for i in range(n):
        ax = fig.add_subplot(grid[0, i + 1])
        ax.imshow(kernels[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"filter {i}", fontsize=8)
        ax.set_axis_off()
        ax = fig.add_subplot(grid[1, i + 1])
        ax.imshow(maps[i], cmap="viridis", interpolation="nearest")
        ax.set_title(f"map {i}", fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"LeNet-5 conv1 after 2 epochs on MNIST (test accuracy {accuracy:.2%}): "
                 "5x5 filters and their ReLU feature maps", fontsize=9)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=80, bbox_inches="tight")
    print(f"wrote {args.out} ({os.path.getsize(args.out):,} bytes)")


if __name__ == "__main__":
    main()
