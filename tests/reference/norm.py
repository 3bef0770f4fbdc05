"""Slow, obviously correct BatchNorm and Batch Renorm from the engine's primitive Tensor ops: the tests' oracle.

Autograd differentiates through every op here (mean, sqrt, division), with
Batch Renorm's r and d detached as the paper's stop_gradient says, so the
gradients come from the engine and not from the hand-written backward of
:mod:`minigrad.norm.kernels` that they are compared with.
"""

from __future__ import annotations

from typing import Any

import minigrad as mg
from minigrad import backend
from minigrad.norm.kernels import fixed_correction
from minigrad.tensor import as_tensor

Array = Any


def _moments(x: mg.Tensor, eps: float, virtual_batch_size: int | None) -> tuple[mg.Tensor, mg.Tensor, mg.Tensor]:
    """Grouped x (G, k, C, *S), μ_B and σ_B from Tensor ops."""
    g = 1 if virtual_batch_size is None else x.shape[0] // virtual_batch_size
    xg = x.reshape((g, x.shape[0] // g) + x.shape[1:])
    axes = (1,) + tuple(range(3, xg.ndim))
    mu_b = xg.mean(axis=axes, keepdims=True)  # μ_B
    sigma_b = (((xg - mu_b) ** 2).mean(axis=axes, keepdims=True) + eps).sqrt()  # σ_B
    return xg, mu_b, sigma_b


def _affine(x_hat: mg.Tensor, weight: mg.Tensor | None, bias: mg.Tensor | None, shape: tuple[int, ...]) -> mg.Tensor:
    view = (1, 1, x_hat.shape[2]) + (1,) * (x_hat.ndim - 3)
    y = x_hat if weight is None else x_hat * weight.reshape(view)
    y = y if bias is None else y + bias.reshape(view)
    return y.reshape(shape)


def batch_norm_reference(
    x: mg.Tensor, weight: mg.Tensor | None, bias: mg.Tensor | None, eps: float, virtual_batch_size: int | None = None
) -> mg.Tensor:
    """Batchnorm in training mode: (x − μ_B)/σ_B · γ + β."""
    xg, mu_b, sigma_b = _moments(x, eps, virtual_batch_size)
    return _affine((xg - mu_b) / sigma_b, weight, bias, x.shape)


def batch_renorm_reference(
    x: mg.Tensor,
    weight: mg.Tensor | None,
    bias: mg.Tensor | None,
    running_mean: Array,
    running_std: Array,
    r_max: float,
    d_max: float,
    eps: float,
    virtual_batch_size: int | None = None,
    r: Array | float | None = None,
    d: Array | float | None = None,
) -> mg.Tensor:
    """Batch Renorm in training mode, r and d detached; given `r`, `d` replace the computed ones."""
    xp = backend.namespace(x.data)
    xg, mu_b, sigma_b = _moments(x, eps, virtual_batch_size)
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
    return _affine(x_hat, weight, bias, x.shape)
