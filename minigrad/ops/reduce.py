"""Reductions over axes: sum, mean, max, min, logsumexp (differentiable) and argmax (not).

Every axis is checked as NumPy checks it: an axis the tensor does not have is
an error naming the op and the valid range, never wrapped modulo ndim.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from minigrad import backend, validate
from minigrad.tensor import Function, Tensor, tensor_method

Axis = int | Sequence[int] | None


def normalize_axes(owner: str, axis: Axis, ndim: int) -> tuple[int, ...]:
    """`axis` as a sorted tuple of non-negative axes of an `ndim`-dimensional array (see :func:`validate.axes`)."""
    return validate.axes(owner, axis, ndim)


def _refuse_empty(owner: str, x: Tensor, axes: tuple[int, ...], axis: Axis) -> None:
    """A maximum or an index of one over no elements has no value: say which tensor and axis."""
    if any(x.shape[a] == 0 for a in axes):
        where = "over all axes" if axis is None else f"along axis={axis!r}"
        raise ValueError(f"{owner}: expected at least one element to reduce over, got zero {where} of shape {x.shape}")


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


def log_sum_exp_shifted(shifted, axis):
    """log(sum(exp(shifted))) over `axis` (kept), for `shifted` whose maximum along `axis` is 0.

    The sum is 1 + rest, where rest sums the terms below the maximum (and the
    ties beyond the first); log1p(rest) keeps the tiny values that log(1 + rest)
    rounds to 0, so log-softmax of a confident prediction and the
    cross-entropy of a correct one stay accurate to the last bit. A row of
    -inf only (shifted by 0) has rest = -1 and gives -inf, as it should.
    """
    xp = backend.namespace(shifted)
    at_peak = xp.astype(shifted == 0, shifted.dtype)
    rest = xp.sum(xp.exp(shifted) * (1 - at_peak), axis=axis, keepdims=True)
    return xp.log1p(rest + (xp.sum(at_peak, axis=axis, keepdims=True) - 1))


def _finite_peak(x, axes):
    """The maximum over `axes` (kept), with non-finite maxima replaced by 0 so that x - peak is never inf - inf."""
    xp = backend.namespace(x)
    peak = xp.max(x, axis=axes, keepdims=True)
    return xp.where(xp.isfinite(peak), peak, xp.zeros_like(peak))


class LogSumExp(Function):
    """log(sum(exp(x))) over axes, shifted by the maximum so that no exp overflows; gradient softmax(x)."""

    axes: tuple[int, ...]
    keepdims: bool

    def forward(self, x):
        xp = backend.namespace(x)
        peak = _finite_peak(x, self.axes)
        out = log_sum_exp_shifted(x - peak, self.axes) + peak
        self.softmax = xp.exp(x - out)
        return out if self.keepdims else xp.reshape(out, tuple(n for i, n in enumerate(x.shape) if i not in self.axes))

    def backward(self, grad):
        return expand_reduced(grad, self.axes, self.keepdims, tuple(self.softmax.shape)) * self.softmax


def torch_axis(owner: str, axis: Axis, keepdims: bool, dim: Axis, keepdim: bool | None) -> tuple[Axis, bool]:
    """Accept PyTorch's ``dim``/``keepdim`` as other names for ``axis``/``keepdims`` (not both of a pair)."""
    if dim is not None:
        if axis is not None:
            raise TypeError(f"{owner}: pass axis or dim (PyTorch's name for it), not both; got axis={axis!r}, dim={dim!r}")
        axis = dim
    if isinstance(axis, Tensor):
        hint = "; for the elementwise maximum of two tensors use mg.maximum(a, b)" if owner == "max" else ""
        raise TypeError(f"{owner}: axis: expected an int, a sequence of ints or None, got a Tensor{hint}")
    return axis, bool(keepdims if keepdim is None else keepdim)


class MaxResult(NamedTuple):
    """``x.max(dim=...)``'s answer, as PyTorch gives it: the maxima and where they are."""

    values: Tensor
    indices: Tensor


