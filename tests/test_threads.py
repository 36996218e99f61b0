"""Thread safety of the model API: Python threads sharing one model get exactly the serial
results (predict, evaluate, __call__), training one model while other threads predict with
another gives each the results it gets alone, and cnnkit.set_num_threads may change between
calls and from another thread while calls run.

The model has BatchNorm and Dropout, so predict has layers to switch to evaluation mode and
back, and convolutions, whose per-layer workspaces and reused output arrays the core writes
with the GIL released: without a lock, concurrent calls interleave both."""
import threading

import numpy as np
import pytest

import cnnkit
from cnnkit import layers as L

# batch sizes each thread cycles through: one batch (copied out whole), several batches with a
# partial last one (predict's result gathered from the reused output arrays), one image
BATCHES = (16, 37, 1, 8, 70)


def small_cnn(seed):
    cnnkit.set_random_seed(seed)
    return cnnkit.Sequential([
        L.Conv2d(1, 6, 3, padding=1), L.BatchNorm2d(6), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(6, 8, 3), L.ReLU(), L.Flatten(), L.Dropout(0.3), L.Linear(8 * 4 * 4, 10),
    ], input_shape=(1, 12, 12))


def trained(seed, x, y, steps=3):
    """A small CNN after a few training steps (so batch norm's running statistics differ from
    its batch statistics: evaluation mode gives different outputs than training mode)."""
    model = small_cnn(seed).compile(optimizer=cnnkit.optim.SGD(learning_rate=0.05), loss="cross_entropy")
    for i in range(steps):
        model.train_on_batch(x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16])
    return model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((128, 1, 12, 12)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    return x, y


def run_threads(target, n):
    """Runs target(i) in n threads started together; re-raises the first exception."""
    errors = []
    start = threading.Barrier(n)

    def body(i):
        try:
            start.wait()
            target(i)
        except BaseException as e:  # noqa: BLE001 - reported below with its thread
            errors.append((i, e))

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread did not finish (deadlock?)"
    if errors:
        i, e = errors[0]
        raise AssertionError(f"thread {i} failed: {e!r}") from e


def test_concurrent_predict_on_one_model_matches_serial(data):
    x, y = data
    model = trained(0, x, y)
    state = model.state_dict()
    inputs = [x[: n] if k % 2 else x[-n:] for k, n in enumerate(BATCHES)]
    serial = [model.predict(xi, batch_size=16) for xi in inputs]
    bad = []

    def worker(t):
        for it in range(40):
            k = (it + t) % len(inputs)
            got = model.predict(inputs[k], batch_size=16)
            if not np.array_equal(got, serial[k]):
                bad.append((t, it, k, float(np.max(np.abs(got - serial[k])))))

    run_threads(worker, 4)
    assert not bad, f"{len(bad)} of 160 concurrent predicts differ from serial, e.g. (thread, iter, input, " \
                    f"max diff) {bad[:3]}"
    # predict must not have run a layer in training mode (batch norm would update its stats)
    for key, value in model.state_dict().items():
        assert np.array_equal(value, state[key]), f"predict changed {key}"
    assert model.training and all(layer.training for layer in model.layers), "modes not restored"


def test_concurrent_call_and_evaluate_match_serial(data):
    x, y = data
    model = trained(1, x, y).eval()
    model.compile(loss="cross_entropy", metrics=["accuracy"])
    want_call = [model(x[:n]) for n in BATCHES]
    want_eval = model.evaluate(x, y, batch_size=24)
    bad = []

    def worker(t):
        for it in range(30):
            k = (it + t) % len(BATCHES)
            if (it + t) % 3 == 0:
                if model.evaluate(x, y, batch_size=24) != want_eval:
                    bad.append(("evaluate", t, it))
            elif not np.array_equal(model(x[:BATCHES[k]]), want_call[k]):
                bad.append(("__call__", t, it, k))

    run_threads(worker, 4)
    assert not bad, f"{len(bad)} concurrent calls differ from serial: {bad[:3]}"


def test_training_one_model_while_others_predict_with_another(data):
    x, y = data
    # serial references: model A trained alone for 8 epochs (a few seconds); model B's predictions alone
    a_ref = small_cnn(5).compile(optimizer="adam", loss="cross_entropy")
    cnnkit.set_random_seed(7)
    a_ref.fit(x, y, batch_size=16, epochs=8, verbose=0)
    b = trained(6, x, y)
    want = b.predict(x, batch_size=32)

    a = small_cnn(5).compile(optimizer="adam", loss="cross_entropy")
    cnnkit.set_random_seed(7)  # same shuffles and dropout masks: nothing else draws meanwhile
    done = threading.Event()
    bad = []

    def worker(t):
        if t == 0:
            try:
                a.fit(x, y, batch_size=16, epochs=8, verbose=0)
            finally:
                done.set()
            return
        k = 0
        while not done.is_set() or k < 3:
            if not np.array_equal(b.predict(x, batch_size=32), want):
                bad.append((t, k))
            k += 1

    run_threads(worker, 4)
    assert not bad, f"predictions during training differ from serial: {bad[:3]}"
    got, ref = a.state_dict(), a_ref.state_dict()
    for key in ref:
        assert np.array_equal(got[key], ref[key]), f"{key} after fit differs from the serial run"


def test_set_num_threads_between_and_during_calls(data):
    x, y = data
    model = trained(2, x, y)
    old = cnnkit.get_num_threads()
    try:
        cnnkit.set_num_threads(1)
        want = model.predict(x, batch_size=32)
        counts = (1, 2, 3, 4, 1, 2)
        for n in counts:  # between calls: the result does not depend on the count
            cnnkit.set_num_threads(n)
            np.testing.assert_array_equal(model.predict(x, batch_size=32), want, err_msg=f"{n} threads")
        stop = threading.Event()
        bad = []

        def worker(t):
            if t == 0:  # flips the count while the others compute
                k = 0
                while not stop.is_set():
                    cnnkit.set_num_threads(counts[k % len(counts)])
                    k += 1
                return
            try:
                for it in range(25):
                    if not np.array_equal(model.predict(x, batch_size=32), want):
                        bad.append((t, it))
            finally:
                if t == 1:
                    stop.set()

        run_threads(worker, 3)
        assert not bad, f"predictions differ while the thread count changed: {bad[:3]}"
    finally:
        cnnkit.set_num_threads(old)


def test_one_layer_called_from_threads_matches_serial():
    # A layer on its own (as a user's training loop or torch-style code calls it) computes with
    # the calling thread's scratch memory, not one workspace shared by every caller.
    cnnkit.set_random_seed(3)
    conv = L.Conv2d(16, 16, 3, padding="same")
    rng = np.random.default_rng(5)
    inputs = [rng.standard_normal((n, 16, s, s)).astype(np.float32) for n, s in ((4, 20), (2, 33), (6, 9), (1, 48))]
    want = [conv(xi) for xi in inputs]
    bad = []

    def worker(t):
        for it in range(400):  # ~0.2 s; shared scratch showed 7-91 bad calls in 8 runs
            k = (it + t) % len(inputs)
            if not np.array_equal(conv(inputs[k]), want[k]):
                bad.append((t, it, k))

    run_threads(worker, 4)
    assert not bad, f"{len(bad)} of 1600 concurrent calls of one Conv2d differ from serial: {bad[:3]}"
