"""Rebuild python/cnnkit/data/mnist_sample.npz, the MNIST sample bundled with cnnkit, from the
full IDX files: 200 training and 50 test images of each digit, chosen deterministically.

Each split's images get one uniform key each from a fixed-seed generator; a class's images with
the smallest keys are taken, and the chosen indices are stored sorted, so the sample keeps
MNIST's own order. Raw uniform draws are used (not Generator.choice/permutation) because NumPy
keeps a BitGenerator's stream stable across versions but not its higher-level samplers.

    PYTHONPATH=python python3 bench/make_mnist_sample.py [--mnist DIR] [--out FILE] [--check]

--check rebuilds the sample in memory and exits 1 unless it equals the bundled file (the .npz
bytes differ from run to run only in zip timestamps; the arrays are identical).
"""
import argparse
import os
import sys

import numpy as np

SEED = 20240601
TRAIN_PER_CLASS = 200
TEST_PER_CLASS = 50

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MNIST = os.path.join(ROOT, "..", "shared", "data", "mnist")
DEFAULT_OUT = os.path.join(ROOT, "python", "cnnkit", "data", "mnist_sample.npz")


def stratified_indices(labels, per_class, keys):
    """labels [N] 0-9, keys [N] uniform -> sorted int32 indices, per_class of each class."""
    chosen = []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        if idx.size < per_class:
            raise ValueError(f"class {c} has {idx.size} images, fewer than {per_class}")
        chosen.append(idx[np.argsort(keys[idx], kind="stable")[:per_class]])
    return np.sort(np.concatenate(chosen)).astype(np.int32)


def build_sample(train, test):
    """train, test: (x uint8 [N, 28, 28], y uint8 [N]) of full MNIST -> dict of the npz's arrays."""
    (x_train, y_train), (x_test, y_test) = train, test
    rng = np.random.default_rng(SEED)
    train_keys = rng.random(len(y_train))  # drawn in this order: train keys, then test keys
    test_keys = rng.random(len(y_test))
    train_idx = stratified_indices(y_train, TRAIN_PER_CLASS, train_keys)
    test_idx = stratified_indices(y_test, TEST_PER_CLASS, test_keys)
    return {
        "x_train": np.ascontiguousarray(x_train[train_idx]), "y_train": y_train[train_idx],
        "x_test": np.ascontiguousarray(x_test[test_idx]), "y_test": y_test[test_idx],
        "train_indices": train_idx, "test_indices": test_idx,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default=DEFAULT_MNIST, help="directory of the four MNIST IDX files")
    parser.add_argument("--out", default=DEFAULT_OUT, help="the .npz to write")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing")
    args = parser.parse_args(argv)

    from cnnkit.datasets import load_mnist  # verifies the checksums of the source files
    sample = build_sample(*load_mnist(args.mnist))

    if args.check:
        with np.load(args.out, allow_pickle=False) as z:
            same = set(z.files) == set(sample) and all(
                z[k].dtype == v.dtype and np.array_equal(z[k], v) for k, v in sample.items())
        print(f"{args.out}: {'matches' if same else 'DIFFERS FROM'} the rebuilt sample")
        return 0 if same else 1

    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:  # temp file + rename: never a half-written sample in the package
        np.savez_compressed(f, **sample)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {os.path.getsize(args.out)} bytes, "
          f"{len(sample['y_train'])} train + {len(sample['y_test'])} test images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
