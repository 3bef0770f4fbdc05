"""The in-memory :class:`Dataset`, the digits loader and the shared helpers of the data package.

A dataset here is two host (NumPy) arrays held in memory: images as float32
in NCHW layout, scaled to [0, 1], and int64 labels. The data sets this project
trains on (scikit-learn's digits, CIFAR-10) fit in memory comfortably, so
there is no per-example ``__getitem__`` machinery: samplers produce index
arrays and the loader gathers whole batches with one fancy-indexing call.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import math
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

from minigrad import backend

np = backend.host

DATA_EXTRA_HINT = "pip install 'minigrad[data]'"


class DatasetNotFoundError(FileNotFoundError):
    """The files of a data set are not where they were looked for (the message says how to get them)."""


class CorruptArchiveError(ValueError):
    """An archive failed its checksum or does not have the expected layout."""


def require_optional(module: str, package: str, feature: str) -> ModuleType:
    """Import the optional dependency `module`, or raise an ImportError saying how to install it.

    The data loaders use scikit-learn and Pillow, which are not dependencies of
    the core engine; they are imported only when a loader needs them.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{feature} needs the optional package {package!r}, which is not installed: {DATA_EXTRA_HINT}"
        ) from exc


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike) -> Iterator[tuple[BinaryIO, Path]]:
    """Write `target` atomically: yields (open binary file, its temporary path) in the target's folder.

    When the block ends without error the file is flushed, synced, given the
    usual permissions (0o666 minus the umask) and renamed to `target` with
    ``os.replace``; on error it is deleted. Readers never see a partial file,
    and the caller can check the temporary file (a checksum) before the rename.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out, tmp
            out.flush()
            os.fsync(out.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _file_kind(mode: int) -> str:
    """What a non-regular file is, for messages."""
    kinds = (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def check_regular_file(path: Path, info: os.stat_result, max_bytes: int, what: str = "file") -> None:
    """Raise ValueError naming `path` unless `info` (its stat, links followed) is a regular file of <= `max_bytes`."""
    if not stat.S_ISREG(info.st_mode):
        link = f" (a link to {os.path.realpath(path)})" if path.is_symlink() else ""
        raise ValueError(f"{path}: is {_file_kind(info.st_mode)}{link}; only regular files are read")
    if info.st_size > max_bytes:
        raise ValueError(f"{path}: is {info.st_size} bytes, more than the {max_bytes} allowed for one {what}")


def read_regular_file(path: str | os.PathLike, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of the regular file at `path` (links followed), refusing anything else without blocking.

    Opening with O_NONBLOCK never waits on a FIFO; ``fstat`` on the open file
    decides whether it is a regular file of at most `max_bytes`, so a link to
    ``/dev/zero`` or a file swapped in after a directory scan cannot make the
    reader hang or eat memory. Errors are ValueError (or OSError from the
    system) naming `path`; `what` names the file's role ("image").
    """
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        check_regular_file(path, info, max_bytes, what)
        raw = handle.read(info.st_size + 1)  # read(n) allocates n bytes: ask for what fstat promised, plus one
    if len(raw) > info.st_size:
        raise ValueError(f"{path}: grew while being read; only files that hold still are read")
    return raw


