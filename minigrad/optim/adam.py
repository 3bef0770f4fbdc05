"""Adam (Kingma & Ba 2015) with bias correction, and its decoupled-weight-decay variant AdamW."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from minigrad import backend
from minigrad.optim.optimizer import Array, Optimizer, check_bool, check_real


class Adam(Optimizer):
    """Adam with PyTorch's ``torch.optim.Adam`` semantics; ``decoupled=True`` gives ``AdamW``.

    For each parameter ``p`` with gradient ``grad``, one :meth:`step` computes::

        t   = t + 1                                   # per parameter: counts its own updates
        g   = grad + weight_decay * p                 # L2 (coupled) decay; when decoupled=False
        p   = p * (1 - lr * weight_decay)             # decoupled decay (AdamW); when decoupled=True
        m   = beta1 * m + (1 - beta1) * g             # m, v start at 0
        v   = beta2 * v + (1 - beta2) * g**2
        p   = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    The bias corrections undo the pull of the zero initial m and v towards 0 in early
    steps. eps is added outside the square root, after the correction, as in PyTorch.
    ``t`` is kept per parameter, so a parameter that is skipped (no gradient) on some
    steps still gets the right correction.

    Args:
        params: the parameters to train (``model.parameters()``).
        lr: learning rate, > 0. Default 1e-3, the paper's.
        betas: (beta1, beta2), each in [0, 1): decays of the running means of the gradient
            and of its square.
        eps: > 0, keeps the denominator away from 0.
        weight_decay: decay factor >= 0; how it is applied depends on `decoupled`.
        decoupled: shrink the weights directly by ``lr * weight_decay`` (AdamW, Loshchilov &
            Hutter 2019) instead of adding ``weight_decay * p`` to the gradient, where Adam's
            scaling would weaken it for parameters with large gradients. PyTorch's AdamW
            defaults to weight_decay=0.01; here the default stays 0 for both forms.

    Per-parameter state: ``"step"`` (t, an int), ``"exp_avg"`` (m), ``"exp_avg_sq"`` (v).
    """

    HYPERPARAMETERS: ClassVar[tuple[str, ...]] = ("beta1", "beta2", "eps", "weight_decay", "decoupled")
    STATE_KEYS: ClassVar[dict[str, str]] = {"step": "int", "exp_avg": "array", "exp_avg_sq": "array"}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"Adam: betas: expected a pair (beta1, beta2), got {betas!r}")
        hyper = dict(beta1=betas[0], beta2=betas[1], eps=eps, weight_decay=weight_decay, decoupled=decoupled)
        self._check_hyperparameters(hyper)
        self.beta1: float = hyper["beta1"]
        self.beta2: float = hyper["beta2"]
        self.eps: float = hyper["eps"]
        self.weight_decay: float = hyper["weight_decay"]
        self.decoupled: bool = hyper["decoupled"]

    @property
    def betas(self) -> tuple[float, float]:
        """(beta1, beta2)."""
        return (self.beta1, self.beta2)

    def _check_hyperparameters(self, hyper: dict[str, Any]) -> None:
        hyper["beta1"] = check_real("Adam", "betas[0]", hyper["beta1"], low=0.0, high=1.0, high_open=True)
        hyper["beta2"] = check_real("Adam", "betas[1]", hyper["beta2"], low=0.0, high=1.0, high_open=True)
        hyper["eps"] = check_real("Adam", "eps", hyper["eps"], low=0.0, low_open=True)
        hyper["weight_decay"] = check_real("Adam", "weight_decay", hyper["weight_decay"], low=0.0)
        hyper["decoupled"] = check_bool("Adam", "decoupled", hyper["decoupled"])

    def _update(self, param: Array, grad: Array, state: dict[str, Any]) -> Array:
        xp = backend.namespace(param)
        t = state.get("step", 0) + 1
        state["step"] = t
        g = grad
        if self.weight_decay:
            if self.decoupled:
                param = param * (1.0 - self.lr * self.weight_decay)
            else:
                g = grad + self.weight_decay * param
        m = state.get("exp_avg")
        v = state.get("exp_avg_sq")
        m = (1.0 - self.beta1) * g if m is None else self.beta1 * m + (1.0 - self.beta1) * g
        v = (1.0 - self.beta2) * (g * g) if v is None else self.beta2 * v + (1.0 - self.beta2) * (g * g)
        state["exp_avg"] = m
        state["exp_avg_sq"] = v
        correction1 = 1.0 - self.beta1**t
        correction2 = 1.0 - self.beta2**t
        den = xp.sqrt(v) / correction2**0.5 + self.eps
        return param - (self.lr / correction1) * (m / den)
