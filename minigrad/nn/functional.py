"""Functional forms of the layers: plain functions of tensors, no state of their own.

:func:`batch_norm` and :func:`batch_renorm` are the exception that proves the
rule: in training mode they update the running statistics they are given,
in place, so that a layer can hand them its buffers. Everything else about
them (the arithmetic, the gradients) lives in :mod:`minigrad.ops.norm`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from minigrad import backend
from minigrad.ops import cross_entropy, log_softmax, relu, softmax
from minigrad.ops.norm import (
    batch_norm_reference,
    batch_norm_train,
    batch_renorm_reference,
    batch_renorm_train,
    check_eps,
    check_input,
    check_limits,
    clip_telemetry,
    norm_inference,
    running_stats_update,
)
from minigrad.tensor import Tensor

__all__ = [
    "batch_norm",
    "batch_norm_reference",
    "batch_renorm",
    "batch_renorm_reference",
    "cross_entropy",
    "log_softmax",
    "relu",
    "softmax",
]

Array = Any


def _check_momentum(momentum: float) -> None:
    if not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
        raise ValueError(
            f"momentum: expected a number in [0, 1] (the update rate Δ of the moving averages), got {momentum!r}"
        )


def _check_buffer(name: str, buffer: Any, x: Tensor) -> None:
    """A running statistic must be a backend array on x's device (it is updated in place)."""
    if isinstance(buffer, Tensor) or not backend.is_array(buffer):
        raise TypeError(f"{name}: expected a backend array (a layer's buffer), got {type(buffer).__name__}")
    if backend.device_of(buffer) != x.device:
        raise backend.DeviceMismatchError(
            f"{name}: expected an array on x's device {x.device!r}, got one on {backend.device_of(buffer)!r}; "
            "move the layer with .to(device)"
        )
    if not backend.is_floating(buffer):
        raise TypeError(f"{name}: expected a floating-point array, got dtype {backend.dtype_name(buffer.dtype)}")


def _check_common(
    x: Tensor, weight: Tensor | None, running_mean: Array | None, running_std: Array | None, eps: float, momentum: float
) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a Tensor, got {type(x).__name__}")
    # the channel count comes from the running statistics or γ, so a wrong x is named as such
    sized = [v for v in (running_mean, weight) if v is not None and getattr(v, "ndim", 0) == 1]
    check_input(x.data, sized[0].shape[0] if sized else None)
    check_eps(eps, allow_zero=False)
    _check_momentum(momentum)
    for name, buffer in (("running_mean", running_mean), ("running_std", running_std)):
        if buffer is not None:
            _check_buffer(name, buffer, x)


_batch_stats_reducer: Callable[[Any], Any] | None = None  # see reducing_batch_stats


@contextmanager
def reducing_batch_stats(reducer: Callable[[Any], Any] | None) -> Iterator[None]:
    """Within the block, each running-statistic update first passes the step's cache through `reducer`.

    `reducer` takes the :class:`~minigrad.ops.norm.NormCache` of a training
    forward and returns one whose ``mu_b`` and ``sigma_b`` are used for the
    update instead. :func:`minigrad.distributed.share_running_stats` uses it so
    that the data-parallel ranks apply one update with their average μ_B and
    σ_B, as one process with ghost batches would. The normalization itself
    (the layer's output) is not affected.
    """
    global _batch_stats_reducer
    previous = _batch_stats_reducer
    _batch_stats_reducer = reducer
    try:
        yield
    finally:
        _batch_stats_reducer = previous


def _update_in_place(running_mean: Array, running_std: Array, cache: Any, momentum: float) -> None:
    if _batch_stats_reducer is not None:
        cache = _batch_stats_reducer(cache)  # e.g. the average over data-parallel ranks
    new_mean, new_std = running_stats_update(running_mean, running_std, cache, momentum)
    running_mean[...] = new_mean  # μ := μ + Δ(μ_B − μ), written into the caller's buffer
    running_std[...] = new_std  # σ := σ + Δ(σ_B − σ)


