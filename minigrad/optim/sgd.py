"""Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay, as in PyTorch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from minigrad import backend
from minigrad.optim.optimizer import Array, Optimizer, check_bool, check_real


class SGD(Optimizer):
    """Stochastic gradient descent, with PyTorch's ``torch.optim.SGD`` semantics (no dampening).

    For each parameter ``p`` with gradient ``grad``, one :meth:`step` computes::

        g   = grad + weight_decay * p             # L2 penalty folded into the gradient
        buf = momentum * buf + g                  # only when momentum > 0; buf starts at 0,
                                                  # so the first step gives buf = g
        d   = g + momentum * buf   if nesterov    # look-ahead (Sutskever et al. 2013 form)
              buf                  if momentum > 0
              g                    otherwise
        p   = p - lr * d

    The learning rate multiplies the whole direction at update time, so changing
    ``opt.lr`` (a schedule) takes effect at once and the momentum buffer carries
    no stale learning rate (unlike TF's ``MomentumOptimizer``, which stores
    ``lr * grad`` in its accumulator).

    Args:
        params: the parameters to train (``model.parameters()``).
        lr: learning rate, > 0. Default 1e-3, PyTorch's default since version 2.2; small and safe rather
            than fast: SGD on a fresh model usually wants 0.01 to 0.1 (``minigrad train`` uses 0.05).
        momentum: momentum factor in [0, 1); 0 turns momentum off. 0.9 is the usual choice.
        nesterov: use Nesterov momentum; needs momentum > 0.
        weight_decay: L2 penalty factor >= 0, added to the gradient as ``weight_decay * p``.

    Per-parameter state: ``"momentum"`` (the buffer ``buf``), only when momentum > 0.
    """

    HYPERPARAMETERS: ClassVar[tuple[str, ...]] = ("momentum", "nesterov", "weight_decay")
    STATE_KEYS: ClassVar[dict[str, str]] = {"momentum": "array"}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        checked = self._checked(dict(momentum=momentum, nesterov=nesterov, weight_decay=weight_decay))
        self.momentum: float = checked["momentum"]
        self.nesterov: bool = checked["nesterov"]
        self.weight_decay: float = checked["weight_decay"]

    def _checked(self, hyper: dict[str, Any]) -> dict[str, Any]:
        momentum = check_real("SGD", "momentum", hyper["momentum"], low=0.0, high=1.0, high_open=True)
        nesterov = check_bool("SGD", "nesterov", hyper["nesterov"])
        weight_decay = check_real("SGD", "weight_decay", hyper["weight_decay"], low=0.0)
        if nesterov and momentum == 0.0:
            raise ValueError("SGD: nesterov: expected momentum > 0 when nesterov=True, got momentum=0.0")
        return dict(momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)

    def _check_hyperparameters(self, hyper: dict[str, Any]) -> None:
        hyper.update(self._checked(hyper))

    def _update(self, param: Array, grad: Array, state: dict[str, Any]) -> Array:
        g = grad + self.weight_decay * param if self.weight_decay else grad
        if self.momentum:
            buf = state.get("momentum")
            if buf is None:
                buf = backend.namespace(param).zeros_like(param)
            buf = self.momentum * buf + g
            state["momentum"] = buf
            g = g + self.momentum * buf if self.nesterov else buf
        return param - self.lr * g
