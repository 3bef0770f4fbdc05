"""Batch Normalization and Batch Renormalization: array kernels, autograd ops and a reference version.

Read this file beside Ioffe, *Batch Renormalization* (2017): Algorithm 1 (the
forward pass and the moving-average update) and the backprop equations of
section 3. The names follow the paper: ``mu_b`` and ``sigma_b`` are the
minibatch moments μ_B and σ_B, ``r`` and ``d`` the per-channel correction,
``x_hat`` the normalized activation x̂, ``gamma`` and ``beta`` the affine
parameters γ and β.

The file has three layers, from arrays up:

1. **Kernels** (pure functions of arrays; they change no state and never write
   into their inputs). A forward returns the output and a small cache; a
   backward takes dℓ/dy and the cache and returns ``(dx, dgamma, dbeta)``:
   :func:`batch_norm_forward` / :func:`batch_norm_backward`,
   :func:`batch_renorm_forward` / :func:`batch_renorm_backward`, and
   :func:`norm_inference_forward` / :func:`norm_inference_backward` for
   inference mode (running statistics, the same for both methods). Both
   training backwards call one helper, :func:`normalized_grad`, the
   "normalized-gradient core"; Batch Renorm passes its r, batchnorm r = 1.
   :func:`running_stats_update` returns the moving averages after a step.
2. **Autograd ops**: :class:`BatchNormTrain`, :class:`BatchRenormTrain` and
   :class:`NormInference` wrap the kernels in :class:`~minigrad.tensor.Function`
   subclasses (hand-written backward, not autograd through primitives), with
   the Tensor-level entry points :func:`batch_norm_train`,
   :func:`batch_renorm_train` and :func:`norm_inference`. Running statistics
   are *read* here and updated by :mod:`minigrad.nn.functional`.
3. **Reference versions** built from the engine's primitive Tensor ops
   (mean, sqrt, ...) with r and d detached: :func:`batch_norm_reference` and
   :func:`batch_renorm_reference`. They are slow and obviously correct, the
   oracle that the tests compare the kernels against.

Layout. ``x`` has shape (N, C, *S): a batch of N examples with C channels and
any spatial axes S (none, (L,) or (H, W)). Statistics are per channel, over
every other axis. With ``virtual_batch_size = k`` (ghost batches, the paper's
"microbatches" of section 4.2) the batch is split into G = N / k consecutive
groups that are each normalized with their own μ_B, σ_B, r and d. The kernels
do this in one vectorised path: they view x as (G, k, C, *S) and reduce over
the k axis and the spatial axes, so per-group statistics have shape
(G, 1, C, 1, ...). Without ghost batches G = 1 and k = N: plain batchnorm.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from minigrad import backend
from minigrad.tensor import Function, Tensor, as_tensor

Array = Any
np = backend.host


# ----------------------------------------------------------------------------
# Argument checks shared by the kernels (each error names the argument,
# what was expected and what came)
# ----------------------------------------------------------------------------


def check_input(x: Array, num_channels: int | None = None) -> None:
    """`x` must have shape (N, C, ...) with at least two axes and, when given, C = `num_channels`."""
    if x.ndim < 2:
        raise ValueError(f"x: expected an array of shape (N, C, ...) with at least 2 axes, got shape {tuple(x.shape)}")
    if num_channels is not None and x.shape[1] != num_channels:
        raise ValueError(
            f"x: expected {num_channels} channels on axis 1 (the number of features), got shape {tuple(x.shape)}"
        )
    if not backend.is_floating(x):
        raise TypeError(f"x: expected a floating-point array, got dtype {backend.dtype_name(x.dtype)}")


def check_per_channel(name: str, value: Array | None, num_channels: int) -> None:
    """A per-channel array (gamma, beta, running statistics) must have shape (C,)."""
    if value is not None and tuple(value.shape) != (num_channels,):
        raise ValueError(f"{name}: expected shape ({num_channels},), one value per channel, got {tuple(value.shape)}")


def check_running_stats(running_mean: Array, running_std: Array, num_channels: int) -> None:
    """Running statistics must be (C,) arrays, finite, with a positive standard deviation."""
    check_per_channel("running_mean", running_mean, num_channels)
    check_per_channel("running_std", running_std, num_channels)
    mean_host = backend.to_numpy(running_mean)
    std_host = backend.to_numpy(running_std)
    bad = np.flatnonzero(~np.isfinite(mean_host))
    if bad.size:
        raise ValueError(
            f"running_mean: expected finite values, got {mean_host[bad].tolist()} at channels {bad.tolist()} "
            "(did training diverge, or was a corrupt state dict loaded?)"
        )
    bad = np.flatnonzero(~(np.isfinite(std_host) & (std_host > 0)))
    if bad.size:
        raise ValueError(
            f"running_std: expected finite positive values, got {std_host[bad].tolist()} at channels {bad.tolist()} "
            "(did training diverge, or was a corrupt state dict loaded?)"
        )


def check_eps(eps: float, allow_zero: bool = True) -> None:
    """eps must be a finite number, >= 0 for the kernels (0 for the paper's identities), > 0 for layers."""
    ok = isinstance(eps, numbers.Real) and math.isfinite(eps) and (eps >= 0 if allow_zero else eps > 0)
    if not ok:
        expected = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"eps: expected {expected}, got {eps!r}")


