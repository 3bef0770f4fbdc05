"""im2col and col2im: convolution and pooling lowered to one matrix product.

A 2-d convolution (and a pooling window) becomes one matrix product once
every window of the input is laid out as a column. For an input of shape
(N, C, H, W), kernel (kh, kw), stride (sh, sw) and padding (ph, pw), the
"columns" matrix has shape (C * kh * kw, OH * OW * N):

    cols[(c, i, j), (oh, ow, n)] = padded[n, c, oh * sh + i, ow * sw + j]

Rows are ordered (c, i, j), the order of a weight (out_c, C, kh, kw)
reshaped to (out_c, C * kh * kw), so a convolution of the whole batch is one
GEMM, ``weight_matrix @ cols``, and the weight gradient ``grad @ cols.T``
needs no sum over the batch. Columns are ordered (oh, ow, n), batch
innermost, for speed on the CPU: the product's result (out_c, OH, OW, N) is
returned to callers as an (N, C, H, W) *view* whose memory is channel-major
and batch-innermost ("CHWN"). When the next convolution or pooling reads
that memory, consecutive columns are consecutive floats: with stride 1 a
window offset is one run of OW * N floats, where an NCHW order would give runs
of only OW (16 floats at 16x16), and both im2col and col2im run 2-4x faster
(measured on NumPy). Callers never depend on the memory order; it only
changes speed.

col2im is the adjoint (transpose) of im2col: it adds each column entry back
to the input pixel it came from, so overlapping windows accumulate; it is
the backward of im2col. Both have a portable version (a loop over the
kh * kw kernel offsets with strided slicing, in the array API standard
alone) and a fast path for NumPy and CuPy: im2col reads every window through
one strided view (``as_strided``) and copies it once; col2im adds in place
(``+=`` on a slice) instead of building a temporary for each offset. When the
windows tile the input (stride = kernel, no padding: 2x2 max pooling), no two
column entries meet, and col2im is one reordering copy on every library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from minigrad import array_extras, backend

Array = Any


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Number of window positions along one axis: floor((size + 2 * padding - kernel) / stride) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def _window_geometry(
    shape: Sequence[int], kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int]
) -> tuple[int, int, int, int, int, int]:
    """(N, C, H, W, OH, OW) for an NCHW `shape`, checking that at least one window fits."""
    if len(shape) != 4:
        raise ValueError(f"im2col/col2im: expected an input shape (N, C, H, W), got {tuple(shape)}")
    n, c, h, w = (int(s) for s in shape)
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
        raise ValueError(
            f"im2col/col2im: expected positive kernel_size and stride and non-negative padding, "
            f"got kernel_size={tuple(kernel_size)}, stride={tuple(stride)}, padding={tuple(padding)}"
        )
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(f"im2col/col2im: kernel_size {(kh, kw)} is larger than the padded input {(h + 2 * ph, w + 2 * pw)}")
    return n, c, h, w, conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)


def _padded_chwn(x: Array, ph: int, pw: int, value: float) -> Array:
    """`x` (N, C, H, W) as a (C, H + 2ph, W + 2pw, N) array with `value` in the border (a copy)."""
    xp = backend.namespace(x)
    n, c, h, w = x.shape
    out = xp.empty((c, h + 2 * ph, w + 2 * pw, n), dtype=x.dtype, device=backend.device(x))
    out[:, ph : ph + h, pw : pw + w, :] = xp.permute_dims(x, (1, 2, 3, 0))
    # only the border is filled: one pass over the buffer instead of two
    out[:, :ph, :, :] = value
    out[:, ph + h :, :, :] = value
    out[:, ph : ph + h, :pw, :] = value
    out[:, ph : ph + h, pw + w :, :] = value
    return out


def _spans(kernel_size, stride, out_size) -> list[tuple[int, int, slice, slice]]:
    """For each kernel offset (i, j): the rows i, i + sh, ... and columns j, j + sw, ... its windows read."""
    (kh, kw), (sh, sw), (oh, ow) = kernel_size, stride, out_size
    return [
        (i, j, slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw))
        for i in range(kh)
        for j in range(kw)
    ]


def im2col(
    x: Array,
    kernel_size: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    pad_value: float = 0.0,
) -> Array:
    """The windows of `x` (N, C, H, W) as columns: an array of shape (C * kh * kw, OH * OW * N).

    Entry ``[(c, i, j), (oh, ow, n)]`` is ``padded[n, c, oh * sh + i, ow * sw + j]``,
    where ``padded`` is `x` with `padding` rows/columns of `pad_value` on each side
    (0 for convolution and average pooling, -inf for max pooling).
    NumPy and CuPy copy one strided view; other libraries use :func:`im2col_portable`.
    """
    if array_extras.has_strided_views(x):
        return _im2col_strided(x, kernel_size, stride, padding, pad_value)
    return im2col_portable(x, kernel_size, stride, padding, pad_value)


def _im2col_strided(x: Array, kernel_size, stride, padding, pad_value: float) -> Array:
    """im2col through one strided view (NumPy, CuPy): no Python loop, one copy of the windows.

    The input is first copied into a padded, batch-innermost (C, Hp, Wp, N)
    buffer (one pass, about 1 / (kh * kw) of the work) so that the big copy
    reads long runs of consecutive floats whatever the input's memory order.
    Without padding, an input that is already batch-innermost (the output of
    a previous convolution or pooling) is read in place.
    """
    n, c, _, _, oh, ow = _window_geometry(x.shape, kernel_size, stride, padding)
    (kh, kw), (sh, sw) = kernel_size, stride
    if padding == (0, 0) and x.strides[0] == x.itemsize:
        padded = x.transpose(1, 2, 3, 0)  # a view (C, H, W, N) of batch-innermost memory
    else:
        padded = _padded_chwn(x, padding[0], padding[1], pad_value)
    s_c, s_h, s_w, s_n = padded.strides  # in bytes
    # axes (C, kh, kw, OH, OW, N): a kernel offset moves one pixel, a window position one stride
    windows = array_extras.as_strided(padded, shape=(c, kh, kw, oh, ow, n), strides=(s_c, s_h, s_w, s_h * sh, s_w * sw, s_n))
    return windows.reshape(c * kh * kw, oh * ow * n)  # copies: the windows overlap in memory


def im2col_portable(
    x: Array,
    kernel_size: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    pad_value: float = 0.0,
) -> Array:
    """:func:`im2col` in the array API standard alone: one strided slice per kernel offset, then one stack."""
    xp = backend.namespace(x)
    n, c, _, _, oh, ow = _window_geometry(x.shape, kernel_size, stride, padding)
    kh, kw = kernel_size
    padded = _padded_chwn(x, padding[0], padding[1], pad_value)
    patches = [padded[:, rows, cols, :] for _, _, rows, cols in _spans(kernel_size, stride, (oh, ow))]
    stacked = xp.stack(patches, axis=1)  # (C, kh * kw, OH, OW, N)
    return xp.reshape(stacked, (c * kh * kw, oh * ow * n))


def col2im(
    cols: Array,
    input_shape: Sequence[int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
) -> Array:
    """The adjoint of :func:`im2col`: an array of `input_shape` (N, C, H, W) where every
    column entry is added to the input pixel it was read from (padding is dropped).

    NumPy and CuPy accumulate in place; other libraries use :func:`col2im_portable`.
    The result is a view of a batch-innermost buffer (see the section comment).
    """
    if _windows_tile(kernel_size, stride, padding):
        return _col2im_tiles(cols, input_shape, kernel_size)
    if array_extras.has_strided_views(cols):
        return _col2im_loop(cols, input_shape, kernel_size, stride, padding, in_place=True)
    return col2im_portable(cols, input_shape, kernel_size, stride, padding)


def _windows_tile(kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int]) -> bool:
    """Whether the windows tile the input without overlap (stride = kernel, no padding): 2x2 pooling, say."""
    return tuple(stride) == tuple(kernel_size) and tuple(padding) == (0, 0)


def _col2im_tiles(cols: Array, input_shape: Sequence[int], kernel_size: tuple[int, int]) -> Array:
    """col2im for windows that tile the input: no entry overlaps another, so it is a reordering, not a sum.

    ``out[c, oh * kh + i, ow * kw + j, n] = cols[(c, i, j), (oh, ow, n)]``: the columns
    reshaped to (C, kh, kw, OH, OW, N) and permuted to (C, OH, kh, OW, kw, N), one
    copy; rows and columns past the last whole window (an odd size) stay zero.
    """
    xp = backend.namespace(cols)
    n, c, h, w, oh, ow = _window_geometry(input_shape, kernel_size, kernel_size, (0, 0))
    kh, kw = kernel_size
    _check_columns(cols, input_shape, (c * kh * kw, oh * ow * n))
    blocks = xp.reshape(cols, (c, kh, kw, oh, ow, n))
    tiles = xp.reshape(xp.permute_dims(blocks, (0, 3, 1, 4, 2, 5)), (c, oh * kh, ow * kw, n))
    if (oh * kh, ow * kw) != (h, w):
        out = xp.zeros((c, h, w, n), dtype=cols.dtype, device=backend.device(cols))
        out[:, : oh * kh, : ow * kw, :] = tiles
        tiles = out
    return xp.permute_dims(tiles, (3, 0, 1, 2))


def _check_columns(cols: Array, input_shape: Sequence[int], expected: tuple[int, int]) -> None:
    if tuple(cols.shape) != expected:
        raise ValueError(
            f"col2im: expected columns of shape {expected} for input shape {tuple(input_shape)}, got {tuple(cols.shape)}"
        )


def col2im_portable(
    cols: Array,
    input_shape: Sequence[int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
) -> Array:
    """:func:`col2im` in the array API standard alone (``out[slice] = out[slice] + patch`` per kernel offset)."""
    return _col2im_loop(cols, input_shape, kernel_size, stride, padding, in_place=False)


def _col2im_loop(cols: Array, input_shape, kernel_size, stride, padding, in_place: bool) -> Array:
    """Add the columns of each kernel offset into a padded (C, Hp, Wp, N) buffer, then crop and reorder."""
    xp = backend.namespace(cols)
    n, c, h, w, oh, ow = _window_geometry(input_shape, kernel_size, stride, padding)
    (kh, kw), (ph, pw) = kernel_size, padding
    _check_columns(cols, input_shape, (c * kh * kw, oh * ow * n))
    blocks = xp.reshape(cols, (c, kh, kw, oh, ow, n))
    out = xp.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype=cols.dtype, device=backend.device(cols))
    for i, j, rows, columns in _spans(kernel_size, stride, (oh, ow)):
        target = (slice(None), rows, columns, slice(None))
        if in_place:
            out[target] += blocks[:, i, j, ...]
        else:
            out[target] = out[target] + blocks[:, i, j, ...]
    return xp.permute_dims(out[:, ph : ph + h, pw : pw + w, :], (3, 0, 1, 2))
