"""A stand-in for CuPy over NumPy, for tests only: it proves code paths, not GPU numerics or speed.

What it is for: running minigrad's ``"cupy"`` branches (``backend.import_library``,
``library_of``, ``namespace`` through ``array_api_compat.cupy``, device handling,
``Generator``'s device generator, ``cupyx.scatter_add``, strided views) on a machine
without a GPU, so that the mistakes that only show on a GPU fail on the CPU:

* **An implicit copy to the host.** Like a CuPy array, a :class:`ndarray` here refuses
  to become a NumPy array behind the caller's back: ``numpy.asarray(x)`` raises
  TypeError (``__array__`` refuses, and neither the buffer protocol, the array
  interface nor DLPack is offered); a host NumPy array met in an operator raises
  TypeError. ``x.get()`` is the one explicit copy, and is counted (:func:`copies`).
  It is stricter than CuPy in three ways, each a synchronization on a real GPU
  that minigrad keeps out of its step path: ``float(x)``, ``int(x)``, ``bool(x)``,
  ``x.item()`` and ``x.tolist()`` raise instead of reading the value; a NumPy
  function called on a device array raises instead of dispatching to CuPy; and
  ``repr`` shows the shape and dtype, not the values.
* **A CuPy call that does not exist.** Only the names listed here exist: NumPy's
  public functions and types (CuPy mirrors NumPy's API), ``cuda.Device``,
  ``cuda.runtime.getDeviceCount``, ``random.default_rng``, ``lib.stride_tricks``,
  ``linalg``, ``fft`` and ``cupyx.scatter_add``. A name that NumPy has and CuPy
  lacks passes here; ``tests/test_cupy_api.py`` checks names against a real CuPy.

What it is not: a GPU. The numbers are NumPy's, computed on the CPU, at NumPy's
speed; one device (id 0) exists. Install it with :func:`installed`, which puts
it in ``sys.modules`` as ``cupy`` and ``cupyx`` (hiding a real CuPy) and takes
it out again.
"""

from __future__ import annotations

import contextlib
import operator
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

_counts = {"get": 0}
_HOST_INPUTS = frozenset({"asarray", "array", "ascontiguousarray", "asanyarray"})  # the host-to-device copies
_REFUSED_METHODS = frozenset({"item", "tolist", "tobytes", "tofile", "dump", "dumps", "view"})


def copies() -> int:
    """How many explicit device-to-host copies (``.get()``) were made since :func:`reset`."""
    return _counts["get"]


def reset() -> None:
    """Start counting copies from zero."""
    _counts["get"] = 0


# ----------------------------------------------------------------------------
# Moving between the wrapper and NumPy
# ----------------------------------------------------------------------------


def _unwrap(value: Any, host_ok: bool, where: str) -> Any:
    """NumPy arrays inside `value` (wrappers opened, tuples and lists and dicts walked); host arrays refused."""
    if isinstance(value, ndarray):
        return value._data
    if isinstance(value, np.ndarray):
        if host_ok:
            return value
        raise TypeError(f"fake cupy: {where}: got a host numpy.ndarray; move it to the device with cupy.asarray first")
    if isinstance(value, (tuple, list)):
        return type(value)(_unwrap(v, host_ok, where) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v, host_ok, where) for k, v in value.items()}
    return value


def _wrap(value: Any) -> Any:
    """Device arrays for the NumPy arrays and NumPy scalars in `value` (CuPy returns 0-d arrays, not scalars)."""
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic):
        return ndarray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _device_function(name: str, function: Callable) -> Callable:
    """`function` of NumPy on device arrays: arguments opened, results wrapped, ``out=`` returned as given."""
    host_ok = name in _HOST_INPUTS

    def call(*args: Any, **kwargs: Any) -> Any:
        out = kwargs.get("out")
        result = function(*_unwrap(args, host_ok, name), **_unwrap(kwargs, host_ok, name))
        return out if isinstance(out, ndarray) else _wrap(result)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"fake cupy: numpy.{name} on device arrays"
    return call


def _operand(value: Any, where: str) -> Any:
    if isinstance(value, ndarray):
        return value._data
    if isinstance(value, np.ndarray):
        raise TypeError(f"fake cupy: {where}: unsupported operand, a host numpy.ndarray (CuPy refuses it too)")
    if isinstance(value, (bool, int, float, complex, np.generic)):
        return value
    return NotImplemented


# ----------------------------------------------------------------------------
# The device and the array
# ----------------------------------------------------------------------------


class Device:
    """The one device, id 0; a context manager like ``cupy.cuda.Device``."""

    def __init__(self, device: Any = None) -> None:
        index = 0 if device is None else getattr(device, "id", device)
        if not isinstance(index, int) or index != 0:
            raise ValueError(f"fake cupy: Device: only device 0 exists, got {device!r}")
        self.id = index

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("fake-cuda", self.id))

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id} (fake)>"


