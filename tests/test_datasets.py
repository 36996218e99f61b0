"""cnnkit.datasets: the full MNIST and Fashion-MNIST files against their published facts, the
look-up order, every kind of damaged file, the download path (through file:// mirrors, so no
network is used), the offline error, and the bundled MNIST sample.

The full files come from ../shared/data/<name>/ beside the repository root; tests needing them
are skipped when that folder is missing. No test touches the network or the real ~/.cache.
"""
import gzip
import hashlib
import importlib.util
import os
import pathlib
import re
import struct
import time
import urllib.request

import numpy as np
import pytest

from cnnkit import datasets
from cnnkit.datasets import DatasetFileError, DatasetUnavailableError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
BASES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: connection refused at once
DEFAULT_MIRRORS = {k: list(v) for k, v in datasets._MIRRORS.items()}


def _have(name):
    return all(os.path.isfile(os.path.join(SHARED, name, b + ".gz")) for b in BASES)


needs_mnist = pytest.mark.skipif(
    not _have("mnist"), reason=f"full MNIST IDX files not found in {SHARED}/mnist/ "
                               "(the shared data folder beside the repository root)")
needs_fashion = pytest.mark.skipif(
    not _have("fashion-mnist"), reason=f"full Fashion-MNIST IDX files not found in "
                                       f"{SHARED}/fashion-mnist/")


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """A fresh home (so ~/.cache is tmp), no $CNNKIT_DATA, and mirrors that cannot be reached."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    monkeypatch.delenv("CNNKIT_DATA", raising=False)
    monkeypatch.setattr(datasets, "_MIRRORS", {"mnist": [UNREACHABLE], "fashion-mnist": [UNREACHABLE]})
    monkeypatch.setattr(datasets, "_DOWNLOAD_TIMEOUT_S", 5)
    return home


def cache_dir(home, name="mnist"):
    return home / ".cache" / "cnnkit" / name


@pytest.fixture(scope="module")
def mnist():
    if not _have("mnist"):
        pytest.skip("full MNIST IDX files not found")
    return datasets.load_mnist(os.path.join(SHARED, "mnist"))


@pytest.fixture(scope="module")
def raw_mnist(tmp_path_factory):
    """A directory holding the four MNIST files gunzipped (read fast, easy to damage)."""
    if not _have("mnist"):
        pytest.skip("full MNIST IDX files not found")
    d = tmp_path_factory.mktemp("raw_mnist")
    for b in BASES:
        with gzip.open(os.path.join(SHARED, "mnist", b + ".gz"), "rb") as f:
            (d / b).write_bytes(f.read())
    return d


def dataset_dir(path, source, replace=()):
    """A directory of links to source's four files, with the files named in replace written
    from bytes instead ({file name: bytes}; a name ending .gz stands in for that base)."""
    path.mkdir(parents=True, exist_ok=True)
    replaced = {name[:-3] if name.endswith(".gz") else name for name in replace}
    for b in BASES:
        if b not in replaced:
            src = next(p for p in (source / b, source / (b + ".gz")) if p.exists())
            os.symlink(src, path / src.name)
    for name, data in dict(replace).items():
        (path / name).write_bytes(data)
    return path


def poisoned(path):
    """A directory with all four files present but empty: loading it names the file it read."""
    path.mkdir(parents=True, exist_ok=True)
    for b in BASES:
        (path / b).write_bytes(b"")
    return path


def file_mirror(path, source, replace=()):
    """A file:// mirror serving <base>.gz for each base present in source, plus replace."""
    path.mkdir(parents=True, exist_ok=True)
    for b in BASES:
        if (source / (b + ".gz")).exists() and b + ".gz" not in dict(replace):
            os.symlink(source / (b + ".gz"), path / (b + ".gz"))
    for name, data in dict(replace).items():
        (path / name).write_bytes(data)
    return path.as_uri() + "/"


def md5_of_gz(path):
    with gzip.open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def _set(data, i, value):
    b = bytearray(data)
    b[i] = value
    return bytes(b)


