"""BatchNorm1d/2d and BatchRenorm1d/2d: layers that own γ, β and the moving averages.

Parameters: ``weight`` (γ) and ``bias`` (β). Buffers, saved by ``state_dict``
and moved by ``Module.to``: ``running_mean`` (μ, starts at 0),
``running_std`` (σ, starts at 1) and ``step`` (training forwards so far,
which drives Batch Renorm's r_max / d_max schedule).

Checked once: the settings when the layer is built (:class:`NormSpec`,
:class:`RenormLimits`), the input at each forward, the running statistics'
values when they come from outside (construction, ``load_state_dict``, an
assignment, ``.to``). A training step then makes no copy to the host: the
layer's own updates keep μ and σ valid, and Batch Renorm's telemetry stays on
the device until :attr:`telemetry` is read.

Defaults: ε = 1e-5 (counted once: σ_B includes it, σ averages σ_B), Δ =
``momentum`` = 0.1 (PyTorch's meaning; the paper asks for a rate high enough
that μ and σ do not go stale, and 0.1 forgets the initial (0, 1) within a few
dozen steps), r_max = 3 and d_max = 5 (the paper's final values).
Tutorial 03 explains each of them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

from minigrad import backend, validate
from minigrad.module import Module, Parameter
from minigrad.norm import functional as NF
from minigrad.norm import kernels as K
from minigrad.norm.reduction import LOCAL, reduction_for
from minigrad.norm.spec import NormSpec, RenormLimits, check_running_stats, check_x
from minigrad.tensor import Tensor

np = backend.host

Limit = float | Callable[[int], float]
DEFAULT_MOMENTUM = 0.1  # Δ, the update rate of the moving averages (see the module docstring)


class _Norm(Module):
    """What BatchNorm and Batch Renorm layers share: parameters, buffers, settings and the input check."""

    _ranks: ClassVar[tuple[int, ...]] = ()
    _layouts: ClassVar[str] = ""

    def __init__(
        self,
        num_features: int,
        *,
        eps: float = 1e-5,
        momentum: float = DEFAULT_MOMENTUM,
        affine: bool = True,
        virtual_batch_size: int | None = None,
        dtype: Any = "float32",
    ) -> None:
        super().__init__()
        validate.positive_int("num_features", num_features)
        spec = NormSpec(eps, momentum, virtual_batch_size)
        if not backend.dtype_name(dtype).startswith("float"):
            raise ValueError(f"dtype: expected a floating dtype such as 'float32' or 'float64', got {dtype!r}")
        object.__setattr__(self, "spec", spec)
        self.num_features = int(num_features)
        self.affine = bool(affine)
        self.weight = Parameter(np.ones(num_features), dtype=dtype) if affine else None  # γ
        self.bias = Parameter(np.zeros(num_features), dtype=dtype) if affine else None  # β
        self.register_buffer("running_mean", backend.asarray(np.zeros(num_features), dtype))  # μ
        self.register_buffer("running_std", backend.asarray(np.ones(num_features), dtype))  # σ
        self.register_buffer("step", 0)  # training-mode forward passes so far
        # For data-parallel training (minigrad.distributed): a group whose processes share one update of
        # the moving averages, and whether the batch statistics themselves span the group (sync-BN).
        self.stats_group: Any = None
        self.synchronized = False
        self._stats_trusted = False  # μ, σ came from outside: check their values at the next forward
        self._warned_untrained = False

    # The settings live in one frozen NormSpec; assigning one of them validates it again.
    eps = property(lambda self: self.spec.eps, lambda self, v: self._respec(eps=v), doc="ε (> 0)")
    momentum = property(lambda self: self.spec.momentum, lambda self, v: self._respec(momentum=v), doc="Δ in [0, 1]")
    virtual_batch_size = property(
        lambda self: self.spec.virtual_batch_size, lambda self, v: self._respec(virtual_batch_size=v), doc="ghost batches"
    )

    def _respec(self, **change: Any) -> None:
        object.__setattr__(self, "spec", replace(self.spec, **change))

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("running_mean", "running_std"):
            object.__setattr__(self, "_stats_trusted", False)  # a new array (load_state_dict, .to, by hand)
        super().__setattr__(name, value)

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
        if backend.device_of(self.running_mean) != x.device:
            raise backend.DeviceMismatchError(
                f"{name}: x: expected a tensor on the layer's device {backend.device_of(self.running_mean)!r}, "
                f"got one on {x.device!r}; move it with .to(device)"
            )
        check_x(x, None, self.spec, self.training)  # dtype and grouping, in the words of the functional form

    def _check_stats(self) -> None:
        """Check μ and σ once after they came from outside (a host copy); the layer's own updates keep them valid."""
        if not self._stats_trusted:
            check_running_stats(self.running_mean, self.running_std)
            object.__setattr__(self, "_stats_trusted", True)
        if not self.training and self.step == 0 and not self._warned_untrained:
            object.__setattr__(self, "_warned_untrained", True)
            warnings.warn(
                f"{type(self).__name__}: evaluated before any training step, so it normalizes with the initial "
                "running statistics (mean 0, std 1) and returns γ·x + β; train it or load a trained state first",
                RuntimeWarning,
                stacklevel=3,
            )

    def _update_stats(self, cache: K.NormCache) -> None:
        group = None if self.synchronized else self.stats_group  # sync-BN's μ_B, σ_B already span the group
        NF.update_running_stats(self.running_mean, self.running_std, cache, self.spec.momentum, reduction_for(group))

    def extra_repr(self) -> str:
        text = f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"
        if self.virtual_batch_size is not None:
            text += f", virtual_batch_size={self.virtual_batch_size}"
        return text


