"""What a normalization is asked to do, checked once where it enters: the settings and the input.

:class:`NormSpec` (ε, Δ, ghost-batch size) and :class:`RenormLimits`
(r_max, d_max) are frozen and validated on construction, so a layer checks
its settings once, when it is built, and every forward after that trusts
them. The ``check_*`` functions validate what changes with each call (the
input, the buffers) and raise the errors that name the argument, what was
expected and what came. The kernels behind them check nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from minigrad import backend, validate
from minigrad.tensor import Tensor

Array = Any
np = backend.host

_DIVERGED = "(did training diverge, or was a corrupt state dict loaded?)"


@dataclass(frozen=True)
class NormSpec:
    """ε, the update rate Δ and the ghost-batch size of one BatchNorm or Batch Renorm.

    `eps` is added to the batch variance once (σ_B includes it); it must be
    > 0 for layers and the functional forms, and may be 0 (`allow_zero_eps`)
    for the Tensor-level training functions that the paper's identities are
    checked with. `momentum` is Δ in μ := μ + Δ(μ_B − μ), PyTorch's meaning.
    """

    eps: float = 1e-5
    momentum: float = 0.1
    virtual_batch_size: int | None = None
    allow_zero_eps: bool = False

    def __post_init__(self) -> None:
        eps_ok = (
            validate.is_real(self.eps)
            and math.isfinite(self.eps)
            and (self.eps >= 0 if self.allow_zero_eps else self.eps > 0)
        )
        if not eps_ok:
            expected = "a finite number >= 0" if self.allow_zero_eps else "a finite number > 0"
            raise ValueError(f"eps: expected {expected}, got {self.eps!r}")
        validate.fraction("momentum", self.momentum, why="the update rate Δ of the moving averages")
        validate.positive_int("virtual_batch_size", self.virtual_batch_size, allow_none=True)
        object.__setattr__(self, "eps", float(self.eps))
        object.__setattr__(self, "momentum", float(self.momentum))


@dataclass(frozen=True)
class RenormLimits:
    """Batch Renorm's clipping limits: r ∈ [1/r_max, r_max], d ∈ [−d_max, d_max]; inf means no clipping.

    r_max = 1 and d_max = 0 make Batch Renorm batchnorm exactly. `source`
    only words the error: where the value came from ("from its schedule at
    step 3"), "" for nothing, None for the interval the limit bounds.
    """

    r_max: float = 3.0
    d_max: float = 5.0
    source: str | None = ""

    def __post_init__(self) -> None:
        for name, value, lowest, interval in (
            ("r_max", self.r_max, 1.0, "r is clipped to [1/r_max, r_max]"),
            ("d_max", self.d_max, 0.0, "d is clipped to [-d_max, d_max]"),
        ):
            if not (validate.is_real(value) and not math.isnan(value) and value >= lowest):
                why = interval if self.source is None else self.source
                reason = f" ({why})" if why else ""
                raise ValueError(f"{name}: expected a number >= {lowest:g}{reason}, got {value!r}")
        object.__setattr__(self, "r_max", float(self.r_max))
        object.__setattr__(self, "d_max", float(self.d_max))


def check_x(x: Any, num_channels: int | None, spec: NormSpec, training: bool) -> None:
    """x must be a floating Tensor (N, C, ...) with C = `num_channels`, and groupable in training mode."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a Tensor, got {type(x).__name__}")
    shape = tuple(x.shape)
    if len(shape) < 2:
        raise ValueError(f"x: expected an array of shape (N, C, ...) with at least 2 axes, got shape {shape}")
    if num_channels is not None and shape[1] != num_channels:
        raise ValueError(f"x: expected {num_channels} channels on axis 1 (the number of features), got shape {shape}")
    if not backend.is_floating(x.data):
        raise TypeError(f"x: expected a floating-point array, got dtype {backend.dtype_name(x.dtype)}")
    if not training:
        return
    k = spec.virtual_batch_size
    if k is not None and shape[0] % k != 0:
        raise ValueError(
            f"virtual_batch_size: expected a divisor of the batch size {shape[0]} (x has shape {shape}), got {k}"
        )
    m = (shape[0] if k is None else k) * math.prod(shape[2:])
    if m < 2:
        raise ValueError(
            f"x: expected more than one value per channel in each normalization group in training mode, got shape "
            f"{shape} with virtual_batch_size={k!r} ({m} value per channel and group); "
            "use a larger batch or group, or eval mode"
        )


def check_affine(x: Tensor, weight: Any, bias: Any) -> None:
    """γ and β, when given, are Tensors of shape (C,)."""
    for name, value in (("weight", weight), ("bias", bias)):
        if value is None:
            continue
        if not isinstance(value, Tensor):
            raise TypeError(f"{name}: expected a Tensor or None, got {type(value).__name__}")
        if tuple(value.shape) != (x.shape[1],):
            raise ValueError(f"{name}: expected shape ({x.shape[1]},), one value per channel, got {tuple(value.shape)}")


def check_buffer(name: str, buffer: Any, x: Tensor) -> None:
    """A running statistic must be a floating (C,) backend array on x's device (it is updated in place)."""
    if isinstance(buffer, Tensor) or not backend.is_array(buffer):
        raise TypeError(f"{name}: expected a backend array (a layer's buffer), got {type(buffer).__name__}")
    if backend.device_of(buffer) != x.device:
        raise backend.DeviceMismatchError(
            f"{name}: expected an array on x's device {x.device!r}, got one on {backend.device_of(buffer)!r}; "
            "move the layer with .to(device)"
        )
    if not backend.is_floating(buffer):
        raise TypeError(f"{name}: expected a floating-point array, got dtype {backend.dtype_name(buffer.dtype)}")
    if tuple(buffer.shape) != (x.shape[1],):
        raise ValueError(f"{name}: expected shape ({x.shape[1]},), one value per channel, got {tuple(buffer.shape)}")


def check_running_stats(running_mean: Array, running_std: Array) -> None:
    """μ finite and σ finite and positive. Copies both to the host: call it where the values come from outside."""
    mean_host = backend.to_numpy(running_mean)
    std_host = backend.to_numpy(running_std)
    bad = np.flatnonzero(~np.isfinite(mean_host))
    if bad.size:
        raise ValueError(
            f"running_mean: expected finite values, got {mean_host[bad].tolist()} at channels {bad.tolist()} {_DIVERGED}"
        )
    bad = np.flatnonzero(~(np.isfinite(std_host) & (std_host > 0)))
    if bad.size:
        raise ValueError(
            f"running_std: expected finite positive values, got {std_host[bad].tolist()} "
            f"at channels {bad.tolist()} {_DIVERGED}"
        )
