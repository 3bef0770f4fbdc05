"""Algorithm 1 of Ioffe, *Batch Renormalization* (2017), and its section 3 backprop, on arrays.

Pure functions: they change no state and never write into their inputs. A
forward returns the output and a :class:`NormCache`; a backward takes dℓ/dy
and the cache and returns ``(dx, dgamma, dbeta)``. The names follow the
paper: ``mu_b``, ``sigma_b`` (μ_B, σ_B), ``r``, ``d``, ``x_hat`` (x̂),
``gamma``, ``beta``, and ``running_mean``/``running_std`` for the moving
averages μ, σ. ``x_bn`` is (x − μ_B)/σ_B: batchnorm's x̂, which Batch Renorm
corrects to x̂ = x_bn · r + d.

Layout: ``x`` is (N, C, *S). With ghost batches of k examples
(``virtual_batch_size``, the paper's microbatches) the kernels view it as
(G, k, C, *S) and reduce over k and S, so statistics have shape
(G, 1, C, 1, ...); without, G = 1. The kernels assume valid input: arguments
are checked once, by :mod:`minigrad.norm.functional` and the layers.

Every sum over the batch goes through a ``reduction``
(:mod:`minigrad.norm.reduction`): :data:`~minigrad.norm.reduction.LOCAL`
for this batch alone, or a group reduction for synchronized BatchNorm over
several processes. Tutorials 02 and 03 derive these equations step by step.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from minigrad import backend
from minigrad.norm.reduction import LOCAL, LocalReduction

Array = Any
Reduction = Any  # LocalReduction or GroupReduction (see minigrad.norm.reduction)

TELEMETRY_FIELDS = (
    "r_clipped_fraction",  # the share of r (over channels and groups) that the limits changed
    "d_clipped_fraction",
    "r_smallest_unclipped",  # the range of σ_B/σ before clipping
    "r_largest_unclipped",
    "d_smallest_unclipped",  # the range of (μ_B − μ)/σ before clipping
    "d_largest_unclipped",
)


# ----------------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------------


def grouped(x: Array, virtual_batch_size: int | None) -> tuple[Array, tuple[int, ...], int]:
    """View x (N, C, *S) as (G, k, C, *S); return it, the axes one group reduces over, and their size m.

    m is the number of values per channel in a group (k times the spatial
    size): the paper's minibatch size m for that channel.
    """
    xp = backend.namespace(x)
    g = 1 if virtual_batch_size is None else x.shape[0] // virtual_batch_size
    xg = xp.reshape(x, (g, x.shape[0] // g) + tuple(x.shape[1:]))
    axes = (1,) + tuple(range(3, xg.ndim))
    return xg, axes, math.prod(xg.shape[a] for a in axes)


def channel_view(v: Array, ndim: int, channel_axis: int) -> Array:
    """A (C,) array reshaped to broadcast along `channel_axis` of an `ndim`-d array."""
    shape = [1] * ndim
    shape[channel_axis] = v.shape[0]
    return backend.namespace(v).reshape(v, tuple(shape))


def per_group(stat: Array) -> Array:
    """A statistic of shape (G, 1, C, 1, ...) as a (G, C) array."""
    return backend.namespace(stat).reshape(stat, (stat.shape[0], stat.shape[2]))


def fixed_correction(value: Array | float, like: Array, stat_shape: tuple[int, ...], name: str) -> Array:
    """A given r or d (a number, a (C,) or a (G, C) array) as `like`'s dtype and device, shape (G, 1, C, 1, ...).

    Fixed corrections are for gradient checks, which hold r and d constant.
    """
    xp = backend.namespace(like)
    g, c = stat_shape[0], stat_shape[2]
    if isinstance(value, numbers.Real):
        return xp.full(stat_shape, float(value), dtype=like.dtype, device=backend.device(like))
    value = xp.astype(backend.to_device(value, backend.device_of(like)), like.dtype)
    if tuple(value.shape) == (c,):
        value = xp.broadcast_to(value[None, :], (g, c))
    if tuple(value.shape) != (g, c):
        raise ValueError(f"{name}: expected shape ({c},) or ({g}, {c}) (per channel or per group), got {tuple(value.shape)}")
    return xp.reshape(value, stat_shape)


# ----------------------------------------------------------------------------
# Forward
# ----------------------------------------------------------------------------


@dataclass
class NormCache:
    """What a training-mode backward needs; statistics per group, shape (G, 1, C, 1, ...).

    ``x_bn`` is (x − μ_B)/σ_B in the grouped layout (G, k, C, *S). ``r`` and
    ``d`` are None for batchnorm (r = 1, d = 0). ``r_unclipped`` and
    ``d_unclipped`` are σ_B/σ and (μ_B − μ)/σ before clipping (None when r and
    d were given), for the clipping telemetry. ``share`` is this process's
    fraction of the values normalized together (1 unless synchronized).
    """

    x_bn: Array
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


@dataclass
class InferenceCache:
    """What the inference-mode backward needs: x̂ = (x − μ)/σ and the per-channel scale γ/σ."""

    x_hat: Array
    scale: Array


def batch_moments(
    xg: Array, axes: tuple[int, ...], eps: float, reduction: Reduction = LOCAL
) -> tuple[Array, Array, Array, float]:
    """μ_B, σ_B, x − μ_B and this process's share of the values, in two passes (no E[x²] − E[x]², which cancels).

    σ_B includes eps, as in Algorithm 1, so eps is counted exactly once, both
    here and in a running standard deviation that averages σ_B.
    """
    xp = backend.namespace(xg)
    m_here = math.prod(xg.shape[a] for a in axes)
    mu_b, m = reduction.mean(xp.sum(xg, axis=axes, keepdims=True), m_here)  # μ_B ← (1/m) Σ_i x_i
    xc = xg - mu_b  # x_i − μ_B (second pass)
    (sum_squares,) = reduction.sum(xp.sum(xc * xc, axis=axes, keepdims=True))
    sigma_b = xp.sqrt(eps + sum_squares / m)  # σ_B ← sqrt(ε + (1/m) Σ_i (x_i − μ_B)²)
    return mu_b, sigma_b, xc, m_here / m


def _scale_shift(x: Array, scale: Array | None, shift: Array | None) -> Array:
    """x · scale + shift as one new array (scale and shift per channel or per group; None for none).

    The product is the only new array and the shift is added in place: two
    passes over memory instead of three. The small arrays are cast to the
    result's dtype first, so the in-place addition never narrows.
    """
    if scale is None:
        return x if shift is None else x + shift
    xp = backend.namespace(x)
    dtype = xp.result_type(x, scale, *([] if shift is None else [shift]))
    y = x * xp.astype(scale, dtype)
    if shift is not None:
        y += xp.astype(shift, dtype)
    return y


def batch_norm_forward(
    x: Array,
    gamma: Array | None,
    beta: Array | None,
    eps: float,
    virtual_batch_size: int | None = None,
    reduction: Reduction = LOCAL,
) -> tuple[Array, NormCache]:
    """Batchnorm in training mode: the batch's own μ_B and σ_B (Algorithm 1 with r = 1, d = 0).

    `gamma`, `beta` are (C,) or None; `eps` >= 0 (0 for the paper's identities).
    Returns y of x's shape and the cache for :func:`batch_norm_backward`.
    """
    xp = backend.namespace(x)
    xg, axes, _ = grouped(x, virtual_batch_size)
    mu_b, sigma_b, xc, share = batch_moments(xg, axes, eps, reduction)  # μ_B, σ_B
    x_hat = xc
    x_hat /= sigma_b  # x̂_i ← (x_i − μ_B)/σ_B (in place: xc is batch_moments' own new array)
    gamma_view = None if gamma is None else channel_view(gamma, xg.ndim, 2)
    beta_view = None if beta is None else channel_view(beta, xg.ndim, 2)
    y = _scale_shift(x_hat, gamma_view, beta_view)  # y_i ← γ x̂_i + β
    cache = NormCache(x_hat, mu_b, sigma_b, gamma, tuple(x.shape), axes, share=share)
    return xp.reshape(y, tuple(x.shape)), cache


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
    reduction: Reduction = LOCAL,
) -> tuple[Array, NormCache]:
    """Batch Renorm in training mode (Algorithm 1, top); the moving averages are read, never written.

    `running_mean`, `running_std` are μ and σ from *before* this step's update;
    r is clipped to [1/r_max, r_max] and d to [−d_max, d_max]. Given `r`, `d`
    (a number, (C,) or (G, C)) replace the computed ones, unclipped, so that a
    gradient check can hold them constant. Returns y and the cache for
    :func:`batch_renorm_backward`.
    """
    xp = backend.namespace(x)
    xg, axes, _ = grouped(x, virtual_batch_size)
    mu_b, sigma_b, xc, share = batch_moments(xg, axes, eps, reduction)  # μ_B, σ_B
    mu = channel_view(xp.astype(running_mean, x.dtype), xg.ndim, 2)  # μ (before this step's update)
    sigma = channel_view(xp.astype(running_std, x.dtype), xg.ndim, 2)  # σ
    r_unclipped = d_unclipped = None
    if r is None:
        r_unclipped = sigma_b / sigma  # σ_B / σ
        r = xp.clip(r_unclipped, 1.0 / r_max, float(r_max))  # r ← stop_gradient(clip_[1/r_max, r_max](σ_B/σ))
    else:
        r = fixed_correction(r, x, tuple(mu_b.shape), "r")
    if d is None:
        d_unclipped = (mu_b - mu) / sigma  # (μ_B − μ) / σ
        d = xp.clip(d_unclipped, -float(d_max), float(d_max))  # d ← stop_gradient(clip_[−d_max, d_max]((μ_B − μ)/σ))
    else:
        d = fixed_correction(d, x, tuple(mu_b.shape), "d")
    x_bn = xc
    x_bn /= sigma_b  # (x_i − μ_B)/σ_B (in place: xc is batch_moments' own new array)
    # x̂_i ← x_bn_i · r + d and y_i ← γ x̂_i + β in one step: y_i = x_bn_i · (γ r) + (γ d + β),
    # a per-channel (per-group) scale and shift, so x̂ itself is never stored.
    gamma_view = 1.0 if gamma is None else channel_view(gamma, xg.ndim, 2)
    beta_view = 0.0 if beta is None else channel_view(beta, xg.ndim, 2)
    y = _scale_shift(x_bn, gamma_view * r, gamma_view * d + beta_view)
    cache = NormCache(x_bn, mu_b, sigma_b, gamma, tuple(x.shape), axes, r, d, r_unclipped, d_unclipped, share)
    return xp.reshape(y, tuple(x.shape)), cache


# ----------------------------------------------------------------------------
# Backward (section 3)
# ----------------------------------------------------------------------------


def normalized_grad(
    g: Array,
    x_bn: Array,
    sigma_b: Array,
    axes: tuple[int, ...],
    scale: Array | None = None,
    sum_g: Array | None = None,
    sum_g_x_bn: Array | None = None,
) -> Array:
    """dℓ/dx from g, through x̂_i = x_bn_i · r + d with r, d constant: the core of both backward passes.

    `scale` is a per-channel (or per-group) factor of shape (G, 1, C, 1, ...)
    that multiplies the result: r for Batch Renorm, γ · r when g is dℓ/dy,
    None for 1. The result is g scaled by scale/σ_B and projected onto the
    null space of (1, ..., 1) and (x_1, ..., x_m) (exactly so when ε = 0).
    `sum_g` and `sum_g_x_bn` are Σ_i g_i and Σ_i g_i · x_bn_i per group
    (keepdims), computed here when None; a synchronized caller passes the
    group's sums times this process's share, since the m below is local.
    """
    xp = backend.namespace(g)
    m = math.prod(g.shape[a] for a in axes)  # m, the number of values normalized together
    if sum_g is None:
        sum_g = xp.sum(g, axis=axes, keepdims=True)
    if sum_g_x_bn is None:
        sum_g_x_bn = xp.sum(g * x_bn, axis=axes, keepdims=True)
    r_over_sigma = 1.0 / sigma_b if scale is None else scale / sigma_b  # r / σ_B
    # The paper's three equations, with (x_i − μ_B)/σ_B = x_bn_i:
    #   ∂ℓ/∂σ_B = Σ_i ∂ℓ/∂x̂_i · (x_i − μ_B) · (−r/σ_B²) = −(r/σ_B) · Σ_i ∂ℓ/∂x̂_i · x_bn_i
    #   ∂ℓ/∂μ_B = Σ_i ∂ℓ/∂x̂_i · (−r/σ_B)               = −(r/σ_B) · Σ_i ∂ℓ/∂x̂_i
    #   ∂ℓ/∂x_i = ∂ℓ/∂x̂_i · r/σ_B + ∂ℓ/∂σ_B · (x_i − μ_B)/(m σ_B) + ∂ℓ/∂μ_B · 1/m
    # Putting the first two into the third leaves r/σ_B in front of every term:
    #   ∂ℓ/∂x_i = r/σ_B · (∂ℓ/∂x̂_i − x_bn_i · (1/m) Σ_j ∂ℓ/∂x̂_j · x_bn_j − (1/m) Σ_j ∂ℓ/∂x̂_j)
    # evaluated as one new array updated in place (four passes over memory, no other temporary);
    # the per-channel factors are cast to the result's dtype first so the updates never narrow.
    dtype = xp.result_type(g, x_bn, r_over_sigma)
    dx = x_bn * xp.astype(-sum_g_x_bn / m, dtype)  # − x_bn_i · (1/m) Σ_j ∂ℓ/∂x̂_j · x_bn_j
    dx -= xp.astype(sum_g / m, dtype)  # − (1/m) Σ_j ∂ℓ/∂x̂_j
    dx += g  # + ∂ℓ/∂x̂_i
    dx *= xp.astype(r_over_sigma, dtype)  # all times r/σ_B
    return dx


def training_backward(
    dy: Array, cache: NormCache, need_dx: bool = True, reduction: Reduction = LOCAL
) -> tuple[Array | None, Array, Array]:
    """(dℓ/dx, dℓ/dγ, dℓ/dβ) of either training forward; dℓ/dx is None when `need_dx` is False.

    dℓ/dγ and dℓ/dβ are this process's part (the gradient averaging adds the
    parts up) and are returned even without γ and β (the gradient at γ = 1, β = 0).
    """
    xp = backend.namespace(dy)
    dyg = xp.reshape(dy, tuple(cache.x_bn.shape))  # dℓ/dy_i in the grouped layout
    reduce_all = (0, *cache.axes)  # every axis but the channel axis
    c = cache.x_bn.shape[2]
    sum_dy = xp.sum(dyg, axis=cache.axes, keepdims=True)  # Σ_i dℓ/dy_i, per group
    sum_dy_x_bn = xp.sum(dyg * cache.x_bn, axis=cache.axes, keepdims=True)  # Σ_i dℓ/dy_i · x_bn_i
    dbeta = xp.reshape(xp.sum(sum_dy, axis=reduce_all), (c,))  # ∂ℓ/∂β = Σ_i ∂ℓ/∂y_i
    if cache.r is None:
        dgamma = xp.sum(sum_dy_x_bn, axis=reduce_all)  # ∂ℓ/∂γ = Σ_i ∂ℓ/∂y_i · x̂_i
    else:
        dgamma = xp.sum(cache.r * sum_dy_x_bn + cache.d * sum_dy, axis=reduce_all)  # Σ_i ∂ℓ/∂y_i · (x_bn_i r + d)
    dgamma = xp.reshape(dgamma, (c,))
    if not need_dx:
        return None, dgamma, dbeta
    if not isinstance(reduction, LocalReduction):  # synchronized: the group's sums, in this process's units
        sum_dy, sum_dy_x_bn = reduction.sum(sum_dy * cache.share, sum_dy_x_bn * cache.share)
    # ∂ℓ/∂x̂_i = ∂ℓ/∂y_i · γ: γ is constant per channel, so it joins r in the scale and the sums
    # above serve again (no full-size ∂ℓ/∂x̂ is made).
    scale = cache.r
    if cache.gamma is not None:
        gamma = channel_view(cache.gamma, dyg.ndim, 2)
        scale = gamma if scale is None else gamma * scale
    dx = normalized_grad(dyg, cache.x_bn, cache.sigma_b, cache.axes, scale, sum_g=sum_dy, sum_g_x_bn=sum_dy_x_bn)
    return xp.reshape(dx, cache.input_shape), dgamma, dbeta


def batch_norm_backward(dy: Array, cache: NormCache, need_dx: bool = True) -> tuple[Array | None, Array, Array]:
    """(dℓ/dx, dℓ/dγ, dℓ/dβ) for :func:`batch_norm_forward` on one batch."""
    return training_backward(dy, cache, need_dx)


def batch_renorm_backward(dy: Array, cache: NormCache, need_dx: bool = True) -> tuple[Array | None, Array, Array]:
    """(dℓ/dx, dℓ/dγ, dℓ/dβ) for :func:`batch_renorm_forward`, r and d constant: batchnorm's times r (section 3)."""
    if cache.r is None:
        raise ValueError("cache: expected the cache of batch_renorm_forward (with r and d), got one without r")
    return training_backward(dy, cache, need_dx)