def check_limits(r_max: float, d_max: float) -> None:
    """r_max >= 1 (so the interval [1/r_max, r_max] is not empty) and d_max >= 0; inf means no clipping."""
    if not isinstance(r_max, numbers.Real) or math.isnan(r_max) or r_max < 1:
        raise ValueError(f"r_max: expected a number >= 1 (r is clipped to [1/r_max, r_max]), got {r_max!r}")
    if not isinstance(d_max, numbers.Real) or math.isnan(d_max) or d_max < 0:
        raise ValueError(f"d_max: expected a number >= 0 (d is clipped to [-d_max, d_max]), got {d_max!r}")


def _groups(x: Array, virtual_batch_size: int | None) -> int:
    """Number of normalization groups G; the batch must split into groups of `virtual_batch_size` examples."""
    n = x.shape[0]
    if virtual_batch_size is None:
        return 1
    if isinstance(virtual_batch_size, bool) or not isinstance(virtual_batch_size, int) or virtual_batch_size < 1:
        raise ValueError(f"virtual_batch_size: expected None or a positive integer, got {virtual_batch_size!r}")
    if n % virtual_batch_size != 0:
        raise ValueError(
            f"virtual_batch_size: expected a divisor of the batch size {n} (x has shape {tuple(x.shape)}), "
            f"got {virtual_batch_size}"
        )
    return n // virtual_batch_size


# ----------------------------------------------------------------------------
# Layout helpers
# ----------------------------------------------------------------------------