def _flip(data, i, bit=0):
    return _set(data, i, data[i] ^ (1 << bit))


# --- the full data sets against their published facts ----------------------------------------

@needs_mnist
def test_mnist_shapes_dtypes_and_published_facts(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    for a in (x_train, y_train, x_test, y_test):
        assert a.dtype == np.uint8 and a.flags.c_contiguous and a.flags.writeable
    assert y_train[0] == 5
    assert np.bincount(y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(y_test, minlength=10).sum() == 10000 and y_test.max() == 9
    # Mean and std of pixels / 255 from a 256-bin histogram: exact, no 47M-element float copy.
    counts = np.bincount(x_train.ravel(), minlength=256).astype(np.float64)
    v = np.arange(256) / 255.0
    mean = (counts * v).sum() / counts.sum()
    std = np.sqrt((counts * (v - mean) ** 2).sum() / counts.sum())
    assert round(mean, 4) == 0.1307 and round(std, 4) == 0.3081


@needs_fashion
def test_fashion_mnist_shapes_and_published_facts():
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist(os.path.join(SHARED, "fashion-mnist"))
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert y_train[0] == 9
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10


@needs_mnist
def test_uncompressed_files_load_the_same_as_gz(mnist, raw_mnist, tmp_path):
    raw = datasets.load_mnist(raw_mnist)
    mixed = datasets.load_mnist(dataset_dir(tmp_path / "mixed", raw_mnist, {
        "t10k-labels-idx1-ubyte.gz": gzip.compress((raw_mnist / "t10k-labels-idx1-ubyte").read_bytes())}))
    for got in (raw, mixed):
        for a, b in zip(got[0] + got[1], mnist[0] + mnist[1]):
            np.testing.assert_array_equal(a, b)


# --- where the files are looked for -----------------------------------------------------------

def test_explicit_path_beats_cnnkit_data_beats_the_cache(tmp_path, isolated, monkeypatch):
    explicit = poisoned(tmp_path / "explicit")
    env = tmp_path / "env"
    poisoned(env / "mnist")
    cache = poisoned(cache_dir(isolated))
    monkeypatch.setenv("CNNKIT_DATA", str(env))
    with pytest.raises(DatasetFileError, match=str(explicit / "train-images-idx3-ubyte")):
        datasets.load_mnist(explicit)
    with pytest.raises(DatasetFileError, match=str(env / "mnist" / "train-images-idx3-ubyte")):
        datasets.load_mnist()
    monkeypatch.delenv("CNNKIT_DATA")
    with pytest.raises(DatasetFileError, match=str(cache / "train-images-idx3-ubyte")):
        datasets.load_mnist()


def test_cnnkit_data_takes_a_per_data_set_folder_first_then_the_files_directly(tmp_path, monkeypatch):
    env = tmp_path / "env"
    poisoned(env / "fashion-mnist")
    poisoned(env)
    monkeypatch.setenv("CNNKIT_DATA", str(env))
    with pytest.raises(DatasetFileError, match=str(env / "fashion-mnist" / "train-images")):
        datasets.load_fashion_mnist()
    with pytest.raises(DatasetFileError, match=str(env / "train-images")):
        datasets.load_mnist()  # no env/mnist/: the files directly in $CNNKIT_DATA


def test_an_incomplete_folder_is_passed_over(tmp_path, isolated, monkeypatch):
    env = poisoned(tmp_path / "env")
    (env / "t10k-labels-idx1-ubyte").unlink()
    cache = poisoned(cache_dir(isolated))
    monkeypatch.setenv("CNNKIT_DATA", str(env))
    with pytest.raises(DatasetFileError, match=str(cache / "train-images")):
        datasets.load_mnist()


@needs_mnist
def test_explicit_path_missing_a_file_is_an_error_not_a_fall_back(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNKIT_DATA", SHARED)  # holds a good copy, which must not be used
    d = dataset_dir(tmp_path / "d", pathlib.Path(SHARED, "mnist"))
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetUnavailableError) as e:
        datasets.load_mnist(d)
    msg = str(e.value)
    assert f"{d}: missing t10k-labels-idx1-ubyte[.gz]" in msg and "only place looked" in msg
    assert "train-images-idx3-ubyte[.gz]" not in msg
    with pytest.raises(DatasetUnavailableError, match="no such directory"):
        datasets.load_mnist(tmp_path / "nowhere")


@needs_mnist
def test_cnnkit_data_holding_per_data_set_folders_loads(mnist, monkeypatch):
    monkeypatch.setenv("CNNKIT_DATA", SHARED)  # SHARED/mnist/ holds the .gz files
    (_, y_train), (x_test, _) = datasets.load_mnist()
    np.testing.assert_array_equal(y_train, mnist[0][1])
    np.testing.assert_array_equal(x_test, mnist[1][0])


# --- damaged files: a ValueError naming the file and the fault, never a wrong array -----------

def _images_with_rows(d, rows):
    n = struct.unpack(">I", d[4:8])[0]
    return d[:8] + struct.pack(">I", rows) + d[12:16] + d[16:16 + n * rows * 28]


# name: (file to replace, how to damage its raw bytes, regex the message must match)
BAD_FILES = {
    "empty": ("t10k-labels-idx1-ubyte", lambda d: b"", r"0 bytes, too short for an IDX header"),
    "header_cut": ("t10k-images-idx3-ubyte", lambda d: d[:10], r"truncated IDX header: 10 bytes.*takes 16"),
    "bad_magic": ("t10k-labels-idx1-ubyte", lambda d: _set(d, 0, 0x12),
                  r"bad magic number 0x12000801, expected 0x00000801"),
    "gzip_named_raw": ("train-labels-idx1-ubyte", gzip.compress, r"bad magic.*looks gzip-compressed"),
    "float32_type": ("t10k-labels-idx1-ubyte", lambda d: _set(d, 2, 0x0D),
                     r"type byte 0x0d \(float32\), expected 0x08 \(uint8\)"),
    "labels_2d": ("t10k-labels-idx1-ubyte", lambda d: _set(d, 3, 2), r"declares 2 dimensions, expected 1"),
    "images_27x28": ("t10k-images-idx3-ubyte", lambda d: _images_with_rows(d, 27),
                     r"images are 27x28, expected 28x28"),
    "data_truncated": ("t10k-images-idx3-ubyte", lambda d: d[:-100],
                       r"truncated: header declares shape \(10000, 28, 28\) = 7840000 bytes of data, "
                       r"the file holds 7839900"),
    "trailing_bytes": ("train-labels-idx1-ubyte", lambda d: d + b"\0\0\0", r"3 trailing bytes after the data"),
    "count_mismatch": ("t10k-labels-idx1-ubyte", lambda d: d[:4] + struct.pack(">I", 9999) + d[8:-1],
                       r"holds 9999 labels but .*t10k-images-idx3-ubyte holds 10000 images"),
    "pixel_bit_flip": ("t10k-images-idx3-ubyte", lambda d: _flip(d, 16 + 5000 * 784 + 400, 3),
                       r"checksum mismatch: md5 of the decompressed data is [0-9a-f]{32}, "
                       r"expected 2646ac647ad5339dbf082846283269ea"),
    "label_changed": ("train-labels-idx1-ubyte", lambda d: _set(d, 8, 3),
                      r"checksum mismatch.*expected a25bea736e30d166cdddb491f175f624"),
}


@needs_mnist
@pytest.mark.parametrize("case", BAD_FILES)
def test_damaged_file_raises_value_error_naming_it(case, raw_mnist, tmp_path):
    base, damage, pattern = BAD_FILES[case]
    d = dataset_dir(tmp_path / "d", raw_mnist, {base: damage((raw_mnist / base).read_bytes())})
    with pytest.raises(ValueError, match=pattern) as e:
        datasets.load_mnist(d)
    assert isinstance(e.value, DatasetFileError)
    assert str(d / base) in str(e.value)


@needs_mnist
@pytest.mark.parametrize("damage", [lambda g: g[: len(g) // 2], lambda g: _flip(g, len(g) // 2),
                                    lambda g: _flip(g, len(g) - 6)],  # cut, body, CRC trailer
                         ids=["gz_truncated", "gz_bit_flip", "gz_crc_flip"])
def test_damaged_gzip_raises_value_error_naming_it(damage, tmp_path):
    src = pathlib.Path(SHARED, "mnist")
    name = "t10k-labels-idx1-ubyte.gz"
    d = dataset_dir(tmp_path / "d", src, {name: damage((src / name).read_bytes())})
    with pytest.raises(DatasetFileError, match=rf"{d / name}: not a valid gzip file"):
        datasets.load_mnist(d)


@needs_mnist
def test_any_corrupted_header_byte_is_caught(raw_mnist, tmp_path):
    # A lone file: every change to its 8 header bytes is a bad magic, type, rank or length.
    good = (raw_mnist / "t10k-labels-idx1-ubyte").read_bytes()
    path = tmp_path / "t10k-labels-idx1-ubyte"
    for i in range(8):
        for xor in (0x01, 0x80, 0xFF):
            path.write_bytes(_set(good, i, good[i] ^ xor))
            with pytest.raises(DatasetFileError, match=str(path)):
                datasets._read_idx(str(path), 1)


# --- download ---------------------------------------------------------------------------------

@needs_mnist
def test_download_falls_back_across_mirrors_verifies_and_caches(mnist, tmp_path, isolated, monkeypatch, capsys):
    good = file_mirror(tmp_path / "good", pathlib.Path(SHARED, "mnist"))
    monkeypatch.setitem(datasets._MIRRORS, "mnist", [UNREACHABLE, good])
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist()
    np.testing.assert_array_equal(y_train, mnist[0][1])
    np.testing.assert_array_equal(x_test, mnist[1][0])
    cache = cache_dir(isolated)
    assert sorted(os.listdir(cache)) == sorted(b + ".gz" for b in BASES)  # no temp files left
    for b in BASES:
        assert (cache / (b + ".gz")).read_bytes() == pathlib.Path(SHARED, "mnist", b + ".gz").read_bytes()
    assert f"downloading {good}train-images-idx3-ubyte.gz" in capsys.readouterr().err
    # Now in the cache: loads with every mirror unreachable.
    monkeypatch.setitem(datasets._MIRRORS, "mnist", [UNREACHABLE])
    np.testing.assert_array_equal(datasets.load_mnist()[0][1], y_train)


@needs_mnist
def test_corrupt_download_is_rejected_and_never_cached(tmp_path, isolated, monkeypatch):
    src = pathlib.Path(SHARED, "mnist")
    with gzip.open(src / "train-labels-idx1-ubyte.gz", "rb") as f:
        flipped = _flip(f.read(), 1000)
    bad = file_mirror(tmp_path / "bad", src, {"train-labels-idx1-ubyte.gz": gzip.compress(flipped)})
    monkeypatch.setitem(datasets._MIRRORS, "mnist", [bad])
    with pytest.raises(DatasetUnavailableError) as e:
        datasets.load_mnist()
    assert re.search(r"train-labels-idx1-ubyte.gz: checksum mismatch: .*expected "
                     r"a25bea736e30d166cdddb491f175f624; discarded", str(e.value))
    cache = cache_dir(isolated)
    # train-images came first and was good, so it stays; the bad file left nothing behind.
    assert os.listdir(cache) == ["train-images-idx3-ubyte.gz"]
    kept = os.stat(cache / "train-images-idx3-ubyte.gz")

    monkeypatch.setitem(datasets._MIRRORS, "mnist", [bad, file_mirror(tmp_path / "good", src)])
    (_, y_train), _ = datasets.load_mnist()
    assert y_train[0] == 5
    assert md5_of_gz(cache / "train-labels-idx1-ubyte.gz") == "a25bea736e30d166cdddb491f175f624"
    assert os.stat(cache / "train-images-idx3-ubyte.gz").st_ino == kept.st_ino  # not fetched again
    assert len(os.listdir(cache)) == 4


@needs_mnist
def test_truncated_download_is_rejected(tmp_path, isolated, monkeypatch):
    src = pathlib.Path(SHARED, "mnist")
    gz = (src / "train-images-idx3-ubyte.gz").read_bytes()
    monkeypatch.setitem(datasets._MIRRORS, "mnist", [
        file_mirror(tmp_path / "m", src, {"train-images-idx3-ubyte.gz": gz[:100000]})])
    with pytest.raises(DatasetUnavailableError, match=r"train-images-idx3-ubyte.gz: not a complete gzip file"):
        datasets.load_mnist()
    assert os.listdir(cache_dir(isolated)) == []


class _DroppedConnection:
    """A urlopen response that delivers one chunk, then fails with exc."""

    def __init__(self, exc):
        self.exc, self.sent = exc, False

    def read(self, n=-1):
        if self.sent:
            raise self.exc
        self.sent = True
        return b"\x1f\x8b" + b"\0" * 1000

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


@pytest.mark.parametrize("exc, raised", [(ConnectionResetError("reset by peer"), DatasetUnavailableError),
                                         (KeyboardInterrupt(), KeyboardInterrupt)],
                         ids=["connection_reset", "ctrl_c"])
def test_interrupted_download_leaves_no_file(exc, raised, isolated, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _DroppedConnection(exc))
    with pytest.raises(raised) as e:
        datasets.load_mnist()
    if raised is DatasetUnavailableError:
        assert "ConnectionResetError: reset by peer" in str(e.value)
    assert os.listdir(cache_dir(isolated)) == []


def test_stale_partial_downloads_are_cleaned_up(isolated):
    cache = cache_dir(isolated)
    cache.mkdir(parents=True)
    old, young = cache / ".train-images-idx3-ubyte.gz.k1.part", cache / ".train-images-idx3-ubyte.gz.k2.part"
    old.write_bytes(b"x")
    young.write_bytes(b"x")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    with pytest.raises(DatasetUnavailableError):
        datasets.load_mnist()
    assert os.listdir(cache) == [young.name]  # a young one may be another process's download


def test_offline_error_names_every_place_looked_and_how_to_supply_the_files(tmp_path, isolated, monkeypatch):
    env = tmp_path / "env"
    env.mkdir()
    monkeypatch.setenv("CNNKIT_DATA", str(env))
    with pytest.raises(DatasetUnavailableError) as e:
        datasets.load_mnist()
    assert isinstance(e.value, OSError)
    msg = str(e.value)
    cache = cache_dir(isolated)
    for expected in (
            f"$CNNKIT_DATA {env / 'mnist'}: no such directory",
            f"$CNNKIT_DATA {env}: missing train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
            "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]",
            f"{cache}: no such directory",
            f"{UNREACHABLE}train-images-idx3-ubyte.gz: URLError",
            "train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz  t10k-images-idx3-ubyte.gz  "
            "t10k-labels-idx1-ubyte.gz",
            'cnnkit.datasets.load_mnist(path="DIR")',
            "CNNKIT_DATA=DIR (files in DIR/mnist/ or directly in DIR)",
            f"put the files in {cache}{os.sep}"):
        assert expected in msg, f"{expected!r} not in:\n{msg}"

    monkeypatch.delenv("CNNKIT_DATA")
    with pytest.raises(DatasetUnavailableError) as e:
        datasets.load_fashion_mnist()
    msg = str(e.value)
    assert msg.startswith("Fashion-MNIST is not available")
    assert "$CNNKIT_DATA: not set" in msg and str(cache_dir(isolated, "fashion-mnist")) in msg
    assert "load_fashion_mnist(path=" in msg


def test_default_mirrors_are_the_documented_ones():
    assert DEFAULT_MIRRORS == {
        "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                  "https://storage.googleapis.com/cvdf-datasets/mnist/"],
        "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    }


# --- the bundled sample -----------------------------------------------------------------------

def test_sample_shapes_dtypes_and_stratification():
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist_sample()
    assert x_train.shape == (2000, 28, 28) and y_train.shape == (2000,)
    assert x_test.shape == (500, 28, 28) and y_test.shape == (500,)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert np.bincount(y_train).tolist() == [200] * 10
    assert np.bincount(y_test).tolist() == [50] * 10
    assert len(set(y_train[:20].tolist())) > 5  # MNIST's own mixed order, not sorted by class


def test_sample_file_is_small_has_exactly_the_documented_keys_and_its_licence():
    assert os.path.getsize(datasets._SAMPLE_PATH) < 2_000_000
    with np.load(datasets._SAMPLE_PATH, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(["x_train", "y_train", "x_test", "y_test",
                                          "train_indices", "test_indices"])
    note = open(os.path.join(os.path.dirname(datasets._SAMPLE_PATH), "README.md")).read()
    for s in ("Yann LeCun", "Corinna Cortes", "Christopher J.C. Burges", "CC BY-SA 3.0",
              "creativecommons.org/licenses/by-sa/3.0"):
        assert s in note


@needs_mnist
def test_sample_equals_the_full_set_at_its_stored_indices(mnist):
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist_sample()
    with np.load(datasets._SAMPLE_PATH, allow_pickle=False) as z:
        train_idx, test_idx = z["train_indices"], z["test_indices"]
    assert np.all(np.diff(train_idx) > 0) and np.all(np.diff(test_idx) > 0)
    np.testing.assert_array_equal(x_train, mnist[0][0][train_idx])
    np.testing.assert_array_equal(y_train, mnist[0][1][train_idx])
    np.testing.assert_array_equal(x_test, mnist[1][0][test_idx])
    np.testing.assert_array_equal(y_test, mnist[1][1][test_idx])


@needs_mnist
def test_sample_is_exactly_what_the_generator_script_builds(mnist):
    spec = importlib.util.spec_from_file_location("make_mnist_sample",
                                                  os.path.join(ROOT, "bench", "make_mnist_sample.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    rebuilt = gen.build_sample(*mnist)
    with np.load(datasets._SAMPLE_PATH, allow_pickle=False) as z:
        assert set(z.files) == set(rebuilt)
        for key, value in rebuilt.items():
            assert z[key].dtype == value.dtype, key
            np.testing.assert_array_equal(z[key], value, err_msg=key)


def _npz_bytes(**arrays):
    import io
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _sample_arrays():
    with np.load(datasets._SAMPLE_PATH, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


DAMAGED_SAMPLES = {
    "truncated": (lambda: open(datasets._SAMPLE_PATH, "rb").read()[:50000], r"unreadable"),
    "not_a_zip": (lambda: b"hello", r"unreadable"),
    "extra_key": (lambda: _npz_bytes(extra=np.zeros(1), **_sample_arrays()), r"keys .*'extra'"),
    "float_images": (lambda: _npz_bytes(**{**_sample_arrays(), "x_train": np.zeros((2000, 28, 28))}),
                     r"x_train float64 \(2000, 28, 28\).*not uint8"),
    "label_count": (lambda: _npz_bytes(**{**_sample_arrays(), "y_test": np.zeros(499, np.uint8)}),
                    r"y_test uint8 \(499,\)"),
    "object_array": (lambda: _npz_bytes(**{**_sample_arrays(), "y_test": np.array([None] * 500)}),
                     r"unreadable.*pickle"),
}


@pytest.mark.parametrize("case", DAMAGED_SAMPLES)
def test_damaged_sample_raises_dataset_file_error(case, tmp_path, monkeypatch):
    make, pattern = DAMAGED_SAMPLES[case]
    path = tmp_path / "mnist_sample.npz"
    path.write_bytes(make())
    monkeypatch.setattr(datasets, "_SAMPLE_PATH", str(path))
    with pytest.raises(DatasetFileError, match=pattern):
        datasets.load_mnist_sample()


def test_error_classes():
    assert issubclass(DatasetUnavailableError, OSError)
    assert issubclass(DatasetFileError, ValueError)
    import cnnkit
    assert cnnkit.datasets.load_mnist is datasets.load_mnist
