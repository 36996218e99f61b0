"""The cnnkit command line: train, evaluate and summarise models.

    cnnkit train [--model lenet5] [--dataset mnist_sample|mnist|fashion_mnist] [--data PATH]
                 [--epochs N] [--batch-size N] [--lr LR] [--threads N] [--seed N] [--save PATH]
    cnnkit evaluate MODEL_FILE [--dataset ...] [--data PATH]
    cnnkit summary lenet5

``python -m cnnkit`` is the same program. The default ``cnnkit train`` trains LeNet-5 on the
MNIST sample that ships with cnnkit (no download) and prints the test accuracy.
"""
import argparse
import sys
import time

import numpy as np

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # pixel statistics of the MNIST training set (/255)
DATASETS = ("mnist_sample", "mnist", "fashion_mnist")
DEFAULT_EPOCHS = {"mnist_sample": 10, "mnist": 2, "fashion_mnist": 2}


def load_dataset(name, path=None):
    """((x_train, y_train), (x_test, y_test)) as float32 (N, 1, 28, 28) scaled to [0, 1] and
    normalised with the MNIST mean/std, labels int64."""
    from . import datasets
    if name == "mnist_sample":
        if path is not None:
            raise SystemExit("cnnkit: --data does not apply to the bundled mnist_sample")
        raw = datasets.load_mnist_sample()
    elif name == "mnist":
        raw = datasets.load_mnist(path)
    elif name == "fashion_mnist":
        raw = datasets.load_fashion_mnist(path)
    else:
        raise SystemExit(f"cnnkit: unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    return tuple((prepare(x), np.asarray(y, np.int64)) for x, y in raw)


def prepare(images):
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), (x/255 - mean) / std."""
    x = np.asarray(images, np.float32).reshape(len(images), 1, *np.shape(images)[1:])
    return (x / 255.0 - MNIST_MEAN) / MNIST_STD


def _model(name):
    from .models import MODELS
    if name not in MODELS:
        raise SystemExit(f"cnnkit: unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    return MODELS[name]()


def cmd_train(args):
    import cnnkit
    if args.threads is not None:
        cnnkit.set_num_threads(args.threads)
    if args.seed is not None:
        cnnkit.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_dataset(args.dataset, args.data)
    model = _model(args.model)
    model.compile(optimizer=cnnkit.optim.SGD(learning_rate=args.lr, momentum=args.momentum),
                  loss="cross_entropy", metrics=["accuracy"])
    epochs = args.epochs if args.epochs is not None else DEFAULT_EPOCHS[args.dataset]
    print(f"Training {args.model} on {args.dataset}: {len(x_train)} images, {epochs} epochs, "
          f"batch {args.batch_size}, SGD lr {args.lr} momentum {args.momentum}, "
          f"{cnnkit.get_num_threads()} threads")
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=epochs, verbose=args.verbose)
    seconds = time.perf_counter() - start
    results = model.evaluate(x_test, y_test, batch_size=256)
    print(f"Trained in {seconds:.1f} s ({len(x_train) * epochs / seconds:,.0f} images/s)")
    print(f"Test accuracy: {results['accuracy']:.4f} (loss {results['loss']:.4f}) on {len(x_test)} images")
    if args.save:
        model.save(args.save)
        print(f"Saved to {args.save}")
    return 0


def cmd_evaluate(args):
    import cnnkit
    model = cnnkit.load_model(args.model_file)
    if model.loss is None:
        model.compile(loss="cross_entropy", metrics=["accuracy"])
    _, (x_test, y_test) = load_dataset(args.dataset, args.data)
    results = model.evaluate(x_test, y_test, batch_size=256)
    print(" - ".join(f"{k}: {v:.4f}" for k, v in results.items()) + f" ({len(x_test)} test images)")
    return 0


def cmd_summary(args):
    _model(args.model).summary()
    return 0


def parser():
    p = argparse.ArgumentParser(prog="cnnkit", description="Train and run CNNs on the CPU with cnnkit.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and print its test accuracy")
    t.add_argument("--model", default="lenet5")
    t.add_argument("--dataset", default="mnist_sample", choices=DATASETS)
    t.add_argument("--data", default=None, help="directory holding the dataset's four IDX files")
    t.add_argument("--epochs", type=int, default=None, help="default: 10 on the sample, 2 on full data sets")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=0.05)
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--verbose", default="auto", help="0, 1 (progress bar), 2 (a line per epoch) or auto")
    t.add_argument("--save", default=None, metavar="PATH", help="save the trained model to PATH")
    t.set_defaults(run=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a saved model on a data set's test split")
    e.add_argument("model_file")
    e.add_argument("--dataset", default="mnist_sample", choices=DATASETS)
    e.add_argument("--data", default=None)
    e.set_defaults(run=cmd_evaluate)

    s = sub.add_parser("summary", help="print a model's layer table")
    s.add_argument("model")
    s.set_defaults(run=cmd_summary)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if getattr(args, "verbose", None) is not None and args.verbose not in ("auto", "tqdm"):
        try:
            args.verbose = int(args.verbose)
        except ValueError:
            raise SystemExit(f"cnnkit: --verbose must be 0, 1, 2, auto or tqdm, got {args.verbose!r}") from None
    try:
        return args.run(args)
    except (OSError, ValueError) as e:  # missing data files, bad model files: say it, no traceback
        print(f"cnnkit: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