def grouped(x: Array, virtual_batch_size: int | None) -> tuple[Array, tuple[int, ...], int]:
    """View x (N, C, *S) as (G, k, C, *S); return it, the axes one group reduces over, and their size m.

    m is the number of values per channel in a group (k times the spatial
    size): the paper's minibatch size m for that channel.
    """
    xp = backend.namespace(x)
    g = _groups(x, virtual_batch_size)
    xg = xp.reshape(x, (g, x.shape[0] // g) + tuple(x.shape[1:]))
    axes = (1,) + tuple(range(3, xg.ndim))
    m = math.prod(xg.shape[a] for a in axes)
    return xg, axes, m


def _channel_view(v: Array, ndim: int, channel_axis: int) -> Array:
    """A (C,) array reshaped to broadcast along `channel_axis` of an `ndim`-d array."""
    shape = [1] * ndim
    shape[channel_axis] = v.shape[0]
    return backend.namespace(v).reshape(v, tuple(shape))


def _stat_view(v: Array, stat_shape: tuple[int, ...], name: str) -> Array:
    """A fixed r or d given per channel (C,) or per group (G, C), as the stats shape (G, 1, C, 1, ...)."""
    xp = backend.namespace(v)
    g, c = stat_shape[0], stat_shape[2]
    if tuple(v.shape) == (c,):
        v = xp.broadcast_to(v[None, :], (g, c))
    if tuple(v.shape) != (g, c):
        raise ValueError(f"{name}: expected shape ({c},) or ({g}, {c}) (per channel or per group), got {tuple(v.shape)}")
    return xp.reshape(v, stat_shape)


def per_group(stat: Array) -> Array:
    """A statistic of shape (G, 1, C, 1, ...) as a (G, C) array."""
    return backend.namespace(stat).reshape(stat, (stat.shape[0], stat.shape[2]))


def fixed_correction(value: Array | float, like: Array, stat_shape: tuple[int, ...], name: str) -> Array:
    """A fixed r or d (a number, a (C,) or a (G, C) array) as `like`'s dtype and device, shape (G, 1, C, 1, ...)."""
    xp = backend.namespace(like)
    if isinstance(value, numbers.Real):
        return xp.full(stat_shape, float(value), dtype=like.dtype, device=like.device)
    value = xp.astype(backend.to_device(value, backend.device_of(like)), like.dtype)
    return _stat_view(value, stat_shape, name)


# ----------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------


@dataclass
class NormCache:
    """What a training-mode backward needs; the statistics are per group, shape (G, 1, C, 1, ...).

    ``x_norm`` is (x − μ_B)/σ_B in the grouped layout (G, k, C, *S): batchnorm's
    x̂, and Batch Renorm's x̂ before the correction (x̂ = x_norm · r + d).
    ``r`` and ``d`` are None for batchnorm (r = 1, d = 0). ``r_unclipped`` and
    ``d_unclipped`` are σ_B/σ and (μ_B − μ)/σ before clipping (None when r and
    d were given), kept for the clipping telemetry.
    """

    x_norm: Array
    mu_b: Array
    sigma_b: Array
    gamma: Array | None
    input_shape: tuple[int, ...]
    axes: tuple[int, ...]
    r: Array | None = None
    d: Array | None = None
    r_unclipped: Array | None = None
    d_unclipped: Array | None = None

    @property
    def m(self) -> int:
        """Values per channel in one normalization group."""
        return math.prod(self.x_norm.shape[a] for a in self.axes)


@dataclass
class InferenceCache:
    """What the inference-mode backward needs: x̂ = (x − μ)/σ and the per-channel scale γ/σ."""

    x_hat: Array
    scale: Array
    input_shape: tuple[int, ...]


def batch_moments(xg: Array, axes: tuple[int, ...], eps: float) -> tuple[Array, Array, Array]:
    """μ_B, σ_B and x − μ_B for the grouped input, in two passes (no E[x²] − E[x]², which cancels badly).

    σ_B includes eps, as in Algorithm 1, so eps is counted exactly once, both
    here and in a running standard deviation that averages σ_B.
    """
    xp = backend.namespace(xg)
    mu_b = xp.mean(xg, axis=axes, keepdims=True)  # μ_B ← (1/m) Σ_i x_i
    xc = xg - mu_b  # x_i − μ_B (second pass)
    sigma_b = xp.sqrt(eps + xp.mean(xc * xc, axis=axes, keepdims=True))  # σ_B ← sqrt(ε + (1/m) Σ_i (x_i − μ_B)²)
    return mu_b, sigma_b, xc


def _check_group_size(x: Array, m: int, virtual_batch_size: int | None) -> None:
    if m < 2:
        raise ValueError(
            f"x: expected more than one value per channel in each normalization group in training mode, got shape "
            f"{tuple(x.shape)} with virtual_batch_size={virtual_batch_size!r} ({m} value per channel and group); "
            "use a larger batch or group, or eval mode"
        )


def _scale_shift(x: Array, scale: Array | None, shift: Array | None) -> Array:
    """x · scale + shift as one new array, with scale and shift per channel (or per group), None for none.

    Speed: the product is the only new array and the shift is added in place, so
    the whole costs two passes over memory (``x * scale + shift`` would make a
    second full-size temporary). The small arrays are cast to the result's dtype
    first, so that the in-place addition never narrows.
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
) -> tuple[Array, NormCache]:
    """Batchnorm in training mode: normalize with the batch's own μ_B and σ_B (Algorithm 1 with r = 1, d = 0).

    Args:
        x: (N, C, *S) input.
        gamma, beta: (C,) scale and shift, or None for none.
        eps: ε >= 0 added to the variance (0 is allowed for the paper's identities).
        virtual_batch_size: normalize consecutive groups of this many examples separately.

    Returns:
        y of x's shape, and the :class:`NormCache` for :func:`batch_norm_backward`.
    """
    check_input(x)
    check_eps(eps)
    check_per_channel("gamma", gamma, x.shape[1])
    check_per_channel("beta", beta, x.shape[1])
    xp = backend.namespace(x)
    xg, axes, m = grouped(x, virtual_batch_size)
    _check_group_size(x, m, virtual_batch_size)
    mu_b, sigma_b, xc = batch_moments(xg, axes, eps)  # μ_B, σ_B
    x_hat = xc
    x_hat /= sigma_b  # x̂_i ← (x_i − μ_B)/σ_B (in place: xc is batch_moments' new array, used nowhere else)
    gamma_view = None if gamma is None else _channel_view(gamma, xg.ndim, 2)
    beta_view = None if beta is None else _channel_view(beta, xg.ndim, 2)
    y = _scale_shift(x_hat, gamma_view, beta_view)  # y_i ← γ x̂_i + β
    cache = NormCache(x_norm=x_hat, mu_b=mu_b, sigma_b=sigma_b, gamma=gamma, input_shape=tuple(x.shape), axes=axes)
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
    r: Array | float | None = None,
    d: Array | float | None = None,
) -> tuple[Array, NormCache]:
    """Batch Renorm in training mode (Algorithm 1, top). The running statistics are read, never written.

    Args:
        x: (N, C, *S) input.
        gamma, beta: (C,) scale and shift, or None for none.
        running_mean, running_std: the moving averages μ and σ from *before* this step's update.
        r_max, d_max: clipping limits, r ∈ [1/r_max, r_max] and d ∈ [−d_max, d_max].
        eps: ε >= 0 added to the variance.
        virtual_batch_size: normalize consecutive groups of this many examples separately,
            each with its own μ_B, σ_B, r and d.
        r, d: fixed corrections (a number, a (C,) array or a (G, C) array per group) used
            instead of the ones computed from the batch, so that finite differences can
            hold them constant; the limit of a given r or d is then not applied.

    Returns:
        y of x's shape, and the :class:`NormCache` for :func:`batch_renorm_backward`.
    """
    check_input(x)
    check_eps(eps)
    c = x.shape[1]
    check_per_channel("gamma", gamma, c)
    check_per_channel("beta", beta, c)
    check_running_stats(running_mean, running_std, c)
    check_limits(r_max, d_max)
    xp = backend.namespace(x)
    xg, axes, m = grouped(x, virtual_batch_size)
    _check_group_size(x, m, virtual_batch_size)
    mu_b, sigma_b, xc = batch_moments(xg, axes, eps)  # μ_B, σ_B
    mu = _channel_view(xp.astype(running_mean, x.dtype), xg.ndim, 2)  # μ (moving mean, before the update)
    sigma = _channel_view(xp.astype(running_std, x.dtype), xg.ndim, 2)  # σ (moving std, before the update)
    r_unclipped = d_unclipped = None
    if r is None:
        r_unclipped = sigma_b / sigma  # σ_B / σ
        r = xp.clip(r_unclipped, 1.0 / r_max, float(r_max))  # r ← stop_gradient(clip_[1/r_max, r_max](σ_B/σ))
    else:
        r = fixed_correction(r, x, tuple(mu_b.shape), "r")  # r given: held constant
    if d is None:
        d_unclipped = (mu_b - mu) / sigma  # (μ_B − μ) / σ
        d = xp.clip(d_unclipped, -float(d_max), float(d_max))  # d ← stop_gradient(clip_[−d_max, d_max]((μ_B − μ)/σ))
    else:
        d = fixed_correction(d, x, tuple(mu_b.shape), "d")  # d given: held constant
    x_norm = xc
    x_norm /= sigma_b  # (x_i − μ_B)/σ_B (in place: xc is batch_moments' new array, used nowhere else)
    # x̂_i ← (x_i − μ_B)/σ_B · r + d and y_i ← γ x̂_i + β, in one step: y_i = x_norm_i · (γ r) + (γ d + β),
    # with per-channel (per-group) scale γ r and shift γ d + β, so x̂ itself is never stored.
    gamma_view = 1.0 if gamma is None else _channel_view(gamma, xg.ndim, 2)
    beta_view = 0.0 if beta is None else _channel_view(beta, xg.ndim, 2)
    y = _scale_shift(x_norm, gamma_view * r, gamma_view * d + beta_view)
    cache = NormCache(
        x_norm=x_norm,
        mu_b=mu_b,
        sigma_b=sigma_b,
        gamma=gamma,
        input_shape=tuple(x.shape),
        axes=axes,
        r=r,
        d=d,
        r_unclipped=r_unclipped,
        d_unclipped=d_unclipped,
    )
    return xp.reshape(y, tuple(x.shape)), cache


def normalized_grad(
    g: Array,
    x_norm: Array,
    sigma_b: Array,
    axes: tuple[int, ...],
    r: Array | None = None,
    sum_g: Array | None = None,
    sum_g_x_norm: Array | None = None,
) -> Array:
    """dℓ/dx from g = dℓ/dx̂, through x̂_i = (x_i − μ_B)/σ_B · r + d with r, d constant (section 3).

    The core shared by both backward passes: batchnorm is r = 1 (None), Batch
    Renorm passes its r, which scales the whole result. Equivalently, dℓ/dx is
    g scaled by r/σ_B and projected onto the null space of (1, ..., 1) and
    (x_1, ..., x_m) (exactly so when ε = 0), which is why Σ_i dℓ/dx_i = 0.

    All arrays are in the grouped layout; `sigma_b` and `r` have the
    statistics' shape (G, 1, C, 1, ...); `axes` are the axes of one group.
    `sum_g` and `sum_g_x_norm` are Σ_i g_i and Σ_i g_i · x_norm_i per group
    (keepdims), for a caller that has them already; computed here when None.

    The result is linear in g, and r only scales it, so a constant per-channel
    factor of g can be passed in r instead: ``normalized_grad(γ · dy, ..., r)``
    equals ``normalized_grad(dy, ..., γ · r)`` (the backward passes use this).
    """
    xp = backend.namespace(g)
    m = math.prod(g.shape[a] for a in axes)  # m, the number of values normalized together
    if sum_g is None:
        sum_g = xp.sum(g, axis=axes, keepdims=True)
    if sum_g_x_norm is None:
        sum_g_x_norm = xp.sum(g * x_norm, axis=axes, keepdims=True)
    r_over_sigma = 1.0 / sigma_b if r is None else r / sigma_b  # r / σ_B
    # The paper's three equations, with (x_i − μ_B)/σ_B = x_norm_i:
    #   ∂ℓ/∂σ_B = Σ_i ∂ℓ/∂x̂_i · (x_i − μ_B) · (−r/σ_B²) = −(r/σ_B) · Σ_i ∂ℓ/∂x̂_i · x_norm_i
    #   ∂ℓ/∂μ_B = Σ_i ∂ℓ/∂x̂_i · (−r/σ_B)               = −(r/σ_B) · Σ_i ∂ℓ/∂x̂_i
    #   ∂ℓ/∂x_i = ∂ℓ/∂x̂_i · r/σ_B + ∂ℓ/∂σ_B · (x_i − μ_B)/(m σ_B) + ∂ℓ/∂μ_B · 1/m
    # Putting the first two into the third leaves r/σ_B in front of every term:
    #   ∂ℓ/∂x_i = r/σ_B · (∂ℓ/∂x̂_i − x_norm_i · (1/m) Σ_j ∂ℓ/∂x̂_j · x_norm_j − (1/m) Σ_j ∂ℓ/∂x̂_j)
    # Speed: that form is evaluated as one new array updated in place, four passes over memory and
    # no other full-size temporary. The per-channel factors are cast to the result's dtype first,
    # so that the in-place updates never narrow.
    dtype = xp.result_type(g, x_norm, r_over_sigma)
    dx = x_norm * xp.astype(-sum_g_x_norm / m, dtype)  # − x_norm_i · (1/m) Σ_j ∂ℓ/∂x̂_j · x_norm_j
    dx -= xp.astype(sum_g / m, dtype)  # − (1/m) Σ_j ∂ℓ/∂x̂_j
    dx += g  # + ∂ℓ/∂x̂_i
    dx *= xp.astype(r_over_sigma, dtype)  # all times r/σ_B
    return dx


def _training_backward(dy: Array, cache: NormCache, need_dx: bool) -> tuple[Array | None, Array, Array]:
    xp = backend.namespace(dy)
    dyg = xp.reshape(dy, tuple(cache.x_norm.shape))  # dℓ/dy_i in the grouped layout
    reduce_all = (0, *cache.axes)  # every axis but the channel axis
    c = cache.x_norm.shape[2]
    sum_dy = xp.sum(dyg, axis=cache.axes, keepdims=True)  # Σ_i dℓ/dy_i, per group
    sum_dy_xn = xp.sum(dyg * cache.x_norm, axis=cache.axes, keepdims=True)  # Σ_i dℓ/dy_i · x_norm_i, per group
    dbeta = xp.reshape(xp.sum(sum_dy, axis=reduce_all), (c,))  # ∂ℓ/∂β = Σ_i ∂ℓ/∂y_i
    if cache.r is None:
        dgamma = xp.sum(sum_dy_xn, axis=reduce_all)  # ∂ℓ/∂γ = Σ_i ∂ℓ/∂y_i · x̂_i
    else:
        dgamma = xp.sum(cache.r * sum_dy_xn + cache.d * sum_dy, axis=reduce_all)  # Σ_i ∂ℓ/∂y_i · (x_norm_i r + d)
    dgamma = xp.reshape(dgamma, (c,))
    if not need_dx:
        return None, dgamma, dbeta
    # ∂ℓ/∂x̂_i = ∂ℓ/∂y_i · γ. γ is constant per channel, so it joins r (see normalized_grad) and
    # the sums above serve again: no full-size ∂ℓ/∂x̂ is made.
    r = cache.r
    if cache.gamma is not None:
        gamma = _channel_view(cache.gamma, dyg.ndim, 2)
        r = gamma if r is None else gamma * r
    dx = normalized_grad(dyg, cache.x_norm, cache.sigma_b, cache.axes, r, sum_g=sum_dy, sum_g_x_norm=sum_dy_xn)
    return xp.reshape(dx, cache.input_shape), dgamma, dbeta


def batch_norm_backward(dy: Array, cache: NormCache, need_dx: bool = True) -> tuple[Array | None, Array, Array]:
    """(dℓ/dx, dℓ/dγ, dℓ/dβ) for :func:`batch_norm_forward`; dℓ/dx is None when `need_dx` is False.

    dℓ/dγ and dℓ/dβ are returned even without γ and β (the gradient at γ = 1, β = 0).
    """
    return _training_backward(dy, cache, need_dx)


def batch_renorm_backward(dy: Array, cache: NormCache, need_dx: bool = True) -> tuple[Array | None, Array, Array]:
    """(dℓ/dx, dℓ/dγ, dℓ/dβ) for :func:`batch_renorm_forward`, with r and d constant (stop_gradient).

    The same equations as batchnorm's with an extra factor r (section 3).
    """
    if cache.r is None:
        raise ValueError("cache: expected the cache of batch_renorm_forward (with r and d), got one without r")
    return _training_backward(dy, cache, need_dx)


def norm_inference_forward(
    x: Array, gamma: Array | None, beta: Array | None, running_mean: Array, running_std: Array
) -> tuple[Array, InferenceCache]:
    """Inference for both methods (Algorithm 1, bottom): y ← γ · (x − μ)/σ + β with the moving averages.

    Each example is normalized on its own, so there are no groups here and no
    minimum batch size.
    """
    check_input(x)
    c = x.shape[1]
    check_per_channel("gamma", gamma, c)
    check_per_channel("beta", beta, c)
    check_running_stats(running_mean, running_std, c)
    xp = backend.namespace(x)
    mu = _channel_view(xp.astype(running_mean, x.dtype), x.ndim, 1)  # μ
    sigma = _channel_view(xp.astype(running_std, x.dtype), x.ndim, 1)  # σ
    x_hat = (x - mu) / sigma  # (x − μ)/σ
    gamma_view = None if gamma is None else _channel_view(gamma, x.ndim, 1)
    beta_view = None if beta is None else _channel_view(beta, x.ndim, 1)
    y = _scale_shift(x_hat, gamma_view, beta_view)  # y ← γ · (x − μ)/σ + β
    scale = 1.0 / sigma if gamma is None else _channel_view(gamma, x.ndim, 1) / sigma  # γ/σ
    return y, InferenceCache(x_hat=x_hat, scale=scale, input_shape=tuple(x.shape))


def norm_inference_backward(dy: Array, cache: InferenceCache, need_dx: bool = True) -> tuple[Array | None, Array, Array]:
    """(dℓ/dx, dℓ/dγ, dℓ/dβ) for :func:`norm_inference_forward`: μ and σ are constants here."""
    xp = backend.namespace(dy)
    axes = (0, *range(2, dy.ndim))
    dgamma = xp.sum(dy * cache.x_hat, axis=axes)  # ∂ℓ/∂γ = Σ ∂ℓ/∂y · x̂
    dbeta = xp.sum(dy, axis=axes)  # ∂ℓ/∂β = Σ ∂ℓ/∂y
    dx = dy * cache.scale if need_dx else None  # ∂ℓ/∂x = ∂ℓ/∂y · γ/σ
    return dx, dgamma, dbeta


def running_stats_update(running_mean: Array, running_std: Array, cache: NormCache, momentum: float) -> tuple[Array, Array]:
    """The moving averages after one training step (Algorithm 1), as new arrays in the buffers' dtype.

    μ := μ + Δ(μ_B − μ) and σ := σ + Δ(σ_B − σ) with Δ = `momentum`. With
    ghost batches μ_B and σ_B are the means over the groups of each group's
    μ_B and σ_B: one update per step, not one per group.
    """
    xp = backend.namespace(running_mean)
    mu_b = xp.mean(per_group(cache.mu_b), axis=0)  # mean over groups of μ_B, shape (C,)
    sigma_b = xp.mean(per_group(cache.sigma_b), axis=0)  # mean over groups of σ_B
    mu = xp.astype(running_mean, mu_b.dtype) if running_mean.dtype != mu_b.dtype else running_mean
    sigma = xp.astype(running_std, sigma_b.dtype) if running_std.dtype != sigma_b.dtype else running_std
    new_mean = mu + momentum * (mu_b - mu)  # μ := μ + Δ(μ_B − μ)
    new_std = sigma + momentum * (sigma_b - sigma)  # σ := σ + Δ(σ_B − σ)
    return xp.astype(new_mean, running_mean.dtype), xp.astype(new_std, running_std.dtype)


def clip_telemetry(cache: NormCache) -> dict[str, float]:
    """How much clipping a Batch Renorm step did, as Python floats (one transfer to the host).

    ``r_clipped`` / ``d_clipped``: the fraction of r and of d (over channels and
    groups) that the limits changed; ``r_min``, ``r_max``, ``d_min``, ``d_max``:
    the range of the *unclipped* σ_B/σ and (μ_B − μ)/σ, which shows how far
    outside the limits the batch statistics were.
    """
    if cache.r_unclipped is None or cache.d_unclipped is None:
        raise ValueError("cache: clipping telemetry needs r and d computed from the batch, got fixed r or d")
    xp = backend.namespace(cache.r)
    r_raw, d_raw = cache.r_unclipped, cache.d_unclipped
    values = xp.stack(
        [
            xp.mean(xp.astype(r_raw != cache.r, r_raw.dtype)),
            xp.mean(xp.astype(d_raw != cache.d, d_raw.dtype)),
            xp.min(r_raw),
            xp.max(r_raw),
            xp.min(d_raw),
            xp.max(d_raw),
        ]
    )
    host = backend.to_numpy(values).astype(np.float64).tolist()
    return dict(zip(("r_clipped", "d_clipped", "r_min", "r_max", "d_min", "d_max"), host))


# ----------------------------------------------------------------------------
# Autograd ops: the kernels as Functions (hand-written backward)
# ----------------------------------------------------------------------------


class _AffineInputs(Function):
    """Shared plumbing: inputs are x and, when present, γ and β; backward returns one gradient per input.

    The forward hands its cache to ``sink`` (a list) so that the caller can
    read the batch statistics even when no graph is recorded.
    """

    has_gamma: bool
    has_beta: bool
    sink: list

    def _unpack(self, affine: tuple[Array, ...]) -> tuple[Array | None, Array | None]:
        it = iter(affine)
        gamma = next(it) if self.has_gamma else None
        beta = next(it) if self.has_beta else None
        return gamma, beta

    def _pack(self, dx: Array | None, dgamma: Array, dbeta: Array) -> tuple[Array | None, ...]:
        grads = [dx]
        if self.has_gamma:
            grads.append(dgamma)
        if self.has_beta:
            grads.append(dbeta)
        return tuple(grads)


class BatchNormTrain(_AffineInputs):
    """Batchnorm in training mode: :func:`batch_norm_forward` and :func:`batch_norm_backward`."""

    eps: float
    virtual_batch_size: int | None

    def forward(self, x, *affine):
        gamma, beta = self._unpack(affine)
        y, self.cache = batch_norm_forward(x, gamma, beta, self.eps, self.virtual_batch_size)
        self.sink.append(self.cache)
        return y

    def backward(self, grad):
        return self._pack(*batch_norm_backward(grad, self.cache, need_dx=self.needs_input_grad[0]))


class BatchRenormTrain(_AffineInputs):
    """Batch Renorm in training mode: :func:`batch_renorm_forward` and :func:`batch_renorm_backward`."""

    running_mean: Array
    running_std: Array
    r_max: float
    d_max: float
    eps: float
    virtual_batch_size: int | None
    r: Array | float | None
    d: Array | float | None

    def forward(self, x, *affine):
        gamma, beta = self._unpack(affine)
        y, self.cache = batch_renorm_forward(
            x,
            gamma,
            beta,
            self.running_mean,
            self.running_std,
            self.r_max,
            self.d_max,
            self.eps,
            self.virtual_batch_size,
            r=self.r,
            d=self.d,
        )
        self.sink.append(self.cache)
        return y

    def backward(self, grad):
        return self._pack(*batch_renorm_backward(grad, self.cache, need_dx=self.needs_input_grad[0]))


class NormInference(_AffineInputs):
    """Inference mode of both methods: :func:`norm_inference_forward` and :func:`norm_inference_backward`."""

    running_mean: Array
    running_std: Array

    def forward(self, x, *affine):
        gamma, beta = self._unpack(affine)
        y, self.cache = norm_inference_forward(x, gamma, beta, self.running_mean, self.running_std)
        return y

    def backward(self, grad):
        return self._pack(*norm_inference_backward(grad, self.cache, need_dx=self.needs_input_grad[0]))


def _affine_tensors(x: Tensor, weight: Tensor | None, bias: Tensor | None) -> tuple[list[Tensor], dict[str, bool]]:
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a Tensor, got {type(x).__name__}")
    tensors = [x] + [t for t in (weight, bias) if t is not None]
    return tensors, {"has_gamma": weight is not None, "has_beta": bias is not None}


def batch_norm_train(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    virtual_batch_size: int | None = None,
) -> tuple[Tensor, NormCache]:
    """Batchnorm in training mode on tensors; returns the output and the cache (for the batch statistics)."""
    tensors, flags = _affine_tensors(x, weight, bias)
    sink: list[NormCache] = []
    y = BatchNormTrain.apply(*tensors, eps=eps, virtual_batch_size=virtual_batch_size, sink=sink, **flags)
    return y, sink[0]


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
    r: Array | float | None = None,
    d: Array | float | None = None,
) -> tuple[Tensor, NormCache]:
    """Batch Renorm in training mode on tensors (running statistics read, not updated); output and cache."""
    tensors, flags = _affine_tensors(x, weight, bias)
    sink: list[NormCache] = []
    y = BatchRenormTrain.apply(
        *tensors,
        running_mean=running_mean,
        running_std=running_std,
        r_max=r_max,
        d_max=d_max,
        eps=eps,
        virtual_batch_size=virtual_batch_size,
        r=r,
        d=d,
        sink=sink,
        **flags,
    )
    return y, sink[0]


def norm_inference(x: Tensor, weight: Tensor | None, bias: Tensor | None, running_mean: Array, running_std: Array) -> Tensor:
    """Inference mode of both methods on tensors: γ · (x − μ)/σ + β."""
    tensors, flags = _affine_tensors(x, weight, bias)
    return NormInference.apply(*tensors, running_mean=running_mean, running_std=running_std, **flags)


# ----------------------------------------------------------------------------
# Reference versions from primitive Tensor ops (the tests' oracle)
# ----------------------------------------------------------------------------


def _reference_moments(x: Tensor, eps: float, virtual_batch_size: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """Grouped x, μ_B and σ_B from Tensor ops: autograd differentiates through all of them."""
    g = _groups(x.data, virtual_batch_size)
    xg = x.reshape((g, x.shape[0] // g) + x.shape[1:])
    axes = (1,) + tuple(range(3, xg.ndim))
    mu_b = xg.mean(axis=axes, keepdims=True)  # μ_B
    sigma_b = (((xg - mu_b) ** 2).mean(axis=axes, keepdims=True) + eps).sqrt()  # σ_B
    return xg, mu_b, sigma_b


def _reference_affine(x_hat: Tensor, weight: Tensor | None, bias: Tensor | None, shape: tuple[int, ...]) -> Tensor:
    view = (1, 1, x_hat.shape[2]) + (1,) * (x_hat.ndim - 3)
    y = x_hat if weight is None else x_hat * weight.reshape(view)
    y = y if bias is None else y + bias.reshape(view)
    return y.reshape(shape)


def batch_norm_reference(
    x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float, virtual_batch_size: int | None = None
) -> Tensor:
    """Batchnorm in training mode from primitive ops, differentiated by autograd (slow; an oracle)."""
    xg, mu_b, sigma_b = _reference_moments(x, eps, virtual_batch_size)
    return _reference_affine((xg - mu_b) / sigma_b, weight, bias, x.shape)


def batch_renorm_reference(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Array,
    running_std: Array,
    r_max: float,
    d_max: float,
    eps: float,
    virtual_batch_size: int | None = None,
    r: Array | float | None = None,
    d: Array | float | None = None,
) -> Tensor:
    """Batch Renorm in training mode from primitive ops, r and d detached (slow; an oracle).

    `r` and `d`, when given (a number, a (C,) or a (G, C) array), are used instead of the computed ones.
    """
    xp = backend.namespace(x.data)
    xg, mu_b, sigma_b = _reference_moments(x, eps, virtual_batch_size)
    view = (1, 1, x.shape[1]) + (1,) * (xg.ndim - 3)
    mu = xp.reshape(xp.astype(running_mean, x.dtype), view)
    sigma = xp.reshape(xp.astype(running_std, x.dtype), view)
    if r is None:
        r = xp.clip(sigma_b.detach().data / sigma, 1.0 / r_max, float(r_max))  # stop_gradient(clip(σ_B/σ))
    else:
        r = fixed_correction(r, x.data, tuple(mu_b.shape), "r")
    if d is None:
        d = xp.clip((mu_b.detach().data - mu) / sigma, -float(d_max), float(d_max))  # stop_gradient(clip((μ_B − μ)/σ))
    else:
        d = fixed_correction(d, x.data, tuple(mu_b.shape), "d")
    x_hat = (xg - mu_b) / sigma_b * as_tensor(r, like=x) + as_tensor(d, like=x)
    return _reference_affine(x_hat, weight, bias, x.shape)
