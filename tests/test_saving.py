"""Checkpoints: save -> load_model gives bit-identical predictions and resumes training
identically; interrupted saves never destroy the previous file; truncated, bit-flipped,
foreign, wrong-version and pickle-bearing files are rejected with CheckpointError; loading
never executes code from the file."""
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import cnnkit
from cnnkit import layers as L
from cnnkit.saving import CheckpointError
from helpers import child_env


def trained_model(rng, optimizer="adam"):
    cnnkit.set_random_seed(5)
    m = cnnkit.Sequential([L.Conv2d(1, 3, 3, padding="same"), L.ReLU(), L.MaxPool2d(2), L.Dropout(0.1),
                           L.Flatten(), L.Linear(48, 5)], input_shape=(1, 8, 8))
    m.compile(optimizer=optimizer, loss="cross_entropy", metrics=["accuracy"])
    x = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 5, 64)
    m.fit(x, y, epochs=2, batch_size=16, verbose=0)
    return m, x, y


def test_save_load_gives_bit_identical_predictions(tmp_path, rng):
    m, x, y = trained_model(rng)
    path = tmp_path / "m.cnnkit"
    m.save(path)
    m2 = cnnkit.load_model(path)
    np.testing.assert_array_equal(m2.predict(x), m.predict(x))
    assert m2.get_config() == m.get_config()
    assert type(m2.optimizer) is type(m.optimizer) and m2.metrics[0][0] == "accuracy"
    assert sorted(os.listdir(tmp_path)) == ["m.cnnkit"]  # no temp files left, no .npz suffix added


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_resumes_identically_after_load(tmp_path, rng, optimizer):
    m, x, y = trained_model(rng, cnnkit.optim.SGD(learning_rate=0.05, momentum=0.9) if optimizer == "sgd" else "adam")
    m.save(tmp_path / "m.cnnkit")
    m2 = cnnkit.load_model(tmp_path / "m.cnnkit")
    cnnkit.set_random_seed(9)  # train_on_batch trains in training mode: same dropout masks
    m.train_on_batch(x, y)
    cnnkit.set_random_seed(9)
    m2.train_on_batch(x, y)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(m2.state_dict()[k], v, err_msg=k)


def test_save_overwrites_and_failed_save_keeps_the_previous_file(tmp_path, rng, monkeypatch):
    m, x, _ = trained_model(rng)
    path = tmp_path / "m.cnnkit"
    m.save(path)
    before = path.read_bytes()

    def broken_savez(f, **entries):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        m.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.cnnkit"]
    np.testing.assert_array_equal(cnnkit.load_model(path).predict(x), m.predict(x))


SAVER = r"""
import sys, numpy as np, cnnkit
from cnnkit import layers as L
m = cnnkit.Sequential([L.Flatten(), L.Linear(256 * 256, 64)], input_shape=(256, 256))  # ~16 MB of weights
m.compile(optimizer="adam", loss="cross_entropy")
print("ready", flush=True)
while True:
    m.save(sys.argv[1])
"""


def test_save_killed_mid_write_leaves_the_previous_file_loadable(tmp_path, rng):
    m, x, _ = trained_model(rng)
    path = tmp_path / "m.cnnkit"
    m.save(path)
    env = child_env()
    for delay in (0.05, 0.2, 0.5):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        loaded = cnnkit.load_model(path)  # either our model or the child's complete one
        assert loaded.count_params() in (m.count_params(), 256 * 256 * 64 + 64)
    m.save(path)  # the next save cleans up the temp files the killed processes left
    assert sorted(os.listdir(tmp_path)) == ["m.cnnkit"]


@pytest.fixture
def saved(tmp_path, rng):
    m, _, _ = trained_model(rng)
    path = tmp_path / "m.cnnkit"
    m.save(path)
    return path


def test_truncated_files_are_rejected(saved):
    data = saved.read_bytes()
    for cut in (0, 10, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 1):
        saved.write_bytes(data[:cut])
        with pytest.raises(CheckpointError):
            cnnkit.load_model(saved)


