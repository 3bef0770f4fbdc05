"""The kernels of :mod:`minigrad.norm.kernels` as autograd Functions (a hand-written backward each).

Inputs are x and, when present, γ and β; the running statistics, the spec
and the reduction are op parameters. A caller that needs the batch
statistics (to update the moving averages, for telemetry) makes the op
itself and reads ``op.cache`` after the call::

    op = BatchRenormTrain(spec, limits, running_mean, running_std, has_gamma=True, has_beta=True)
    y = op(x, weight, bias)
    op.cache.mu_b, op.cache.sigma_b, op.cache.r, op.cache.d

Synchronized BatchNorm is :class:`BatchNormTrain` with a group reduction
(:mod:`minigrad.norm.reduction`): the same kernels, the sums taken over
every process's batch.
"""

from __future__ import annotations

from typing import Any

from minigrad.norm import fused
from minigrad.norm import kernels as K
from minigrad.norm.reduction import LOCAL
from minigrad.norm.spec import NormSpec, RenormLimits
from minigrad.tensor import Function

Array = Any


class _Normalize(Function):
    """Plumbing shared by the three ops: unpack (x, [γ], [β]) and return one gradient per input."""

    def __init__(self, *, has_gamma: bool, has_beta: bool) -> None:
        self.has_gamma = has_gamma
        self.has_beta = has_beta

    def _affine(self, affine: tuple[Array, ...]) -> tuple[Array | None, Array | None]:
        it = iter(affine)
        return (next(it) if self.has_gamma else None), (next(it) if self.has_beta else None)

    def _grads(self, dx: Array | None, dgamma: Array, dbeta: Array) -> tuple[Array | None, ...]:
        return (dx, *([dgamma] if self.has_gamma else []), *([dbeta] if self.has_beta else []))


class BatchNormTrain(_Normalize):
    """Batchnorm in training mode (:func:`~minigrad.norm.kernels.batch_norm_forward` and its backward).

    With a group `reduction` the statistics are those of every process's
    batch together: synchronized BatchNorm.
    """

    def __init__(self, spec: NormSpec, reduction: Any = LOCAL, *, has_gamma: bool, has_beta: bool) -> None:
        super().__init__(has_gamma=has_gamma, has_beta=has_beta)
        self.spec = spec
        self.reduction = reduction

    def forward(self, x, *affine):
        gamma, beta = self._affine(affine)
        spec = self.spec
        if fused.applies(x, spec.virtual_batch_size, self.reduction):  # the faster twin, same equations
            y, self.cache = fused.batch_norm_forward(x, gamma, beta, spec.eps, spec.virtual_batch_size)
        else:
            y, self.cache = K.batch_norm_forward(x, gamma, beta, spec.eps, spec.virtual_batch_size, self.reduction)
        return y

    def backward(self, grad):
        return self._grads(*_training_backward(grad, self.cache, self.needs_input_grad[0], self.reduction))


class BatchRenormTrain(_Normalize):
    """Batch Renorm in training mode (:func:`~minigrad.norm.kernels.batch_renorm_forward`), r and d constant.

    `r` and `d`, when given, replace the computed corrections (gradient checks).
    """

    def __init__(
        self,
        spec: NormSpec,
        limits: RenormLimits,
        running_mean: Array,
        running_std: Array,
        *,
        has_gamma: bool,
        has_beta: bool,
        r: Array | float | None = None,
        d: Array | float | None = None,
    ) -> None:
        super().__init__(has_gamma=has_gamma, has_beta=has_beta)
        self.spec, self.limits = spec, limits
        self.running_mean, self.running_std = running_mean, running_std
        self.r, self.d = r, d

    def forward(self, x, *affine):
        gamma, beta = self._affine(affine)
        kernels = fused if fused.applies(x, self.spec.virtual_batch_size, LOCAL) else K  # the faster twin if it applies
        y, self.cache = kernels.batch_renorm_forward(
            x, gamma, beta, self.running_mean, self.running_std, self.limits.r_max, self.limits.d_max,
            self.spec.eps, self.spec.virtual_batch_size, r=self.r, d=self.d,
        )  # fmt: skip
        return y

    def backward(self, grad):
        return self._grads(*_training_backward(grad, self.cache, self.needs_input_grad[0], LOCAL))


def _training_backward(grad: Array, cache: Any, need_dx: bool, reduction: Any) -> tuple[Array | None, Array, Array]:
    if isinstance(cache, fused.FusedCache):
        return fused.training_backward(grad, cache, need_dx)
    return K.training_backward(grad, cache, need_dx, reduction)


class NormInference(_Normalize):
    """Inference mode of both methods (:func:`~minigrad.norm.kernels.norm_inference_forward`): μ, σ constant."""

    def __init__(self, running_mean: Array, running_std: Array, *, has_gamma: bool, has_beta: bool) -> None:
        super().__init__(has_gamma=has_gamma, has_beta=has_beta)
        self.running_mean, self.running_std = running_mean, running_std

    def forward(self, x, *affine):
        gamma, beta = self._affine(affine)
        y, self.cache = K.norm_inference_forward(x, gamma, beta, self.running_mean, self.running_std)
        return y

    def backward(self, grad):
        return self._grads(*K.norm_inference_backward(grad, self.cache, self.needs_input_grad[0]))
