"""CIFAR-10 python format: tiny archives in the official layout, checksums before unpickling, downloads."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from minigrad import data
from minigrad.data import cifar10

pytestmark = pytest.mark.backends("numpy")  # host-side code only

PER_BATCH = 3
NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch):
    """Fail any attempt to reach the network; file:// URLs stay allowed."""
    real_urlopen = urllib.request.urlopen

    def guarded(url, *args, **kwargs):
        text = url if isinstance(url, str) else url.full_url
        if not text.startswith("file:"):
            raise AssertionError(f"test tried to reach the network: {text}")
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)


def write_batches(folder: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Write a tiny cifar-10-batches-py folder (official keys, protocol-2 pickles); return its content."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    batches = {}
    for name in (*cifar10.TRAIN_FILES, cifar10.TEST_FILE):
        pixels = rng.integers(0, 256, size=(PER_BATCH, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=PER_BATCH)]
        record = {
            b"batch_label": f"{name} of 5".encode(),
            b"labels": labels,
            b"data": pixels,
            b"filenames": [f"img_{i}.png".encode() for i in range(PER_BATCH)],
        }
        (folder / name).write_bytes(pickle.dumps(record, protocol=2))
        batches[name] = (pixels, labels)
    meta = {b"num_cases_per_batch": PER_BATCH, b"label_names": NAMES, b"num_vis": 3072}
    (folder / cifar10.META_FILE).write_bytes(pickle.dumps(meta, protocol=2))
    train_x = np.concatenate([batches[n][0] for n in cifar10.TRAIN_FILES])
    train_y = np.concatenate([batches[n][1] for n in cifar10.TRAIN_FILES])
    return train_x, train_y, batches[cifar10.TEST_FILE][0], np.asarray(batches[cifar10.TEST_FILE][1])


def make_archive(tmp_path: Path) -> tuple[Path, tuple]:
    content = write_batches(tmp_path / "src" / cifar10.CIFAR10_FOLDER)
    archive = tmp_path / cifar10.CIFAR10_ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / cifar10.CIFAR10_FOLDER, arcname=cifar10.CIFAR10_FOLDER)
    return archive, content


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def check_content(train: data.Dataset, test: data.Dataset, content: tuple) -> None:
    train_x, train_y, test_x, test_y = content
    assert train.images.shape == (5 * PER_BATCH, 3, 32, 32) and train.images.dtype == np.float32
    assert test.images.shape == (PER_BATCH, 3, 32, 32)
    assert train.labels.dtype == np.int64 and train.num_classes == 10
    np.testing.assert_allclose(train.images, train_x.reshape(-1, 3, 32, 32) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(test.images, test_x.reshape(-1, 3, 32, 32) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(train.labels, train_y)
    np.testing.assert_array_equal(test.labels, test_y)
    assert train.class_names[0] == "airplane" and train.class_names[-1] == "truck"
    # row layout: the first 1024 values are the red plane, row-major
    np.testing.assert_allclose(train.images[0, 0, 0, :], train_x[0, :32] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(train.images[0, 2, 31, 31], train_x[0, 3071] / 255.0, rtol=1e-6)


def test_archive_is_read_after_checksum(tmp_path, monkeypatch):
    archive, content = make_archive(tmp_path)
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", md5(archive))
    train, test = data.load_cifar10(archive)
    check_content(train, test, content)
    assert (train.name, test.name) == ("cifar10", "cifar10-test")
    train2, _ = data.load_dataset("cifar10", archive)  # detected as the python-format archive
    np.testing.assert_array_equal(train2.images, train.images)
    train3, _ = data.load_cifar10(tmp_path)  # a folder holding the archive
    np.testing.assert_array_equal(train3.labels, train.labels)


def _forbid_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("something was unpickled from an archive that failed its checksum")

    monkeypatch.setattr(cifar10.RestrictedUnpickler, "load", fail)
    monkeypatch.setattr(cifar10, "unpickle_restricted", fail)
    monkeypatch.setattr(pickle, "load", fail)
    monkeypatch.setattr(pickle, "loads", fail)
    monkeypatch.setattr(tarfile.TarFile, "extractfile", fail)


def test_corrupt_archive_fails_checksum_and_nothing_is_unpickled(tmp_path, monkeypatch):
    archive, _ = make_archive(tmp_path)
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", md5(archive))
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    archive.write_bytes(bytes(raw))
    _forbid_unpickling(monkeypatch)
    for load in (lambda: data.load_cifar10(archive), lambda: data.load_dataset("cifar10", archive)):
        with pytest.raises(data.CorruptArchiveError, match=r"corrupt.*download it again"):
            load()


def test_truncated_archive_is_refused_by_its_checksum(tmp_path, monkeypatch):
    archive, _ = make_archive(tmp_path)  # its MD5 is not the official one
    archive.write_bytes(archive.read_bytes()[:100])
    _forbid_unpickling(monkeypatch)
    with pytest.raises(data.CorruptArchiveError, match=cifar10.CIFAR10_MD5):
        data.load_dataset("cifar10", archive)


def test_extracted_folder_and_its_parent(tmp_path):
    folder = tmp_path / "cifar" / cifar10.CIFAR10_FOLDER
    content = write_batches(folder)
    for path in (folder, folder.parent):
        train, test = data.load_cifar10(path)
        check_content(train, test, content)
    train, _ = data.load_dataset("cifar10", folder.parent)
    assert len(train) == 5 * PER_BATCH


def test_cache_folder_with_extracted_data(tmp_path, monkeypatch):
    content = write_batches(tmp_path / "cache" / cifar10.CIFAR10_FOLDER)
    monkeypatch.setenv("MINIGRAD_DATA", str(tmp_path / "cache"))
    assert data.default_cache_dir() == tmp_path / "cache"
    train, test = data.load_cifar10()
    check_content(train, test, content)


class Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


def test_folder_pickles_are_restricted(tmp_path):
    folder = tmp_path / cifar10.CIFAR10_FOLDER
    write_batches(folder)
    target = tmp_path / "pwned"
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": Exploit(target), b"labels": []}, protocol=2))
    with pytest.raises(
        data.CorruptArchiveError, match=r"data_batch_1: refused: refusing to unpickle global (posix|nt|os)\.mkdir"
    ):
        data.load_cifar10(folder)
    assert not target.exists()


def test_restricted_unpickler_allows_plain_data_and_arrays_only():
    plain = {b"a": [1, 2, b"x", "y"], "n": 3}
    assert cifar10.unpickle_restricted(pickle.dumps(plain, protocol=2)) == plain
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for protocol in (2, 4, 5):
        np.testing.assert_array_equal(cifar10.unpickle_restricted(pickle.dumps(array, protocol=protocol)), array)
    with pytest.raises(pickle.UnpicklingError, match="object dtype"):
        cifar10.unpickle_restricted(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        cifar10.unpickle_restricted(pickle.dumps(io.BytesIO(b"x")))


def test_bad_batch_content_is_reported(tmp_path):
    folder = tmp_path / cifar10.CIFAR10_FOLDER
    write_batches(folder)
    record = {b"data": np.zeros((2, 100), dtype=np.uint8), b"labels": [0, 1]}
    (folder / "test_batch").write_bytes(pickle.dumps(record, protocol=2))
    with pytest.raises(data.CorruptArchiveError, match=r"test_batch.*\(N, 3072\)"):
        data.load_cifar10(folder)
    (folder / "test_batch").unlink()
    with pytest.raises(data.CorruptArchiveError, match="test_batch is missing"):
        data.load_cifar10(folder)


def test_download_from_file_url_is_atomic(tmp_path, monkeypatch):
    archive, content = make_archive(tmp_path)
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", md5(archive))
    cache = tmp_path / "cache"
    path = data.download_cifar10(cache, url=archive.as_uri())
    assert path == cache / cifar10.CIFAR10_ARCHIVE
    assert path.read_bytes() == archive.read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == [cifar10.CIFAR10_ARCHIVE]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # usual permissions, not mkstemp's 0o600
    # a second call finds the verified archive and does not fetch again
    monkeypatch.setattr(cifar10, "_fetch", lambda *a, **k: pytest.fail("fetched again"))
    assert data.download_cifar10(cache, url=archive.as_uri()) == path
    check_content(*data.load_cifar10(cache_dir=cache), content)


def test_load_with_download_uses_the_official_url(tmp_path, monkeypatch):
    archive, content = make_archive(tmp_path)
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", md5(archive))
    urls = []

    def fake_fetch(url, out, chunk_size=1 << 20):
        urls.append(url)
        out.write(archive.read_bytes())

    monkeypatch.setattr(cifar10, "_fetch", fake_fetch)
    cache = tmp_path / "cache"
    with pytest.raises(data.DatasetNotFoundError):
        data.load_cifar10(cache_dir=cache)  # not downloaded unless asked
    assert urls == []
    train, test = data.load_cifar10(download=True, cache_dir=cache)
    assert urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    check_content(train, test, content)


def test_download_with_bad_checksum_or_failure_leaves_nothing(tmp_path, monkeypatch):
    archive, _ = make_archive(tmp_path)  # MD5 differs from the official one
    cache = tmp_path / "cache"
    with pytest.raises(data.CorruptArchiveError, match="corrupt or incomplete and was deleted"):
        data.download_cifar10(cache, url=archive.as_uri())
    assert list(cache.iterdir()) == []

    def broken_fetch(url, out, chunk_size=1 << 20):
        out.write(b"partial")
        raise OSError("connection reset")

    monkeypatch.setattr(cifar10, "_fetch", broken_fetch)
    with pytest.raises(OSError, match="connection reset"):
        data.download_cifar10(cache)
    assert list(cache.iterdir()) == []


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match=r"download=True.*cifar-10-python\.tar\.gz"):
        data.load_cifar10(tmp_path / "nowhere")
    with pytest.raises(data.DatasetNotFoundError, match=r"in the cache folder.*download=True"):
        data.load_cifar10(cache_dir=tmp_path / "empty")
    with pytest.raises(data.DatasetNotFoundError, match="download=True"):
        data.load_dataset("cifar10", tmp_path / "nowhere")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.txt").write_text("hello")
    with pytest.raises(data.DatasetNotFoundError, match="neither the python-format data"):
        data.load_dataset("cifar10", tmp_path / "junk")


# ----------------------------------------------------------------------------
# Hostile batch files: refused by name, in bounded memory and time
# ----------------------------------------------------------------------------


class _Calls:
    """Pickles to a call of `function(*args)`: how a hostile file asks the unpickler to build something."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize(
    "raw, match",
    [
        (b"", r"data_batch_2: not a CIFAR-10 python batch file \(a malformed pickle: EOFError"),
        (bytes(range(256)) * 4, r"data_batch_2: (not a CIFAR-10 python batch file|refused)"),
        (pickle.dumps({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 2]}, protocol=2)[:-40], "data_batch_2"),
        (pickle.dumps([1, 2, 3], protocol=2), "data_batch_2: expected a pickled dict, got list"),
        (pickle.dumps({b"data": "text", b"labels": [0]}, protocol=2), r"data_batch_2: b'data' should be a uint8 array"),
    ],
)
def test_garbage_and_truncated_batches_name_the_file(tmp_path, raw, match):
    folder = tmp_path / cifar10.CIFAR10_FOLDER
    write_batches(folder)
    (folder / "data_batch_2").write_bytes(raw)
    with pytest.raises(data.CorruptArchiveError, match=match):
        data.load_cifar10(folder)


@pytest.mark.parametrize("via", ["ndarray", "reconstruct"])
def test_a_tiny_pickle_asking_for_a_huge_array_is_refused_in_bounded_memory(tmp_path, via):
    from tests.bounded import refusal_of

    folder = tmp_path / cifar10.CIFAR10_FOLDER
    write_batches(folder)
    reconstruct = cifar10._numpy_attr("_core.multiarray._reconstruct", "core.multiarray._reconstruct")
    huge = (1 << 40,)
    bomb = _Calls(np.ndarray, huge, "u1") if via == "ndarray" else _Calls(reconstruct, np.ndarray, huge, b"b")
    raw = pickle.dumps({b"data": bomb, b"labels": []}, protocol=2)
    assert len(raw) < 200
    (folder / "data_batch_3").write_bytes(raw)
    message = refusal_of(f"minigrad.data.load_cifar10({str(folder)!r})", extra_mb=100, timeout=60)
    assert message.startswith("CorruptArchiveError: ") and "data_batch_3: refused" in message, message
    assert "decompression bomb" in message


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "huge"])
def test_a_batch_that_is_not_a_regular_file_is_refused_without_hanging(tmp_path, kind):
    from tests.bounded import refusal_of

    folder = tmp_path / cifar10.CIFAR10_FOLDER
    write_batches(folder)
    target = folder / "data_batch_4"
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "dev_zero":
        target.symlink_to("/dev/zero")
    else:
        with open(target, "wb") as file:
            file.truncate(cifar10.MAX_BATCH_BYTES + 1)  # sparse: no disk used
    message = refusal_of(f"minigrad.data.load_cifar10({str(folder)!r})", extra_mb=40, timeout=30)
    expected = {"fifo": "is a FIFO", "dev_zero": "is a character device (a link to /dev/zero)", "huge": "more than the"}
    assert message.startswith("CorruptArchiveError: ") and "data_batch_4" in message, message
    assert expected[kind] in message, message


def test_an_archive_member_too_large_for_a_batch_is_refused_by_name(tmp_path, monkeypatch):
    archive, _ = make_archive(tmp_path)
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", md5(archive))
    monkeypatch.setattr(cifar10, "MAX_BATCH_BYTES", 1000)  # the tiny batches here are about 9 kB
    with pytest.raises(data.CorruptArchiveError, match=r"member 'cifar-10-batches-py/data_batch_1' is \d+ bytes"):
        data.load_cifar10(archive)
