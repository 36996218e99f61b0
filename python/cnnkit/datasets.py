"""MNIST and Fashion-MNIST read from their original IDX files, and a small MNIST sample that
ships inside the package so examples run with no download.

``load_mnist(path=None)`` and ``load_fashion_mnist(path=None)`` return
``((x_train, y_train), (x_test, y_test))`` like ``keras.datasets``: x uint8 (N, 28, 28),
y uint8 (N,), N = 60000 train and 10000 test. They need the four files

    train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte

each gzip-compressed (name + ``.gz``, as published) or not (an uncompressed file wins when a
directory holds both), all four in one directory, looked for in this order:

1. ``path``, when given: a directory holding the four files. It is then the only place looked;
   a missing file is an error rather than a silent fall-back to other copies.
2. ``$CNNKIT_DATA/<name>/``, then ``$CNNKIT_DATA/`` itself (``<name>`` is ``mnist`` or
   ``fashion-mnist``), when the environment variable is set.
3. ``~/.cache/cnnkit/<name>/``.
4. A download from the data set's mirrors into ``~/.cache/cnnkit/<name>/``: each file goes to
   a hidden temporary file in that directory, is checked, and only then renamed to its real
   name, so the loader never sees a partial or corrupt download.

Every file's IDX header is parsed and checked (magic, type byte 0x08 = uint8, dimensions, data
length, images and labels agreeing in count), then the md5 of its decompressed bytes is compared
with the published one, before any array is returned.

Errors:
- ``DatasetUnavailableError`` (an ``OSError``): the files are in none of the places looked and
  could not be downloaded. The message names every place looked, every download tried and
  exactly how to supply the files.
- ``DatasetFileError`` (a ``ValueError``): a file is there but wrong -- not gzip, bad magic,
  wrong type byte or dimensions, truncated or with trailing bytes, image/label counts that
  disagree, or a checksum mismatch. The message names the file and what is wrong.

``load_mnist_sample()`` returns the bundled stratified sample of MNIST (200 training and 50 test
images per class) in the same format; ``cnnkit/data/README.md`` describes it and its licence.
"""
import gzip
import hashlib
import os
import struct
import sys
import tempfile
import time
import zlib

import numpy as np

__all__ = [
    "load_mnist", "load_fashion_mnist", "load_mnist_sample",
    "DatasetUnavailableError", "DatasetFileError",
]


class DatasetUnavailableError(OSError):
    """A data set's files are in none of the places looked and could not be downloaded."""


class DatasetFileError(ValueError):
    """A data set file is unreadable or wrong: bad IDX header or length, or a checksum mismatch."""


# The four files in the order they are read, each with its IDX rank.
_FILES = (
    ("train-images-idx3-ubyte", 3),
    ("train-labels-idx1-ubyte", 1),
    ("t10k-images-idx3-ubyte", 3),
    ("t10k-labels-idx1-ubyte", 1),
)

# md5 of each file's decompressed bytes (shared/data/README.md; the data sets' own listings).
_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}

# Base URLs tried in order; each serves <file>.gz. MNIST's own site (yann.lecun.com) is often
# unreachable, so the first is the S3 copy torchvision uses, then Google's CVDF copy.
_MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ],
}

_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}

_DOWNLOAD_TIMEOUT_S = 30          # per blocking socket operation, not for the whole file
_STALE_PART_AGE_S = 24 * 3600     # a .part file this old is a killed download's leftover

_IDX_TYPES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32",
              0x0D: "float32", 0x0E: "float64"}

_SAMPLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "mnist_sample.npz")
_SAMPLE_KEYS = {"x_train", "y_train", "x_test", "y_test", "train_indices", "test_indices"}


def load_mnist(path=None):
    """MNIST handwritten digits: ((x_train, y_train), (x_test, y_test)).

    x_train uint8 (60000, 28, 28), y_train uint8 (60000,), x_test uint8 (10000, 28, 28),
    y_test uint8 (10000,). See the module docstring for where the files are looked for.
    Raises DatasetUnavailableError (an OSError) when they are nowhere and cannot be downloaded,
    DatasetFileError (a ValueError) when a file is damaged or is not the published one.
    """
    return _load("mnist", path)


def load_fashion_mnist(path=None):
    """Fashion-MNIST (Zalando): ((x_train, y_train), (x_test, y_test)), shapes as load_mnist."""
    return _load("fashion-mnist", path)


