"""BatchNorm and Batch Renorm on Tensors: the public functional forms and the paths the layers take.

:func:`batch_norm` and :func:`batch_renorm` are the PyTorch-style functional
forms: they check every argument (they are the boundary) and, in training
mode, update the running statistics they are given **in place**, so that a
layer can hand them its buffers. :func:`batch_norm_train` and
:func:`batch_renorm_train` return the output and the kernels' cache without
touching any state (for tutorials and gradient checks; ε = 0 is allowed).

The underscore-free helpers at the end (:func:`normalize_train`,
:func:`renormalize_train`, :func:`normalize_inference`,
:func:`update_running_stats`) are what the layers call once their own
checks have passed; they check nothing.
"""

from __future__ import annotations

from typing import Any

from minigrad.norm import kernels as K
from minigrad.norm.functions import BatchNormTrain, BatchRenormTrain, NormInference
from minigrad.norm.reduction import LOCAL
from minigrad.norm.spec import NormSpec, RenormLimits, check_affine, check_buffer, check_running_stats, check_x
from minigrad.tensor import Tensor

Array = Any


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
    """Batch Normalization of x (N, C, *S) per channel; see tutorial 02 for the derivation.

    Training mode normalizes with the batch's μ_B and σ_B = sqrt(ε + biased
    variance) (Algorithm 1 with r = 1, d = 0) and, when running statistics are
    given, updates them in place: μ := μ + Δ(μ_B − μ), σ := σ + Δ(σ_B − σ),
    Δ = `momentum` (PyTorch's meaning; Keras' momentum is 1 − Δ). Inference
    mode computes γ (x − μ)/σ + β. `weight`, `bias` are γ, β (C,) or None;
    `running_mean`, `running_std` (C,) backend arrays, optional in training;
    `virtual_batch_size` normalizes ghost batches of that many examples.

    Departs from PyTorch: the running statistic is a standard deviation that
    averages σ_B (ε included, biased variance), as in the paper.
    """
    spec = NormSpec(eps, momentum, virtual_batch_size)
    x_checked = _check_call(x, weight, bias, running_mean, running_std, spec, training)
    if training:
        if (running_mean is None) != (running_std is None):
            raise ValueError(
                "running_mean, running_std: expected both or neither in training mode, got "
                f"running_mean={'None' if running_mean is None else 'an array'}, "
                f"running_std={'None' if running_std is None else 'an array'}"
            )
        y, cache = normalize_train(x_checked, weight, bias, spec)
        if running_mean is not None:
            update_running_stats(running_mean, running_std, cache, spec.momentum)
        return y
    if running_mean is None or running_std is None:
        raise ValueError("running_mean, running_std: expected arrays in inference mode (training=False), got None")
    check_running_stats(running_mean, running_std)
    return normalize_inference(x_checked, weight, bias, running_mean, running_std)


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
    """Batch Renormalization (Algorithm 1) of x (N, C, *S) per channel; see tutorial 03.

    Training mode: y = γ ((x − μ_B)/σ_B · r + d) + β with
    r = clip(σ_B/σ, 1/r_max, r_max) and d = clip((μ_B − μ)/σ, −d_max, d_max)
    from the moving averages before this step, held constant for the
    gradient; then μ and σ are updated in place as in :func:`batch_norm`.
    Inference mode is batchnorm's. The running statistics are required.
    `telemetry`, a dict, is filled in training mode with the clipping record
    (:data:`~minigrad.norm.kernels.TELEMETRY_FIELDS`) as Python floats.
    """
    spec = NormSpec(eps, momentum, virtual_batch_size)
    x_checked = _check_call(x, weight, bias, running_mean, running_std, spec, training)
    if running_mean is None or running_std is None:
        raise ValueError("running_mean, running_std: expected arrays (Batch Renorm uses them in training), got None")
    limits = RenormLimits(r_max, d_max, source=None)
    check_running_stats(running_mean, running_std)
    if not training:
        return normalize_inference(x_checked, weight, bias, running_mean, running_std)
    y, cache = renormalize_train(x_checked, weight, bias, running_mean, running_std, spec, limits)
    if telemetry is not None:
        telemetry.update(K.telemetry_record(K.clip_statistics(cache)))
    update_running_stats(running_mean, running_std, cache, spec.momentum)
    return y


