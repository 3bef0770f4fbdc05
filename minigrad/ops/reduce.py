"""Reductions over axes: sum, mean, max (differentiable) and argmax (not)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence

from minigrad import backend
from minigrad.tensor import Function, Tensor, tensor_method

Axis = int | Sequence[int] | None


def normalize_axes(axis: Axis, ndim: int, argument: str = "axis") -> tuple[int, ...]:
    """`axis` as a sorted tuple of non-negative axes of an `ndim`-dimensional array."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    result = []
    for a in axes:
        if not isinstance(a, int) or not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"{argument}: expected axes in [{-ndim}, {ndim}) for a {ndim}-d tensor, got {axis!r}")
        result.append(a % ndim if ndim else 0)
    if len(set(result)) != len(result):
        raise ValueError(f"{argument}: repeated axis in {axis!r}")
    return tuple(sorted(result))


def expand_reduced(grad, axes: tuple[int, ...], keepdims: bool, shape: tuple[int, ...]):
    """Broadcast the gradient of a reduction back to the input's `shape`."""
    xp = backend.namespace(grad)
    if not keepdims:
        grad = xp.reshape(grad, tuple(1 if i in axes else n for i, n in enumerate(shape)))
    return xp.broadcast_to(grad, shape)


class Sum(Function):
    axes: tuple[int, ...]
    keepdims: bool

    def forward(self, x):
        self.shape = tuple(x.shape)
        return backend.namespace(x).sum(x, axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        return expand_reduced(grad, self.axes, self.keepdims, self.shape)


class Mean(Function):
    axes: tuple[int, ...]
    keepdims: bool

    def forward(self, x):
        self.shape = tuple(x.shape)
        self.count = 1
        for a in self.axes:
            self.count *= self.shape[a]
        return backend.namespace(x).mean(x, axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        return expand_reduced(grad, self.axes, self.keepdims, self.shape) / self.count


class Max(Function):
    """Maximum over axes; ties share the gradient equally."""

    axes: tuple[int, ...]
    keepdims: bool

    def forward(self, x):
        xp = backend.namespace(x)
        out = xp.max(x, axis=self.axes, keepdims=True)
        winners = xp.astype(x == out, x.dtype)
        self.share = winners / xp.sum(winners, axis=self.axes, keepdims=True)
        return out if self.keepdims else xp.reshape(out, tuple(n for i, n in enumerate(x.shape) if i not in self.axes))

    def backward(self, grad):
        return expand_reduced(grad, self.axes, self.keepdims, tuple(self.share.shape)) * self.share


@tensor_method("sum")
def sum(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001 - the op's name
    """Sum over `axis` (all axes by default)."""
    return Sum.apply(x, axes=normalize_axes(axis, x.ndim), keepdims=keepdims)


@tensor_method("mean")
def mean(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Arithmetic mean over `axis` (all axes by default)."""
    axes = normalize_axes(axis, x.ndim)
    if any(x.shape[a] == 0 for a in axes):
        raise ValueError(f"mean: cannot average over an empty axis, got shape {x.shape} and axis {axis!r}")
    return Mean.apply(x, axes=axes, keepdims=keepdims)


@tensor_method("max")
def max(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001 - the op's name
    """Maximum over `axis` (all axes by default)."""
    return Max.apply(x, axes=normalize_axes(axis, x.ndim), keepdims=keepdims)


@tensor_method("argmax")
def argmax(x: Tensor, axis: int | None = None) -> Tensor:
    """Index of the maximum along `axis` (of the flattened tensor when None); not differentiable."""
    xp = backend.namespace(x.data)
    data = x.data if axis is not None else xp.reshape(x.data, (-1,))
    return Tensor._make(xp.argmax(data, axis=axis if axis is not None else 0), requires_grad=False, creator=None)
