"""Small helpers shared by the tests."""

from __future__ import annotations

import numpy as np

import minigrad as mg
from minigrad import backend as B


def tensor(values, requires_grad: bool = False, dtype: str = "float64") -> mg.Tensor:
    """A tensor on the active backend from host values (float64 by default, for gradient checks)."""
    return mg.Tensor(np.asarray(values), requires_grad=requires_grad, dtype=dtype)


def host(value) -> np.ndarray:
    """A NumPy copy of a Tensor or backend array."""
    if isinstance(value, mg.Tensor):
        return value.numpy()
    return B.to_numpy(value)
