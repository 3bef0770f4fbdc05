"""Hypothesis strategies shared by the property tests: shapes, broadcastable pairs, float64 arrays."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg


def shapes(min_dims: int = 1, max_dims: int = 3, min_side: int = 1, max_side: int = 4) -> st.SearchStrategy:
    """Small array shapes, size-1 axes included."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_pair(max_dims: int = 3, max_side: int = 4) -> st.SearchStrategy:
    """Two shapes that broadcast together (one may have fewer axes or size-1 axes)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=max_dims, max_side=max_side).map(
        lambda result: result.input_shapes
    )


def arrays(shape, low: float = -3.0, high: float = 3.0) -> st.SearchStrategy:
    """float64 arrays of `shape` with bounded finite values."""
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_nan=False, allow_subnormal=False))


def leaf(array: np.ndarray, requires_grad: bool = True) -> mg.Tensor:
    """A float64 leaf tensor on the active backend."""
    return mg.Tensor(array, requires_grad=requires_grad, dtype="float64")
