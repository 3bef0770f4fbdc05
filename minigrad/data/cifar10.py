"""CIFAR-10 from the official python-format archive ``cifar-10-python.tar.gz``.

The archive (https://www.cs.toronto.edu/~kriz/cifar.html) holds the folder
``cifar-10-batches-py/`` with five training batches ``data_batch_1`` ..
``data_batch_5`` (10,000 images each), ``test_batch`` (10,000) and
``batches.meta``. Each file is a Python pickle of a dict whose keys are bytes:
``b"data"`` a (N, 3072) uint8 array (each row the 1024 red, then green, then
blue pixels of a 32x32 image, row-major, so it reshapes straight to NCHW) and
``b"labels"`` a list of N ints in 0..9; ``batches.meta`` has
``b"label_names"``.

Pickles can run arbitrary code when loaded, so nothing is unpickled before it
is trusted:

* an archive (downloaded or given by path) must match the official MD5
  checksum before any member is read; a mismatch raises
  :class:`CorruptArchiveError` and nothing is unpickled;
* an extracted folder has no checksum, so every file is read with a
  restricted unpickler (used for the archive too, as a second line of
  defence). Plain containers and scalars (dict, list, bytes, str, int) need
  no lookup; the only globals it resolves are the few NumPy functions that
  rebuild a plain numeric array (``_reconstruct``, ``ndarray``, ``dtype``
  without object fields, ``_frombuffer``) and ``_codecs.encode`` with latin-1
  (how protocol-2 pickles store bytes). Anything else raises
  ``pickle.UnpicklingError``. The official files store ``b"data"`` as a NumPy
  array, which is why those NumPy reconstructors must be allowed; they may not
  allocate more than :data:`MAX_ARRAY_BYTES` (a pickle of a few bytes could
  otherwise ask for terabytes). Files larger than :data:`MAX_BATCH_BYTES`,
  and anything that is not a regular file (a FIFO, a link to a device), are
  refused before they are read. Every refusal is a
  :class:`CorruptArchiveError` naming the file.

Downloads happen only when asked (``download=True``): into a temporary file
in the cache folder, checked, then renamed, so an interrupted download never
leaves a file that looks complete.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import tarfile
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO

from minigrad import backend
from minigrad.data.datasets import (
    CorruptArchiveError,
    Dataset,
    DatasetNotFoundError,
    atomic_file,
    file_md5,
    read_regular_file,
)

np = backend.host
logger = logging.getLogger(__name__)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
CACHE_ENV_VAR = "MINIGRAD_DATA"
MAX_BATCH_BYTES = 64 << 20  # one batch file; the official ones are about 31 MB
MAX_ARRAY_BYTES = 64 << 20  # one array built while unpickling: a pickle may not ask for more


def default_cache_dir() -> Path:
    """Where downloads go: ``$MINIGRAD_DATA`` when set, else ``~/.cache/minigrad``."""
    override = os.environ.get(CACHE_ENV_VAR, "").strip()
    return Path(override).expanduser() if override else Path.home() / ".cache" / "minigrad"


def verify_archive(path: str | os.PathLike, expected_md5: str | None = None) -> None:
    """Raise :class:`CorruptArchiveError` unless the file at `path` has the official CIFAR-10 MD5."""
    expected = expected_md5 or CIFAR10_MD5
    got = file_md5(path)
    if got != expected:
        raise CorruptArchiveError(
            f"{path}: MD5 checksum is {got}, expected {expected}: the CIFAR-10 archive is corrupt or incomplete "
            f"(an interrupted download?) and was not read. Delete it and download it again, with "
            f"load_cifar10(download=True) or from {CIFAR10_URL}"
        )


# ----------------------------------------------------------------------------
# Downloading
# ----------------------------------------------------------------------------


def _fetch(url: str, out: BinaryIO, chunk_size: int = 1 << 20) -> None:
    """Stream the resource at `url` (http(s):// or file://) into the open binary file `out`."""
    with urllib.request.urlopen(url, timeout=60) as response:
        while chunk := response.read(chunk_size):
            out.write(chunk)


def download_cifar10(
    cache_dir: str | os.PathLike | None = None, url: str | None = None, force: bool = False, expected_md5: str | None = None
) -> Path:
    """Download the python-format CIFAR-10 archive into `cache_dir` and return its path.

    `url` defaults to the official :data:`CIFAR10_URL` (any ``urllib`` URL
    works, ``file://`` included). An archive already there with the right
    checksum is kept unless `force`.
    The bytes go to a temporary file in the same folder, which is checked
    against the MD5 and then renamed into place (``os.replace``, atomic), so
    no partial file ever carries the final name. A failed download or a
    checksum mismatch deletes the temporary file and raises.
    """
    url = url or CIFAR10_URL
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / CIFAR10_ARCHIVE
    if target.is_file() and not force:
        try:
            verify_archive(target, expected_md5)
            return target
        except CorruptArchiveError:
            logger.warning("%s fails its checksum; downloading it again", target)
    logger.info("downloading %s to %s", url, target)
    with atomic_file(target) as (out, tmp):
        _fetch(url, out)
        out.flush()
        got, expected = file_md5(tmp), expected_md5 or CIFAR10_MD5
        if got != expected:
            raise CorruptArchiveError(
                f"the file downloaded from {url} has MD5 {got}, expected {expected}: it is corrupt or incomplete "
                "and was deleted. Try again, or download it by other means and pass its path as path="
            )
    return target


# ----------------------------------------------------------------------------
# Restricted unpickling
# ----------------------------------------------------------------------------


def _numpy_attr(*candidates: str) -> Any:
    """The first of the dotted NumPy attributes `candidates` that exists (NumPy 2 renamed numpy.core)."""
    for dotted in candidates:
        obj: Any = np
        try:
            for part in dotted.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    raise AttributeError(f"none of {candidates} exists in this NumPy")


def _plain_dtype(*args: Any) -> Any:
    """``numpy.dtype`` for plain numeric types only: object dtypes could smuggle in arbitrary objects."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refusing to unpickle an object dtype ({dtype})")
    return dtype


def _bounded(shape: Any, dtype: Any, who: str) -> None:
    """Refuse an array constructor call that would allocate more than :data:`MAX_ARRAY_BYTES` (a tiny pickle could)."""
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    if not all(isinstance(n, int) and n >= 0 for n in dims):
        raise pickle.UnpicklingError(f"refusing {who} with shape {shape!r}")
    count = 1
    for n in dims:
        count *= n
    if count * np.dtype(dtype).itemsize > MAX_ARRAY_BYTES:
        raise pickle.UnpicklingError(
            f"refusing {who} of shape {shape!r}: more than {MAX_ARRAY_BYTES} bytes (a decompression bomb?)"
        )


def _bounded_ndarray(shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> Any:
    _bounded(shape, dtype, "numpy.ndarray")
    return np.ndarray(shape, dtype, *args, **kwargs)


def _bounded_reconstruct(reconstruct: Any) -> Any:
    def rebuild(subtype: Any, shape: Any, dtype: Any) -> Any:
        if subtype is not np.ndarray and subtype is not _bounded_ndarray:
            raise pickle.UnpicklingError(f"refusing to rebuild an array of type {subtype!r}")
        _bounded(shape, np.uint8 if isinstance(dtype, bytes) else dtype, "numpy _reconstruct")
        return reconstruct(np.ndarray, shape, dtype)

    return rebuild


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it to store bytes; latin-1 only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    reconstruct = _numpy_attr("_core.multiarray._reconstruct", "core.multiarray._reconstruct")
    frombuffer = _numpy_attr("_core.numeric._frombuffer", "core.numeric._frombuffer")
    reconstruct = _bounded_reconstruct(reconstruct)
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): _bounded_ndarray, ("numpy", "dtype"): _plain_dtype}
    allowed[("_codecs", "encode")] = _latin1_encode
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only containers, scalars and plain NumPy arrays (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_globals()
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name}: only plain data and NumPy arrays are allowed in CIFAR files"
            )
        return allowed[(module, name)]


def unpickle_restricted(data: bytes) -> Any:
    """Unpickle `data` with :class:`RestrictedUnpickler` (bytes keys kept as bytes, as in the official files)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


def _get(record: dict, key: str) -> Any:
    """``record[key]`` with the key as bytes (the official files) or as str (re-pickled by Python 3)."""
    if key.encode() in record:
        return record[key.encode()]
    if key in record:
        return record[key]
    raise KeyError(key)


def _unpickle_file(raw: bytes, source: str) -> Any:
    """Unpickle the bytes of `source` restrictedly; anything refused or malformed is a CorruptArchiveError naming it."""
    try:
        return unpickle_restricted(raw)
    except pickle.UnpicklingError as exc:
        raise CorruptArchiveError(f"{source}: refused: {exc}") from None
    except Exception as exc:  # a malformed pickle can fail in many ways; all of them mean "not a batch file"
        raise CorruptArchiveError(
            f"{source}: not a CIFAR-10 python batch file (a malformed pickle: {type(exc).__name__}: {exc})"
        ) from None


def _parse_batch(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, 3, 32, 32), int64 labels (N,)) from the bytes of one batch file."""
    record = _unpickle_file(raw, source)
    if not isinstance(record, dict):
        raise CorruptArchiveError(f"{source}: expected a pickled dict, got {type(record).__name__}")
    try:
        data = np.asarray(_get(record, "data"))
        labels = np.asarray(_get(record, "labels"))
    except KeyError as exc:
        raise CorruptArchiveError(f"{source}: missing key {exc.args[0]!r} (expected b'data' and b'labels')") from None
    except (TypeError, ValueError) as exc:
        raise CorruptArchiveError(f"{source}: b'data' and b'labels' must be arrays of numbers ({exc})") from None
    if data.dtype.hasobject or labels.dtype.hasobject:
        raise CorruptArchiveError(f"{source}: b'data' and b'labels' must be arrays of numbers, not Python objects")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise CorruptArchiveError(
            f"{source}: b'data' should be a uint8 array of shape (N, 3072), got {data.dtype} {data.shape}"
        )
    labels_ok = labels.shape == (data.shape[0],) and labels.dtype.kind in "iu"
    if not labels_ok or (labels.size and not 0 <= labels.min() <= labels.max() < 10):
        raise CorruptArchiveError(f"{source}: b'labels' should be {data.shape[0]} integers in 0..9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _parse_meta(raw: bytes | None, source: str) -> tuple[str, ...]:
    if raw is None:
        return CIFAR10_CLASSES
    record = _unpickle_file(raw, source)
    try:
        names = _get(record, "label_names")
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    except (KeyError, TypeError, UnicodeDecodeError):
        return CIFAR10_CLASSES
    return names if len(names) == 10 else CIFAR10_CLASSES


def _to_unit_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels as float32 in [0, 1] (scaled in place: one float copy of a 600 MB array, not two)."""
    images = pixels.astype(np.float32)
    images *= np.float32(1.0 / 255.0)
    return images