# ----------------------------------------------------------------------------
# Inference, moving averages, telemetry
# ----------------------------------------------------------------------------


def norm_inference_forward(
    x: Array, gamma: Array | None, beta: Array | None, running_mean: Array, running_std: Array
) -> tuple[Array, InferenceCache]:
    """Inference for both methods (Algorithm 1, bottom): y ← γ · (x − μ)/σ + β with the moving averages.

    Each example is normalized on its own: no groups, no minimum batch size.
    """
    xp = backend.namespace(x)
    mu = channel_view(xp.astype(running_mean, x.dtype), x.ndim, 1)  # μ
    sigma = channel_view(xp.astype(running_std, x.dtype), x.ndim, 1)  # σ
    x_hat = (x - mu) / sigma  # (x − μ)/σ
    gamma_view = None if gamma is None else channel_view(gamma, x.ndim, 1)
    beta_view = None if beta is None else channel_view(beta, x.ndim, 1)
    y = _scale_shift(x_hat, gamma_view, beta_view)  # y ← γ · (x − μ)/σ + β
    scale = 1.0 / sigma if gamma is None else gamma_view / sigma  # γ/σ
    return y, InferenceCache(x_hat=x_hat, scale=scale)


def norm_inference_backward(dy: Array, cache: InferenceCache, need_dx: bool = True) -> tuple[Array | None, Array, Array]:
    """(dℓ/dx, dℓ/dγ, dℓ/dβ) for :func:`norm_inference_forward`: μ and σ are constants here."""
    xp = backend.namespace(dy)
    axes = (0, *range(2, dy.ndim))
    dgamma = xp.sum(dy * cache.x_hat, axis=axes)  # ∂ℓ/∂γ = Σ ∂ℓ/∂y · x̂
    dbeta = xp.sum(dy, axis=axes)  # ∂ℓ/∂β = Σ ∂ℓ/∂y
    dx = dy * cache.scale if need_dx else None  # ∂ℓ/∂x = ∂ℓ/∂y · γ/σ
    return dx, dgamma, dbeta


