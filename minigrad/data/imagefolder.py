"""Image-folder data sets: one sub-folder of images per class, decoded with Pillow.

Accepted layouts, under a folder or inside a tar archive (``.tar``,
``.tar.gz``; read in one pass, nothing extracted to disk)::

    root/<class>/<image>                 -> one Dataset
    root/train/<class>/<image>
    root/test/<class>/<image>            -> (train, test)

Wrapping folders holding just one sub-folder are skipped, so the parent of
``root`` (or an archive whose members all start with ``cifar10-jpeg/``) works
too. Class names are the class folders that hold at least one image, sorted;
the label of a class is its index in that sorted list (with train/ and test/,
the classes of train/; a test class missing from train/ is an error). Images
within a class are taken in file-name order. Hidden files and folders and
files without an image extension are ignored.

Every image is converted to RGB and all must share one size. Pixels are
scaled to [0, 1] as float32 NCHW by the image's bit depth: 8-bit images by
255, 16-bit greyscale PNGs (and TIFFs) by 65535, so their full range is kept
(if any image is 16-bit, the 8-bit ones are widened exactly, by 257). Pillow
itself reduces 16-bit RGB PNGs to their top 8 bits, which keeps the scale.

Hostile input is refused with the file's (or member's) name, never read
without bound: only regular files are read (a link is followed first, so a
link to ``/dev/zero`` or a FIFO named ``.png`` is refused, never opened for
reading); a file or archive member larger than :data:`MAX_IMAGE_BYTES`, or an
image of more pixels than :data:`MAX_IMAGE_PIXELS` (Pillow's own
decompression-bomb limit), is refused before it is read or decoded. Archive
members that are links, devices, or have ``..`` or absolute paths are never
read (only regular members are, and nothing is written to disk). Decoding 60,000 small JPEGs takes several
seconds, so ``cache=`` names an ``.npz`` file where the decoded uint8 pixels
are kept (written to a temporary file, then renamed); it is reused while the
files' names, sizes and modification times (or, for an archive, its MD5)
are unchanged.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from minigrad import backend
from minigrad.data.datasets import (
    Dataset,
    DatasetNotFoundError,
    atomic_file,
    check_regular_file,
    file_md5,
    read_regular_file,
    require_optional,
)
from minigrad.npz import read_npz

np = backend.host
logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test")
_CACHE_VERSION = "2"  # 2: 16-bit images kept at 16 bits

MAX_IMAGE_BYTES = 64 << 20  # one encoded image file or archive member; real photos stay far below
MAX_IMAGE_PIXELS = 89_478_485  # width x height of one image: Pillow's default decompression-bomb limit

# An entry: (path parts relative to the root, a stamp of the file's version, a Path or the image's bytes).
_Entry = tuple[tuple[str, ...], str, Any]


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _check_image_file(file: Path, info: os.stat_result) -> None:
    check_regular_file(file, info, MAX_IMAGE_BYTES, "image (MAX_IMAGE_BYTES)")


def _scan_folder(root: Path) -> list[_Entry]:
    """Image files under `root`; links are followed to what they name, which must be a regular file."""
    entries: list[_Entry] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        relative = Path(folder).relative_to(root).parts
        for name in files:
            if _is_image(name):
                file = Path(folder) / name
                try:
                    info = file.stat()  # follows links
                except OSError as exc:
                    raise ValueError(f"{file}: cannot read it ({exc.strerror or exc}; a broken link?)") from exc
                _check_image_file(file, info)
                entries.append(((*relative, name), f"{info.st_size}:{info.st_mtime_ns}", file))
    return entries


def _scan_archive(path: Path) -> list[_Entry]:
    """Image members of a tar archive, their bytes read in one sequential pass (fast on .tar.gz).

    Only regular members are read (links and devices are skipped, and nothing
    is written to disk); a member larger than :data:`MAX_IMAGE_BYTES` is refused
    by name before its bytes are read.
    """
    entries: list[_Entry] = []
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                parts = tuple(p for p in member.name.split("/") if p not in ("", "."))
                if member.name.startswith("/") or ".." in parts:
                    logger.warning("%s: skipping member %r (an absolute path or one with '..')", path, member.name)
                    continue
                if member.isfile() and parts and _is_image(parts[-1]) and not any(p.startswith(".") for p in parts):
                    if member.size > MAX_IMAGE_BYTES:
                        raise ValueError(
                            f"{path}: member {member.name!r} is {member.size} bytes, more than the {MAX_IMAGE_BYTES} "
                            "allowed for one image (MAX_IMAGE_BYTES); the archive was not read further"
                        )
                    data = archive.extractfile(member).read(member.size)  # type: ignore[union-attr]
                    entries.append((parts, str(member.size), data))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable tar archive of images ({exc})") from exc
    return entries


def _strip_archive_suffix(name: str) -> str:
    for suffix in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _detect_layout(entries: list[_Entry], root: str) -> tuple[int, bool]:
    """(number of wrapping folders to skip, whether there are train/ and test/ splits)."""
    if not entries:
        raise ValueError(f"{root}: no image files found (extensions {', '.join(IMAGE_EXTENSIONS)})")
    skip = 0
    while True:
        depths = {len(parts) - skip for parts, _, _ in entries}
        firsts = sorted({parts[skip] for parts, _, _ in entries})
        if depths == {2}:
            return skip, False
        if depths == {3} and set(firsts) == set(SPLITS):
            return skip, True
        if len(firsts) == 1 and min(depths) >= 3:
            skip += 1
            continue
        example = "/".join(max(entries, key=lambda e: len(e[0]))[0])
        raise ValueError(
            f"{root}: expected an image-folder layout, <class>/<image> or train/<class>/<image> and "
            f"test/<class>/<image>; found images at depths {sorted(depths)} under {firsts[:5]} (e.g. {example!r})"
        )


def _formats_for(name: str) -> list[str] | None:
    """The Pillow format to try for a file name (skips format sniffing for the common cases); None: any."""
    suffix = name.rsplit(".", 1)[-1].lower()
    return {"jpg": ["JPEG"], "jpeg": ["JPEG"], "png": ["PNG"]}.get(suffix)


def _sixteen_bit(image: Any) -> np.ndarray | None:
    """A 16-bit greyscale image as uint16 RGB (H, W, 3), or None for images Pillow gives in 8 bits per channel."""
    if image.mode.startswith("I;16"):
        grey = np.asarray(image).astype(np.uint16)
    elif image.mode == "I":  # 16-bit PNGs in some Pillow versions; 32-bit integer TIFFs
        grey = np.asarray(image)
        if grey.size and (grey.min() < 0 or grey.max() > 65535):
            raise ValueError(f"32-bit integer pixels (from {grey.min()} to {grey.max()}) are not supported")
        grey = grey.astype(np.uint16)
    else:
        return None
    return np.repeat(grey[:, :, None], 3, axis=2)


def _decode_one(image_module: Any, raw: bytes, formats: list[str] | None) -> np.ndarray:
    """One encoded image as an RGB array (H, W, 3): uint8, or uint16 for a 16-bit image."""
    with image_module.open(io.BytesIO(raw), formats=formats) as image:
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise ValueError(
                f"the image is {image.width}x{image.height}, more than the {MAX_IMAGE_PIXELS} pixels allowed "
                "(MAX_IMAGE_PIXELS: a decompression bomb?)"
            )
        wide = _sixteen_bit(image)
        if wide is not None:
            return wide
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return np.frombuffer(rgb.tobytes(), dtype=np.uint8).reshape(rgb.height, rgb.width, 3)


def _read_source(source: Any) -> bytes:
    if isinstance(source, bytes):
        if len(source) > MAX_IMAGE_BYTES:
            raise ValueError(f"is more than the {MAX_IMAGE_BYTES} bytes allowed for one image (MAX_IMAGE_BYTES)")
        return source
    return read_regular_file(source, MAX_IMAGE_BYTES, "image (MAX_IMAGE_BYTES)")


def _widen(pixels: np.ndarray) -> np.ndarray:
    """8-bit pixels as 16-bit ones of the same value in [0, 1]: v * 257 maps 255 to 65535 exactly."""
    return pixels.astype(np.uint16) * np.uint16(257) if pixels.dtype == np.uint8 else pixels


def _decode(entries: Sequence[_Entry], root: str) -> np.ndarray:
    """Decode `entries` to a uint8 (or, if any image is 16-bit, uint16) array (N, 3, H, W) of one size."""
    image_module = require_optional("PIL.Image", "Pillow", "load_image_folder")
    bomb = getattr(image_module, "DecompressionBombError", image_module.UnidentifiedImageError)
    out: np.ndarray | None = None
    first = ""
    for i, (parts, _, source) in enumerate(entries):
        where = f"{root}/{'/'.join(parts)}"
        try:
            # Reading the file in one call, then decoding from memory, is faster than letting Pillow read it piecemeal.
            raw = _read_source(source)
        except OSError as exc:
            raise ValueError(f"{where}: cannot read the file ({exc})") from exc
        except ValueError as exc:
            if isinstance(source, Path):  # read_regular_file's messages name the file already
                raise
            raise ValueError(f"{where}: {exc}") from None
        try:
            try:
                pixels = _decode_one(image_module, raw, _formats_for(parts[-1]))
            except image_module.UnidentifiedImageError:
                pixels = _decode_one(image_module, raw, None)  # the extension lied: let Pillow sniff the format
        except (OSError, image_module.UnidentifiedImageError, bomb) as exc:
            raise ValueError(f"{where}: cannot decode the image ({exc})") from exc
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
        if out is None:
            try:
                out = np.empty((len(entries), *pixels.shape), dtype=pixels.dtype)
            except MemoryError:
                raise ValueError(
                    f"{root}: {len(entries)} images of {pixels.shape[1]}x{pixels.shape[0]} do not fit in memory"
                ) from None
            first = where
        elif pixels.shape != out.shape[1:]:
            h, w = out.shape[1:3]
            raise ValueError(
                f"{where}: image size is {pixels.shape[1]}x{pixels.shape[0]} (width x height), but {first} "
                f"is {w}x{h}; all images must share one size (resize them first)"
            )
        if pixels.dtype != out.dtype:
            out = _widen(out)
            pixels = _widen(pixels)
        out[i] = pixels
    assert out is not None
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _signature(entries: list[_Entry], archive_md5: str | None) -> str:
    digest = hashlib.sha256(_CACHE_VERSION.encode())
    if archive_md5 is not None:
        digest.update(f"archive:{archive_md5}".encode())
    else:
        for parts, stamp, _ in entries:
            digest.update(f"{'/'.join(parts)}\t{stamp}\n".encode())
    return digest.hexdigest()


def _read_cache(cache: Path, signature: str) -> dict[str, np.ndarray] | None:
    if not cache.is_file():
        return None
    try:
        stored = read_npz(cache, what="image cache")  # checked reads: a damaged or forged cache cannot allocate wildly
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable cache %s (%s)", cache, exc)
        return None
    if "signature" not in stored or str(stored["signature"]) != signature:
        logger.info("%s was made from other files; decoding again", cache)
        return None
    return stored


def _write_cache(cache: Path, arrays: dict[str, np.ndarray]) -> None:
    """Save `arrays` to `cache` (.npz) through a temporary file and a rename, so readers never see half a file."""
    with atomic_file(cache) as (out, _):
        np.savez(out, **arrays)


def _decode_all(entries: list[_Entry], skip: int, has_splits: bool, root: str) -> dict[str, np.ndarray]:
    """Decoded uint8 images and labels per split ("all" or "train"/"test") and the class names."""
    groups: dict[str, list[tuple[str, tuple[str, ...], _Entry]]] = {}
    for entry in entries:
        parts = entry[0][skip:]
        split = parts[0] if has_splits else "all"
        groups.setdefault(split, []).append((parts[-2], parts, entry))
    class_source = "train" if has_splits else "all"
    class_names = sorted({cls for cls, _, _ in groups[class_source]})
    label_of = {name: i for i, name in enumerate(class_names)}
    arrays: dict[str, np.ndarray] = {"class_names": np.asarray(class_names, dtype=str)}
    for split, items in groups.items():
        unknown = sorted({cls for cls, _, _ in items} - set(label_of))
        if unknown:
            raise ValueError(f"{root}: test/ has class folders {unknown} that train/ lacks; classes are {class_names}")
        items.sort(key=lambda item: (label_of[item[0]], item[1]))
        arrays[f"{split}_images"] = _decode([item[2] for item in items], root)
        arrays[f"{split}_labels"] = np.asarray([label_of[cls] for cls, _, _ in items], dtype=np.int64)
    return arrays


def load_image_folder(
    path: str | os.PathLike, cache: str | os.PathLike | None = None, name: str | None = None
) -> Dataset | tuple[Dataset, Dataset]:
    """A Dataset from an image folder (or a tar archive of one); (train, test) for a train/ + test/ layout.

    Args:
        path: the root folder or a ``.tar``/``.tar.gz`` archive (layouts in the module docstring).
        cache: optional ``.npz`` file for the decoded pixels, reused while the files are unchanged.
        name: the dataset's name; defaults to the folder (or archive) name.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetNotFoundError(
            f"image folder {str(root)!r} does not exist; expected a folder with one sub-folder of images per class "
            "(optionally inside train/ and test/), or a tar archive of such a folder"
        )
    cache_file = Path(cache).expanduser() if cache is not None else None
    arrays = None
    if root.is_dir():
        entries = _scan_folder(root)
        signature = _signature(entries, None)
    else:
        # An archive is identified by its checksum, so a cache hit skips reading it.
        entries = []
        signature = _signature([], file_md5(root)) if cache_file is not None else ""
    if cache_file is not None:
        arrays = _read_cache(cache_file, signature)
    if arrays is None:
        if not root.is_dir():
            entries = _scan_archive(root)
        skip, has_splits = _detect_layout(entries, str(root))
        entries.sort(key=lambda entry: entry[0])
        arrays = _decode_all(entries, skip, has_splits, str(root))
        if cache_file is not None:
            _write_cache(cache_file, {**arrays, "signature": np.asarray(signature)})
    base = name or (root.name if root.is_dir() else _strip_archive_suffix(root.name))
    class_names = [str(c) for c in arrays["class_names"]]

    def make(split: str, dataset_name: str) -> Dataset:
        stored = arrays[f"{split}_images"]
        images = stored.astype(np.float32)
        images *= np.float32(1.0 / (65535.0 if stored.dtype == np.uint16 else 255.0))
        return Dataset(images, arrays[f"{split}_labels"], len(class_names), dataset_name, class_names)

    if "train_images" in arrays:
        return make("train", base), make("test", f"{base}-test")
    return make("all", base)
