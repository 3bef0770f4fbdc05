"""A faster twin of the training kernels for NumPy: the same equations, fewer passes over memory.

:mod:`minigrad.norm.kernels` is the readable reference (the tutorials show
it); this module computes the same BatchNorm and Batch Renorm training
forward and backward and is used in its place when it applies (NumPy
arrays, one process; see :func:`applies`). ``tests/test_norm_fused.py``
checks that the two agree. What it does differently, and why:

* **Rows.** x is viewed, without a copy, as a matrix of rows that each hold
  values of one channel contiguously: (N·C, H·W) for a C-contiguous (N, C, H, W)
  x, (C, H·W·N) for the channel-major layout that minigrad's convolutions
  hand over. Per-channel sums become row sums (a matrix-vector product with
  ones, on the BLAS threads) folded over the rows of each channel, and the
  per-channel factors broadcast along contiguous rows.
* **Short rows tiled.** Where rows are short (H·W of a C-contiguous x),
  the per-channel factors are written out once as a block-shaped tile, so
  that every block's arithmetic runs on contiguous operands.
* **Blocks that stay in cache.** The second pass of the variance, the output
  and dℓ/dx are computed a block of rows at a time in a scratch buffer of
  about half a megabyte, so x − μ_B and the products never go to main memory.
  The variance stays the two-pass Σ(x − μ_B)² (no E[x²] − E[x]²).
* **x instead of x_bn.** The cache keeps a reference to x and μ_B, σ_B;
  the backward recomputes (x − μ_B)/σ_B block by block rather than storing
  a full-size x_bn.
* **μ_B folded into the shift** where x is scaled: y = x·s + (t − μ_B·s) and
  dℓ/dx = a·dℓ/dy + b·x + (c − b·μ_B) instead of (x − μ_B)·s + t and
  a·dℓ/dy + b·(x − μ_B) + c, one pass fewer per block each (PyTorch's CPU
  kernel uses the same form). It rounds μ_B·s separately, an error of about
  the float's resolution at |μ_B|/σ_B standard deviations: the size of the
  error already in x itself when it was rounded to that float. The variance
  keeps x − μ_B (squared, its rounding would not stay that small).

* **Compiled loops, where numba is installed** (:mod:`minigrad.norm.compiled`,
  the ``fast`` extra; :func:`use_compiled`): each block stage in one pass
  instead of one pass per NumPy call, and Σ dℓ/dy joins Σ dℓ/dy·(x − μ_B).
  Without numba the same stages run as the NumPy calls below them.

The forward reads x three times and writes y; the backward reads x twice and
dℓ/dy three times and writes dℓ/dx: ten passes instead of the reference's
twenty or so.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from minigrad import backend, validate
from minigrad.norm.kernels import fixed_correction
from minigrad.norm.reduction import LocalReduction

Array = Any
np = backend.host

BLOCK_BYTES = 1 << 19  # scratch block: about half of a typical per-core L2 cache (a quarter where factors are tiled)
SHORT_ROW = 8192  # elements: per-row factors of shorter rows are tiled into block-shaped arrays (Rows.spread)
THREADS = 1  # threads for the block loops (set_threads); the row sums use the BLAS threads
COMPILED = os.environ.get("MINIGRAD_NUMBA", "1") != "0"  # compiled block loops where numba is installed (use_compiled)

_pools: dict[int, ThreadPoolExecutor] = {}
_compiled_module: Any = None  # minigrad.norm.compiled once imported, False where numba is missing


def use_compiled(flag: bool) -> None:
    """Run the block stages as compiled loops (:mod:`minigrad.norm.compiled`, where numba is installed) or as NumPy calls.

    On by default; ``MINIGRAD_NUMBA=0`` in the environment turns it off at import.
    """
    global COMPILED
    COMPILED = bool(flag)


def _loops() -> Any:
    """:mod:`minigrad.norm.compiled`, or None where it is switched off or numba is not installed."""
    global _compiled_module
    if not COMPILED:
        return None
    if _compiled_module is None:
        try:
            from minigrad.norm import compiled as module
        except ImportError:
            module = False
        _compiled_module = module
    return _compiled_module or None


def _flat(per_group: Array, dtype: Any) -> Array:
    """(G, C) factors as one contiguous vector indexed by g·C + c (Rows.row_index), for the compiled loops."""
    return np.ascontiguousarray(per_group, dtype=dtype).reshape(-1)


def set_threads(count: int) -> None:
    """Run the block loops on `count` threads (1: in the calling thread)."""
    global THREADS
    THREADS = validate.positive_int("count", count)


def _pool(count: int) -> ThreadPoolExecutor:
    if count not in _pools:
        _pools[count] = ThreadPoolExecutor(max_workers=count, thread_name_prefix="minigrad-norm")
    return _pools[count]


@dataclass
class Rows:
    """x as a matrix of rows, each holding values of one channel; how to map rows to (group, channel) and back."""

    matrix: Array  # (rows, B), a view of x
    order: tuple[int, ...]  # x.transpose(order) is C-contiguous
    groups: int
    channels: int

    def fold(self, per_row: Array) -> Array:
        """Per-row numbers summed into (G, C)."""
        return per_row.reshape(self.groups, -1, self.channels).sum(axis=1)

    def tile_rows(self) -> int | None:
        """Rows per block when per-row factors are tiled (a multiple of C), or None to broadcast a column.

        Broadcasting a (rows, 1) column along short rows (a C-contiguous
        (N, C, H, W) x has rows of H·W) costs NumPy one inner-loop call per
        row, about as much as the row's arithmetic; a block-shaped array of
        the same factors is a contiguous operand that NumPy runs as one loop.
        Without ghost batches row r belongs to channel r mod C, so blocks that
        start at a multiple of C share one tile. Tiling pays only when there
        are at least two blocks to share it.
        """
        total, width = self.matrix.shape
        if self.groups != 1 or width >= SHORT_ROW:
            return None
        # a block's work reads tiles beside x (up to three of them), so tiled blocks are half as large
        step = max(1, BLOCK_BYTES // 2 // max(self.channels * width * self.matrix.itemsize, 1)) * self.channels
        return step if step < total else None

    def row_index(self) -> Array:
        """Per row, the flat index g·C + c of its (group, channel): what the compiled loops look factors up by."""
        total = self.matrix.shape[0]
        r = np.arange(total)
        return (r // (total // self.groups)) * self.channels + r % self.channels

    def spread(self, per_group: Array) -> Array | _Tiled:
        """(G, C) numbers repeated to one per row, for ``factor[block]`` beside ``matrix[block]`` in block work.

        A (rows, 1) column to broadcast along the rows, or, for short rows, a
        :class:`_Tiled` block of them (see :meth:`tile_rows`).
        """
        g, c = per_group.shape
        spread = np.broadcast_to(per_group[:, None, :], (g, self.matrix.shape[0] // (g * c), c)).reshape(-1, 1)
        tile = self.tile_rows()
        if tile is None:
            return spread
        return _Tiled(np.ascontiguousarray(np.broadcast_to(spread[:tile], (tile, self.matrix.shape[1]))))

    def like(self, shape: tuple[int, ...], dtype: Any) -> tuple[Array, Array]:
        """A new array of x's shape and memory layout, and its row matrix."""
        mem_shape = tuple(shape[a] for a in self.order)
        mem = np.empty(mem_shape, dtype=dtype)
        return mem.transpose(np.argsort(self.order)), mem.reshape(self.matrix.shape)

    def rows_of(self, a: Array) -> Array:
        """`a` (x's shape) as rows like x's, copying only when its layout differs from x's."""
        return np.ascontiguousarray(a.transpose(self.order)).reshape(self.matrix.shape)

    def for_each_block(self, work: Callable[[slice, Array], None], dtype: Any) -> None:
        """Call ``work(rows, scratch)`` for consecutive blocks of about BLOCK_BYTES, on up to THREADS threads.

        `scratch` is a buffer of the block's shape, the thread's own. NumPy
        releases the GIL inside its loops, so the threads' blocks run at once.
        """
        total, width = self.matrix.shape
        step = self.tile_rows() or max(1, BLOCK_BYTES // max(width * self.matrix.itemsize, 1))
        starts = list(range(0, total, step))
        threads = min(THREADS, len(starts))

        def run(part: list[int]) -> None:
            scratch = np.empty((min(step, total), width), dtype=dtype)
            for r0 in part:
                r1 = min(r0 + step, total)
                work(slice(r0, r1), scratch[: r1 - r0])

        if threads <= 1:
            run(starts)
            return
        size = -(-len(starts) // threads)
        parts = [starts[i : i + size] for i in range(0, len(starts), size)]
        for future in [_pool(threads).submit(run, part) for part in parts]:
            future.result()


class _Tiled:
    """Per-row factors of any block that starts at a multiple of C: one block-shaped array, cut to the block."""

    def __init__(self, tile: Array) -> None:
        self.tile = tile

    def __getitem__(self, block: slice) -> Array:
        return self.tile[: block.stop - block.start]


def _rows(x: Array, virtual_batch_size: int | None) -> Rows | None:
    """The row view of x, or None when x's layout has none (or ghost batches do not split the rows)."""
    order = tuple(int(a) for a in sorted(range(x.ndim), key=lambda a: (-x.strides[a], a)))
    mem = x.transpose(order)
    if not mem.flags.c_contiguous:
        return None
    p = order.index(1)
    a = math.prod(mem.shape[:p])
    b = math.prod(mem.shape[p + 1 :])
    groups = 1
    if virtual_batch_size is not None and x.shape[0] // virtual_batch_size > 1:
        if order[0] != 0 or p != 1:  # groups split the batch axis: it must be the outermost, before C
            return None
        groups = x.shape[0] // virtual_batch_size
    return Rows(mem.reshape(a * x.shape[1], b), order, groups, x.shape[1])


def applies(x: Array, virtual_batch_size: int | None, reduction: Any) -> bool:
    """Whether this fast path handles x: a NumPy array in a row layout, normalized by this process alone."""
    return (
        isinstance(reduction, LocalReduction)
        and backend.library_of(x) == "numpy"
        and x.ndim >= 2
        and _rows(x, virtual_batch_size) is not None
    )


@dataclass
class FusedCache:
    """What the fused backward needs (x itself, not x_bn); statistics shaped as the reference's, (G, 1, C, 1, ...)."""

    x: Array
    rows: Rows
    mu_b: Array
    sigma_b: Array
    gamma: Array | None
    input_shape: tuple[int, ...]
    axes: tuple[int, ...]
    r: Array | None = None
    d: Array | None = None
    r_unclipped: Array | None = None
    d_unclipped: Array | None = None
    share: float = 1.0

    @property
    def x_bn(self) -> Array:
        """(x − μ_B)/σ_B in the reference's grouped layout (computed on demand, for inspection)."""
        g = self.mu_b.shape[0]
        xg = self.x.reshape((g, self.x.shape[0] // g) + tuple(self.x.shape[1:]))
        return (xg - self.mu_b) / self.sigma_b


def _stat(per_group: Array, ndim: int) -> Array:
    """(G, C) as the reference's statistic shape (G, 1, C, 1, ...) for a grouped array of `ndim` axes."""
    g, c = per_group.shape
    return per_group.reshape((g, 1, c) + (1,) * (ndim - 3))


def _moments(rows: Rows, eps: float, dtype: Any) -> tuple[Array, Array, int]:
    """μ_B and σ_B per (group, channel), two passes, the second one block by block in cache."""
    x2 = rows.matrix
    m = x2.size // (rows.groups * rows.channels)
    ones = np.ones(x2.shape[1], dtype=x2.dtype)
    mu_b = rows.fold(x2 @ ones) / m  # μ_B ← (1/m) Σ_i x_i (row sums through BLAS)
    squares = np.empty(x2.shape[0], dtype=dtype)
    loops = _loops()
    if loops is not None:
        index, mu_flat = rows.row_index(), _flat(mu_b, dtype)

        def sum_squares(block: slice, _: Array) -> None:
            loops.centred_squares(x2[block], index[block], mu_flat, squares[block])  # Σ (x_i − μ_B)², one pass
    else:
        mu_rows = rows.spread(mu_b.astype(dtype))

        def sum_squares(block: slice, scratch: Array) -> None:
            xc = np.subtract(x2[block], mu_rows[block], out=scratch)  # x_i − μ_B, in cache
            squares[block] = np.einsum("rb,rb->r", xc, xc)

    rows.for_each_block(sum_squares, dtype)
    sigma_b = np.sqrt(eps + rows.fold(squares) / m)  # σ_B ← sqrt(ε + (1/m) Σ_i (x_i − μ_B)²)
    return mu_b.astype(dtype), sigma_b.astype(dtype), m


def _affine(rows: Rows, x_shape: tuple[int, ...], mu_b: Array, scale: Array, shift: Array, dtype: Any) -> Array:
    """y = (x − μ_B) · scale + shift per (group, channel), block by block, computed as x · scale + (shift − μ_B · scale)."""
    y, y2 = rows.like(x_shape, dtype)
    x2 = rows.matrix
    shift = shift - mu_b * scale
    loops = _loops()
    if loops is not None:
        index, scale_flat, shift_flat = rows.row_index(), _flat(scale, dtype), _flat(shift, dtype)

        def scale_shift(block: slice, _: Array) -> None:
            loops.scale_shift(x2[block], index[block], scale_flat, shift_flat, y2[block])
    else:
        scale_rows, shift_rows = rows.spread(scale), rows.spread(shift)

        def scale_shift(block: slice, _: Array) -> None:
            out = np.multiply(x2[block], scale_rows[block], out=y2[block])
            out += shift_rows[block]

    rows.for_each_block(scale_shift, dtype)
    return y


def _gamma_beta(gamma: Array | None, beta: Array | None, groups: int, c: int, dtype: Any) -> tuple[Array, Array]:
    g = np.ones((groups, c), dtype) if gamma is None else np.broadcast_to(gamma.astype(dtype)[None, :], (groups, c))
    b = np.zeros((groups, c), dtype) if beta is None else np.broadcast_to(beta.astype(dtype)[None, :], (groups, c))
    return g, b


def _axes(ndim: int) -> tuple[int, ...]:
    return (1,) + tuple(range(3, ndim + 1))


def batch_norm_forward(
    x: Array, gamma: Array | None, beta: Array | None, eps: float, virtual_batch_size: int | None = None
) -> tuple[Array, FusedCache]:
    """:func:`minigrad.norm.kernels.batch_norm_forward`, fused (see the module docstring)."""
    rows = _rows(x, virtual_batch_size)
    dtype = np.result_type(x, *(v for v in (gamma, beta) if v is not None))
    mu_b, sigma_b, _ = _moments(rows, eps, dtype)
    g, b = _gamma_beta(gamma, beta, rows.groups, rows.channels, dtype)
    y = _affine(rows, tuple(x.shape), mu_b, g / sigma_b, b, dtype)  # y_i ← γ (x_i − μ_B)/σ_B + β
    ndim = x.ndim + 1
    cache = FusedCache(x, rows, _stat(mu_b, ndim), _stat(sigma_b, ndim), gamma, tuple(x.shape), _axes(x.ndim))
    return y, cache


def batch_renorm_forward(
    x: Array,
    gamma: Array | None,
    beta: Array | None,
    running_mean: Array,
    running_std: Array,
    r_max: float,
    d_max: float,
    eps: float,
    virtual_batch_size: int | None = None,
    *,
    r: Array | float | None = None,
    d: Array | float | None = None,
) -> tuple[Array, FusedCache]:
    """:func:`minigrad.norm.kernels.batch_renorm_forward`, fused (see the module docstring)."""
    rows = _rows(x, virtual_batch_size)
    dtype = np.result_type(x, *(v for v in (gamma, beta) if v is not None))
    mu_b, sigma_b, _ = _moments(rows, eps, dtype)
    mu = running_mean.astype(dtype)[None, :]  # μ (before this step's update)
    sigma = running_std.astype(dtype)[None, :]  # σ
    ndim = x.ndim + 1
    stat_shape = tuple(_stat(mu_b, ndim).shape)
    r_unclipped = d_unclipped = None
    if r is None:
        r_unclipped = sigma_b / sigma  # σ_B / σ
        r_gc = np.clip(r_unclipped, 1.0 / r_max, float(r_max))  # r ← clip(σ_B/σ)
    else:
        r_gc = fixed_correction(r, x, stat_shape, "r").reshape(mu_b.shape)
    if d is None:
        d_unclipped = (mu_b - mu) / sigma  # (μ_B − μ) / σ
        d_gc = np.clip(d_unclipped, -float(d_max), float(d_max))  # d ← clip((μ_B − μ)/σ)
    else:
        d_gc = fixed_correction(d, x, stat_shape, "d").reshape(mu_b.shape)
    g, b = _gamma_beta(gamma, beta, rows.groups, rows.channels, dtype)
    # y_i = γ (x_bn_i r + d) + β = (x_i − μ_B) · γ r/σ_B + (γ d + β)
    y = _affine(rows, tuple(x.shape), mu_b, g * r_gc / sigma_b, g * d_gc + b, dtype)
    cache = FusedCache(
        x, rows, _stat(mu_b, ndim), _stat(sigma_b, ndim), gamma, tuple(x.shape), _axes(x.ndim),
        _stat(r_gc, ndim), _stat(d_gc, ndim),
        None if r_unclipped is None else _stat(r_unclipped, ndim),
        None if d_unclipped is None else _stat(d_unclipped, ndim),
    )  # fmt: skip
    return y, cache


def training_backward(dy: Array, cache: FusedCache, need_dx: bool = True) -> tuple[Array | None, Array, Array]:
    """:func:`minigrad.norm.kernels.training_backward`, fused: the same section 3 equations, block by block."""
    rows = cache.rows
    x2 = rows.matrix
    dy2 = rows.rows_of(dy)
    dtype = np.result_type(dy2, cache.mu_b)
    g_count, c = rows.groups, rows.channels
    m = x2.size // (g_count * c)
    mu_b = cache.mu_b.reshape(g_count, c)
    sigma_b = cache.sigma_b.reshape(g_count, c)
    dy_xc = np.empty(x2.shape[0], dtype=dtype)
    loops = _loops()
    if loops is not None:
        index, mu_flat = rows.row_index(), _flat(mu_b, dtype)
        dy_rows = np.empty(x2.shape[0], dtype=dtype)

        def sums(block: slice, _: Array) -> None:  # Σ_i dℓ/dy_i and Σ_i dℓ/dy_i (x_i − μ_B), per row, one pass
            loops.gradient_sums(x2[block], dy2[block], index[block], mu_flat, dy_rows[block], dy_xc[block])

        rows.for_each_block(sums, dtype)
        sum_dy = rows.fold(dy_rows)
    else:
        mu_rows = rows.spread(mu_b)
        ones = np.ones(x2.shape[1], dtype=dy2.dtype)
        sum_dy = rows.fold(dy2 @ ones)  # Σ_i dℓ/dy_i per (group, channel)

        def sum_products(block: slice, scratch: Array) -> None:
            xc = np.subtract(x2[block], mu_rows[block], out=scratch)
            dy_xc[block] = np.einsum("rb,rb->r", dy2[block], xc)  # Σ_i dℓ/dy_i (x_i − μ_B), per row

        rows.for_each_block(sum_products, dtype)
    sum_dy_x_bn = rows.fold(dy_xc) / sigma_b  # Σ_i dℓ/dy_i · x_bn_i
    dbeta = sum_dy.sum(axis=0)  # ∂ℓ/∂β = Σ_i ∂ℓ/∂y_i
    if cache.r is None:
        dgamma = sum_dy_x_bn.sum(axis=0)  # ∂ℓ/∂γ = Σ_i ∂ℓ/∂y_i · x̂_i
        r = np.ones_like(sum_dy)
    else:
        r = cache.r.reshape(g_count, c)
        dgamma = (r * sum_dy_x_bn + cache.d.reshape(g_count, c) * sum_dy).sum(axis=0)  # Σ ∂ℓ/∂y_i (x_bn_i r + d)
    if not need_dx:
        return None, dgamma, dbeta
    gamma = np.ones((1, c), dtype) if cache.gamma is None else cache.gamma.astype(dtype)[None, :]
    scale = gamma * r / sigma_b  # γ r/σ_B
    # ∂ℓ/∂x_i = γ r/σ_B · (∂ℓ/∂y_i − (1/m) Σ_j ∂ℓ/∂y_j − x_bn_i (1/m) Σ_j ∂ℓ/∂y_j x_bn_j)
    #         = a · ∂ℓ/∂y_i + b · (x_i − μ_B) + c, with per-(group, channel) a, b, c,
    #         = a · ∂ℓ/∂y_i + b · x_i + (c − b · μ_B)   (μ_B folded, see the module docstring)
    b = -scale * sum_dy_x_bn / (m * sigma_b)
    offset = -scale * sum_dy / m - b * mu_b  # c − b · μ_B
    dx, dx2 = rows.like(cache.input_shape, dtype)
    if loops is not None:
        a_flat, b_flat, c_flat = (_flat(np.broadcast_to(f, mu_b.shape), dtype) for f in (scale, b, offset))

        def input_grad(block: slice, _: Array) -> None:
            loops.input_grad(x2[block], dy2[block], index[block], a_flat, b_flat, c_flat, dx2[block])
    else:
        a_rows, b_rows, c_rows = rows.spread(scale), rows.spread(b), rows.spread(offset)

        def input_grad(block: slice, scratch: Array) -> None:
            out = np.multiply(x2[block], b_rows[block], out=dx2[block])
            out += c_rows[block]
            out += np.multiply(dy2[block], a_rows[block], out=scratch)

    rows.for_each_block(input_grad, dtype)
    return dx, dgamma, dbeta