def running_stats_update(
    running_mean: Array, running_std: Array, cache: NormCache, momentum: float, reduction: Reduction = LOCAL
) -> tuple[Array, Array]:
    """The moving averages after one training step (Algorithm 1), as new arrays in the buffers' dtype.

    μ := μ + Δ(μ_B − μ) and σ := σ + Δ(σ_B − σ) with Δ = `momentum`. With
    ghost batches μ_B and σ_B are the means of the groups' μ_B and σ_B: one
    update per step. A group `reduction` averages them over the processes,
    weighted by their numbers of values, so every process makes the same update.
    """
    xp = backend.namespace(running_mean)
    stats = xp.stack([xp.mean(per_group(cache.mu_b), axis=0), xp.mean(per_group(cache.sigma_b), axis=0)])  # (2, C)
    if not isinstance(reduction, LocalReduction):
        values_here = cache.mu_b.shape[0] * math.prod(cache.x_bn.shape[a] for a in cache.axes)
        stats = reduction.average(stats, float(values_here))
    mu_b, sigma_b = stats[0, ...], stats[1, ...]
    mu = xp.astype(running_mean, mu_b.dtype)
    sigma = xp.astype(running_std, sigma_b.dtype)
    new_mean = mu + momentum * (mu_b - mu)  # μ := μ + Δ(μ_B − μ)
    new_std = sigma + momentum * (sigma_b - sigma)  # σ := σ + Δ(σ_B − σ)
    return xp.astype(new_mean, running_mean.dtype), xp.astype(new_std, running_std.dtype)


