"""Tensor factories by PyTorch's names: ``mg.tensor``, ``mg.zeros``, ``mg.ones``, ``mg.full``, ``mg.arange``,
``mg.randn``, ``mg.rand`` and the ``*_like`` forms.

Each makes a leaf on the active backend. Floating results are float32 unless
``dtype`` says otherwise, as everywhere in minigrad; random ones are drawn from
``generator`` (default: the global one that :func:`minigrad.manual_seed` seeds),
so they repeat for a seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from minigrad import backend, validate
from minigrad.random import Generator, default_generator
from minigrad.tensor import DEFAULT_FLOAT, Tensor

__all__ = ["tensor", "arange", "full", "ones", "ones_like", "rand", "randn", "zeros", "zeros_like"]


def tensor(data: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A leaf holding a copy of `data` (a list, a scalar, an array or a Tensor), like ``torch.tensor``.

    ``mg.Tensor(array)`` keeps a NumPy array's memory; this always copies, so
    later changes to `data` never reach the tensor. Floating data becomes
    float32 unless `dtype` is given (``torch.tensor`` keeps a float64 array's dtype).
    """
    array = backend.asarray(data.data if isinstance(data, Tensor) else data, dtype)
    copied = backend.namespace(array).asarray(array, copy=True)
    return Tensor(copied, requires_grad=requires_grad, dtype=dtype)


def _shape(owner: str, shape: tuple[Any, ...]) -> tuple[int, ...]:
    """``zeros(2, 3)`` and ``zeros((2, 3))`` alike, each side a non-negative int."""
    if len(shape) == 1 and isinstance(shape[0], Sequence):
        shape = tuple(shape[0])
    if not all(validate.is_integer(n) and n >= 0 for n in shape):
        raise ValueError(f"{owner}: shape: expected non-negative integers, got {shape!r}")
    return tuple(int(n) for n in shape)


def full(shape: Sequence[int], fill_value: float, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of `shape` filled with `fill_value`; float32 unless `dtype` is given."""
    if not validate.is_real(fill_value) and not isinstance(fill_value, bool):
        raise TypeError(f"full: fill_value: expected a number, got {type(fill_value).__name__} {fill_value!r}")
    array = backend.host.full(_shape("full", (shape,)), fill_value)
    return Tensor(array, requires_grad=requires_grad, dtype=dtype)


def zeros(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros: ``mg.zeros(2, 3)`` or ``mg.zeros((2, 3))``; float32 unless `dtype` is given."""
    return Tensor(backend.host.zeros(_shape("zeros", shape)), requires_grad=requires_grad, dtype=dtype)


def ones(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones: ``mg.ones(2, 3)`` or ``mg.ones((2, 3))``; float32 unless `dtype` is given."""
    return Tensor(backend.host.ones(_shape("ones", shape)), requires_grad=requires_grad, dtype=dtype)


def zeros_like(other: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros of `other`'s shape, dtype (unless `dtype` is given) and device."""
    array = backend.namespace(other.data).zeros_like(other.data)
    return Tensor(array, requires_grad=requires_grad, dtype=other.dtype if dtype is None else dtype)


def ones_like(other: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones of `other`'s shape, dtype (unless `dtype` is given) and device."""
    array = backend.namespace(other.data).ones_like(other.data)
    return Tensor(array, requires_grad=requires_grad, dtype=other.dtype if dtype is None else dtype)


def arange(start: float, end: float | None = None, step: float = 1, dtype: Any = None) -> Tensor:
    """``start, start + step, ...`` below `end` (``arange(n)`` counts 0 to n-1); integer unless a float is involved."""
    for name, value in (("start", start), ("end", end), ("step", step)):
        if value is not None and not validate.is_real(value):
            raise TypeError(f"arange: {name}: expected a number, got {type(value).__name__} {value!r}")
    if step == 0:
        raise ValueError("arange: step: expected a non-zero number, got 0")
    if end is None:
        start, end = 0, start
    return Tensor(backend.host.arange(start, end, step), dtype=dtype)


def _random(
    owner: str, kind: str, shape: tuple[Any, ...], generator: Generator | None, dtype: Any, requires_grad: bool
) -> Tensor:
    dtype = DEFAULT_FLOAT if dtype is None else dtype
    if not backend.dtype_name(dtype).startswith("float"):
        raise ValueError(f"{owner}: dtype: expected a floating dtype, got {dtype!r}")
    draw = getattr(generator or default_generator(), kind)
    return Tensor(draw(_shape(owner, shape), dtype), requires_grad=requires_grad, dtype=dtype)


def randn(*shape: Any, generator: Generator | None = None, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples: ``mg.randn(2, 3)``; float32 unless `dtype` is given."""
    return _random("randn", "normal", shape, generator, dtype, requires_grad)


def rand(*shape: Any, generator: Generator | None = None, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Samples uniform on [0, 1): ``mg.rand(2, 3)``; float32 unless `dtype` is given."""
    return _random("rand", "uniform", shape, generator, dtype, requires_grad)
