"""Ops that move elements without changing them: reshape and view, flatten, (un)squeeze, permute, t, indexing, pad."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from minigrad import backend, validate
from minigrad.ops.scatter import scatter_add, scatter_add_rows
from minigrad.tensor import Function, Tensor, check_same_device, tensor_method


class Reshape(Function):
    shape: tuple[int, ...]

    def forward(self, x):
        self.input_shape = tuple(x.shape)
        return backend.namespace(x).reshape(x, self.shape)

    def backward(self, grad):
        return backend.namespace(grad).reshape(grad, self.input_shape)


class Permute(Function):
    axes: tuple[int, ...]

    def forward(self, x):
        return backend.namespace(x).permute_dims(x, self.axes)

    def backward(self, grad):
        inverse = tuple(sorted(range(len(self.axes)), key=self.axes.__getitem__))
        return backend.namespace(grad).permute_dims(grad, inverse)


class GetItem(Function):
    """x[key]; the backward scatter-adds, so repeated integer indices accumulate."""

    key: Any

    def forward(self, x):
        self.input_shape = tuple(x.shape)
        return x[self.key]

    def backward(self, grad):
        return scatter_add(self.input_shape, self.key, grad)


class Take(Function):
    """Select entries along one axis by an integer index array (the standard's ``take``)."""

    axis: int

    def forward(self, x, indices):
        self.input_shape, self.indices = tuple(x.shape), indices
        return backend.namespace(x).take(x, indices, axis=self.axis)

    def backward(self, grad):
        xp = backend.namespace(grad)
        moved = xp.moveaxis(grad, self.axis, 0)
        summed = scatter_add_rows(self.input_shape[self.axis], self.indices, moved)
        return xp.moveaxis(summed, 0, self.axis), None


class Concatenate(Function):
    axis: int

    def forward(self, *arrays):
        self.sizes = [a.shape[self.axis] for a in arrays]
        return backend.namespace(*arrays).concat(arrays, axis=self.axis)

    def backward(self, grad):
        grads, start = [], 0
        for size in self.sizes:
            index = [slice(None)] * grad.ndim
            index[self.axis] = slice(start, start + size)
            grads.append(grad[tuple(index)])
            start += size
        return tuple(grads)


class Stack(Function):
    axis: int

    def forward(self, *arrays):
        return backend.namespace(*arrays).stack(arrays, axis=self.axis)

    def backward(self, grad):
        return tuple(backend.namespace(grad).unstack(grad, axis=self.axis))


class Pad(Function):
    """Constant padding; the standard has no pad, so write the input into a filled array."""

    widths: tuple[tuple[int, int], ...]
    value: float

    def forward(self, x):
        xp = backend.namespace(x)
        shape = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, self.widths))
        out = xp.full(shape, self.value, dtype=x.dtype, device=x.device)
        self.inner = tuple(slice(lo, lo + n) for n, (lo, _) in zip(x.shape, self.widths))
        out[self.inner] = x
        return out

    def backward(self, grad):
        return grad[self.inner]


@tensor_method("reshape")
def reshape(x: Tensor, *shape: int | Sequence[int]) -> Tensor:
    """The same elements in a new shape (one entry may be -1); ``x.reshape(2, 3)`` or ``x.reshape((2, 3))``."""
    if len(shape) == 1 and not isinstance(shape[0], int):
        shape = tuple(shape[0])
    shape = tuple(int(n) for n in shape)
    known = math.prod(n for n in shape if n != -1)
    fits = known == x.size if -1 not in shape else (known > 0 and x.size % known == 0)
    if shape.count(-1) > 1 or not fits:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} ({x.size} elements) into {shape}")
    return Reshape.apply(x, shape=shape)


def _dim(name: str, dim: Any, ndim: int) -> int:
    """`dim` as an axis in [0, ndim), accepting negatives as PyTorch does; else a clear error naming `name`."""
    return validate.axis(name, dim, ndim, name="dim")


@tensor_method("flatten")
def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge axes `start_dim` to `end_dim` (both included) into one, as ``torch.flatten``.

    ``x.flatten()`` is 1-d; ``x.flatten(1)`` keeps the batch axis. A 0-d tensor becomes shape (1,).
    """
    ndim = max(x.ndim, 1)  # a 0-d tensor accepts dims 0 and -1, as in PyTorch
    start, end = _dim("flatten", start_dim, ndim), _dim("flatten", end_dim, ndim)
    if x.ndim == 0:
        return reshape(x, (1,))
    if start > end:
        raise ValueError(
            f"flatten: start_dim must not come after end_dim, got start_dim={start_dim}, end_dim={end_dim} "
            f"for shape {x.shape}"
        )
    return reshape(x, x.shape[:start] + (math.prod(x.shape[start : end + 1]),) + x.shape[end + 1 :])


@tensor_method("view")
def view(x: Tensor, *shape: int | Sequence[int]) -> Tensor:
    """PyTorch's name for :func:`reshape` (the result is a new tensor; minigrad has no aliasing views)."""
    if len(shape) == 1 and not isinstance(shape[0], (int, Sequence)):
        raise TypeError(
            f"view: shape: expected ints or a sequence of ints, got {type(shape[0]).__name__}; "
            "to change the dtype use .astype(dtype)"
        )
    return reshape(x, *shape)


@tensor_method("unsqueeze")
def unsqueeze(x: Tensor, dim: int) -> Tensor:
    """Insert a size-1 axis at position `dim` (in [-ndim-1, ndim]), as ``torch.unsqueeze``."""
    axis = _dim("unsqueeze", dim, x.ndim + 1)
    return Reshape.apply(x, shape=x.shape[:axis] + (1,) + x.shape[axis:])