class ndarray:  # the name CuPy uses, which array_api_compat looks up
    """A device array: a NumPy array inside that only ``.get()`` hands out."""

    __slots__ = ("_data",)
    __array_ufunc__ = None  # NumPy operators defer to this class (and then meet the refusal below)

    def __init__(self, data: np.ndarray) -> None:
        self._data = data

    # -- the refusals ----------------------------------------------------------
    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError(
            "fake cupy: implicit conversion to a NumPy array is not allowed; use .get() to copy to the host explicitly"
        )

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        raise TypeError(f"fake cupy: numpy.{func.__name__} called on a device array; use the array's namespace")

    def _refuse_read(self, what: str) -> Any:
        raise TypeError(f"fake cupy: {what} of a device array reads it on the host (a synchronization); use .get()")

    def __float__(self) -> float:
        return self._refuse_read("float()")

    def __int__(self) -> int:
        return self._refuse_read("int()")

    def __index__(self) -> int:
        return self._refuse_read("operator.index()")

    def __complex__(self) -> complex:
        return self._refuse_read("complex()")

    def __bool__(self) -> bool:
        return self._refuse_read("bool()")

    # -- the explicit copy -----------------------------------------------------
    def get(self) -> np.ndarray:
        """A NumPy copy in host memory, counted."""
        _counts["get"] += 1
        return self._data.copy()

    # -- attributes ------------------------------------------------------------
    @property
    def device(self) -> Device:
        return Device(0)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def size(self) -> int:
        return self._data.size

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def strides(self) -> tuple[int, ...]:
        return self._data.strides

    @property
    def itemsize(self) -> int:
        return self._data.itemsize

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    @property
    def T(self) -> ndarray:
        return ndarray(self._data.T)

    @property
    def mT(self) -> ndarray:
        return ndarray(np.swapaxes(self._data, -1, -2))

    def __getattr__(self, name: str) -> Any:
        """NumPy's array methods (astype, reshape, sum, ...) on the device; dunders and host reads refused."""
        if name.startswith("__") or name in _REFUSED_METHODS:
            raise AttributeError(f"fake cupy: ndarray has no attribute {name!r} (it would read the array on the host)")
        method = getattr(self._data, name)
        if not callable(method):
            return _wrap(method)
        return _device_function(f"ndarray.{name}", method)

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[ndarray]:
        return (ndarray(row) for row in self._data)

    def __repr__(self) -> str:
        return f"fake_cupy.ndarray(shape={self.shape}, dtype={self.dtype})"

    def __getitem__(self, key: Any) -> Any:
        return _wrap(self._data[_unwrap(key, False, "indexing")])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._data[_unwrap(key, False, "indexing")] = _unwrap(value, False, "assignment")


def _binary(op: Callable, name: str) -> tuple[Callable, Callable]:
    def forward(self: ndarray, other: Any) -> Any:
        value = _operand(other, name)
        return NotImplemented if value is NotImplemented else _wrap(op(self._data, value))

    def reflected(self: ndarray, other: Any) -> Any:
        value = _operand(other, name)
        return NotImplemented if value is NotImplemented else _wrap(op(value, self._data))

    return forward, reflected


def _in_place(op: Callable, name: str) -> Callable:
    def update(self: ndarray, other: Any) -> Any:
        value = _operand(other, name)
        if value is NotImplemented:
            return NotImplemented
        self._data = op(self._data, value)  # the NumPy in-place operator: same memory
        return self

    return update


_OPERATORS = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "pow": operator.pow,
    "matmul": operator.matmul,
    "and": operator.and_,
    "or": operator.or_,
    "xor": operator.xor,
    "lshift": operator.lshift,
    "rshift": operator.rshift,
}
_IN_PLACE = {
    "add": operator.iadd,
    "sub": operator.isub,
    "mul": operator.imul,
    "truediv": operator.itruediv,
    "floordiv": operator.ifloordiv,
    "mod": operator.imod,
    "pow": operator.ipow,
    "and": operator.iand,
    "or": operator.ior,
    "xor": operator.ixor,
}
for _name, _op in _OPERATORS.items():
    _forward, _reflected = _binary(_op, f"operator {_name}")
    setattr(ndarray, f"__{_name}__", _forward)
    setattr(ndarray, f"__r{_name}__", _reflected)
for _name, _op in _IN_PLACE.items():
    setattr(ndarray, f"__i{_name}__", _in_place(_op, f"operator i{_name}"))
for _name, _op in {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
                   "ge": operator.ge}.items():  # fmt: skip
    setattr(ndarray, f"__{_name}__", _binary(_op, f"operator {_name}")[0])
for _name, _op in {"neg": operator.neg, "pos": operator.pos, "abs": operator.abs, "invert": operator.invert}.items():
    setattr(ndarray, f"__{_name}__", lambda self, _op=_op: ndarray(_op(self._data)))