def clip_statistics(cache: NormCache) -> Array:
    """How much clipping a Batch Renorm step did, as one small array on the device (no host copy).

    The values, in the order of :data:`TELEMETRY_FIELDS`: the fractions of r and
    of d that the limits changed, then the smallest and largest unclipped
    σ_B/σ and (μ_B − μ)/σ. :func:`telemetry_record` turns them into a dict.
    """
    if cache.r_unclipped is None or cache.d_unclipped is None:
        raise ValueError("cache: clipping telemetry needs r and d computed from the batch, got fixed r or d")
    xp = backend.namespace(cache.r)
    r_raw, d_raw = cache.r_unclipped, cache.d_unclipped
    return xp.stack(
        [
            xp.mean(xp.astype(r_raw != cache.r, r_raw.dtype)),
            xp.mean(xp.astype(d_raw != cache.d, d_raw.dtype)),
            xp.min(r_raw),
            xp.max(r_raw),
            xp.min(d_raw),
            xp.max(d_raw),
        ]
    )


def telemetry_record(statistics: Array) -> dict[str, float]:
    """The array of :func:`clip_statistics` as a dict of Python floats (one copy to the host)."""
    values = backend.to_numpy(statistics).astype("float64").tolist()
    return dict(zip(TELEMETRY_FIELDS, values))


def clip_telemetry(cache: NormCache) -> dict[str, float]:
    """:func:`clip_statistics` read into a dict of Python floats (one copy to the host)."""
    return telemetry_record(clip_statistics(cache))
