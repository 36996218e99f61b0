"""One-file checkpoints: architecture (JSON), weights, optimizer state and a format version in
an .npz container, with a SHA-256 checksum over every entry.

Writing goes to a temporary file in the same directory, is fsynced and then renamed over the
target, so an interrupted save never destroys the previous file. Reading never unpickles and
never runs code from the file: layers are rebuilt from cnnkit's own registry of layer types,
every array's declared shape is checked against the rebuilt model before its data is read,
and any failure is a CheckpointError (a ValueError) saying what is wrong.
"""
import glob
import hashlib
import io
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "cnnkit-model"
FORMAT_VERSION = 1
_MAX_CONFIG_BYTES = 16 << 20

__all__ = ["CheckpointError", "save_model", "load_model"]


class CheckpointError(ValueError):
    """A file that is not a readable cnnkit model: truncated, corrupted, foreign, or of an
    unsupported format version."""


def _text_array(text):
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def _checksum(entries):
    """SHA-256 over every entry's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(entries):
        a = np.ascontiguousarray(entries[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _remove_stale_temps(path):
    """Temp files of earlier saves to this path whose process is gone (killed mid-save)."""
    d, base = os.path.split(os.path.abspath(path))
    for tmp in glob.glob(os.path.join(d, f".{glob.escape(base)}.tmp-*")):
        try:
            pid = int(tmp.rsplit("-", 2)[-2])
            os.kill(pid, 0)
        except (ValueError, IndexError):
            continue
        except ProcessLookupError:
            try:
                os.remove(tmp)
            except OSError:
                pass
        except PermissionError:
            continue


def save_model(model, path):
    """Write model (architecture, weights, compile settings, optimizer state) to path."""
    path = os.fspath(path)
    config = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": model.get_config(),
        "optimizer": None if model.optimizer is None else model.optimizer.get_config(),
        "loss": None if model.loss is None else model.loss.get_config(),
        "metrics": [name for name, _ in model.metrics],
    }
    entries = {"cnnkit/config": _text_array(json.dumps(config))}
    for key, value in model._state_arrays().items():
        # np.require, not np.ascontiguousarray, which turns a 0-d array (BatchNorm's
        # num_batches_tracked) into shape (1,)
        entries[f"weights/{key}"] = np.require(value, requirements="C")
    if model.optimizer is not None:
        for key, value in model.optimizer.state_dict().items():
            entries[f"optimizer/{key}"] = np.asarray(value)
    entries["cnnkit/checksum"] = _text_array(_checksum(entries))

    d, base = os.path.split(os.path.abspath(path))
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.tmp-{os.getpid()}-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **entries)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


class _Reader:
    """Reads .npy members of the zip one at a time, header first, never with pickle."""

    def __init__(self, path):
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
            self.members = {n[:-4]: n for n in self.zip.namelist() if n.endswith(".npy")}
        except (OSError, zipfile.BadZipFile, ValueError) as e:
            raise CheckpointError(f"{path}: not a cnnkit model file ({type(e).__name__}: {e})") from None

    def header(self, name):
        """(shape, dtype) declared by a member, without reading its data."""
        try:
            with self.zip.open(self.members[name]) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
        except Exception as e:  # zip, header and dtype parsing errors of many kinds
            raise CheckpointError(f"{self.path}: entry {name!r} is unreadable ({type(e).__name__}: {e})") from None
        if dtype.hasobject:
            raise CheckpointError(f"{self.path}: entry {name!r} holds Python objects; refusing to load it")
        return tuple(shape), dtype

    def read(self, name, expect_shape=None, max_bytes=None):
        shape, dtype = self.header(name)
        if expect_shape is not None and shape != tuple(expect_shape):
            raise CheckpointError(f"{self.path}: {name} has shape {shape}, the model expects {tuple(expect_shape)}")
        if max_bytes is not None and int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > max_bytes:
            raise CheckpointError(f"{self.path}: entry {name!r} declares shape {shape}, larger than allowed")
        try:
            with self.zip.open(self.members[name]) as f:
                data = f.read()
            return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
        except Exception as e:
            raise CheckpointError(f"{self.path}: entry {name!r} is corrupted ({type(e).__name__}: {e})") from None

    def text(self, name):
        if name not in self.members:
            raise CheckpointError(f"{self.path}: not a cnnkit model file (no {name!r} entry)")
        a = self.read(name, max_bytes=_MAX_CONFIG_BYTES)
        if a.dtype != np.uint8 or a.ndim != 1:
            raise CheckpointError(f"{self.path}: entry {name!r} is not text")
        try:
            return a.tobytes().decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{self.path}: entry {name!r} is not UTF-8 text") from None


def load_model(path):
    """Rebuild a model saved by Model.save: architecture, weights, and (when it was compiled)
    loss, metrics, optimizer and its state. Raises CheckpointError for any bad file."""
    from . import losses, optim
    from .model import Sequential

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {path}")
    r = _Reader(path)
    try:
        config = json.loads(r.text("cnnkit/config"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: the architecture is not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cnnkit model file")
    if config.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {config.get('version')!r} is not supported "
                              f"(this cnnkit reads version {FORMAT_VERSION})")

    try:
        model = Sequential.from_config(config["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: the architecture does not describe a valid model ({type(e).__name__}: {e})") \
            from None

    # Every entry: declared shapes checked against the model before any data is read.
    live = model._state_arrays()
    expected = {f"weights/{k}": v.shape for k, v in live.items()}
    names = set(r.members) - {"cnnkit/config", "cnnkit/checksum"}
    weight_names = {n for n in names if n.startswith("weights/")}
    if weight_names != set(expected):
        raise CheckpointError(f"{path}: weights do not match the architecture (missing "
                              f"{sorted(set(expected) - weight_names)}, unexpected {sorted(weight_names - set(expected))})")
    entries = {name: r.read(name, expect_shape=expected.get(name), max_bytes=None if name in expected else 1 << 30)
               for name in names}
    entries["cnnkit/config"] = r.read("cnnkit/config", max_bytes=_MAX_CONFIG_BYTES)
    if "cnnkit/checksum" not in r.members:
        raise CheckpointError(f"{path}: no checksum entry")
    stored = r.text("cnnkit/checksum")
    if stored != _checksum(entries):
        raise CheckpointError(f"{path}: checksum mismatch: the file is corrupted")

    for k, a in live.items():
        np.copyto(a, entries[f"weights/{k}"], casting="unsafe")
    try:
        if config.get("loss") is not None:
            opt = optim.get(config["optimizer"]) if config.get("optimizer") is not None else "sgd"
            model.compile(optimizer=opt, loss=losses.get(config["loss"]), metrics=config.get("metrics") or None)
            state = {n[len("optimizer/"):]: entries[n] for n in names if n.startswith("optimizer/")}
            if state and config.get("optimizer") is not None:
                model.optimizer.load_state_dict({k: (v if v.ndim else v[()]) for k, v in state.items()})
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: the compile settings are invalid ({type(e).__name__}: {e})") from None
    return model
