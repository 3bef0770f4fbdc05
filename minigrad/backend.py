"""The one module that imports an array library.

Every op in minigrad is written once against the Python array API standard: it
asks :func:`namespace` for the namespace of its input arrays (through
``array_api_compat.array_namespace``) and calls functions of that namespace in
function style (``xp.sum(x, axis=0)``, ``xp.permute_dims(x, axes)``). The same
code then runs on three libraries:

* ``numpy`` — the default, on the CPU;
* ``cupy`` — on a CUDA GPU, when the user asks (``mg.use_backend("cupy")`` or
  ``MINIGRAD_BACKEND=cupy``);
* ``array_api_strict`` — a CPU library that implements the standard and nothing
  more. The test suite runs on it so that a NumPy-only habit fails on the CPU
  before it can fail on a GPU.

Host transfers live here. The few library calls the standard lacks, each a
fast path beside a portable version in the module that uses it (strided
views, in-place scatter-add, host views), are in :mod:`minigrad.array_extras`;
random numbers are in :mod:`minigrad.random`.

NumPy is also minigrad's *host* library: data decoding, index shuffles,
checkpoints and finite differences run on the CPU whatever the backend. Other
modules reach it as ``backend.host`` so that this file stays the one place
that imports an array library.

Devices are named by strings: ``"cpu"`` (NumPy), ``"cuda:N"`` (CuPy) and
``"array_api_strict"`` (the strict test library, also on the CPU).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import array_api_compat
import numpy as np

host = np  # the host-side library (files, shuffles, checkpoints); see the module docstring
Array = Any  # an array of any supported library
BACKENDS = ("numpy", "cupy", "array_api_strict")
DTYPE_NAMES = ("float32", "float64", "int32", "int64", "bool", "uint8", "int8", "int16", "float16")

_ENV_VAR = "MINIGRAD_BACKEND"


class BackendUnavailableError(RuntimeError):
    """The requested array library (or the device it needs) is not available."""


class DeviceMismatchError(ValueError):
    """An op received tensors that live on different devices."""


# ----------------------------------------------------------------------------
# Choosing the active backend
# ----------------------------------------------------------------------------


def import_library(name: str):
    """Import the array library `name`, with an error that says how to get it."""
    if name == "numpy":
        return np
    if name == "array_api_strict":
        try:
            import array_api_strict
        except ImportError as exc:  # pragma: no cover - installed with the test extra
            raise BackendUnavailableError(
                "backend 'array_api_strict' needs the array-api-strict package: pip install 'minigrad[test]'"
            ) from exc
        return array_api_strict
    if name == "cupy":
        try:
            import cupy
        except ImportError as exc:
            raise BackendUnavailableError(
                "backend 'cupy' needs CuPy, which is not installed: "
                "pip install 'minigrad[gpu]' (CuPy for CUDA 12) on a machine with an NVIDIA GPU"
            ) from exc
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDA driver or runtime missing
            raise BackendUnavailableError(
                f"backend 'cupy': CuPy is installed but CUDA is not usable here ({exc}); "
                "it needs an NVIDIA GPU with a CUDA 12 driver"
            ) from exc
        if count == 0:
            raise BackendUnavailableError("backend 'cupy': CuPy is installed but no CUDA device was found")
        return cupy
    if name == "cupyx":  # CuPy's extras (scatter_add), usable once CuPy is
        import_library("cupy")
        import cupyx

        return cupyx
    raise ValueError(f"backend: expected one of {BACKENDS}, got {name!r}")


def _initial_backend() -> str:
    name = os.environ.get(_ENV_VAR, "numpy").strip() or "numpy"
    if name not in BACKENDS:
        raise ValueError(f"environment variable {_ENV_VAR}: expected one of {BACKENDS}, got {name!r}")
    return name


_active_name = _initial_backend()


def use_backend(name: str) -> None:
    """Make `name` ("numpy", "cupy" or "array_api_strict") the library new tensors are made with.

    Raises :class:`BackendUnavailableError` when the library or CUDA is missing,
    saying which and how to install it.
    """
    global _active_name
    import_library(name)
    _active_name = name


def active_backend() -> str:
    """The name of the library that new tensors are made with."""
    return _active_name


@contextmanager
def using_backend(name: str) -> Iterator[None]:
    """Use backend `name` inside a ``with`` block, then restore the previous one."""
    previous = _active_name
    use_backend(name)
    try:
        yield
    finally:
        use_backend(previous)


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import_library("cupy")
    except BackendUnavailableError:
        return False
    return True


# ----------------------------------------------------------------------------
# Namespaces, devices, dtypes
# ----------------------------------------------------------------------------


def library_of(array: Array) -> str:
    """Which supported library `array` belongs to."""
    if array_api_compat.is_numpy_array(array):
        return "numpy"
    if array_api_compat.is_cupy_array(array):
        return "cupy"
    if type(array).__module__.startswith("array_api_strict"):
        return "array_api_strict"
    raise TypeError(f"expected an array of one of {BACKENDS}, got {type(array).__name__}")


def is_array(obj: Any) -> bool:
    """True for an array of a supported library (NumPy 0-d scalars included)."""
    try:
        library_of(obj)
    except TypeError:
        return False
    return True


def namespace(*arrays: Array):
    """The array-API namespace of `arrays` (or of the active backend when none are given)."""
    if arrays:
        return array_api_compat.array_namespace(*arrays)
    return active_namespace()


def active_namespace():
    """The array-API namespace of the active backend."""
    return namespace_of_library(_active_name)


def namespace_of_library(name: str):
    """The array-API namespace of the library called `name`."""
    if name == "numpy":
        import array_api_compat.numpy as xp

        return xp
    if name == "cupy":
        import_library("cupy")
        import array_api_compat.cupy as xp

        return xp
    return import_library(name)


def device_of(array: Array) -> str:
    """The device name of `array`: "cpu", "cuda:N" or "array_api_strict"."""
    library = library_of(array)
    if library == "numpy":
        return "cpu"
    if library == "cupy":
        return f"cuda:{array.device.id}"
    return "array_api_strict"


def parse_device(device: str) -> tuple[str, int]:
    """Split a device name into (library, device index).

    Accepts "cpu"/"numpy", "cuda"/"cuda:N"/"cupy", and "array_api_strict".
    """
    if not isinstance(device, str):
        raise TypeError(f"device: expected a string such as 'cpu' or 'cuda:0', got {type(device).__name__}")
    if device in ("cpu", "numpy"):
        return "numpy", 0
    if device in ("cuda", "cupy"):
        return "cupy", 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return "cupy", int(device[5:])
    if device in ("array_api_strict", "strict"):
        return "array_api_strict", 0
    raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N' or 'array_api_strict', got {device!r}")


def resolve_dtype(dtype: Any, xp) -> Any:
    """Turn a dtype given as a name ("float64") or a library dtype into `xp`'s dtype object."""
    if isinstance(dtype, str):
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype: expected one of {DTYPE_NAMES}, got {dtype!r}")
        return getattr(xp, dtype)
    return getattr(xp, dtype_name(dtype))