def _build(files: dict[str, bytes | None], source: str) -> tuple[Dataset, Dataset]:
    """(train, test) datasets from the raw bytes of the batch files."""
    for name in (*TRAIN_FILES, TEST_FILE):
        if files.get(name) is None:
            raise CorruptArchiveError(f"{source}: {CIFAR10_FOLDER}/{name} is missing")
    class_names = _parse_meta(files.get(META_FILE), f"{source}:{META_FILE}")
    parts = [_parse_batch(files[name], f"{source}:{name}") for name in TRAIN_FILES]
    test_images, test_labels = _parse_batch(files[TEST_FILE], f"{source}:{TEST_FILE}")
    train_images = np.concatenate([p[0] for p in parts])
    train_labels = np.concatenate([p[1] for p in parts])
    train = Dataset(_to_unit_float(train_images), train_labels, 10, "cifar10", class_names)
    test = Dataset(_to_unit_float(test_images), test_labels, 10, "cifar10-test", class_names)
    return train, test


def read_cifar10_archive(path: str | os.PathLike, expected_md5: str | None = None) -> tuple[Dataset, Dataset]:
    """(train, test) from ``cifar-10-python.tar.gz``; the MD5 is checked before anything is read.

    Members are read straight from the archive (nothing is extracted to disk).
    `expected_md5` defaults to the official :data:`CIFAR10_MD5`.
    """
    verify_archive(path, expected_md5)
    wanted = {f"{CIFAR10_FOLDER}/{name}": name for name in (*TRAIN_FILES, TEST_FILE, META_FILE)}
    files: dict[str, bytes | None] = {}
    with tarfile.open(path, "r:*") as archive:
        for member in archive:
            name = wanted.get(member.name.removeprefix("./"))
            if name is not None and member.isfile():
                if member.size > MAX_BATCH_BYTES:
                    raise CorruptArchiveError(
                        f"{path}: member {member.name!r} is {member.size} bytes, more than the {MAX_BATCH_BYTES} "
                        "allowed for one batch file"
                    )
                files[name] = archive.extractfile(member).read(member.size)  # type: ignore[union-attr]
    return _build(files, str(path))


