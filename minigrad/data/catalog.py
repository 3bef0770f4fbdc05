"""``load_dataset(name, path=...)``: one entry point for the data sets the experiments use."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from minigrad.data import cifar10
from minigrad.data.cifar10 import CIFAR10_FOLDER, find_cifar10, load_cifar10, read_cifar10_archive
from minigrad.data.datasets import Dataset, DatasetNotFoundError, file_md5, load_digits
from minigrad.data.imagefolder import load_image_folder

DATASETS = ("digits", "cifar10", "imagefolder")
_ALIASES = {
    "digits": "digits",
    "cifar10": "cifar10",
    "cifar": "cifar10",
    "imagefolder": "imagefolder",
    "folder": "imagefolder",
}


def _is_python_cifar_archive(path: Path) -> bool:
    """True when `path` is (or claims to be) the python-format archive rather than a tar of images.

    The checksum decides first; otherwise the name of the first file in the
    archive (nothing is read or unpickled): python-format archives hold only
    ``cifar-10-batches-py/...``. An archive that cannot even be opened counts
    as a python-format one, so that reading it reports the failed checksum.
    """
    if file_md5(path) == cifar10.CIFAR10_MD5:
        return True
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                if member.isfile():
                    return member.name.removeprefix("./").startswith(CIFAR10_FOLDER + "/")
    except (tarfile.TarError, EOFError, OSError):
        return True
    return False


def _expect_splits(result: Dataset | tuple[Dataset, Dataset], path: Path) -> tuple[Dataset, Dataset]:
    if isinstance(result, Dataset):
        raise ValueError(
            f"{path}: this image folder has no train/ and test/ sub-folders; load_dataset needs both "
            "(use load_image_folder for a single folder of classes)"
        )
    return result


def load_dataset(
    name: str,
    path: str | os.PathLike | None = None,
    *,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    train_subset: int | None = None,
    subset_seed: int = 0,
) -> tuple[Dataset, Dataset]:
    """(train, test) of the data set `name`.

    Args:
        name: "digits" (scikit-learn's, offline), "cifar10" or "imagefolder".
        path: for cifar10, the python-format archive, its extracted folder (or
            parent), or an image folder / tar of one with train/ and test/ (the
            kind is detected); None searches the download cache. For
            imagefolder, the folder (required). Unused for digits.
        download: cifar10 only: download the archive into the cache when it is not there.
        cache_dir: cifar10 only: the download cache (default ``$MINIGRAD_DATA`` or ``~/.cache/minigrad``).
        cache: image folders only: an ``.npz`` file for the decoded pixels.
        train_subset: keep a stratified random subset of this many training examples.
        subset_seed: seed of that subset.
    """
    key = _ALIASES.get(str(name).lower().replace("-", "").replace("_", ""))
    if key is None:
        raise ValueError(f"dataset: expected one of {list(DATASETS)}, got {name!r}")
    if key == "digits":
        if path is not None:
            raise ValueError(f"path: digits is bundled with scikit-learn and takes no path, got {str(path)!r}")
        train, test = load_digits()
    elif key == "imagefolder":
        if path is None:
            raise ValueError("path: imagefolder needs the folder (or tar archive) holding train/ and test/")
        train, test = _expect_splits(load_image_folder(path, cache=cache), Path(path))
    else:
        train, test = _load_cifar10_any(path, download, cache_dir, cache)
    if train_subset is not None:
        train = train.subset(train_subset, seed=subset_seed)
    return train, test


def _load_cifar10_any(
    path: str | os.PathLike | None,
    download: bool,
    cache_dir: str | os.PathLike | None,
    cache: str | os.PathLike | None,
) -> tuple[Dataset, Dataset]:
    """CIFAR-10 from the cache or from `path`: python-format archive or folder, or an image folder or tar of one."""
    if path is None:
        return load_cifar10(download=download, cache_dir=cache_dir)
    location = Path(path).expanduser()
    if not location.exists():
        return load_cifar10(location)  # raises DatasetNotFoundError saying how to get the data
    if location.is_file():
        if _is_python_cifar_archive(location):
            return read_cifar10_archive(location)
        return _as_cifar(_expect_splits(load_image_folder(location, cache=cache), location))
    if find_cifar10(location) is not None:
        return load_cifar10(location)
    try:
        result = load_image_folder(location, cache=cache)
    except ValueError as exc:
        raise DatasetNotFoundError(
            f"no CIFAR-10 found at {str(location)!r}: it is neither the python-format data "
            f"(cifar-10-python.tar.gz or its {CIFAR10_FOLDER} folder) nor an image folder ({exc}). "
            "Pass download=True without path to download it into the cache"
        ) from exc
    return _as_cifar(_expect_splits(result, location))


def _as_cifar(splits: tuple[Dataset, Dataset]) -> tuple[Dataset, Dataset]:
    train, test = splits
    train.name, test.name = "cifar10", "cifar10-test"
    return train, test
