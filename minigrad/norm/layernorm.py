"""Layer Normalization (Ba, Kiros & Hinton, 2016): each example normalized over its own trailing axes.

Batchnorm's statistics run over the batch, per channel; layer norm's run over
the last ``len(normalized_shape)`` axes, per example, so an example's output
never depends on the rest of the batch, in training or at inference, and no
running statistics exist. With μ and σ = sqrt(ε + (1/m) Σ (x_i − μ)²) of the
m values of one example, x̂_i = (x_i − μ)/σ and y_i = γ_i x̂_i + β_i, where γ
and β have the normalized shape (one value per element, not per channel).

The backward is batchnorm's with r = 1 and the roles of the axes swapped: the
same :func:`~minigrad.norm.kernels.batch_moments` and
:func:`~minigrad.norm.kernels.normalized_grad`, with the sums taken over the
normalized axes of each example. Because γ varies along those axes it cannot
join the per-group scale, so the kernel multiplies dℓ/dy by γ first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from minigrad import backend, validate
from minigrad.module import Module, Parameter
from minigrad.norm import kernels as K
from minigrad.tensor import Function, Tensor

Array = Any
np = backend.host


@dataclass
class LayerNormCache:
    """What the backward needs: x̂ = (x − μ)/σ, σ per example (keepdims), γ, and the normalized axes."""

    x_hat: Array
    sigma: Array
    gamma: Array | None
    axes: tuple[int, ...]


def layer_norm_forward(
    x: Array, gamma: Array | None, beta: Array | None, normalized_ndim: int, eps: float
) -> tuple[Array, LayerNormCache]:
    """y = γ (x − μ)/σ + β with μ, σ over the last `normalized_ndim` axes of each example; γ, β of those axes' shape."""
    axes = tuple(range(x.ndim - normalized_ndim, x.ndim))
    _, sigma, xc, _ = K.batch_moments(x, axes, eps)  # μ and σ (ε included) per example, two passes
    x_hat = xc
    x_hat /= sigma  # x̂_i = (x_i − μ)/σ (in place: xc is batch_moments' own array)
    y = x_hat
    if gamma is not None:
        y = y * gamma  # γ_i x̂_i
    if beta is not None:
        y = y + beta  # + β_i
    if y is x_hat:
        y = backend.namespace(x).asarray(x_hat, copy=True)
    return y, LayerNormCache(x_hat, sigma, gamma, axes)


def layer_norm_backward(
    dy: Array, cache: LayerNormCache, need_dx: bool = True
) -> tuple[Array | None, Array | None, Array | None]:
    """(dℓ/dx, dℓ/dγ, dℓ/dβ): g = dℓ/dy · γ projected per example as in batchnorm's backward (r = 1)."""
    xp = backend.namespace(dy)
    batch_axes = tuple(range(dy.ndim - len(cache.axes)))
    dgamma = xp.sum(dy * cache.x_hat, axis=batch_axes)  # ∂ℓ/∂γ_i = Σ_examples ∂ℓ/∂y_i · x̂_i
    dbeta = xp.sum(dy, axis=batch_axes)  # ∂ℓ/∂β_i = Σ_examples ∂ℓ/∂y_i
    if not need_dx:
        return None, dgamma, dbeta
    g = dy if cache.gamma is None else dy * cache.gamma  # ∂ℓ/∂x̂_i = ∂ℓ/∂y_i · γ_i
    # ∂ℓ/∂x_i = (1/σ)(g_i − mean(g) − x̂_i mean(g x̂)) over the example's m values
    dx = K.normalized_grad(g, cache.x_hat, cache.sigma, cache.axes)
    return dx, dgamma, dbeta


