"""Resident memory stays flat over long runs: 5,000 training steps (fit and train_on_batch), and
loops of predict and evaluate, grow VmRSS by less than 5 MB after a warm-up. Each loop runs in
a fresh interpreter, so what other tests left allocated does not blur the numbers.

The child runs 2 threads with OMP_WAIT_POLICY=passive: with libgomp's default spin-waiting, a
2-thread parallel region on a 2-core machine busy with other processes took ~10 ms instead of
~0.03 ms (measured), and 5,000 steps would not fit the time budget."""
import json
import subprocess
import sys

import pytest

from helpers import UNDER_ASAN, child_env

CHILD = r"""
import json, sys
import numpy as np
import cnnkit
from cnnkit import layers as L


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0


cnnkit.set_num_threads(2)
cnnkit.set_random_seed(0)
model = cnnkit.Sequential([
    L.Conv2d(1, 4, 3, padding=1), L.BatchNorm2d(4), L.ReLU(), L.MaxPool2d(2),
    L.Conv2d(4, 8, 3), L.ReLU(), L.Flatten(), L.Dropout(0.2), L.Linear(8 * 2 * 2, 10)],
    input_shape=(1, 8, 8)).compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
rng = np.random.default_rng(0)
x = rng.standard_normal((400, 1, 8, 8)).astype(np.float32)
y = rng.integers(0, 10, 400)
what = sys.argv[1]


def run(k):
    if what == "fit":  # 50 steps an epoch, the last a partial batch of 4 images
        model.fit(x[:396], y[:396], batch_size=8, epochs=k, verbose=0)
    elif what == "train_on_batch":
        for i in range(k * 50):
            j = (i * 8) % 392
            model.train_on_batch(x[j:j + 8 + i % 3], y[j:j + 8 + i % 3])
    elif what == "predict":
        for i in range(k * 20):
            model.predict(x[: 1 + (i * 7) % 64], batch_size=16)
    elif what == "evaluate":
        for i in range(k * 5):
            model.evaluate(x, y, batch_size=32)


run(10)                     # warm-up: buffers and plans for every batch size are built
before = rss_mb()
run(100)                    # fit, train_on_batch: 5,000 steps
after = rss_mb()
print(json.dumps({"before": before, "after": after}))
"""


@pytest.mark.parametrize("what", ["fit", "train_on_batch", "predict", "evaluate"])
@pytest.mark.skipif(UNDER_ASAN, reason="ASan's quarantine keeps freed memory resident by design; "
                    "LeakSanitizer checks leaks in that run")
def test_resident_memory_is_flat(what):
    out = subprocess.run([sys.executable, "-c", CHILD, what], env=child_env(OMP_WAIT_POLICY="passive"),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    growth = r["after"] - r["before"]
    assert growth < 5.0, f"{what}: VmRSS grew by {growth:.1f} MB ({r['before']:.1f} -> {r['after']:.1f} MB)"