def batch_norm_train(
    x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float, virtual_batch_size: int | None = None
) -> tuple[Tensor, K.NormCache]:
    """Batchnorm in training mode without state: the output and the kernels' cache (ε = 0 allowed)."""
    spec = NormSpec(eps, 0.0, virtual_batch_size, allow_zero_eps=True)
    x_checked = _check_call(x, weight, bias, None, None, spec, training=True)
    return normalize_train(x_checked, weight, bias, spec)


def batch_renorm_train(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Array,
    running_std: Array,
    r_max: float,
    d_max: float,
    eps: float,
    virtual_batch_size: int | None = None,
    *,
    r: Array | float | None = None,
    d: Array | float | None = None,
) -> tuple[Tensor, K.NormCache]:
    """Batch Renorm in training mode without state: the output and the cache; the moving averages are only read.

    `r`, `d` (a number, (C,) or (G, C) array) replace the computed corrections,
    unclipped, so that finite differences can hold them constant.
    """
    spec = NormSpec(eps, 0.0, virtual_batch_size, allow_zero_eps=True)
    x_checked = _check_call(x, weight, bias, running_mean, running_std, spec, training=True)
    limits = RenormLimits(r_max, d_max, source=None)
    check_running_stats(running_mean, running_std)
    return renormalize_train(x_checked, weight, bias, running_mean, running_std, spec, limits, r=r, d=d)


def _check_call(
    x: Any, weight: Any, bias: Any, running_mean: Any, running_std: Any, spec: NormSpec, training: bool
) -> Tensor:
    """Every check of a functional call but the running statistics' values; returns x."""
    sized = [v for v in (running_mean, getattr(weight, "data", None)) if v is not None and getattr(v, "ndim", 0) == 1]
    check_x(x, sized[0].shape[0] if sized else None, spec, training)  # C from μ or γ, so a wrong x is named as such
    check_affine(x, weight, bias)
    for name, buffer in (("running_mean", running_mean), ("running_std", running_std)):
        if buffer is not None:
            check_buffer(name, buffer, x)
    return x


# ----------------------------------------------------------------------------
# The paths behind the checks (the layers call these)
# ----------------------------------------------------------------------------


def _inputs(x: Tensor, weight: Tensor | None, bias: Tensor | None) -> tuple[list[Tensor], dict[str, bool]]:
    tensors = [x] + [t for t in (weight, bias) if t is not None]
    return tensors, {"has_gamma": weight is not None, "has_beta": bias is not None}


def normalize_train(
    x: Tensor, weight: Tensor | None, bias: Tensor | None, spec: NormSpec, reduction: Any = LOCAL
) -> tuple[Tensor, K.NormCache]:
    """Batchnorm's training forward (synchronized with a group `reduction`); output and cache."""
    tensors, flags = _inputs(x, weight, bias)
    op = BatchNormTrain(spec, reduction, **flags)
    return op(*tensors), op.cache


def renormalize_train(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Array,
    running_std: Array,
    spec: NormSpec,
    limits: RenormLimits,
    *,
    r: Array | float | None = None,
    d: Array | float | None = None,
) -> tuple[Tensor, K.NormCache]:
    """Batch Renorm's training forward; output and cache (the moving averages are read, not written)."""
    tensors, flags = _inputs(x, weight, bias)
    op = BatchRenormTrain(spec, limits, running_mean, running_std, r=r, d=d, **flags)
    return op(*tensors), op.cache


def normalize_inference(
    x: Tensor, weight: Tensor | None, bias: Tensor | None, running_mean: Array, running_std: Array
) -> Tensor:
    """Inference for both methods: γ (x − μ)/σ + β."""
    tensors, flags = _inputs(x, weight, bias)
    return NormInference(running_mean, running_std, **flags)(*tensors)


def update_running_stats(
    running_mean: Array, running_std: Array, cache: K.NormCache, momentum: float, reduction: Any = LOCAL
) -> None:
    """Write the moving averages after one step into the buffers (Algorithm 1's update), in place."""
    new_mean, new_std = K.running_stats_update(running_mean, running_std, cache, momentum, reduction)
    running_mean[...] = new_mean  # μ := μ + Δ(μ_B − μ)
    running_std[...] = new_std  # σ := σ + Δ(σ_B − σ)
