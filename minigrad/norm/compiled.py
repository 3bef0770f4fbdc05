"""Compiled loops for the fused kernels (optional, with numba): each stage of a block in one pass over memory.

:mod:`minigrad.norm.fused` runs each stage of its block work as a few NumPy
ufunc calls, and every call is a pass over the block. These loops do a
stage in one pass: one row at a time, one per-(group, channel) factor per
row. They compute the same equations as the NumPy block work that they
replace (the comments name them), so ``tests/test_norm_fused.py`` checks
both against the readable kernels of :mod:`minigrad.norm.kernels`.

This module imports numba, so :mod:`minigrad.norm.fused` imports it only
when it first needs it (see ``fused.use_compiled``). Sums accumulate in
float64 whatever the input's dtype. ``fastmath`` allows reordering the sums
(so that they vectorize) and fused multiply-adds, and nothing else: NaN and
infinity propagate as in NumPy. ``nogil`` lets the block threads of
:mod:`minigrad.norm.fused` run these loops at once.
"""

from __future__ import annotations

from typing import Any

import numba

Array = Any
_FLAGS = {"nogil": True, "cache": True, "fastmath": {"reassoc", "contract"}}


@numba.njit(**_FLAGS)
def centred_squares(x2: Array, row_index: Array, mu_b: Array, out: Array) -> None:
    """out[r] = Σ_j (x[r, j] − μ_B)², μ_B of the row's (group, channel): the variance's second pass."""
    for r in range(x2.shape[0]):
        mu = mu_b[row_index[r]]
        total = 0.0
        for j in range(x2.shape[1]):
            centred = x2[r, j] - mu
            total += centred * centred
        out[r] = total


@numba.njit(**_FLAGS)
def scale_shift(x2: Array, row_index: Array, scale: Array, shift: Array, y2: Array) -> None:
    """y[r, j] = x[r, j] · scale + shift, with the row's factors (μ_B already folded into the shift)."""
    for r in range(x2.shape[0]):
        s = scale[row_index[r]]
        t = shift[row_index[r]]
        for j in range(x2.shape[1]):
            y2[r, j] = x2[r, j] * s + t


@numba.njit(**_FLAGS)
def gradient_sums(x2: Array, dy2: Array, row_index: Array, mu_b: Array, sum_dy: Array, sum_dy_xc: Array) -> None:
    """sum_dy[r] = Σ_j ∂ℓ/∂y[r, j] and sum_dy_xc[r] = Σ_j ∂ℓ/∂y[r, j] (x[r, j] − μ_B), in one pass."""
    for r in range(x2.shape[0]):
        mu = mu_b[row_index[r]]
        plain = 0.0
        weighted = 0.0
        for j in range(x2.shape[1]):
            g = dy2[r, j]
            plain += g
            weighted += g * (x2[r, j] - mu)
        sum_dy[r] = plain
        sum_dy_xc[r] = weighted


@numba.njit(**_FLAGS)
def input_grad(x2: Array, dy2: Array, row_index: Array, a: Array, b: Array, c: Array, dx2: Array) -> None:
    """∂ℓ/∂x[r, j] = a · ∂ℓ/∂y[r, j] + b · x[r, j] + c, with the row's a, b, c (see fused.training_backward)."""
    for r in range(x2.shape[0]):
        k = row_index[r]
        ak = a[k]
        bk = b[k]
        ck = c[k]
        for j in range(x2.shape[1]):
            dx2[r, j] = ak * dy2[r, j] + bk * x2[r, j] + ck
