"""Normalization layers: BatchNorm1d/2d and BatchRenorm1d/2d, which own their running statistics.

The arithmetic lives in :mod:`minigrad.ops.norm` (pure kernels with a
hand-written backward); these layers hold γ (``weight``) and β (``bias``) as
Parameters and the state as buffers, which are saved by ``state_dict`` and
moved by ``Module.to``:

* ``running_mean`` (μ, starts at 0) and ``running_std`` (σ, starts at 1), the
  moving averages of Algorithm 1 of Ioffe, *Batch Renormalization* (2017),
  updated in place by each training-mode forward;
* ``step``, the number of training-mode forward passes so far, which drives
  the r_max / d_max schedules of Batch Renorm.

Defaults, and why:

* ``eps = 1e-5``: the usual value (PyTorch, Keras use 1e-5 / 1e-3); it only
  guards channels of (near) zero variance. It is counted once: σ_B includes it
  and σ averages σ_B, so inference divides by σ alone.
* ``momentum = 0.1``: the paper's update rate Δ (μ := μ + Δ(μ_B − μ)); the
  same meaning and value as PyTorch's default, the opposite of Keras'
  ``momentum`` (= 1 − Δ). Batch Renorm *uses* μ and σ during training, and the
  paper asks for "a fairly high rate of update ... so that they do not become
  stale relative to the model parameters": Δ = 0.1 averages over roughly the
  last 10-20 batches and forgets the initial (0, 1) within a few dozen steps.
  Δ = 0.01 (Keras' 0.99) would lag the weights by ~100 steps.
* ``r_max = 3``, ``d_max = 5``: the paper's final values, which "resulted in
  clipping a small fraction of r's, and none of d's". A number needs no
  knowledge of the run's length; for the paper's recipe (plain batchnorm for a
  warm-up, then a slow ramp, which the paper found important early in training)
  pass a schedule: ``r, d = renorm_schedule().scaled(total_steps)`` and
  ``BatchRenorm2d(c, r_max=r, d_max=d)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from minigrad import backend
from minigrad.nn import functional as F
from minigrad.module import Module, Parameter
from minigrad.tensor import Tensor

np = backend.host

Limit = float | Callable[[int], float]

PAPER_TOTAL_STEPS = 130_000  # the length of the paper's Inception-v3 runs (section 4.1)


# ----------------------------------------------------------------------------
# The r_max / d_max schedule of section 4
# ----------------------------------------------------------------------------


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"step: expected a non-negative integer, got {step!r}")
    return int(step)


def _ramp(step: int, start: float, final: float, begin: int, end: int) -> float:
    """`start` until `begin`, then linear to `final` at `end`, then `final` for ever (a jump if begin = end)."""
    if step >= end:
        return float(final)
    if step <= begin:
        return float(start)
    return float(start + (final - start) * (step - begin) / (end - begin))


@dataclass(frozen=True)
class RenormSchedule:
    """The paper's correction limits as functions of the training step (section 4).

    r_max = 1 and d_max = 0 (plain batchnorm) for the first `warmup_steps`
    steps, then each rises linearly, r_max to `r_max_final` at step
    `r_max_ramp_end` and d_max to `d_max_final` at `d_max_ramp_end`, and stays
    there. The defaults are the paper's: warm-up 5000, r_max = 3 at 40k and
    d_max = 5 at 25k, for runs of 130k steps.

    Use the two methods as the layer's limits (the object also unpacks into
    the pair): ``r, d = schedule; BatchRenorm2d(c, r_max=r, d_max=d)``.
    """

    warmup_steps: int = 5000
    r_max_final: float = 3.0
    r_max_ramp_end: int = 40_000
    d_max_final: float = 5.0
    d_max_ramp_end: int = 25_000
    reference_steps: ClassVar[int] = PAPER_TOTAL_STEPS

    def __post_init__(self) -> None:
        if (
            isinstance(self.warmup_steps, bool)
            or not isinstance(self.warmup_steps, numbers.Integral)
            or self.warmup_steps < 0
        ):
            raise ValueError(f"warmup_steps: expected a non-negative integer, got {self.warmup_steps!r}")
        if not (isinstance(self.r_max_final, numbers.Real) and 1 <= self.r_max_final < math.inf):
            raise ValueError(f"r_max: expected a finite number >= 1, got {self.r_max_final!r}")
        if not (isinstance(self.d_max_final, numbers.Real) and 0 <= self.d_max_final < math.inf):
            raise ValueError(f"d_max: expected a finite number >= 0, got {self.d_max_final!r}")
        for name, end in (("r_max_ramp_end", self.r_max_ramp_end), ("d_max_ramp_end", self.d_max_ramp_end)):
            if isinstance(end, bool) or not isinstance(end, numbers.Integral) or end < self.warmup_steps:
                raise ValueError(f"{name}: expected an integer >= warmup_steps ({self.warmup_steps}), got {end!r}")

    def r_max(self, step: int) -> float:
        """The limit r_max at training step `step` (0 for the first training forward)."""
        return _ramp(_check_step(step), 1.0, self.r_max_final, self.warmup_steps, self.r_max_ramp_end)

    def d_max(self, step: int) -> float:
        """The limit d_max at training step `step`."""
        return _ramp(_check_step(step), 0.0, self.d_max_final, self.warmup_steps, self.d_max_ramp_end)

    def __iter__(self) -> Iterator[Callable[[int], float]]:
        return iter((self.r_max, self.d_max))

    def scaled(self, total_steps: int, reference_steps: int = PAPER_TOTAL_STEPS) -> RenormSchedule:
        """The same schedule for a run of `total_steps` instead of `reference_steps` (the paper's 130k).

        Every step count is multiplied by total_steps / reference_steps and
        rounded: the paper's recipe scaled to 13k steps warms up for 500 steps
        and reaches d_max = 5 at 2500 and r_max = 3 at 4000.
        """
        for name, value in (("total_steps", total_steps), ("reference_steps", reference_steps)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        factor = total_steps / reference_steps
        warmup = round(self.warmup_steps * factor)
        return replace(
            self,
            warmup_steps=warmup,
            r_max_ramp_end=max(warmup, round(self.r_max_ramp_end * factor)),
            d_max_ramp_end=max(warmup, round(self.d_max_ramp_end * factor)),
        )


def renorm_schedule(
    warmup_steps: int = 5000,
    r_max: float = 3.0,
    r_max_ramp_end: int = 40_000,
    d_max: float = 5.0,
    d_max_ramp_end: int = 25_000,
) -> RenormSchedule:
    """The paper's r_max / d_max schedule (section 4); the defaults are its values for 130k-step runs.

    Returns a :class:`RenormSchedule` with ``.r_max(step)`` and ``.d_max(step)``,
    which unpacks into that pair of callables, and ``.scaled(total_steps)`` for
    shorter runs::

        r, d = mg.nn.renorm_schedule().scaled(total_steps=10_000)
        layer = mg.nn.BatchRenorm2d(16, r_max=r, d_max=d)
    """
    return RenormSchedule(
        warmup_steps=warmup_steps,
        r_max_final=r_max,
        r_max_ramp_end=r_max_ramp_end,
        d_max_final=d_max,
        d_max_ramp_end=d_max_ramp_end,
    )


# ----------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------


def _check_positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        expected = "None or a positive integer" if allow_none else "a positive integer"
        raise ValueError(f"{name}: expected {expected}, got {value!r}")


class _NormBase(Module):
    """What BatchNorm and BatchRenorm layers share: parameters, buffers, input checks."""

    _ranks: ClassVar[tuple[int, ...]] = ()
    _layouts: ClassVar[str] = ""

    def __init__(
        self,
        num_features: int,
        *,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        virtual_batch_size: int | None = None,
        dtype: Any = "float32",
    ) -> None:
        super().__init__()
        _check_positive_int("num_features", num_features)
        if not (isinstance(eps, numbers.Real) and math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps: expected a finite number > 0, got {eps!r}")
        if not (isinstance(momentum, numbers.Real) and 0 <= momentum <= 1):
            raise ValueError(f"momentum: expected a number in [0, 1] (the update rate Δ), got {momentum!r}")
        _check_positive_int("virtual_batch_size", virtual_batch_size, allow_none=True)
        if not backend.dtype_name(dtype).startswith("float"):
            raise ValueError(f"dtype: expected a floating dtype such as 'float32' or 'float64', got {dtype!r}")
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.affine = bool(affine)
        self.virtual_batch_size = None if virtual_batch_size is None else int(virtual_batch_size)
        self.weight = Parameter(np.ones(num_features), dtype=dtype) if affine else None  # γ
        self.bias = Parameter(np.zeros(num_features), dtype=dtype) if affine else None  # β
        self.register_buffer("running_mean", backend.asarray(np.zeros(num_features), dtype))  # μ
        self.register_buffer("running_std", backend.asarray(np.ones(num_features), dtype))  # σ
        self.register_buffer("step", 0)  # training-mode forward passes so far

    def _check_x(self, x: Any) -> None:
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: x: expected a Tensor, got {type(x).__name__}")
        if x.ndim not in self._ranks:
            raise ValueError(f"{name}: x: expected a tensor of shape {self._layouts}, got shape {x.shape} ({x.ndim}-d)")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{name}: x: expected {self.num_features} channels on axis 1 (num_features), got shape {x.shape}"
            )

    def extra_repr(self) -> str:
        text = f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"
        if self.virtual_batch_size is not None:
            text += f", virtual_batch_size={self.virtual_batch_size}"
        return text


class _BatchNorm(_NormBase):
    """Batch Normalization (Ioffe & Szegedy 2015), per channel (axis 1) over every other axis.

    Training mode normalizes with the batch's μ_B and σ_B = sqrt(ε + biased
    batch variance), each ghost batch of `virtual_batch_size` examples on its
    own, and updates ``running_mean`` and ``running_std`` (μ := μ + Δ(μ_B − μ),
    σ := σ + Δ(σ_B − σ), Δ = `momentum`); eval mode computes
    γ (x − μ)/σ + β. The running statistic is a standard deviation averaging
    σ_B, as in the Batch Renorm paper, not PyTorch's unbiased running variance.

    Keyword arguments: ``eps`` (> 0, default 1e-5), ``momentum`` (Δ, default
    0.1, PyTorch's meaning, the opposite of Keras'), ``affine`` (learn γ and β),
    ``virtual_batch_size`` (ghost batches, training mode only), ``dtype``
    (default "float32"; "float64" for gradient checks). See the module
    docstring for why these defaults.
    """

    # A minigrad.distributed communicator, or None. When set (minigrad.distributed.convert_sync_batchnorm),
    # training mode normalizes over the global batch of every rank (synchronized BatchNorm).
    sync_group: Any = None

    def forward(self, x: Tensor) -> Tensor:
        self._check_x(x)
        if self.training and self.sync_group is not None:
            from minigrad.distributed import sync_batch_norm  # imported here: minigrad.distributed builds on minigrad.nn

            y = sync_batch_norm(
                x, self.weight, self.bias, self.running_mean, self.running_std, self.sync_group, self.momentum, self.eps
            )
        else:
            y = F.batch_norm(
                x,
                self.weight,
                self.bias,
                self.running_mean,
                self.running_std,
                training=self.training,
                momentum=self.momentum,
                eps=self.eps,
                virtual_batch_size=self.virtual_batch_size,
            )
        if self.training:
            self.step += 1
        return y


class _BatchRenorm(_NormBase):
    """Batch Renormalization (Ioffe 2017, Algorithm 1), per channel (axis 1) over every other axis.

    Training mode: y = γ ((x − μ_B)/σ_B · r + d) + β with
    r = clip(σ_B/σ, 1/r_max, r_max) and d = clip((μ_B − μ)/σ, −d_max, d_max)
    computed from the running statistics *before* this step's update and held
    constant for the gradient; with ghost batches each group has its own μ_B,
    σ_B, r and d. Then the running statistics are updated as in batchnorm.
    Eval mode: γ (x − μ)/σ + β, as batchnorm.

    Keyword arguments are those of batchnorm plus ``r_max`` (>= 1, default 3)
    and ``d_max`` (>= 0, default 5): each a number or any callable of ``step``
    (the number of earlier training-mode passes), e.g. the two halves of
    :func:`renorm_schedule`. r_max = 1 and d_max = 0 give batchnorm exactly.

    After each training forward, ``telemetry`` holds the clipping record as
    Python floats: ``step`` and the limits in force (``r_limit``, ``d_limit``),
    the fractions of r and d that were clipped (``r_clipped``, ``d_clipped``)
    and the ranges of the unclipped σ_B/σ and (μ_B − μ)/σ (``r_min``,
    ``r_max``, ``d_min``, ``d_max``). :func:`renorm_telemetry` gathers them for
    a model.
    """

    def __init__(
        self,
        num_features: int,
        *,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        virtual_batch_size: int | None = None,
        r_max: Limit = 3.0,
        d_max: Limit = 5.0,
        dtype: Any = "float32",
    ) -> None:
        super().__init__(
            num_features, eps=eps, momentum=momentum, affine=affine, virtual_batch_size=virtual_batch_size, dtype=dtype
        )
        for name, limit in (("r_max", r_max), ("d_max", d_max)):
            if not (callable(limit) or (isinstance(limit, numbers.Real) and not isinstance(limit, bool))):
                raise TypeError(f"{name}: expected a number or a callable of the step, got {type(limit).__name__}")
        self.r_max = r_max
        self.d_max = d_max
        self.telemetry: dict[str, float] = {}
        self.limits(0)  # a bad number or schedule fails here, not in the first forward

    def limits(self, step: int | None = None) -> tuple[float, float]:
        """(r_max, d_max) in force at `step` (default: the next training step)."""
        step = self.step if step is None else step
        values = []
        for name, limit, lowest in (("r_max", self.r_max, 1.0), ("d_max", self.d_max, 0.0)):
            value = limit(step) if callable(limit) else limit
            source = f" (from its schedule at step {step})" if callable(limit) else ""
            if not isinstance(value, numbers.Real) or math.isnan(value) or value < lowest:
                raise ValueError(f"{name}: expected a number >= {lowest:g}{source}, got {value!r}")
            values.append(float(value))
        return values[0], values[1]

    def forward(self, x: Tensor) -> Tensor:
        self._check_x(x)
        r_max, d_max = self.limits()
        record: dict[str, float] = {}
        y = F.batch_renorm(
            x,
            self.weight,
            self.bias,
            self.running_mean,
            self.running_std,
            training=self.training,
            r_max=r_max,
            d_max=d_max,
            momentum=self.momentum,
            eps=self.eps,
            virtual_batch_size=self.virtual_batch_size,
            telemetry=record if self.training else None,
        )
        if self.training:
            self.telemetry = {"step": self.step, "r_limit": r_max, "d_limit": d_max, **record}
            self.step += 1
        return y

    def extra_repr(self) -> str:
        def shown(limit: Limit) -> str:
            return f"{limit!r}" if not callable(limit) else f"<schedule, now {limit(self.step):g}>"

        return f"{super().extra_repr()}, r_max={shown(self.r_max)}, d_max={shown(self.d_max)}"


class BatchNorm1d(_BatchNorm):
    """Batch Normalization of (N, C) or (N, C, L) inputs."""

    __doc__ = (__doc__ or "") + "\n\n" + (_BatchNorm.__doc__ or "")
    _ranks = (2, 3)
    _layouts = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch Normalization of (N, C, H, W) inputs."""

    __doc__ = (__doc__ or "") + "\n\n" + (_BatchNorm.__doc__ or "")
    _ranks = (4,)
    _layouts = "(N, C, H, W)"


class BatchRenorm1d(_BatchRenorm):
    """Batch Renormalization of (N, C) or (N, C, L) inputs."""

    __doc__ = (__doc__ or "") + "\n\n" + (_BatchRenorm.__doc__ or "")
    _ranks = (2, 3)
    _layouts = "(N, C) or (N, C, L)"


class BatchRenorm2d(_BatchRenorm):
    """Batch Renormalization of (N, C, H, W) inputs."""

    __doc__ = (__doc__ or "") + "\n\n" + (_BatchRenorm.__doc__ or "")
    _ranks = (4,)
    _layouts = "(N, C, H, W)"


def renorm_telemetry(model: Module) -> dict[str, dict[str, float]]:
    """The clipping record of every Batch Renorm layer in `model`, by dotted layer name.

    Each value is a copy of the layer's ``telemetry`` (empty before its first
    training-mode forward); see :class:`BatchRenorm2d` for the keys.
    """
    return {name: dict(module.telemetry) for name, module in model.named_modules() if isinstance(module, _BatchRenorm)}