ndarray.__hash__ = None  # type: ignore[assignment]  # arrays with __eq__ are unhashable, as in CuPy


# ----------------------------------------------------------------------------
# The modules
# ----------------------------------------------------------------------------


def _mirror(module_name: str, source: types.ModuleType) -> types.ModuleType:
    """A module with `source`'s public names: functions on device arrays, types and constants as they are."""
    module = types.ModuleType(module_name, f"fake cupy: {source.__name__} on device arrays (tests only)")
    for name in dir(source):
        if name.startswith("_") or isinstance(getattr(source, name, None), types.ModuleType):
            continue
        value = getattr(source, name)
        if isinstance(value, type) or not callable(value):
            setattr(module, name, value)  # dtypes, finfo, constants
        else:
            setattr(module, name, _device_function(name, value))
    return module


class _Generator:
    """``cupy.random.Generator``: NumPy's PCG64 drawing into device arrays."""

    def __init__(self, seed: Any = None) -> None:
        self._rng = np.random.default_rng(seed)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _device_function(f"random.Generator.{name}", getattr(self._rng, name))


def _as_strided(x: ndarray, shape: Any = None, strides: Any = None) -> ndarray:
    return ndarray(np.lib.stride_tricks.as_strided(_unwrap(x, False, "as_strided"), shape=shape, strides=strides))


def _scatter_add(a: ndarray, slices: Any, value: Any) -> None:
    """``cupyx.scatter_add``: ``a[slices] += value`` with repeated indices summed, in place."""
    if not isinstance(a, ndarray):
        raise TypeError(f"fake cupyx: scatter_add: a must be a device array, got {type(a).__name__}")
    np.add.at(a._data, _unwrap(slices, False, "scatter_add"), _unwrap(value, False, "scatter_add"))


def _build() -> dict[str, types.ModuleType]:
    cupy = _mirror("cupy", np)
    cupy.ndarray = ndarray
    cupy.__version__ = "14.0.0+fake"
    cupy.__file__ = __file__

    runtime = types.ModuleType("cupy.cuda.runtime")
    runtime.getDeviceCount = lambda: 1
    device = types.ModuleType("cupy.cuda.device")
    device.Device = Device
    cuda = types.ModuleType("cupy.cuda")
    cuda.Device, cuda.runtime, cuda.device = Device, runtime, device
    random = types.ModuleType("cupy.random")
    random.default_rng, random.Generator = _Generator, _Generator
    stride_tricks = types.ModuleType("cupy.lib.stride_tricks")
    stride_tricks.as_strided = _as_strided
    lib = types.ModuleType("cupy.lib")
    lib.stride_tricks = stride_tricks
    linalg, fft = _mirror("cupy.linalg", np.linalg), _mirror("cupy.fft", np.fft)
    for name, module in (("cuda", cuda), ("random", random), ("lib", lib), ("linalg", linalg), ("fft", fft)):
        setattr(cupy, name, module)
    for package in (cupy, cuda, lib):
        package.__path__ = []  # packages, so that ``from cupy.cuda.device import Device`` finds the submodule
    cupyx = types.ModuleType("cupyx", "fake cupyx (tests only)")
    cupyx.scatter_add = _scatter_add
    return {
        "cupy": cupy,
        "cupy.cuda": cuda,
        "cupy.cuda.runtime": runtime,
        "cupy.cuda.device": device,
        "cupy.random": random,
        "cupy.lib": lib,
        "cupy.lib.stride_tricks": stride_tricks,
        "cupy.linalg": linalg,
        "cupy.fft": fft,
        "cupyx": cupyx,
    }


MODULES = _build()
_HIDDEN_PREFIXES = ("cupy", "cupyx", "cupy_backends", "array_api_compat.cupy")


def _is_hidden(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in _HIDDEN_PREFIXES)


@contextlib.contextmanager
def installed() -> Iterator[types.ModuleType]:
    """Make ``import cupy`` / ``import cupyx`` give the stand-in inside the block (a real CuPy is hidden, then restored).

    ``array_api_compat.cupy`` is imported afresh against the stand-in, and the
    one bound to a real CuPy (if any) comes back afterwards. Copies are counted
    from zero.
    """
    import array_api_compat

    saved = {name: module for name, module in sys.modules.items() if _is_hidden(name)}
    saved_attribute = array_api_compat.__dict__.get("cupy")
    try:
        for name in saved:
            del sys.modules[name]
        array_api_compat.__dict__.pop("cupy", None)
        sys.modules.update(MODULES)
        reset()
        yield MODULES["cupy"]
    finally:
        for name in [n for n in sys.modules if _is_hidden(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
        array_api_compat.__dict__.pop("cupy", None)
        if saved_attribute is not None:
            array_api_compat.cupy = saved_attribute
