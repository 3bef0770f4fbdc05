"""Scatter-add, the backward of indexing: ``out[key] += values`` with repeated indices summed.

The libraries' own scatter-adds (:func:`minigrad.array_extras.add_at`) are the fast
path; the portable versions use the array API standard alone and run on any
library. Tests check that both give the same sums.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from minigrad import array_extras, backend
from minigrad.backend import Array


def _has_array_index(key: tuple) -> bool:
    return any(backend.is_array(k) and not isinstance(k, (bool, int)) for k in key)


def scatter_add(shape: Sequence[int], key: Any, values: Array) -> Array:
    """Zeros of `shape` (values' dtype and device) with ``out[key] += values``, repeated indices summed.

    Basic keys (ints, slices) select each element at most once and use plain
    assignment; keys with integer arrays can repeat an element and need a true
    scatter-add: the library's own (:func:`minigrad.array_extras.add_at`) on NumPy
    and CuPy, :func:`scatter_add_portable` elsewhere.
    """
    xp = backend.namespace(values)
    key_tuple = key if isinstance(key, tuple) else (key,)
    out = xp.zeros(tuple(shape), dtype=values.dtype, device=backend.device(values))
    if not _has_array_index(key_tuple):
        out[key] = values
        return out
    if array_extras.has_add_at(out):
        array_extras.add_at(out, key, values)
        return out
    return scatter_add_portable(shape, key, values)


def scatter_add_portable(shape: Sequence[int], key: Any, values: Array) -> Array:
    """:func:`scatter_add` in the array API standard alone, for any library.

    Index a grid of flat positions with `key` to learn which element each
    value lands on, then sum through a one-hot matrix product. Memory grows
    as (number of values) x (number of elements): fine for tests, slow for
    large arrays, which is why the libraries' own scatter-adds are preferred.
    """
    xp = backend.namespace(values)
    device = backend.device(values)
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
    if array_extras.has_add_at(values):
        return scatter_add((num_rows,) + tuple(values.shape[1:]), indices, values)
    return scatter_add_rows_portable(num_rows, indices, values)


def scatter_add_rows_portable(num_rows: int, indices: Array, values: Array) -> Array:
    """:func:`scatter_add_rows` in the array API standard alone."""
    xp = backend.namespace(values)
    rows = xp.arange(num_rows, device=backend.device(values))
    one_hot = xp.astype(rows[:, None] == indices[None, :], values.dtype)
    flat = xp.reshape(values, (values.shape[0], -1))
    return xp.reshape(one_hot @ flat, (num_rows,) + tuple(values.shape[1:]))
