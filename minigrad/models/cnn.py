"""Convolutional networks for the experiments: one definition per dataset, every normalization arm.

Each model takes ``norm="bn" | "brn" | "none"`` and normalization options
(``virtual_batch_size``, ``momentum``, ``eps``, ``affine``, ``r_max``,
``d_max``) that are passed on to every normalization layer, so the
BatchNorm, Batch Renorm and un-normalized arms of an experiment differ in
that one argument and nothing else (same layers, same initial weights for
the same generator seed).

Layers before a normalization layer have no bias: the normalization subtracts
the mean, which would cancel any bias, and its own shift (beta) takes the
bias's place. With ``norm="none"`` the biases are kept.
"""

from __future__ import annotations

from typing import Any

from minigrad import nn, validate
from minigrad.module import Module
from minigrad.nn.layers import (
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Identity,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
)
from minigrad.random import Generator
from minigrad.tensor import Tensor

NORMS = ("bn", "brn", "none")
_COMMON_OPTIONS = frozenset({"eps", "momentum", "affine", "virtual_batch_size"})
_RENORM_OPTIONS = frozenset({"r_max", "d_max"})
_NORM_LAYERS = {
    ("bn", 1): nn.BatchNorm1d,
    ("bn", 2): nn.BatchNorm2d,
    ("brn", 1): nn.BatchRenorm1d,
    ("brn", 2): nn.BatchRenorm2d,
}


def make_norm(norm: str, num_features: int, dims: int = 2, dtype: Any = "float32", **norm_kwargs: Any) -> Module:
    """The normalization layer for `norm` over `num_features` channels.

    Args:
        norm: "bn" (``nn.BatchNorm1d/2d``), "brn" (``nn.BatchRenorm1d/2d``) or "none" (:class:`Identity`).
        num_features: channels (dims=2, input (N, C, H, W)) or features (dims=1, input (N, C)).
        dims: 1 after a Linear layer, 2 after a convolution.
        dtype: dtype of the layer's parameters and running statistics.
        norm_kwargs: any of ``eps, momentum, affine, virtual_batch_size`` (all norms)
            and ``r_max, d_max`` (Batch Renorm only).

    So that one set of options can drive every arm of an experiment, options
    that an arm does not use are dropped: ``r_max``/``d_max`` for "bn", and all
    options for "none". Options set to None are dropped too (the layer's default
    applies). An unknown option name raises TypeError.
    """
    if norm not in NORMS:
        raise ValueError(f"make_norm: norm: expected one of {NORMS}, got {norm!r}")
    if dims not in (1, 2):
        raise ValueError(f"make_norm: dims: expected 1 (after Linear) or 2 (after Conv2d), got {dims!r}")
    unknown = sorted(set(norm_kwargs) - _COMMON_OPTIONS - _RENORM_OPTIONS)
    if unknown:
        raise TypeError(
            f"make_norm: unexpected normalization option(s) {unknown}; "
            f"expected some of {sorted(_COMMON_OPTIONS | _RENORM_OPTIONS)}"
        )
    if norm == "none":
        return Identity()
    options = {k: v for k, v in norm_kwargs.items() if v is not None}
    if norm == "bn":
        options = {k: v for k, v in options.items() if k not in _RENORM_OPTIONS}
    return _NORM_LAYERS[norm, dims](num_features=num_features, dtype=dtype, **options)


def conv_block(
    in_c: int,
    out_c: int,
    norm: str = "bn",
    kernel_size: int = 3,
    stride: int = 1,
    dtype: Any = "float32",
    generator: Generator | None = None,
    **norm_kwargs: Any,
) -> Sequential:
    """Conv2d (``kernel_size // 2`` padding, so stride 1 keeps the image size) -> normalization -> ReLU.

    The convolution has a bias only when ``norm="none"`` (see the module docstring).
    """
    if norm not in NORMS:
        raise ValueError(f"conv_block: norm: expected one of {NORMS}, got {norm!r}")
    conv = Conv2d(
        in_c,
        out_c,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        bias=norm == "none",
        dtype=dtype,
        generator=generator,
    )
    return Sequential(conv, make_norm(norm, out_c, dims=2, dtype=dtype, **norm_kwargs), ReLU())


def _check_channels(model: str, channels: tuple[int, ...], count: int) -> tuple[int, ...]:
    channels = tuple(channels)
    if len(channels) != count or any(not validate.is_integer(c) or c < 1 for c in channels):
        raise ValueError(f"{model}: channels: expected {count} positive ints, got {channels!r}")
    return channels