class _BatchNorm(_Norm):
    """Batch Normalization (Ioffe & Szegedy 2015) per channel (axis 1) over every other axis.

    Training mode normalizes with the batch's μ_B and σ_B (each ghost batch of
    `virtual_batch_size` examples on its own) and updates μ and σ; eval mode
    computes γ (x − μ)/σ + β. The running statistic is a standard deviation
    averaging σ_B, as in the Batch Renorm paper, not PyTorch's unbiased
    running variance. With ``synchronized`` set (see
    :func:`minigrad.distributed.convert_sync_batchnorm`) the batch statistics
    are those of every process of ``stats_group`` together.
    """

    def forward(self, x: Tensor) -> Tensor:
        self._check_x(x)
        if not self.training:
            self._check_stats()
            return NF.normalize_inference(x, self.weight, self.bias, self.running_mean, self.running_std)
        reduction = reduction_for(self.stats_group) if self.synchronized else LOCAL
        y, cache = NF.normalize_train(x, self.weight, self.bias, self.spec, reduction)
        self._update_stats(cache)
        self.step += 1
        return y


class _BatchRenorm(_Norm):
    """Batch Renormalization (Ioffe 2017, Algorithm 1) per channel (axis 1) over every other axis.

    Training mode: y = γ ((x − μ_B)/σ_B · r + d) + β with
    r = clip(σ_B/σ, 1/r_max, r_max), d = clip((μ_B − μ)/σ, −d_max, d_max)
    from μ, σ before this step's update, held constant for the gradient
    (per ghost batch with `virtual_batch_size`); then μ and σ are updated as
    in batchnorm. Eval mode is batchnorm's. ``r_max`` (>= 1, default 3) and
    ``d_max`` (>= 0, default 5) are numbers or callables of ``step``, e.g. the
    two halves of :func:`~minigrad.norm.schedule.renorm_schedule`; r_max = 1
    and d_max = 0 give batchnorm exactly.

    :attr:`telemetry` holds the clipping record of the last training forward:
    ``step``, the limits in force ``r_limit`` and ``d_limit``, and
    :data:`~minigrad.norm.kernels.TELEMETRY_FIELDS`.
    """

    def __init__(
        self,
        num_features: int,
        *,
        eps: float = 1e-5,
        momentum: float = DEFAULT_MOMENTUM,
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
            if not (callable(limit) or validate.is_real(limit)):
                raise TypeError(f"{name}: expected a number or a callable of the step, got {type(limit).__name__}")
        self.r_max = r_max
        self.d_max = d_max
        # Constant limits are checked here, once; a schedule's values at each step they are used.
        self._fixed_limits = None if callable(r_max) or callable(d_max) else RenormLimits(r_max, d_max)
        self.limits(0)  # a bad schedule fails here, not in the first forward
        self._last: tuple[int, RenormLimits, Any] | None = None  # (step, limits, clip_statistics on the device)

    def _limits_at(self, step: int) -> RenormLimits:
        if self._fixed_limits is not None:
            return self._fixed_limits
        r = self.r_max(step) if callable(self.r_max) else self.r_max
        d = self.d_max(step) if callable(self.d_max) else self.d_max
        return RenormLimits(r, d, source=f"from its schedule at step {step}")

    def limits(self, step: int | None = None) -> tuple[float, float]:
        """(r_max, d_max) in force at `step` (default: the next training step)."""
        limits = self._limits_at(self.step if step is None else step)
        return limits.r_max, limits.d_max

    def forward(self, x: Tensor) -> Tensor:
        self._check_x(x)
        self._check_stats()
        if not self.training:
            return NF.normalize_inference(x, self.weight, self.bias, self.running_mean, self.running_std)
        limits = self._limits_at(self.step)
        y, cache = NF.renormalize_train(x, self.weight, self.bias, self.running_mean, self.running_std, self.spec, limits)
        self._last = (self.step, limits, K.clip_statistics(cache))
        self._update_stats(cache)
        self.step += 1
        return y

    @property
    def telemetry(self) -> dict[str, float]:
        """The clipping record of the last training forward as Python floats ({} before the first); reads the device."""
        if self._last is None:
            return {}
        step, limits, statistics = self._last
        return {"step": step, "r_limit": limits.r_max, "d_limit": limits.d_max, **K.telemetry_record(statistics)}

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
    """The clipping record of every Batch Renorm layer in `model`, by dotted layer name (copies)."""
    return {name: module.telemetry for name, module in model.named_modules() if isinstance(module, _BatchRenorm)}