def dtype_name(dtype: Any) -> str:
    """The standard name of a dtype object of any supported library (or of a name)."""
    if isinstance(dtype, str):
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype: expected one of {DTYPE_NAMES}, got {dtype!r}")
        return dtype
    if isinstance(dtype, type) and issubclass(dtype, np.generic):
        return np.dtype(dtype).name
    name = getattr(dtype, "name", None) or str(dtype)
    name = str(name).rsplit(".", 1)[-1]
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype: expected one of {DTYPE_NAMES}, got {dtype!r}")
    return name


def is_floating(array_or_dtype: Any) -> bool:
    """True when the dtype (or the array's dtype) is a real floating type."""
    dtype = getattr(array_or_dtype, "dtype", array_or_dtype)
    return dtype_name(dtype).startswith("float")


# ----------------------------------------------------------------------------
# Making and moving arrays
# ----------------------------------------------------------------------------


def from_numpy(array: np.ndarray, library: str | None = None, device_index: int = 0) -> Array:
    """Copy a NumPy array to `library` (default: the active backend)."""
    library = library or _active_name
    if library == "numpy":
        return np.asarray(array)
    lib = import_library(library)
    if library == "cupy":
        with lib.cuda.Device(device_index):
            return lib.asarray(array)
    return lib.asarray(np.asarray(array, order="C"))


def to_numpy(array: Array) -> np.ndarray:
    """Copy `array` of any supported library to host memory as a NumPy array."""
    library = library_of(array)
    if library == "numpy":
        return np.asarray(array)
    if library == "cupy":
        return array.get()
    return np.from_dlpack(array).copy()


def to_device(array: Array, device: str) -> Array:
    """`array` on `device` (a copy through host memory when the library changes)."""
    library, index = parse_device(device)
    if library_of(array) == library and (library != "cupy" or array.device.id == index):
        return array
    return from_numpy(to_numpy(array), library, index)


def asarray(data: Any, dtype: Any = None) -> Array:
    """An array from `data`.

    Arrays of CuPy or array-api-strict stay on their device; host data
    (NumPy arrays, Python scalars and lists) goes to the active backend.
    `dtype` may be a name or a dtype object; ``None`` keeps the data's dtype.
    """
    if is_array(data) and library_of(data) != "numpy":
        xp = namespace(data)
        if dtype is None:
            return data
        return xp.astype(data, resolve_dtype(dtype, xp))
    host = np.asarray(data)
    if dtype is not None:
        host = host.astype(dtype_name(dtype), copy=False)
    elif host.dtype == np.float16:
        host = host.astype(np.float32)
    if host.dtype.kind not in "fiub":
        raise TypeError(f"data: expected real numbers or booleans, got an array of dtype {host.dtype}")
    return from_numpy(host)


def astype(array: Array, dtype: Any) -> Array:
    """`array` cast to `dtype` (a name or dtype object); the array itself when it already has it."""
    xp = namespace(array)
    target = resolve_dtype(dtype, xp)
    if array.dtype == target:
        return array
    return xp.astype(array, target)


def device(array: Array) -> Any:
    """The library's own device object of `array` (for ``device=`` arguments of the namespace's functions)."""
    return array_api_compat.device(array)


def scalar_like(value: float, array: Array) -> Array:
    """A 0-d array holding `value`, of `array`'s dtype and on its device."""
    xp = namespace(array)
    return xp.asarray(value, dtype=array.dtype, device=array_api_compat.device(array))


def item(array: Array) -> float | int | bool:
    """The Python number held by a one-element array."""
    return to_numpy(array).reshape(()).item()


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    """The shape NumPy broadcasting gives `shapes`, or a ValueError naming them."""
    ndim = max((len(s) for s in shapes), default=0)
    result = []
    for axis in range(-ndim, 0):
        sizes = {s[axis] for s in shapes if len(s) >= -axis} - {1}
        if len(sizes) > 1:
            shown = " and ".join(str(tuple(s)) for s in shapes)
            raise ValueError(f"shapes {shown} cannot be broadcast together (axis {axis} has sizes {sorted(sizes)})")
        result.append(sizes.pop() if sizes else 1)
    return tuple(result)
