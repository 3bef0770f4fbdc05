"""Reading ``.npz`` files that may be damaged or hostile, without pickles and without surprises.

``numpy.load`` trusts the file: an empty or truncated file raises EOFError or
``zipfile.BadZipFile``, a ``.npy`` comes back as an array instead of an
archive, and a member's header can claim a shape far larger than the bytes
behind it, so that the array is allocated before the short read is noticed.
:func:`read_npz` checks each of these first and raises one error type (the
caller's, a ValueError) naming the file and what is wrong with it:

* the file must start like a zip archive (a ``.npy`` or a pickle is named as such);
* every member must be a ``.npy`` array of a plain (non-object) dtype, so no
  pickle is ever loaded;
* a member's header must describe exactly the bytes stored for it, and a
  compressed member may not expand more than :data:`MAX_EXPANSION` times
  (a decompression bomb) once it is larger than :data:`SMALL_MEMBER` bytes;
* the zip's checksums are verified while reading (a flipped bit is caught).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

from minigrad import backend

np = backend.host

MAX_EXPANSION = 50  # deflate reaches ~1000:1 on constant data; arrays of real numbers stay far below this
SMALL_MEMBER = 16 << 20  # members up to this size are read whatever their ratio
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_NPY_MAGIC = b"\x93NUMPY"


def _kind_of(head: bytes) -> str:
    """What a file that is not a zip archive looks like, for the error message."""
    if not head:
        return "the file is empty"
    if head.startswith(_NPY_MAGIC):
        return "it is a single .npy array, not an .npz archive"
    if head[:1] == b"\x80":
        return "it is a Python pickle (refused: loading a pickle can run code)"
    return f"it is not an .npz (zip) archive (it starts with {head[:8]!r})"


class _Refused(Exception):
    """A member that was read but is not acceptable (the message says why)."""


def _read_header(member) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(member)
    raise _Refused(f".npy format version {version} is not supported")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, file_bytes: int) -> np.ndarray:
    """One member as an array, after checking that its header matches the bytes stored for it."""
    name = info.filename
    if not name.endswith(".npy"):
        raise _Refused(f"member {name!r} is not a .npy array")
    if info.compress_size > file_bytes:
        raise _Refused(f"member {name!r} claims {info.compress_size} bytes but the whole file has {file_bytes}")
    if info.file_size > SMALL_MEMBER and info.file_size > MAX_EXPANSION * max(info.compress_size, 1):
        raise _Refused(
            f"member {name!r} would expand from {info.compress_size} to {info.file_size} bytes "
            f"(more than {MAX_EXPANSION} times: a decompression bomb?)"
        )
    with archive.open(info) as member:
        shape, fortran_order, dtype = _read_header(member)
        if dtype.hasobject:
            raise _Refused(f"member {name!r} holds Python objects (refused: loading them needs a pickle)")
        count = 1
        for side in shape:
            count *= side
        body = info.file_size - member.tell()
        if count * dtype.itemsize != body:
            raise _Refused(
                f"member {name!r} claims shape {shape} of {dtype} ({count * dtype.itemsize} bytes) but stores {body} bytes"
            )
        array = np.empty(count, dtype=dtype)
        buffer = memoryview(array.view(np.uint8)) if count else memoryview(bytearray())
        filled = 0
        while filled < body:
            got = member.readinto(buffer[filled:])
            if not got:
                raise EOFError(f"member {name!r} ends after {filled} of {body} bytes")
            filled += got
        member.read()  # reach the end, where zipfile checks the CRC: a flipped bit raises BadZipFile
    return array.reshape(shape[::-1]).transpose() if fortran_order else array.reshape(shape)


def read_npz(path: str | os.PathLike, error: type[ValueError] = ValueError, what: str = ".npz file") -> dict:
    """Every array in the ``.npz`` at `path`, by name (without ``.npy``); `error` for anything wrong.

    `what` names the file's role in messages ("checkpoint", "state dict").
    A missing path raises FileNotFoundError; a folder or an unreadable file, `error`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what}: no file at {path}")
    if not path.is_file():
        raise error(f"{what}: {path} is not a regular file")
    try:
        with open(path, "rb") as file:
            head = file.read(8)
            if not head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
                raise _Refused(_kind_of(head))
            file_bytes = os.fstat(file.fileno()).st_size
            file.seek(0)
            with zipfile.ZipFile(file) as archive:
                return {
                    info.filename.removesuffix(".npy"): _read_member(archive, info, file_bytes)
                    for info in archive.infolist()
                }
    except _Refused as exc:
        raise error(f"{what}: cannot read {path}: {exc}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise error(f"{what}: cannot read {path}: it is damaged or truncated ({type(exc).__name__}: {exc})") from exc
