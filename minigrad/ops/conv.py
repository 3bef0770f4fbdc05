"""Convolution, pooling and dropout on NCHW tensors.

A 2-d convolution is lowered to one matrix product: :func:`minigrad.ops.im2col.im2col`
lays every input window out as a column, so with the weight (out_c, in_c, kh, kw)
flattened to a matrix (out_c, in_c * kh * kw) the whole batch is
``weight_matrix @ cols``. The backward is two more products and
:func:`minigrad.ops.im2col.col2im`, the adjoint of im2col, which adds each column
entry back to the pixel it came from (overlapping windows accumulate).

Pooling reuses the same columns: max pooling takes the maximum of each window
and sends the gradient back to the element that won; average pooling takes the
mean and spreads the gradient evenly. Layouts: inputs and outputs are (N, C, H, W).

The outputs of convolution and pooling are (N, C, H, W) views of channel-major,
batch-innermost memory, the order in which the next im2col reads fastest (see
the comment above :func:`minigrad.ops.im2col.im2col`); every op accepts any memory
layout, so no copy is made only to reorder memory.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

from minigrad import backend
from minigrad.ops.im2col import col2im, conv_output_size, im2col
from minigrad.ops.reduce import mean
from minigrad.random import Generator, default_generator
from minigrad.tensor import Function, Tensor

IntPair = int | tuple[int, int]


def pair_argument(value: Any, op: str, argument: str, minimum: int) -> tuple[int, int]:
    """`value` (an int or a pair of ints) as a pair, each at least `minimum`; errors name `op` and `argument`."""

    def is_int(v: Any) -> bool:
        return isinstance(v, Integral) and not isinstance(v, bool)

    pair = (value, value) if is_int(value) else value
    valid = isinstance(pair, (tuple, list)) and len(pair) == 2 and all(is_int(v) for v in pair)
    if not valid:
        raise TypeError(f"{op}: {argument}: expected an int or a pair of ints (h, w), got {value!r}")
    if min(pair) < minimum:
        expected = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{op}: {argument}: expected {expected} values, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_input(op: str, x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: x: expected a Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{op}: x: expected a 4-d input (N, C, H, W), got shape {x.shape}")


def _check_fits(op: str, x: Tensor, kernel: tuple[int, int], padding: tuple[int, int]) -> None:
    padded = (x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1])
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise ValueError(
            f"{op}: kernel_size {kernel} is larger than the padded input {padded} (input {x.shape[2:]}, padding {padding})"
        )


def _to_nchw(out: Any, channels: int, n: int, oh: int, ow: int) -> Any:
    """A (C, OH * OW * N) result of a column product as an (N, C, OH, OW) array (a view, no copy)."""
    xp = backend.namespace(out)
    return xp.permute_dims(xp.reshape(out, (channels, oh, ow, n)), (3, 0, 1, 2))


def _from_nchw(grad: Any) -> Any:
    """An (N, C, OH, OW) gradient as the (C, OH * OW * N) matrix that matches the columns."""
    xp = backend.namespace(grad)
    return xp.reshape(xp.permute_dims(grad, (1, 2, 3, 0)), (grad.shape[1], -1))


# ----------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------


class Conv2d(Function):
    """Cross-correlation of x (N, C, H, W) with weight (O, C, kh, kw), plus an optional bias (O,).

    Forward: ``out = W @ cols + b`` with ``W`` the weight as an (O, C*kh*kw) matrix
    and ``cols = im2col(x)``. Backward, with ``g`` the output gradient as an
    (O, OH*OW*N) matrix: ``dW = g @ cols.T``, ``db = sum of g over its columns``,
    ``dx = col2im(W.T @ g)`` (:func:`input_grad_col2im`). Gradients no input needs
    are skipped (the network input's dx, the most expensive one, is never computed).

    With stride 1 the same dx is computed as a convolution (:func:`input_grad_convolution`):
    the output gradient, padded by k - 1 - p, convolved with the kernel flipped
    in both spatial axes and with its in/out channels swapped. It is the same
    sum, but it reads the windows with one im2col copy instead of adding kh * kw
    shifted blocks into the input gradient (col2im), which is most of the backward's
    memory traffic after the matrix products. ``tests/test_conv.py`` checks that the
    two agree.
    """

    stride: tuple[int, int]
    padding: tuple[int, int]

    def forward(self, x, weight, bias=None):
        xp = backend.namespace(x, weight)
        out_c, _, kh, kw = weight.shape
        n, _, h, w = x.shape
        self.input_shape, self.weight_shape, self.kernel = tuple(x.shape), tuple(weight.shape), (kh, kw)
        oh = conv_output_size(h, kh, self.stride[0], self.padding[0])
        ow = conv_output_size(w, kw, self.stride[1], self.padding[1])
        self.cols = im2col(x, (kh, kw), self.stride, self.padding)
        self.weight_matrix = xp.reshape(weight, (out_c, -1))
        out = self.weight_matrix @ self.cols
        if bias is not None:
            out = out + xp.reshape(bias, (out_c, 1))
        return _to_nchw(out, out_c, n, oh, ow)

    def backward(self, grad):
        xp = backend.namespace(grad)
        g = _from_nchw(grad)
        needs = self.needs_input_grad
        grad_x = grad_w = grad_b = None
        if needs[0]:
            if transposed_convolution_applies(self.kernel, self.stride, self.padding):
                grad_x = input_grad_convolution(grad, self.weight_matrix, self.input_shape, self.kernel, self.padding)
            else:
                grad_x = input_grad_col2im(g, self.weight_matrix, self.input_shape, self.kernel, self.stride, self.padding)
        if needs[1]:
            # dW = g @ cols.T, computed as (cols @ g.T).T: the same product, which OpenBLAS runs about
            # 10% faster in this orientation (measured at the CIFAR model's shapes).
            grad_w_t = self.cols @ xp.matrix_transpose(g)
            grad_w = xp.reshape(xp.matrix_transpose(grad_w_t), self.weight_shape)
        if len(needs) == 3 and needs[2]:
            grad_b = xp.sum(g, axis=1)
        return (grad_x, grad_w, grad_b)[: len(needs)]


def input_grad_col2im(
    g: Any, weight_matrix: Any, input_shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int],
    padding: tuple[int, int],
) -> Any:  # fmt: skip
    """dx of a convolution, the textbook way: ``col2im(W.T @ g)``, any stride and padding.

    `g` is the output gradient as an (O, OH*OW*N) matrix, `weight_matrix` the weight as (O, C*kh*kw).
    """
    xp = backend.namespace(g)
    grad_cols = xp.matrix_transpose(weight_matrix) @ g
    return col2im(grad_cols, input_shape, kernel, stride, padding)


def transposed_convolution_applies(kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]) -> bool:
    """Whether :func:`input_grad_convolution` computes dx: stride 1 and padding below the kernel size."""
    return stride == (1, 1) and padding[0] < kernel[0] and padding[1] < kernel[1]


def input_grad_convolution(
    grad: Any, weight_matrix: Any, input_shape: tuple[int, ...], kernel: tuple[int, int], padding: tuple[int, int]
) -> Any:
    """dx of a stride-1 convolution as a convolution of the output gradient `grad` (N, O, OH, OW).

    ``dx[n, c, y, x] = sum over o, i, j of g[n, o, y + p - i, x + p - j] * W[o, c, i, j]``:
    a cross-correlation of g, padded by (kh - 1 - ph, kw - 1 - pw), with the kernel
    ``W[o, c, kh - 1 - i, kw - 1 - j]`` as a (C, O*kh*kw) matrix. The output has the
    input's size: OH + 2 (kh - 1 - ph) - kh + 1 = H. The result is an NCHW view of
    channel-major, batch-innermost memory, like every convolution output.
    """
    xp = backend.namespace(grad, weight_matrix)
    (kh, kw), (ph, pw) = kernel, padding
    n, c, h, w = input_shape
    out_c = weight_matrix.shape[0]
    flipped = xp.flip(xp.reshape(weight_matrix, (out_c, c, kh, kw)), axis=(2, 3))
    flipped = xp.reshape(xp.permute_dims(flipped, (1, 0, 2, 3)), (c, out_c * kh * kw))
    cols = im2col(grad, kernel, (1, 1), (kh - 1 - ph, kw - 1 - pw))
    return _to_nchw(flipped @ cols, c, n, h, w)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntPair = 1, padding: IntPair = 0) -> Tensor:
    """2-d convolution (cross-correlation, as in PyTorch) of an NCHW batch.

    Args:
        x: input of shape (N, C, H, W).
        weight: filters of shape (out_channels, C, kh, kw).
        bias: optional (out_channels,), added to every output pixel.
        stride: step between windows, an int or (sh, sw); positive.
        padding: zeros added on each side, an int or (ph, pw); non-negative.

    Returns:
        (N, out_channels, OH, OW) with OH = (H + 2 ph - kh) // sh + 1 (OW likewise).
    """
    _check_input("conv2d", x)
    if not isinstance(weight, Tensor) or weight.ndim != 4:
        shown = weight.shape if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"conv2d: weight: expected a 4-d Tensor (out_channels, in_channels, kh, kw), got {shown}")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"conv2d: x has {x.shape[1]} channels (shape {x.shape}) but weight expects in_channels={weight.shape[1]} "
            f"(shape {weight.shape})"
        )
    stride = pair_argument(stride, "conv2d", "stride", 1)
    padding = pair_argument(padding, "conv2d", "padding", 0)
    if min(weight.shape[2:]) < 1:
        raise ValueError(f"conv2d: weight: expected a non-empty kernel, got shape {weight.shape}")
    _check_fits("conv2d", x, weight.shape[2:], padding)
    if bias is None:
        return Conv2d.apply(x, weight, stride=stride, padding=padding)
    if not isinstance(bias, Tensor) or bias.shape != (weight.shape[0],):
        shown = bias.shape if isinstance(bias, Tensor) else type(bias).__name__
        raise ValueError(f"conv2d: bias: expected a Tensor of shape ({weight.shape[0]},), got {shown}")
    return Conv2d.apply(x, weight, bias, stride=stride, padding=padding)


# ----------------------------------------------------------------------------
# Pooling
# ----------------------------------------------------------------------------


def _pool_arguments(
    op: str, x: Tensor, kernel_size: IntPair, stride: IntPair | None, padding: IntPair
) -> dict[str, tuple[int, int]]:
    """Checked pooling arguments; `stride` defaults to `kernel_size`, padding is at most half the kernel."""
    _check_input(op, x)
    kernel = pair_argument(kernel_size, op, "kernel_size", 1)
    stride = kernel if stride is None else pair_argument(stride, op, "stride", 1)
    padding = pair_argument(padding, op, "padding", 0)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(
            f"{op}: padding: expected at most half of kernel_size {kernel} on each axis "
            f"(so every window holds an input element), got {padding}"
        )
    _check_fits(op, x, kernel, padding)
    return {"kernel": kernel, "stride": stride, "padding": padding}


class _Pool2d(Function):
    """Shared set-up of the pooling ops: windows as a (C, kh*kw, OH*OW*N) array."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    pad_value = 0.0

    def _windows(self, x):
        xp = backend.namespace(x)
        _, c, h, w = x.shape
        self.input_shape = tuple(x.shape)
        self.out_size = (
            conv_output_size(h, self.kernel[0], self.stride[0], self.padding[0]),
            conv_output_size(w, self.kernel[1], self.stride[1], self.padding[1]),
        )
        cols = im2col(x, self.kernel, self.stride, self.padding, pad_value=self.pad_value)
        return xp.reshape(cols, (c, self.kernel[0] * self.kernel[1], -1))

    def _output(self, pooled):
        n, c = self.input_shape[:2]
        return _to_nchw(pooled, c, n, *self.out_size)

    def _input_grad(self, grad_windows):
        xp = backend.namespace(grad_windows)
        cols = xp.reshape(grad_windows, (-1, grad_windows.shape[2]))
        return col2im(cols, self.input_shape, self.kernel, self.stride, self.padding)


class MaxPool2d(_Pool2d):
    """Maximum over each window; padding counts as -inf, so it never wins.

    The gradient goes to one element per window: the first maximum in row-major
    window order (what ``argmax`` returns). Ties therefore send the whole
    gradient to the top-left winner instead of splitting it; overlapping
    windows that share a winner add their gradients there.
    """

    pad_value = -math.inf

    def forward(self, x):
        xp = backend.namespace(x)
        windows = self._windows(x)
        best = xp.max(windows, axis=1)  # (C, OH*OW*N); a NaN in a window makes its maximum NaN
        # The winner is the first window offset that holds the maximum (or a NaN): what argmax over
        # axis 1 returns. Speed: NumPy's argmax over this short middle axis is about ten times
        # slower than these elementwise passes, one per offset, from the last offset to the first
        # so that the first offset that holds the maximum is the one that stays (and arithmetic
        # rather than `where`, which NumPy runs slowly with a scalar operand).
        winner = xp.zeros(best.shape, dtype=xp.int32, device=best.device)
        for offset in reversed(range(windows.shape[1])):
            candidate = windows[:, offset, :]
            holds = xp.astype((candidate == best) | (candidate != candidate), xp.int32)  # 1: the maximum, or a NaN
            winner += holds * (offset - winner)  # `offset` where it holds, unchanged elsewhere
        self.winner = winner
        return self._output(best)

    def backward(self, grad):
        xp = backend.namespace(grad)
        size = self.kernel[0] * self.kernel[1]
        offsets = xp.arange(size, device=self.winner.device)
        is_winner = offsets[None, :, None] == self.winner[:, None, :]
        # A product with the 0/1 mask rather than `where`, which NumPy runs about three times slower here; the
        # two differ only for a non-finite gradient (0 * inf is NaN where `where` would give 0).
        grad_windows = xp.astype(is_winner, grad.dtype) * _from_nchw(grad)[:, None, :]
        return self._input_grad(grad_windows)


class AvgPool2d(_Pool2d):
    """Mean over each window; padded zeros count in the mean (PyTorch's default ``count_include_pad=True``)."""

    def forward(self, x):
        return self._output(backend.namespace(x).mean(self._windows(x), axis=1))

    def backward(self, grad):
        xp = backend.namespace(grad)
        size = self.kernel[0] * self.kernel[1]
        g = _from_nchw(grad)[:, None, :] / size
        return self._input_grad(xp.broadcast_to(g, (g.shape[0], size, g.shape[2])))


def max_pool2d(x: Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0) -> Tensor:
    """Maximum over windows of an NCHW batch.

    Args:
        x: floating input of shape (N, C, H, W).
        kernel_size: window size, an int or (kh, kw).
        stride: step between windows; defaults to `kernel_size` (non-overlapping windows).
        padding: -inf added on each side, at most half the kernel (every window keeps an input element).

    The gradient of each window goes to its first maximum (see :class:`MaxPool2d`).
    """
    arguments = _pool_arguments("max_pool2d", x, kernel_size, stride, padding)
    if not backend.is_floating(x.data):
        raise TypeError(f"max_pool2d: x: expected a floating dtype, got {backend.dtype_name(x.dtype)}")
    return MaxPool2d.apply(x, **arguments)


def avg_pool2d(x: Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0) -> Tensor:
    """Mean over windows of an NCHW batch; arguments as :func:`max_pool2d`, padding adds zeros that count in the mean."""
    arguments = _pool_arguments("avg_pool2d", x, kernel_size, stride, padding)
    if not backend.is_floating(x.data):
        raise TypeError(f"avg_pool2d: x: expected a floating dtype, got {backend.dtype_name(x.dtype)}")
    return AvgPool2d.apply(x, **arguments)


def global_avg_pool2d(x: Tensor) -> Tensor:
    """Mean over all pixels of each channel: (N, C, H, W) -> (N, C)."""
    _check_input("global_avg_pool2d", x)
    return mean(x, axis=(2, 3))


# ----------------------------------------------------------------------------
# Dropout
# ----------------------------------------------------------------------------


class Dropout(Function):
    """x times a fixed mask of 0 and 1 / (1 - p); the same mask scales the gradient."""

    scale: Any

    def forward(self, x):
        return x * self.scale

    def backward(self, grad):
        return grad * self.scale


def dropout(x: Tensor, p: float, training: bool, generator: Generator | None = None) -> Tensor:
    """Zero each element with probability `p` and scale the rest by 1 / (1 - p) (inverted dropout).

    The scaling keeps the expected value of every element unchanged, so nothing
    needs rescaling at evaluation time, when (``training=False``) `x` is
    returned as it is. Draws come from `generator` (default: the global
    :func:`~minigrad.random.default_generator`), so runs are reproducible by seed.
    """
    if isinstance(p, bool) or not isinstance(p, Real) or not 0 <= p < 1:
        raise ValueError(f"dropout: p: expected a probability in [0, 1), got {p!r}")
    if not isinstance(x, Tensor):
        raise TypeError(f"dropout: x: expected a Tensor, got {type(x).__name__}")
    if not backend.is_floating(x.data):
        raise TypeError(f"dropout: x: expected a floating dtype, got {backend.dtype_name(x.dtype)}")
    if not training or p == 0:
        return x
    generator = generator if generator is not None else default_generator()
    draws = generator.uniform(x.shape, dtype=x.dtype, library=backend.library_of(x.data))
    draws = backend.to_device(draws, x.device)
    xp = backend.namespace(x.data)
    scale = xp.astype(draws >= p, x.dtype) / (1 - float(p))
    return Dropout.apply(x, scale=scale)
