"""Checkpoint fault injection at scale (the tests run a few cases of each; this runs many):

1. kills: a child process saves a ~16 MB model in a loop and is SIGKILLed after a random
   delay; after each kill the file must load (the previous model or the child's complete one).
   Then one more save must clean up every temp file the killed children left.
2. flips: single-bit flips at random offsets of a saved model; each must be rejected with
   CheckpointError or load a model whose predictions are bit-identical to the original
   (the flip hit zip metadata nobody reads). A different model loading is a silent corruption.
3. truncations at random lengths: every one must raise CheckpointError.

    python bench/checkpoint_faults.py --kills 40 --flips 2000 --truncations 200

Prints the counts; exits 1 if any kill left an unreadable file, any stale temp file survived,
any flip changed the model silently, or any failure escaped as something else than
CheckpointError.
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

import cnnkit
from cnnkit import layers as L
from cnnkit.saving import CheckpointError

SAVER = r"""
import sys, cnnkit
from cnnkit import layers as L
m = cnnkit.Sequential([L.Flatten(), L.Linear(256 * 256, 64)], input_shape=(256, 256))
m.compile(optimizer="adam", loss="cross_entropy")
print("ready", flush=True)
while True:
    m.save(sys.argv[1])
"""


def small_model():
    cnnkit.set_random_seed(5)
    m = cnnkit.Sequential([L.Conv2d(1, 3, 3, padding="same"), L.BatchNorm2d(3), L.ReLU(), L.MaxPool2d(2),
                           L.Flatten(), L.Linear(48, 5)], input_shape=(1, 8, 8))
    m.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    m.fit(x, rng.integers(0, 5, 64), epochs=1, batch_size=16, verbose=0)
    return m, x


def kills(d, n, rng):
    m, _ = small_model()
    path = os.path.join(d, "killed.cnnkit")
    m.save(path)
    unreadable = 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for _ in range(n):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, path], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        try:
            cnnkit.load_model(path)
        except CheckpointError:
            unreadable += 1
    stale_before = len([f for f in os.listdir(d) if f.startswith(".killed.cnnkit.tmp-")])
    m.save(path)
    stale_after = len([f for f in os.listdir(d) if f.startswith(".killed.cnnkit.tmp-")])
    print(f"kills: {n} SIGKILLs mid-save; unreadable afterwards: {unreadable}; "
          f"temp files left by the killed children: {stale_before}, after the next save: {stale_after}")
    return unreadable == 0 and stale_after == 0


def saved_model_bytes(d):
    """A small trained model, a batch of inputs, its predictions and the bytes of its file."""
    m, x = small_model()
    path = os.path.join(d, "original.cnnkit")
    m.save(path)
    with open(path, "rb") as f:
        return x, m.predict(x), f.read()


def load_damaged(path, content, x):
    """Writes content to path and loads it: ("rejected", None) for a CheckpointError,
    ("escaped", "Type: message") for any other exception, else ("loaded", the predictions of x)."""
    with open(path, "wb") as f:
        f.write(content)
    try:
        return "loaded", cnnkit.load_model(path).predict(x)
    except CheckpointError:
        return "rejected", None
    except Exception as e:  # noqa: BLE001 -- counting what escapes is the point
        return "escaped", f"{type(e).__name__}: {e}"


def flips(d, n, rng, original):
    x, want, data = original
    path = os.path.join(d, "flipped.cnnkit")
    counts = {"rejected": 0, "unchanged": 0, "different": 0, "escaped": 0}
    for _ in range(n):
        bad = bytearray(data)
        pos = int(rng.integers(len(bad)))
        bad[pos] ^= 1 << int(rng.integers(8))
        outcome, got = load_damaged(path, bad, x)
        if outcome == "loaded":
            outcome = "unchanged" if np.array_equal(got, want) else "different"
        counts[outcome] += 1
        if outcome in ("different", "escaped"):
            print(f"  flip at byte {pos}: " + ("a different model loaded" if outcome == "different" else got))
    print(f"flips: {n} single-bit flips in a {len(data)}-byte file; rejected {counts['rejected']}, "
          f"loaded unchanged {counts['unchanged']}, loaded a different model {counts['different']}, "
          f"other exceptions {counts['escaped']}")
    return counts["different"] == 0 and counts["escaped"] == 0


def truncations(d, n, rng, original):
    x, _, data = original
    path = os.path.join(d, "cut.cnnkit")
    rejected = 0
    for _ in range(n):
        cut = int(rng.integers(len(data)))
        outcome, got = load_damaged(path, data[:cut], x)
        if outcome == "rejected":
            rejected += 1
        else:
            print(f"  truncated to {cut} bytes: " + ("loaded" if outcome == "loaded" else got))
    print(f"truncations: {n} random lengths; rejected with CheckpointError {rejected}, otherwise {n - rejected}")
    return rejected == n


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=40)
    p.add_argument("--flips", type=int, default=2000)
    p.add_argument("--truncations", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    cnnkit.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as d:
        original = saved_model_bytes(d)
        ok = [kills(d, args.kills, rng), flips(d, args.flips, rng, original),
              truncations(d, args.truncations, rng, original)]
    sys.exit(0 if all(ok) else 1)


if __name__ == "__main__":
    main()