@tensor_method("squeeze")
def squeeze(x: Tensor, dim: int | Sequence[int] | None = None) -> Tensor:
    """Remove size-1 axes: all of them, or only those among `dim` (others are left alone, as in PyTorch)."""
    if dim is None:
        axes = {i for i, n in enumerate(x.shape) if n == 1}
    else:
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        checked = {_dim("squeeze", d, max(x.ndim, 1)) for d in dims}  # a 0-d tensor accepts dim 0 and -1
        axes = {a for a in checked if a < x.ndim and x.shape[a] == 1}
    return Reshape.apply(x, shape=tuple(n for i, n in enumerate(x.shape) if i not in axes))


@tensor_method("permute")
def permute(x: Tensor, *axes: int | Sequence[int]) -> Tensor:
    """Reorder the axes: output axis i is input axis ``axes[i]``."""
    if len(axes) == 1 and not isinstance(axes[0], int):
        axes = tuple(axes[0])
    if len(axes) != x.ndim:
        raise ValueError(f"permute: axes: expected a permutation of range({x.ndim}) for shape {x.shape}, got {axes}")
    checked = tuple(validate.axis("permute", a, x.ndim, name="axes") for a in axes)
    if sorted(checked) != list(range(x.ndim)):
        raise ValueError(f"permute: axes: expected a permutation of range({x.ndim}) for shape {x.shape}, got {axes}")
    return Permute.apply(x, axes=checked)


@tensor_method("transpose")
def transpose(x: Tensor, axis0: int = -2, axis1: int = -1) -> Tensor:
    """Swap two axes (the last two by default)."""
    if x.ndim < 2:
        raise ValueError(f"transpose: expected a tensor with at least 2 axes, got shape {x.shape}")
    first = validate.axis("transpose", axis0, x.ndim, name="axis0")
    second = validate.axis("transpose", axis1, x.ndim, name="axis1")
    axes = list(range(x.ndim))
    axes[first], axes[second] = axes[second], axes[first]
    return Permute.apply(x, axes=tuple(axes))


Tensor.T = property(lambda self: transpose(self))  # matrix transpose of the last two axes


@tensor_method("t")
def t(x: Tensor) -> Tensor:
    """Matrix transpose of a tensor with at most 2 axes (0-d and 1-d come back unchanged), as ``torch.t``."""
    if x.ndim > 2:
        raise ValueError(
            f"t: expected a tensor with at most 2 axes, got shape {x.shape}; use .transpose(axis0, axis1) or .permute(...)"
        )
    return transpose(x) if x.ndim == 2 else Reshape.apply(x, shape=x.shape)


def _unwrap_key(key: Any) -> Any:
    """Replace Tensors in an index by their arrays."""
    if isinstance(key, tuple):
        return tuple(_unwrap_key(k) for k in key)
    if isinstance(key, Tensor):
        if backend.is_floating(key.data):
            raise TypeError(f"index: expected integer or boolean tensors, got dtype {backend.dtype_name(key.dtype)}")
        return key.data
    return key


@tensor_method("__getitem__")
def getitem(x: Tensor, key: Any) -> Tensor:
    """Basic and integer-array indexing, as in NumPy (strict libraries need one index per axis)."""
    key = _unwrap_key(key)
    parts = key if isinstance(key, tuple) else (key,)
    for part in parts:
        if backend.is_array(part) and backend.device_of(part) != x.device:
            raise backend.DeviceMismatchError(
                f"index: the index array is on {backend.device_of(part)} but the tensor is on {x.device}"
            )
    return GetItem.apply(x, key=key)


@tensor_method("take")
def take(x: Tensor, indices: Any, axis: int = 0) -> Tensor:
    """Entries of `x` at integer `indices` along `axis`; repeated indices accumulate in backward."""
    index = indices if isinstance(indices, Tensor) else Tensor(backend.asarray(indices, "int64"))
    if index.ndim != 1 or backend.is_floating(index.data):
        raise ValueError(f"take: indices must be a 1-d integer array, got shape {index.shape}, dtype {index.dtype}")
    return Take.apply(x, index, axis=validate.axis("take", axis, x.ndim))


def concatenate(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    tensors = tuple(tensors)
    if not tensors:
        raise ValueError("concatenate: expected at least one tensor, got none")
    ndim = tensors[0].ndim
    axis = validate.axis("concatenate", axis, ndim)
    for t in tensors:
        if t.ndim != ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, tensors[0].shape)) if i != axis):
            shown = ", ".join(str(u.shape) for u in tensors)
            raise ValueError(f"concatenate: shapes must match except on axis {axis}, got {shown}")
    check_same_device("concatenate", tensors)
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join same-shaped tensors along a new axis."""
    tensors = tuple(tensors)
    if not tensors:
        raise ValueError("stack: expected at least one tensor, got none")
    if len({t.shape for t in tensors}) != 1:
        raise ValueError(f"stack: all tensors must have one shape, got {', '.join(str(t.shape) for t in tensors)}")
    return Stack.apply(*tensors, axis=validate.axis("stack", axis, tensors[0].ndim + 1))


@tensor_method("pad")
def pad(x: Tensor, widths: Sequence[tuple[int, int]] | Sequence[int], value: float = 0.0) -> Tensor:
    """Pad with a constant: ``widths`` gives (before, after) per axis, as ``numpy.pad``."""
    widths = tuple(tuple(int(v) for v in w) for w in widths)  # type: ignore[union-attr]
    if len(widths) != x.ndim or any(len(w) != 2 or min(w) < 0 for w in widths):
        raise ValueError(
            f"pad: expected {x.ndim} pairs of non-negative (before, after) widths for shape {x.shape}, got {widths}"
        )
    return Pad.apply(x, widths=widths, value=value)