class DigitsCNN(Module):
    """A small CNN for 8x8 digit images (1 input channel), 10 classes by default.

    Layout (channels c1, c2, c3 = ``channels``, default 16, 32, 64)::

        (N, 1, 8, 8)  conv_block(1, c1) -> conv_block(c1, c2) -> MaxPool2d(2)
        (N, c2, 4, 4) conv_block(c2, c3)                       -> (N, c3, 4, 4)
        head, global_pool=False: Flatten -> Linear(16 c3, hidden) -> norm1d -> ReLU -> [Dropout] -> Linear(hidden, classes)
        head, global_pool=True:  GlobalAvgPool2d -> [Dropout] -> Linear(c3, classes)

    The global-pooling head makes the network end in global average pooling
    (the small CNN of the non-i.i.d. experiment) and accepts any image size;
    the flattening head needs 8x8 images and adds a BatchNorm1d/BatchRenorm1d
    layer, so the 1-d normalization is exercised too.

    Args:
        norm: "bn", "brn" or "none", for every normalization layer.
        num_classes: size of the output (logits).
        channels: (c1, c2, c3) convolution widths.
        hidden: width of the hidden Linear layer of the flattening head.
        global_pool: use the global-average-pooling head.
        dropout: drop probability before the last Linear layer (0 = no Dropout layer).
        in_channels: input channels (1 for grey digits).
        dtype: parameter dtype.
        generator: draws the initial weights (default: the global generator).
        norm_kwargs: options for the normalization layers (see :func:`make_norm`).
    """

    def __init__(
        self,
        norm: str = "bn",
        num_classes: int = 10,
        channels: tuple[int, int, int] = (16, 32, 64),
        hidden: int = 64,
        global_pool: bool = False,
        dropout: float = 0.0,
        in_channels: int = 1,
        dtype: Any = "float32",
        generator: Generator | None = None,
        **norm_kwargs: Any,
    ) -> None:
        super().__init__()
        c1, c2, c3 = _check_channels("DigitsCNN", channels, 3)
        self.norm, self.global_pool = norm, bool(global_pool)
        common = dict(norm=norm, dtype=dtype, generator=generator, **norm_kwargs)
        self.features = Sequential(
            conv_block(in_channels, c1, **common),
            conv_block(c1, c2, **common),
            MaxPool2d(2),
            conv_block(c2, c3, **common),
        )
        drop = [Dropout(dropout, generator=generator)] if dropout else []
        if self.global_pool:
            self.head = Sequential(GlobalAvgPool2d(), *drop, Linear(c3, num_classes, dtype=dtype, generator=generator))
        else:
            self.head = Sequential(
                Flatten(),
                Linear(c3 * 16, hidden, bias=norm == "none", dtype=dtype, generator=generator),
                make_norm(norm, hidden, dims=1, dtype=dtype, **norm_kwargs),
                ReLU(),
                *drop,
                Linear(hidden, num_classes, dtype=dtype, generator=generator),
            )

    def forward(self, x: Tensor) -> Tensor:
        if not self.global_pool and x.ndim == 4 and x.shape[2:] != (8, 8):
            raise ValueError(
                f"DigitsCNN: x: the flattening head expects 8x8 images, got shape {x.shape} "
                "(use global_pool=True for other sizes)"
            )
        return self.head(self.features(x))


class CifarCNN(Module):
    """A five-convolution CNN for 32x32 colour images (CIFAR-10), 10 classes by default.

    Layout (channels c1, c2, c3 = ``channels``, default 32, 64, 128)::

        (N, 3, 32, 32)   conv_block(3, c1)                          -> MaxPool2d(2)
        (N, c1, 16, 16)  conv_block(c1, c2) -> conv_block(c2, c2)   -> MaxPool2d(2)
        (N, c2, 8, 8)    conv_block(c2, c3) -> conv_block(c3, c3)
        (N, c3, 8, 8)    GlobalAvgPool2d -> [Dropout] -> Linear(c3, classes)

    All convolutions are 3x3 with padding 1. Sized so that a CPU trains it on a
    CIFAR-10 subset in minutes (about 29 million multiply-adds per image in the
    forward pass with the default widths).

    Args: as :class:`DigitsCNN` (without ``hidden`` and ``global_pool``; ``in_channels`` defaults to 3).
    """

    def __init__(
        self,
        norm: str = "bn",
        num_classes: int = 10,
        channels: tuple[int, int, int] = (32, 64, 128),
        dropout: float = 0.0,
        in_channels: int = 3,
        dtype: Any = "float32",
        generator: Generator | None = None,
        **norm_kwargs: Any,
    ) -> None:
        super().__init__()
        c1, c2, c3 = _check_channels("CifarCNN", channels, 3)
        self.norm = norm
        common = dict(norm=norm, dtype=dtype, generator=generator, **norm_kwargs)
        self.features = Sequential(
            conv_block(in_channels, c1, **common),
            MaxPool2d(2),
            conv_block(c1, c2, **common),
            conv_block(c2, c2, **common),
            MaxPool2d(2),
            conv_block(c2, c3, **common),
            conv_block(c3, c3, **common),
        )
        drop = [Dropout(dropout, generator=generator)] if dropout else []
        self.head = Sequential(GlobalAvgPool2d(), *drop, Linear(c3, num_classes, dtype=dtype, generator=generator))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
