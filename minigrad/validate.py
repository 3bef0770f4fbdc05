"""Argument checks shared by every module: each returns the value it accepted, or raises one clear error.

A message names the argument, says what was expected and shows what came,
e.g. ``num_features: expected a positive integer, got 0``. Library code checks
its arguments once, where they enter (a constructor, a public function), and
the code behind that boundary assumes them valid.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def is_integer(value: Any) -> bool:
    """True for Python and NumPy integers, False for bools (``True`` is not a count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """True for Python and NumPy real numbers, False for bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive_int(name: str, value: Any, *, allow_none: bool = False, owner: str = "") -> int | None:
    """`value` as an int >= 1 (or None when `allow_none`); `owner` (a layer's name) prefixes the message."""
    if allow_none and value is None:
        return None
    if not is_integer(value) or value < 1:
        expected = "None or a positive integer" if allow_none else "a positive integer"
        prefix = f"{owner}: " if owner else ""
        raise ValueError(f"{prefix}{name}: expected {expected}, got {value!r}")
    return int(value)


def non_negative_int(name: str, value: Any) -> int:
    """`value` as an int >= 0."""
    if not is_integer(value) or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return int(value)


def number_at_least(name: str, value: Any, lowest: float, *, finite: bool = False, why: str = "") -> float:
    """`value` as a float >= `lowest` (NaN refused; inf allowed unless `finite`); `why` is added in parentheses."""
    ok = is_real(value) and not math.isnan(value) and value >= lowest and (math.isfinite(value) or not finite)
    if not ok:
        kind = "a finite number" if finite else "a number"
        reason = f" ({why})" if why else ""
        raise ValueError(f"{name}: expected {kind} >= {lowest:g}{reason}, got {value!r}")
    return float(value)


def positive_number(name: str, value: Any) -> float:
    """`value` as a finite float > 0."""
    if not (is_real(value) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


def fraction(name: str, value: Any, *, why: str = "") -> float:
    """`value` as a float in [0, 1]; `why` says what the number means."""
    if not (is_real(value) and 0 <= value <= 1):
        reason = f" ({why})" if why else ""
        raise ValueError(f"{name}: expected a number in [0, 1]{reason}, got {value!r}")
    return float(value)


def axis(owner: str, value: Any, ndim: int, *, name: str = "axis") -> int:
    """`value` as one axis in [0, ndim) of an `ndim`-d tensor, negatives counted from the end as in NumPy.

    An axis the tensor does not have is an error (never wrapped modulo
    `ndim`); `owner` (the op) and `name` (its argument) start the message,
    e.g. ``softmax: axis: expected an axis in [-2, 1], got 2`` for a 2-d tensor.
    """
    if not is_integer(value):
        raise TypeError(f"{owner}: {name}: expected an int, got {type(value).__name__} {value!r}")
    if ndim < 1:
        raise ValueError(f"{owner}: {name}: a 0-d tensor has no axes, got {name}={value!r}")
    if not -ndim <= value < ndim:
        raise ValueError(f"{owner}: {name}: expected an axis in [{-ndim}, {ndim - 1}], got {value}")
    return int(value) % ndim


def axes(owner: str, value: Any, ndim: int, *, name: str = "axis") -> tuple[int, ...]:
    """`value` (None: all axes, one int, or a sequence of ints) as a sorted tuple of distinct axes in [0, ndim).

    A 0-d tensor accepts None, ``0``, ``-1`` and ``()`` (NumPy's reductions accept
    none of the ints; minigrad keeps them so ``x.sum(0)`` works on a scalar).
    """
    if value is None:
        return tuple(range(ndim))
    items = (value,) if is_integer(value) else value
    if isinstance(value, (str, bytes, bool)) or not hasattr(items, "__iter__"):
        got = f"{type(value).__name__} {value!r}"
        raise TypeError(f"{owner}: {name}: expected None, an int or a sequence of ints, got {got}")
    result = [axis(owner, a, max(ndim, 1), name=name) for a in items]
    result = [a for a in result if a < ndim]
    if len(set(result)) != len(result):
        raise ValueError(f"{owner}: {name}: repeated axis in {value!r}")
    return tuple(sorted(result))