class LayerNormOp(Function):
    """Layer normalization as one autograd op (:func:`layer_norm_forward` and its hand-written backward)."""

    def __init__(self, normalized_ndim: int, eps: float, *, has_gamma: bool, has_beta: bool) -> None:
        self.normalized_ndim, self.eps = normalized_ndim, eps
        self.has_gamma, self.has_beta = has_gamma, has_beta

    def forward(self, x, *affine):
        it = iter(affine)
        gamma = next(it) if self.has_gamma else None
        beta = next(it) if self.has_beta else None
        y, self.cache = layer_norm_forward(x, gamma, beta, self.normalized_ndim, self.eps)
        return y

    def backward(self, grad):
        dx, dgamma, dbeta = layer_norm_backward(grad, self.cache, self.needs_input_grad[0])
        return (dx, *([dgamma] if self.has_gamma else []), *([dbeta] if self.has_beta else []))


def _shape(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    if validate.is_integer(normalized_shape):
        normalized_shape = (normalized_shape,)
    if not isinstance(normalized_shape, Sequence) or not normalized_shape:
        raise ValueError(f"normalized_shape: expected a positive int or a sequence of them, got {normalized_shape!r}")
    for n in normalized_shape:
        if not validate.is_integer(n) or n < 1:
            raise ValueError(f"normalized_shape: expected positive ints, got {tuple(normalized_shape)!r}")
    return tuple(int(n) for n in normalized_shape)


def _check_eps(eps: float, allow_zero: bool = False) -> float:
    if not (validate.is_real(eps) and math.isfinite(eps) and (eps >= 0 if allow_zero else eps > 0)):
        raise ValueError(f"eps: expected a finite number {'>= 0' if allow_zero else '> 0'}, got {eps!r}")
    return float(eps)


def layer_norm(
    x: Tensor,
    normalized_shape: int | Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    *,
    allow_zero_eps: bool = False,
) -> Tensor:
    """Layer normalization of x over its last axes, which must equal `normalized_shape` (PyTorch's signature).

    `weight`, `bias` (γ, β) are None or Tensors of `normalized_shape`. ε = 0 is
    refused unless `allow_zero_eps` (the null-space identities are exact there).
    """
    shape = _shape(normalized_shape)
    eps = _check_eps(eps, allow_zero_eps)
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a Tensor, got {type(x).__name__}")
    if tuple(x.shape[x.ndim - len(shape) :]) != shape or x.ndim < len(shape):
        raise ValueError(f"x: expected trailing axes {shape} (normalized_shape), got shape {x.shape}")
    if not backend.is_floating(x.data):
        raise TypeError(f"x: expected a floating-point array, got dtype {backend.dtype_name(x.dtype)}")
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None and (not isinstance(value, Tensor) or tuple(value.shape) != shape):
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"{name}: expected None or a Tensor of shape {shape} (normalized_shape), got {got}")
    tensors = [x] + [t for t in (weight, bias) if t is not None]
    op = LayerNormOp(len(shape), eps, has_gamma=weight is not None, has_beta=bias is not None)
    return op(*tensors)


class LayerNorm(Module):
    """Layer normalization over the last axes (PyTorch's ``nn.LayerNorm``): no batch statistics, no running state.

    `normalized_shape` is the shape of those axes; with `elementwise_affine`
    the layer learns γ (``weight``, initialised to `weight_init`, 1 as in
    PyTorch) and β (``bias``, 0; omitted with ``bias=False``).
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype: Any = "float32",
        *,
        weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.normalized_shape = _shape(normalized_shape)
        self.eps = _check_eps(eps)
        self.elementwise_affine = bool(elementwise_affine)
        if not backend.dtype_name(dtype).startswith("float"):
            raise ValueError(f"dtype: expected a floating dtype such as 'float32' or 'float64', got {dtype!r}")
        affine = self.elementwise_affine
        self.weight = Parameter(np.full(self.normalized_shape, float(weight_init)), dtype=dtype) if affine else None
        self.bias = Parameter(np.zeros(self.normalized_shape), dtype=dtype) if affine and bias else None

    def forward(self, x: Tensor) -> Tensor:
        return layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