def read_cifar10_folder(folder: str | os.PathLike) -> tuple[Dataset, Dataset]:
    """(train, test) from an extracted ``cifar-10-batches-py`` folder, with the restricted unpickler."""
    folder = Path(folder)
    files: dict[str, bytes | None] = {}
    for name in (*TRAIN_FILES, TEST_FILE, META_FILE):
        file = folder / name
        if not os.path.lexists(file):
            files[name] = None
            continue
        try:
            files[name] = read_regular_file(file, MAX_BATCH_BYTES, "CIFAR-10 batch file")
        except (OSError, ValueError) as exc:
            raise CorruptArchiveError(f"{file}: cannot be read as a CIFAR-10 batch file ({exc})") from None
    return _build(files, str(folder))


def find_cifar10(path: str | os.PathLike) -> tuple[str, Path] | None:
    """("archive" | "folder", location) of python-format CIFAR-10 at `path`, or None when it is not there.

    `path` may be the archive, the extracted ``cifar-10-batches-py`` folder, or
    a folder holding either of them.
    """
    path = Path(path).expanduser()
    if path.is_file():
        return "archive", path
    if not path.is_dir():
        return None
    if (path / TRAIN_FILES[0]).is_file():
        return "folder", path
    if (path / CIFAR10_FOLDER / TRAIN_FILES[0]).is_file():
        return "folder", path / CIFAR10_FOLDER
    if (path / CIFAR10_ARCHIVE).is_file():
        return "archive", path / CIFAR10_ARCHIVE
    return None