def test_bit_flips_are_rejected_or_harmless(saved, rng):
    """A flipped bit is rejected, or it hit zip metadata no one reads (a timestamp, say) and
    the model loads unchanged: never a silently different model."""
    original = cnnkit.load_model(saved)
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    want = original.predict(x)
    data = bytearray(saved.read_bytes())
    flips = np.random.default_rng(0)
    rejected = 0
    for pos in flips.integers(0, len(data), 200):
        flipped = bytearray(data)
        flipped[pos] ^= 1 << int(flips.integers(0, 8))
        saved.write_bytes(bytes(flipped))
        try:
            m = cnnkit.load_model(saved)
        except CheckpointError:
            rejected += 1
            continue
        assert m.get_config() == original.get_config()
        np.testing.assert_array_equal(m.predict(x), want, err_msg=f"bit flip at byte {pos} changed the model")
    assert rejected >= 150  # almost every byte of the file is data or checked structure


def rewrite(path, change):
    """Rewrite a saved file's entries through change(dict) -> dict."""
    with np.load(path, allow_pickle=False) as f:
        entries = {k: f[k] for k in f.files}
    entries = change(entries)
    with open(path, "wb") as f:
        np.savez(f, **entries)


def test_wrong_version_is_rejected(saved):
    def bump(e):
        cfg = json.loads(e["cnnkit/config"].tobytes())
        cfg["version"] = 99
        e["cnnkit/config"] = np.frombuffer(json.dumps(cfg).encode(), np.uint8)
        return e
    rewrite(saved, bump)
    with pytest.raises(CheckpointError, match="format version 99 is not supported"):
        cnnkit.load_model(saved)


def test_renamed_key_and_changed_weight_are_rejected(saved):
    rewrite(saved, lambda e: {("weights/9.weight" if k == "weights/5.weight" else k): v for k, v in e.items()})
    with pytest.raises(CheckpointError, match="weights do not match the architecture"):
        cnnkit.load_model(saved)


def test_changed_values_fail_the_checksum(tmp_path, rng):
    m, _, _ = trained_model(rng)
    path = tmp_path / "m.cnnkit"
    m.save(path)
    rewrite(path, lambda e: dict(e, **{"weights/0.bias": e["weights/0.bias"] + 1}))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        cnnkit.load_model(path)


def test_foreign_files_are_rejected(tmp_path):
    p = tmp_path / "foreign.npz"
    np.savez(p, a=np.arange(3))
    with pytest.raises(CheckpointError, match="not a cnnkit model file"):
        cnnkit.load_model(p)
    p.write_bytes(os.urandom(5000))
    with pytest.raises(CheckpointError):
        cnnkit.load_model(p)
    p.write_text('{"format": "cnnkit-model"}')
    with pytest.raises(CheckpointError):
        cnnkit.load_model(p)
    with pytest.raises(FileNotFoundError):
        cnnkit.load_model(tmp_path / "missing.cnnkit")


class Exploit:
    def __reduce__(self):
        return (open, ("/tmp/cnnkit-pwned-marker", "w"))


@pytest.mark.parametrize("entry", ["weights/0.weight", "cnnkit/config", "cnnkit/checksum", "optimizer/step"])
def test_pickle_bearing_files_are_rejected_without_running_code(saved, entry):
    marker = "/tmp/cnnkit-pwned-marker"
    if os.path.exists(marker):
        os.remove(marker)
    payload = np.empty(1, dtype=object)
    payload[0] = Exploit()
    rewrite(saved, lambda e: dict(e, **{entry: payload}))
    with pytest.raises(CheckpointError):
        cnnkit.load_model(saved)
    assert not os.path.exists(marker)


def test_huge_declared_shape_fails_before_allocation(saved):
    """A header claiming a 4 TiB array is rejected from the header alone."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_2_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)})
    with zipfile.ZipFile(saved, "a") as z:
        z.writestr("weights/0.weight.npy.tmp", b"")  # keep the zip valid; replace below
    entries = {}
    with zipfile.ZipFile(saved) as z:
        for n in z.namelist():
            entries[n] = z.read(n)
    entries["weights/0.weight.npy"] = buf.getvalue() + b"\0" * 64
    del entries["weights/0.weight.npy.tmp"]
    with zipfile.ZipFile(saved, "w") as z:
        for n, d in entries.items():
            z.writestr(n, d)
    with pytest.raises(CheckpointError, match=r"shape \(1099511627776,\), the model expects"):
        cnnkit.load_model(saved)
