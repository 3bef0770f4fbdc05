"""Tensor methods that take data out of the graph or move it: host copies, Python numbers, devices.

``numpy``, ``tolist``, ``item`` and the ``float()``/``int()``/``bool()``
conversions copy to the host (a synchronization on a GPU); ``to`` moves a
tensor to another device or dtype as a new leaf. ``numel`` and ``dim`` are
PyTorch's names for ``size`` and ``ndim``. Attached to Tensor through
:func:`~minigrad.tensor.tensor_method`, like every op.
"""

from __future__ import annotations

from typing import Any

from minigrad import backend, validate
from minigrad.tensor import Tensor, tensor_method


class DimError(IndexError, ValueError):
    """A dim the tensor does not have: an IndexError as in PyTorch, a ValueError as NumPy's AxisError also is."""


class Size(int):
    """A tensor's element count (NumPy's ``x.size``) that answers PyTorch's ``x.size()`` when called.

    ``x.size`` is an int, so ``x.size == 1`` and ``sum(p.size for p in params)``
    mean what they mean in NumPy; ``x.size()`` is the shape as a tuple and
    ``x.size(dim)`` one axis's length (negative dims count from the end), as in PyTorch.
    """

    shape: tuple[int, ...]

    def __new__(cls, shape: tuple[int, ...]) -> Size:
        count = 1
        for n in shape:
            count *= n
        size = super().__new__(cls, count)
        size.shape = shape
        return size

    def __call__(self, dim: int | None = None) -> tuple[int, ...] | int:
        if dim is None:
            return self.shape
        try:
            axis = validate.axis("size", dim, len(self.shape), name="dim")
        except ValueError as error:
            raise DimError(str(error)) from None
        return self.shape[axis]


@tensor_method("size")
@property
def size(x: Tensor) -> Size:
    """The number of elements, an int; call it as PyTorch does: ``x.size()`` is the shape, ``x.size(dim)`` one length."""
    return Size(x.shape)


@tensor_method("numpy")
def numpy(x: Tensor) -> Any:
    """A NumPy copy of the data (from any device)."""
    return backend.to_numpy(x.data)


@tensor_method("tolist")
def tolist(x: Tensor) -> Any:
    """The data as nested Python lists of numbers (a plain number for a 0-d tensor), from any device."""
    return backend.to_numpy(x.data).tolist()


@tensor_method("item")
def item(x: Tensor) -> float | int | bool:
    """The Python number held by a one-element tensor."""
    if x.size != 1:
        raise ValueError(f"item(): expected a tensor with one element, got shape {x.shape}")
    return backend.item(x.data)


def _one_number(x: Tensor, what: str) -> float | int | bool:
    if x.size != 1:
        raise TypeError(f"{what}(): only a tensor with one element converts to a Python number, got shape {x.shape}")
    return x.item()


@tensor_method("__float__")
def _float(x: Tensor) -> float:
    return float(_one_number(x, "float"))


@tensor_method("__int__")
def _int(x: Tensor) -> int:
    return int(_one_number(x, "int"))


@tensor_method("__bool__")
def _bool(x: Tensor) -> bool:
    if x.size != 1:
        raise ValueError(f"the truth value of a tensor of shape {x.shape} is ambiguous; use .all() or .any()")
    return bool(x.item())


@tensor_method("__len__")
def _len(x: Tensor) -> int:
    if not x.shape:
        raise TypeError("len() of a 0-d tensor")
    return x.shape[0]


@tensor_method("__repr__")
def _repr(x: Tensor) -> str:
    grad = ", requires_grad=True" if x.requires_grad else ""
    body = backend.host.array2string(backend.to_numpy(x.data), separator=", ", prefix="Tensor(")
    return f"Tensor({body}, dtype={backend.dtype_name(x.dtype)}, device={x.device}{grad})"


@tensor_method("numel")
def numel(x: Tensor) -> int:
    """The number of elements (PyTorch's name for :attr:`Tensor.size`), a plain int."""
    return int(x.size)


@tensor_method("dim")
def dim(x: Tensor) -> int:
    """The number of axes (PyTorch's name for :attr:`Tensor.ndim`)."""
    return x.ndim


@tensor_method("to")
def to(x: Tensor, device_or_dtype: str | Any) -> Tensor:
    """A copy on another device ("cpu", "cuda", "cuda:N", "array_api_strict") or with another dtype.

    The copy is a leaf that keeps ``requires_grad``.
    """
    if isinstance(device_or_dtype, str) and device_or_dtype not in backend.DTYPE_NAMES:
        array = backend.to_device(x.data, device_or_dtype)
    else:
        array = backend.astype(x.data, device_or_dtype)
    return Tensor._make(array, requires_grad=x.requires_grad, creator=None)
