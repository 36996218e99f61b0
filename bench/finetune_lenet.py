"""Fine-tuning: LeNet-5 pretrained on MNIST, its convolutions frozen, a new dense head trained on
Fashion-MNIST — against the same network trained from scratch on Fashion-MNIST for the same
wall-clock time.

1. Pretrain LeNet-5 on full MNIST (SGD lr 0.05 momentum 0.9, batch 64, --pretrain-epochs).
2. Fine-tune: freeze the first layers (``layer.trainable = False``; --freeze convs: both
   convolutions and their pools, --freeze conv1: the first convolution and pool), replace the
   three dense layers with freshly initialised ones, train on Fashion-MNIST for --epochs
   epochs. No backward pass runs through the frozen layers.
3. From scratch: a new LeNet-5 trained on Fashion-MNIST with the same optimizer until it has
   used the same training time as step 2 (checked after every batch).
Both report Fashion-MNIST test accuracy. Inputs are normalised with each dataset's own mean/std.
"Time" is the process's CPU time (all threads), not wall time: on a shared machine the wall
time of the same work varies several-fold with the neighbours' load, the CPU time much less.

    python bench/finetune_lenet.py [--epochs 1] [--freeze convs|conv1] [--pretrain-epochs 2]
                                   [--threads 2] [--seed 0]
"""
import argparse
import os
import time

import numpy as np

import cnnkit
from cnnkit import layers as L
from cnnkit.containers import leaves

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "data")


def load(name, mean, std):
    loader = cnnkit.datasets.load_mnist if name == "mnist" else cnnkit.datasets.load_fashion_mnist
    (x, y), (xt, yt) = loader(os.path.join(SHARED, name))

    def prep(images):
        return ((images.astype(np.float32) / 255.0 - mean) / std).reshape(len(images), 1, 28, 28)

    return (prep(x), y.astype(np.int64)), (prep(xt), yt.astype(np.int64))


class TimeLimit(cnnkit.callbacks.Callback):
    """Stops fit once `seconds` of training have passed (checked after each batch)."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_train_begin(self, logs=None):
        self.start = time.process_time()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if time.process_time() - self.start >= self.seconds:
            self.model.stop_training = True


def sgd():
    return cnnkit.optim.SGD(learning_rate=0.05, momentum=0.9)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs")
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument("--freeze", choices=["convs", "conv1"], default="convs")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    cnnkit.set_num_threads(args.threads)
    mnist = load("mnist", 0.1307, 0.3081)
    (fx, fy), (fxt, fyt) = load("fashion-mnist", 0.2860, 0.3530)

    cnnkit.set_random_seed(args.seed)
    model = cnnkit.models.lenet5()
    model.compile(optimizer=sgd(), loss="cross_entropy", metrics=["accuracy"])
    t = time.perf_counter()
    model.fit(*mnist[0], batch_size=64, epochs=args.pretrain_epochs, verbose=0)
    print(f"pretrained on MNIST: {args.pretrain_epochs} epochs, {time.perf_counter() - t:.1f} s, "
          f"MNIST test accuracy {model.evaluate(*mnist[1], batch_size=500)['accuracy']:.4f}")
    print(f"  pretrained model on Fashion-MNIST test, before any fine-tuning: "
          f"{model.evaluate(fxt, fyt, batch_size=500)['accuracy']:.4f}")

    # Freeze the first layers (conv, ReLU, pool[, conv, ReLU, pool, flatten]), new head.
    for i in range(7 if args.freeze == "convs" else 3):
        model[i].trainable = False
    model[7], model[9], model[11] = L.Linear(400, 120), L.Linear(120, 84), L.Linear(84, 10)
    model.compile(optimizer=sgd(), loss="cross_entropy", metrics=["accuracy"])
    trainable = sum(layer.count_params() for layer in leaves(model) if layer.trainable)
    t = time.process_time()
    model.fit(fx, fy, batch_size=64, epochs=args.epochs, verbose=0)
    budget = time.process_time() - t
    fine = model.evaluate(fxt, fyt, batch_size=500)["accuracy"]
    print(f"fine-tuned ({args.freeze} frozen, {trainable:,} of {model.count_params():,} parameters trained): "
          f"{args.epochs} epoch(s) of Fashion-MNIST in {budget:.1f} CPU s -> test accuracy {fine:.4f}")

    cnnkit.set_random_seed(args.seed + 1)
    scratch = cnnkit.models.lenet5()
    scratch.compile(optimizer=sgd(), loss="cross_entropy", metrics=["accuracy"])
    t = time.process_time()
    limit = TimeLimit(budget)
    scratch.fit(fx, fy, batch_size=64, epochs=1000, verbose=0, callbacks=[limit])
    used = time.process_time() - t
    acc = scratch.evaluate(fxt, fyt, batch_size=500)["accuracy"]
    print(f"from scratch, same time budget ({used:.1f} CPU s, {limit.batches} batches = "
          f"{limit.batches * 64 / len(fx):.2f} epochs): test accuracy {acc:.4f}")
    print(f"fine-tuned - scratch = {100 * (fine - acc):+.2f} points")


if __name__ == "__main__":
    main()
