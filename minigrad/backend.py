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

What the standard lacks lives here as named functions with one implementation
per library and a portable one that runs everywhere: :func:`scatter_add`,
random numbers (:class:`Generator`), host transfers. Tests check that every
fast path equals its portable twin.

NumPy is also minigrad's *host* library: data decoding, index shuffles,
checkpoints and finite differences run on the CPU whatever the backend. Other
modules reach it as ``backend.host`` so that this file stays the one place
that imports an array library.

Devices are named by strings: ``"cpu"`` (NumPy), ``"cuda:N"`` (CuPy) and
``"array_api_strict"`` (the strict test library, also on the CPU).
"""

from __future__ import annotations

import math
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


def _import_library(name: str):
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
    _import_library(name)
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
        _import_library("cupy")
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
        _import_library("cupy")
        import array_api_compat.cupy as xp

        return xp
    return _import_library(name)


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
    lib = _import_library(library)
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


def has_strided_views(array: Array) -> bool:
    """True when `array`'s library can view memory with arbitrary strides (NumPy, CuPy): see :func:`as_strided`."""
    return library_of(array) in ("numpy", "cupy")


def as_strided(array: Array, shape: Sequence[int], strides: Sequence[int]) -> Array:
    """A view of `array`'s memory with `shape` and byte `strides` (NumPy, CuPy; the standard has no views).

    A fast path: callers check :func:`has_strided_views` and keep a portable
    version for the other libraries.
    """
    library = library_of(array)
    if library == "numpy":
        return np.lib.stride_tricks.as_strided(array, shape=tuple(shape), strides=tuple(strides))
    if library == "cupy":
        return _import_library("cupy").lib.stride_tricks.as_strided(array, shape=tuple(shape), strides=tuple(strides))
    raise TypeError(f"as_strided: {library} arrays have no strided views; use the portable version")


def scalar_like(value: float, array: Array) -> Array:
    """A 0-d array holding `value`, of `array`'s dtype and on its device."""
    xp = namespace(array)
    return xp.asarray(value, dtype=array.dtype, device=array_api_compat.device(array))


def host_view(array: Array) -> np.ndarray | None:
    """`array` as a NumPy array without a copy when it already lives in host memory, else None (CuPy).

    For checks that are free on the host but would cost a device-to-host copy
    (a synchronization) elsewhere: callers check the values when this is not
    None and use a device-side fallback otherwise.
    """
    library = library_of(array)
    if library == "numpy":
        return array
    if library == "cupy":
        return None
    return np.from_dlpack(array)  # another CPU library (array-api-strict): shared memory, no copy


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


# ----------------------------------------------------------------------------
# Named functions the standard lacks
# ----------------------------------------------------------------------------


def _has_array_index(key: tuple) -> bool:
    return any(is_array(k) and not isinstance(k, (bool, int)) for k in key)


def scatter_add(shape: Sequence[int], key: Any, values: Array) -> Array:
    """Zeros of `shape` (values' dtype and device) with ``out[key] += values``, repeated indices summed.

    This is the backward of indexing. Basic keys (ints, slices) select each
    element at most once and use plain assignment; keys with integer arrays can
    repeat an element and need a true scatter-add: ``np.add.at`` on NumPy,
    ``cupyx.scatter_add`` on CuPy, :func:`scatter_add_portable` elsewhere.
    """
    xp = namespace(values)
    key_tuple = key if isinstance(key, tuple) else (key,)
    out = xp.zeros(tuple(shape), dtype=values.dtype, device=array_api_compat.device(values))
    if not _has_array_index(key_tuple):
        out[key] = values
        return out
    library = library_of(values)
    if library == "numpy":
        np.add.at(out, key, values)
        return out
    if library == "cupy":
        import cupyx

        cupyx.scatter_add(out, key, values)
        return out
    return scatter_add_portable(shape, key, values)