def load_mnist_sample():
    """The MNIST sample bundled with cnnkit: ((x_train, y_train), (x_test, y_test)).

    x_train uint8 (2000, 28, 28) and y_train uint8 (2000,) hold 200 training images of each
    digit; x_test uint8 (500, 28, 28) and y_test uint8 (500,) hold 50 test images of each, all
    in MNIST's own order. Needs no download.
    """
    try:
        with np.load(_SAMPLE_PATH, allow_pickle=False) as z:
            if set(z.files) != _SAMPLE_KEYS:
                raise DatasetFileError(f"{_SAMPLE_PATH}: keys {sorted(z.files)}, expected "
                                       f"{sorted(_SAMPLE_KEYS)}; reinstall cnnkit")
            arrays = {key: z[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    except DatasetFileError:
        raise
    except Exception as e:  # np.load lets many types escape on a damaged zip (TESTING.md)
        raise DatasetFileError(f"{_SAMPLE_PATH}: unreadable ({type(e).__name__}: {e}); "
                               "reinstall cnnkit") from e
    for split in ("train", "test"):
        x, y = arrays["x_" + split], arrays["y_" + split]
        if (x.dtype != np.uint8 or y.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28)
                or y.shape != x.shape[:1] or (y.size and y.max() > 9)):
            raise DatasetFileError(f"{_SAMPLE_PATH}: x_{split} {x.dtype} {x.shape} and y_{split} "
                                   f"{y.dtype} {y.shape} are not uint8 (N, 28, 28) images with N "
                                   "labels 0-9; reinstall cnnkit")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


# --- finding the files ----------------------------------------------------------------------

def _load(name, path):
    files = _locate(name, path)
    (x_train, md5_1), (y_train, md5_2), (x_test, md5_3), (y_test, md5_4) = (
        _read_idx(files[base], ndim) for base, ndim in _FILES)
    # Structure first (the most specific message), then the checksums as the last guard.
    _check_pair(files, "train", x_train, y_train)
    _check_pair(files, "t10k", x_test, y_test)
    for (base, _), digest in zip(_FILES, (md5_1, md5_2, md5_3, md5_4)):
        if digest != _MD5[name][base]:
            raise DatasetFileError(
                f"{files[base]}: checksum mismatch: md5 of the decompressed data is {digest}, "
                f"expected {_MD5[name][base]} ({_TITLES[name]}'s published file); the file is "
                "corrupt or from another data set -- replace it (a file in the cache can simply "
                "be deleted to download it again)")
    return (x_train, y_train), (x_test, y_test)


def _check_pair(files, prefix, images, labels):
    img_path, lbl_path = files[f"{prefix}-images-idx3-ubyte"], files[f"{prefix}-labels-idx1-ubyte"]
    if images.shape[1:] != (28, 28):
        raise DatasetFileError(f"{img_path}: images are {images.shape[1]}x{images.shape[2]}, "
                               "expected 28x28")
    if labels.shape[0] != images.shape[0]:
        raise DatasetFileError(f"{lbl_path}: holds {labels.shape[0]} labels but {img_path} holds "
                               f"{images.shape[0]} images; the counts must match")


def _find(directory):
    """directory -> ({base name: path}, [missing base names]); a raw file wins over its .gz."""
    found, missing = {}, []
    for base, _ in _FILES:
        for candidate in (base, base + ".gz"):
            p = os.path.join(directory, candidate)
            if os.path.isfile(p):
                found[base] = p
                break
        else:
            missing.append(base)
    return found, missing


def _cache_dir(name):
    return os.path.join(os.path.expanduser("~"), ".cache", "cnnkit", name)


def _describe(directory, missing):
    if not os.path.isdir(directory):
        return f"{directory}: " + ("not a directory" if os.path.exists(directory) else "no such directory")
    return f"{directory}: missing " + ", ".join(b + "[.gz]" for b in missing)


def _locate(name, path):
    """Return {base name: path} for a directory holding all four files, downloading if needed."""
    if path is not None:
        directory = os.path.expanduser(os.fspath(path))
        found, missing = _find(directory)
        if missing:
            raise DatasetUnavailableError(
                f"{_TITLES[name]}: the directory given as path does not hold all four files "
                f"(a path given explicitly is the only place looked).\n  {_describe(directory, missing)}\n"
                + _how_to_supply(name))
        return found

    looked = []
    env = os.environ.get("CNNKIT_DATA")
    if env:
        env = os.path.expanduser(env)
        for directory in (os.path.join(env, name), env):
            found, missing = _find(directory)
            if not missing:
                return found
            looked.append("$CNNKIT_DATA " + _describe(directory, missing))
    else:
        looked.append("$CNNKIT_DATA: not set")

    cache = _cache_dir(name)
    found, missing = _find(cache)
    if not missing:
        return found
    looked.append(_describe(cache, missing))

    failures = _download(name, cache, missing)
    if failures:
        raise DatasetUnavailableError(
            f"{_TITLES[name]} is not available: its files are in none of the places looked, "
            "and downloading failed.\nLooked in:\n" + "".join(f"  {p}\n" for p in looked)
            + "Download tried:\n" + "".join(f"  {f}\n" for f in failures) + _how_to_supply(name))
    found, missing = _find(cache)
    assert not missing, missing  # _download returned no failure, so all four were renamed in
    return found


def _how_to_supply(name):
    fn = "load_mnist" if name == "mnist" else "load_fashion_mnist"
    urls = " or ".join(_MIRRORS[name]) or "the data set's site"
    return (
        "To supply the files yourself, get these four files (gzip-compressed as published, or "
        "uncompressed without the .gz):\n  "
        + "  ".join(base + ".gz" for base, _ in _FILES)
        + f"\nfrom {urls}, put them in one directory DIR, then either\n"
        f"  - pass it: cnnkit.datasets.{fn}(path=\"DIR\"), or\n"
        f"  - set the environment variable CNNKIT_DATA=DIR (files in DIR/{name}/ or directly in DIR), or\n"
        f"  - put the files in {_cache_dir(name)}{os.sep}")


# --- download -------------------------------------------------------------------------------

class _BadDownload(Exception):
    pass


def _download(name, cache, missing):
    """Fetch each missing file into cache; return a list of failure lines (empty on success).

    Stops at the first file no mirror could supply: offline, trying the rest only waits longer.
    """
    try:
        os.makedirs(cache, exist_ok=True)
    except OSError as e:
        return [f"cannot create the cache directory {cache}: {e}"]
    _remove_stale_parts(cache)
    failures = []
    for base in missing:
        for mirror in _MIRRORS[name]:
            url = mirror.rstrip("/") + "/" + base + ".gz"
            try:
                print(f"cnnkit: downloading {url}", file=sys.stderr)
                _fetch_verified(url, os.path.join(cache, base + ".gz"), _MD5[name][base])
                break
            except _BadDownload as e:
                failures.append(f"{url}: {e}")
            except Exception as e:  # URLError, timeouts, HTTP errors, IncompleteRead, bad URLs
                failures.append(f"{url}: {type(e).__name__}: {e}")
        else:
            if not _MIRRORS[name]:
                failures.append("no download mirror is configured")
            return failures
    return []


def _fetch_verified(url, dest, md5):
    """Download url to a temporary file beside dest, check its md5, then rename it to dest."""
    import shutil
    import urllib.request

    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest),
                               prefix="." + os.path.basename(dest) + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                shutil.copyfileobj(response, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        h = _md5()
        try:
            with gzip.open(tmp, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise _BadDownload(f"not a complete gzip file ({e}); discarded") from None
        if h.hexdigest() != md5:
            raise _BadDownload(f"checksum mismatch: md5 of the decompressed data is "
                               f"{h.hexdigest()}, expected {md5}; discarded")
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise


def _remove_stale_parts(cache):
    # Only old ones: a young .part may be another process's download in progress.
    now = time.time()
    for entry in os.scandir(cache):
        if entry.name.startswith(".") and entry.name.endswith(".part"):
            try:
                if now - entry.stat().st_mtime > _STALE_PART_AGE_S:
                    os.remove(entry.path)
            except OSError:
                pass


# --- the IDX format -------------------------------------------------------------------------

def _md5():
    try:
        return hashlib.md5(usedforsecurity=False)  # an integrity check: allowed on FIPS builds
    except TypeError:  # Python built without the keyword
        return hashlib.md5()


def _read_idx(path, ndim):
    """Read one IDX file (.gz or raw) -> (uint8 array of its declared shape, md5 of its bytes).

    IDX: bytes 0-1 zero, byte 2 the type (0x08 = uint8), byte 3 the number of dimensions, then
    one big-endian uint32 per dimension, then the data in C order, nothing after it.
    """
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DatasetFileError(f"{path}: not a valid gzip file ({type(e).__name__}: {e})") from None

    expected_magic = f"0x000008{ndim:02x}"
    if len(data) < 4:
        raise DatasetFileError(f"{path}: {len(data)} bytes, too short for an IDX header "
                               f"(magic {expected_magic} then {ndim} 4-byte dimensions)")
    if data[0] != 0 or data[1] != 0:
        hint = " (it looks gzip-compressed: name it with .gz)" if data[:2] == b"\x1f\x8b" else ""
        raise DatasetFileError(f"{path}: bad magic number 0x{data[:4].hex()}, expected "
                               f"{expected_magic}: not an IDX file{hint}")
    if data[2] != 0x08:
        kind = _IDX_TYPES.get(data[2], "not an IDX type")
        raise DatasetFileError(f"{path}: IDX type byte 0x{data[2]:02x} ({kind}), expected 0x08 (uint8)")
    if data[3] != ndim:
        raise DatasetFileError(f"{path}: IDX header declares {data[3]} dimensions, expected {ndim} "
                               f"({'images: N, rows, columns' if ndim == 3 else 'labels: N'})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetFileError(f"{path}: truncated IDX header: {len(data)} bytes, the header of a "
                               f"{ndim}-dimensional file takes {header}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    size = 1
    for d in shape:
        size *= d
    have = len(data) - header
    if have != size:
        what = "truncated" if have < size else f"{have - size} trailing bytes after the data"
        raise DatasetFileError(f"{path}: {what}: header declares shape {shape} = {size} bytes of "
                               f"data, the file holds {have}")
    h = _md5()
    h.update(data)
    # Copy so the caller gets an ordinary writable array, not a view of an immutable bytes.
    return np.frombuffer(data, np.uint8, count=size, offset=header).reshape(shape).copy(), h.hexdigest()