def file_md5(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """The hex MD5 digest of the file at `path`, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Dataset:
    """Images and labels held in host memory.

    Args:
        images: floating array of shape (N, C, H, W); stored as float32. Loaders
            scale pixels to [0, 1]; integer arrays are refused so that unscaled
            uint8 pixels are not taken for floats by mistake.
        labels: integer array of shape (N,), stored as int64, values in [0, num_classes).
        num_classes: number of classes; defaults to ``max(labels) + 1``.
        name: a short name for logs ("digits", "cifar10").
        class_names: optional names of the classes, indexed by label.
    """

    def __init__(
        self,
        images: Any,
        labels: Any,
        num_classes: int | None = None,
        name: str = "dataset",
        class_names: Sequence[str] | None = None,
    ) -> None:
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim != 4:
            raise ValueError(f"images: expected an array of shape (N, C, H, W), got shape {images.shape}")
        if images.dtype.kind != "f":
            raise TypeError(
                f"images: expected a floating array (scale integer pixels to [0, 1] first), got dtype {images.dtype}"
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels: expected shape ({images.shape[0]},) to match the images, got {labels.shape}")
        if labels.size and labels.dtype.kind not in "iu":
            raise TypeError(f"labels: expected an integer array, got dtype {labels.dtype}")
        labels = labels.astype(np.int64, copy=False)
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if labels.size else 0
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"labels: expected values in [0, {num_classes}) (num_classes={num_classes}), "
                f"got values from {labels.min()} to {labels.max()}"
            )
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names: expected {num_classes} names (num_classes), got {len(class_names)}")
        self.images: np.ndarray = np.ascontiguousarray(images, dtype=np.float32)
        self.labels: np.ndarray = labels
        self.num_classes = int(num_classes)
        self.name = name
        self.class_names: tuple[str, ...] | None = tuple(class_names) if class_names is not None else None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return f"Dataset(name={self.name!r}, n={len(self)}, image_shape={self.image_shape}, num_classes={self.num_classes})"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def class_counts(self) -> np.ndarray:
        """Number of examples of each class, shape (num_classes,)."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def take(self, indices: Any, name: str | None = None) -> Dataset:
        """A new dataset holding the examples at `indices` (a copy), in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        return Dataset(
            self.images[indices],
            self.labels[indices],
            num_classes=self.num_classes,
            name=name or self.name,
            class_names=self.class_names,
        )

    def subset(self, n: int, seed: int = 0, stratified: bool = True) -> Dataset:
        """`n` examples chosen at random with a fixed `seed`, kept in their original order (for ``--train-subset``).

        With ``stratified=True`` (the default) each class keeps its share of the
        data: class c gets ``n * count_c / N`` examples rounded by the largest-
        remainder rule, so small subsets stay balanced. With ``stratified=False``
        the `n` examples are a uniform random sample. ``n == len(self)`` returns
        a copy of the whole set.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= len(self):
            raise ValueError(f"subset: n must be an integer in [1, {len(self)}] (the dataset size), got {n!r}")
        rng = np.random.default_rng(seed)
        if stratified:
            indices = stratified_indices(self.labels, int(n), rng, self.num_classes)
        else:
            indices = np.sort(rng.choice(len(self), size=int(n), replace=False))
        return self.take(indices, name=f"{self.name}-subset{n}")


def stratified_indices(labels: np.ndarray, n: int, rng: np.random.Generator, num_classes: int | None = None) -> np.ndarray:
    """Sorted indices of `n` examples drawn so that each class keeps its share of `labels`.

    Quotas are ``n * count_c / N`` rounded down, and the examples left over go
    to the classes with the largest remainders (ties to the lower label), so
    the result is deterministic for a given generator state.
    """
    labels = np.asarray(labels, dtype=np.int64)
    total = labels.shape[0]
    if not 0 <= n <= total:
        raise ValueError(f"n: expected a number of examples in [0, {total}], got {n}")
    counts = np.bincount(labels, minlength=num_classes or 0)
    exact = counts * (n / total) if total else counts.astype(float)
    quotas = np.floor(exact).astype(np.int64)
    leftover = n - int(quotas.sum())
    if leftover > 0:
        order = np.lexsort((np.arange(counts.size), -(exact - quotas)))
        quotas[order[:leftover]] += 1
    chosen = []
    for label in range(counts.size):
        if quotas[label]:
            members = np.flatnonzero(labels == label)
            chosen.append(rng.choice(members, size=int(quotas[label]), replace=False))
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """scikit-learn's bundled handwritten digits as (train, test); offline, no download.

    1,797 grey 8x8 images of the digits 0-9, returned as float32 arrays of
    shape (N, 1, 8, 8) with pixel values 0..16 divided by 16, so in [0, 1].
    The split is stratified and deterministic: ``ceil(test_fraction * N)``
    test examples (360 of 1,797 by default; 1,437 remain for training) chosen
    per class with ``numpy.random.default_rng(seed)``; both sets keep the
    original order of the examples.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    sklearn_datasets = require_optional("sklearn.datasets", "scikit-learn", "load_digits")
    bunch = sklearn_datasets.load_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0))[:, None, :, :]
    labels = np.asarray(bunch.target, dtype=np.int64)
    n_test = math.ceil(test_fraction * labels.shape[0])
    test_idx = stratified_indices(labels, n_test, np.random.default_rng(seed), 10)
    train_mask = np.ones(labels.shape[0], dtype=bool)
    train_mask[test_idx] = False
    names = tuple(str(d) for d in range(10))
    train = Dataset(images[train_mask], labels[train_mask], num_classes=10, name="digits", class_names=names)
    test = Dataset(images[test_idx], labels[test_idx], num_classes=10, name="digits-test", class_names=names)
    return train, test