@tensor_method("sum")
def sum(  # noqa: A001 - the op's name
    x: Tensor, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim: bool | None = None
) -> Tensor:
    """Sum over `axis` (all axes by default); ``dim``/``keepdim`` are accepted as PyTorch's names."""
    axis, keepdims = torch_axis("sum", axis, keepdims, dim, keepdim)
    return Sum.apply(x, axes=normalize_axes("sum", axis, x.ndim), keepdims=keepdims)


@tensor_method("mean")
def mean(x: Tensor, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim: bool | None = None) -> Tensor:
    """Arithmetic mean over `axis` (all axes by default); ``dim``/``keepdim`` are accepted as PyTorch's names."""
    axis, keepdims = torch_axis("mean", axis, keepdims, dim, keepdim)
    axes = normalize_axes("mean", axis, x.ndim)
    if any(x.shape[a] == 0 for a in axes):
        raise ValueError(f"mean: cannot average over an empty axis, got shape {x.shape} and axis {axis!r}")
    return Mean.apply(x, axes=axes, keepdims=keepdims)


@tensor_method("max")
def max(  # noqa: A001 - the op's name
    x: Tensor, axis: Axis = None, keepdims: bool = False, *, dim: int | None = None, keepdim: bool | None = None
) -> Tensor | MaxResult:
    """Maximum over `axis` (all axes by default).

    Given PyTorch's ``dim=`` (one axis), it answers as ``torch.max`` does: a
    :class:`MaxResult` ``(values, indices)``, so ``values, indices = x.max(dim=1)`` works.
    """
    with_indices = dim is not None
    if with_indices and not (isinstance(dim, int) and not isinstance(dim, bool)):
        raise TypeError(f"max: dim: expected one axis as an int, got {dim!r}")
    axis, keepdims = torch_axis("max", axis, keepdims, dim, keepdim)
    axes = normalize_axes("max", axis, x.ndim)
    _refuse_empty("max", x, axes, axis)
    values = Max.apply(x, axes=axes, keepdims=keepdims)
    if not with_indices:
        return values
    return MaxResult(values, argmax(x, dim, keepdims))


@tensor_method("min")
def min(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001 - the op's name
    """Minimum over `axis` (all axes by default); ties share the gradient equally."""
    axes = normalize_axes("min", axis, x.ndim)
    _refuse_empty("min", x, axes, axis)
    return -Max.apply(-x, axes=axes, keepdims=keepdims)


@tensor_method("logsumexp")
def logsumexp(
    x: Tensor, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim: bool | None = None
) -> Tensor:
    """log(sum(exp(x))) over `axis` (all axes by default), stable for any finite input (no overflow).

    ``dim``/``keepdim`` are accepted as PyTorch's names (``torch.logsumexp(x, dim)``).
    """
    axis, keepdims = torch_axis("logsumexp", axis, keepdims, dim, keepdim)
    axes = normalize_axes("logsumexp", axis, x.ndim)
    _refuse_empty("logsumexp", x, axes, axis)
    return LogSumExp.apply(x, axes=axes, keepdims=keepdims)


@tensor_method("argmax")
def argmax(
    x: Tensor, axis: int | None = None, keepdims: bool = False, *, dim: int | None = None, keepdim: bool | None = None
) -> Tensor:
    """Index of the maximum along `axis` (of the flattened tensor when None); not differentiable."""
    axis, keepdims = torch_axis("argmax", axis, keepdims, dim, keepdim)
    xp = backend.namespace(x.data)
    if axis is None:
        _refuse_empty("argmax", x, tuple(range(x.ndim)), None)
        index = xp.argmax(xp.reshape(x.data, (-1,)), axis=0)
        return Tensor._make(xp.reshape(index, (1,) * x.ndim) if keepdims else index, requires_grad=False, creator=None)
    index = validate.axis("argmax", axis, x.ndim)
    _refuse_empty("argmax", x, (index,), axis)
    return Tensor._make(xp.argmax(x.data, axis=index, keepdims=keepdims), requires_grad=False, creator=None)