def batch_norm(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Array | None,
    running_std: Array | None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    virtual_batch_size: int | None = None,
) -> Tensor:
    """Batch Normalization (Ioffe & Szegedy 2015) of x (N, C, *S) per channel.

    Training mode normalizes with the batch's μ_B and σ_B = sqrt(ε + biased
    batch variance) (Algorithm 1 of the Batch Renorm paper with r = 1, d = 0)
    and, when running statistics are given, updates them **in place**:
    μ := μ + Δ(μ_B − μ), σ := σ + Δ(σ_B − σ) with Δ = `momentum`. Inference
    mode computes γ · (x − μ)/σ + β with them.

    Args:
        x: input of shape (N, C) or (N, C, ...).
        weight, bias: γ and β of shape (C,), or None for no scale / no shift.
        running_mean, running_std: (C,) backend arrays μ and σ; required in inference mode,
            optional in training mode (None: nothing is tracked).
        training: batch statistics (True) or running statistics (False).
        momentum: the update rate Δ in [0, 1]. Same meaning as PyTorch's ``momentum``;
            the opposite of Keras', whose ``momentum`` is 1 − Δ.
        eps: ε > 0, added to the batch variance once (σ_B includes it and σ averages σ_B,
            so inference adds nothing).
        virtual_batch_size: ghost batches of this many examples, each normalized on its own
            (training mode only); the running statistics take one update from the groups'
            mean μ_B and σ_B.

    Departs from PyTorch: the running statistic is a standard deviation that
    averages σ_B (with ε, biased variance), as in the paper, not an unbiased
    running variance.
    """
    _check_common(x, weight, running_mean, running_std, eps, momentum)
    if training:
        if (running_mean is None) != (running_std is None):
            raise ValueError(
                "running_mean, running_std: expected both or neither in training mode, got "
                f"running_mean={'None' if running_mean is None else 'an array'}, "
                f"running_std={'None' if running_std is None else 'an array'}"
            )
        y, cache = batch_norm_train(x, weight, bias, eps, virtual_batch_size)
        if running_mean is not None:
            _update_in_place(running_mean, running_std, cache, momentum)
        return y
    if running_mean is None or running_std is None:
        raise ValueError("running_mean, running_std: expected arrays in inference mode (training=False), got None")
    return norm_inference(x, weight, bias, running_mean, running_std)


def batch_renorm(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Array,
    running_std: Array,
    training: bool = False,
    r_max: float = 3.0,
    d_max: float = 5.0,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    virtual_batch_size: int | None = None,
    telemetry: dict[str, float] | None = None,
) -> Tensor:
    """Batch Renormalization (Ioffe 2017, Algorithm 1) of x (N, C, *S) per channel.

    Training mode: with the moving averages μ, σ from before this step,
    r = clip(σ_B/σ, 1/r_max, r_max) and d = clip((μ_B − μ)/σ, −d_max, d_max)
    are computed per channel (and per ghost batch), treated as constants for
    the gradient, and applied before γ and β: y = γ ((x − μ_B)/σ_B · r + d) + β.
    Then μ and σ are updated **in place** as for :func:`batch_norm`.
    Inference mode: γ · (x − μ)/σ + β, the same as batchnorm.

    Args:
        x, weight, bias, running_mean, running_std, training, momentum, eps,
        virtual_batch_size: as for :func:`batch_norm`, except that the running
            statistics are required (they take part in training).
        r_max: number >= 1 (``inf`` for no clipping); r_max = 1 and d_max = 0 is batchnorm.
        d_max: number >= 0.
        telemetry: a dict to fill, in training mode, with the clipping record of
            :func:`minigrad.ops.norm.clip_telemetry` (fractions clipped, ranges of
            the unclipped r and d), as Python floats.
    """
    _check_common(x, weight, running_mean, running_std, eps, momentum)
    if running_mean is None or running_std is None:
        raise ValueError("running_mean, running_std: expected arrays (Batch Renorm uses them in training), got None")
    check_limits(r_max, d_max)
    if not training:
        return norm_inference(x, weight, bias, running_mean, running_std)
    y, cache = batch_renorm_train(x, weight, bias, running_mean, running_std, r_max, d_max, eps, virtual_batch_size)
    if telemetry is not None:
        telemetry.update(clip_telemetry(cache))
    _update_in_place(running_mean, running_std, cache, momentum)
    return y
