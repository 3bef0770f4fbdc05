"""What the array API standard lacks, where NumPy and CuPy have it: host views, strided views, scatter-add.

Each function here is a fast path: its caller asks whether the array's
library has it (``has_...``) and keeps a portable version for the others
(array-api-strict), so the result is the same on every backend. The device
library's own module comes through :func:`minigrad.backend.import_library`,
as in :mod:`minigrad.random`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from minigrad import backend

np = backend.host
Array = backend.Array


def host_view(array: Array) -> np.ndarray | None:
    """`array` as a NumPy array without a copy when it already lives in host memory, else None (CuPy).

    For checks that are free on the host but would cost a device-to-host copy
    (a synchronization) elsewhere: callers check the values when this is not
    None and use a device-side fallback otherwise.
    """
    library = backend.library_of(array)
    if library == "numpy":
        return array
    if library == "cupy":
        return None
    return np.from_dlpack(array)  # another CPU library (array-api-strict): shared memory, no copy


def has_strided_views(array: Array) -> bool:
    """True when `array`'s library can view memory with arbitrary strides (NumPy, CuPy): see :func:`as_strided`."""
    return backend.library_of(array) in ("numpy", "cupy")


def as_strided(array: Array, shape: Sequence[int], strides: Sequence[int]) -> Array:
    """A view of `array`'s memory with `shape` and byte `strides` (NumPy, CuPy; the standard has no views).

    A fast path: callers check :func:`has_strided_views` and keep a portable
    version for the other libraries.
    """
    library = backend.library_of(array)
    if library == "numpy":
        return np.lib.stride_tricks.as_strided(array, shape=tuple(shape), strides=tuple(strides))
    if library == "cupy":
        return backend.import_library("cupy").lib.stride_tricks.as_strided(array, shape=tuple(shape), strides=tuple(strides))
    raise TypeError(f"as_strided: {library} arrays have no strided views; use the portable version")


def has_add_at(array: Array) -> bool:
    """True when `array`'s library has its own scatter-add (NumPy, CuPy): see :func:`add_at`."""
    return backend.library_of(array) in ("numpy", "cupy")


def add_at(out: Array, key: Any, values: Array) -> None:
    """``out[key] += values`` in place, repeated indices summed: ``np.add.at`` or ``cupyx.scatter_add``.

    A fast path: callers check :func:`has_add_at` and keep a portable version
    for the other libraries (:mod:`minigrad.ops.scatter`).
    """
    library = backend.library_of(out)
    if library == "numpy":
        np.add.at(out, key, values)
    elif library == "cupy":
        backend.import_library("cupyx").scatter_add(out, key, values)
    else:
        raise TypeError(f"add_at: {library} arrays have no scatter-add; use the portable version")