def _how_to_get(where: str) -> str:
    return (
        f"CIFAR-10 was not found {where}. Pass download=True to download it from {CIFAR10_URL} into the cache "
        f"folder (default ~/.cache/minigrad, or set {CACHE_ENV_VAR}), or download that file yourself and pass its "
        f"path (the .tar.gz archive, the extracted {CIFAR10_FOLDER} folder or its parent) as path=, or put it in the "
        "cache folder"
    )


def load_cifar10(
    path: str | os.PathLike | None = None, download: bool = False, cache_dir: str | os.PathLike | None = None
) -> tuple[Dataset, Dataset]:
    """CIFAR-10 as (train, test): 50,000 and 10,000 float32 images (N, 3, 32, 32) in [0, 1], 10 classes.

    Args:
        path: the ``cifar-10-python.tar.gz`` archive, the extracted
            ``cifar-10-batches-py`` folder, or a folder holding either. When
            None, the cache folder is searched (archive or extracted folder).
        download: when the data is not in the cache, download the archive into it.
            Only the cache is downloaded into; an explicit `path` must exist.
        cache_dir: the cache folder; default ``$MINIGRAD_DATA`` or ``~/.cache/minigrad``.

    Archives are MD5-checked before reading; folders are read with a
    restricted unpickler (see the module docstring).
    """
    if path is not None:
        found = find_cifar10(path)
        if found is None:
            raise DatasetNotFoundError(_how_to_get(f"at path={str(path)!r}"))
    else:
        cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        found = find_cifar10(cache)
        if found is None:
            if not download:
                raise DatasetNotFoundError(_how_to_get(f"in the cache folder {str(cache)!r}"))
            found = ("archive", download_cifar10(cache))
    kind, location = found
    return read_cifar10_archive(location) if kind == "archive" else read_cifar10_folder(location)