def scatter_add_portable(shape: Sequence[int], key: Any, values: Array) -> Array:
    """:func:`scatter_add` in the array API standard alone, for any library.

    Index a grid of flat positions with `key` to learn which element each
    value lands on, then sum through a one-hot matrix product. Memory grows
    as (number of values) x (number of elements): fine for tests, slow for
    large arrays, which is why the libraries' own scatter-adds are preferred.
    """
    xp = namespace(values)
    device = array_api_compat.device(values)
    size = math.prod(shape)
    positions = xp.reshape(xp.arange(size, device=device), tuple(shape))[key]
    flat_positions = xp.reshape(positions, (-1,))
    flat_values = xp.reshape(xp.broadcast_to(values, positions.shape), (1, -1))
    one_hot = xp.astype(flat_positions[:, None] == xp.arange(size, device=device)[None, :], values.dtype)
    return xp.reshape(flat_values @ one_hot, tuple(shape))


def scatter_add_rows(num_rows: int, indices: Array, values: Array) -> Array:
    """Zeros of shape ``(num_rows, *values.shape[1:])`` with ``out[indices[k]] += values[k]`` for every k.

    The backward of ``take`` along axis 0. On NumPy and CuPy the general
    :func:`scatter_add`; elsewhere a one-hot matrix of shape (num_rows, k)
    times the values flattened to (k, rest), which stays within the standard.
    """
    if library_of(values) in ("numpy", "cupy"):
        return scatter_add((num_rows,) + tuple(values.shape[1:]), indices, values)
    return scatter_add_rows_portable(num_rows, indices, values)


def scatter_add_rows_portable(num_rows: int, indices: Array, values: Array) -> Array:
    """:func:`scatter_add_rows` in the array API standard alone."""
    xp = namespace(values)
    rows = xp.arange(num_rows, device=array_api_compat.device(values))
    one_hot = xp.astype(rows[:, None] == indices[None, :], values.dtype)
    flat = xp.reshape(values, (values.shape[0], -1))
    return xp.reshape(one_hot @ flat, (num_rows,) + tuple(values.shape[1:]))


class Generator:
    """A seeded random-number generator that makes arrays on any backend.

    NumPy's PCG64 draws on the host for NumPy and array-api-strict, so both give
    the same numbers for the same seed; CuPy draws on the GPU with its own
    generator. The state can be saved and restored (checkpoints).
    """

    def __init__(self, seed: int | None = None) -> None:
        self._host = np.random.default_rng(seed)
        self._seed = seed
        self._cupy = None

    def _device_rng(self):
        if self._cupy is None:
            cupy = _import_library("cupy")
            self._cupy = cupy.random.default_rng(self._host.integers(2**63))
        return self._cupy

    def _draw(self, kind: str, shape: Sequence[int], dtype: Any, library: str | None) -> Array:
        """Samples of distribution `kind` ("standard_normal" or "random") drawn where `library` wants them."""
        library = library or _active_name
        name = dtype_name(dtype)
        if library == "cupy":
            return getattr(self._device_rng(), kind)(tuple(shape), dtype=name)
        return from_numpy(getattr(self._host, kind)(tuple(shape)).astype(name), library)

    def normal(self, shape: Sequence[int], dtype: Any = "float32", library: str | None = None) -> Array:
        """Standard normal samples of `shape` and `dtype` on `library` (default: active)."""
        return self._draw("standard_normal", shape, dtype, library)

    def uniform(self, shape: Sequence[int], dtype: Any = "float32", library: str | None = None) -> Array:
        """Samples uniform on [0, 1) of `shape` and `dtype` on `library` (default: active)."""
        return self._draw("random", shape, dtype, library)

    @property
    def host(self) -> np.random.Generator:
        """The host NumPy generator (for index shuffles and other host-side draws)."""
        return self._host

    def get_state(self) -> dict:
        """The generator's state as plain Python data (JSON-serialisable)."""
        if self._cupy is not None:
            raise NotImplementedError("saving the state of a CuPy-side generator is not supported yet")
        return self._host.bit_generator.state

    def set_state(self, state: dict) -> None:
        """Restore a state returned by :meth:`get_state`."""
        self._host.bit_generator.state = state
        self._cupy = None


_default_generator = Generator(0)


def default_generator() -> Generator:
    """The generator used where no generator is passed (seed it with :func:`manual_seed`)."""
    return _default_generator


def manual_seed(seed: int) -> Generator:
    """Reseed the default generator and return it."""
    global _default_generator
    _default_generator = Generator(seed)
    return _default_generator
