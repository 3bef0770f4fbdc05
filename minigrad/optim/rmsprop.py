"""RMSProp: gradient steps scaled by a running root-mean-square of the gradient (Tieleman & Hinton 2012).

Inception-v3 (Szegedy et al. 2016), and the Batch Renormalization experiments
built on it, train with RMSProp "with decay 0.9 and epsilon 1.0" in TensorFlow,
where epsilon sits *inside* the square root. PyTorch puts it *outside*. The two
agree for a tiny epsilon but not for epsilon = 1.0, so the placement is an
argument here (``eps_inside_sqrt``) rather than a silent choice.

:class:`RMSprop` (PyTorch's spelling) is the same optimizer with PyTorch's
defaults (``alpha=0.99``), so ``mg.optim.RMSprop(params)`` means what
``torch.optim.RMSprop(params)`` means.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from minigrad import backend
from minigrad.optim.optimizer import Array, Optimizer, check_bool, check_real


class RMSProp(Optimizer):
    """RMSProp with optional momentum, centering and L2 weight decay.

    For each parameter ``p`` with gradient ``grad``, one :meth:`step` computes::

        g   = grad + weight_decay * p
        v   = alpha * v + (1 - alpha) * g**2           # v starts at 0
        s   = v - m**2, with m = alpha * m + (1 - alpha) * g   if centered (m starts at 0)
              v                                                 otherwise
        den = sqrt(s) + eps      (eps_inside_sqrt=False: PyTorch's placement, the default)
              sqrt(s + eps)      (eps_inside_sqrt=True: TensorFlow's placement)
        buf = momentum * buf + g / den                  # when momentum > 0 (buf starts at 0)
        p   = p - lr * buf       if momentum > 0
              p - lr * g / den   otherwise

    The Inception-v3 recipe is ``RMSProp(params, lr, alpha=0.9, momentum=0.9, eps=1.0,
    eps_inside_sqrt=True)``.

    Args:
        params: the parameters to train (``model.parameters()``).
        lr: learning rate, > 0. Default 0.01, PyTorch's.
        alpha: decay of the running mean of squared gradients, in [0, 1). Default 0.9, the
            value of the paper's recipe and TensorFlow's default (PyTorch defaults to 0.99).
        eps: > 0, keeps the denominator away from 0. Default 1e-8 (PyTorch's), which suits
            both placements; the paper's recipe uses 1.0 inside the square root.
        momentum: momentum factor in [0, 1); 0 turns it off.
        weight_decay: L2 penalty factor >= 0, added to the gradient.
        centered: divide by an estimate of the gradient's standard deviation instead of its
            root mean square (Graves 2013).
        eps_inside_sqrt: where eps goes, see above.

    Departures: from PyTorch, the default ``alpha`` (0.9, not 0.99; :class:`RMSprop` keeps 0.99) and the
    ``eps_inside_sqrt`` option; eps must be > 0 (PyTorch accepts 0). From TensorFlow 1's
    ``RMSPropOptimizer``: ``v`` starts at 0 (TF starts it at 1), and ``lr`` multiplies the
    momentum buffer at update time (TF accumulates ``lr * g / den``); the two agree while
    ``lr`` is constant. When centered, a ``v - m**2`` that rounding makes slightly negative
    is taken as 0 (PyTorch would produce NaN there).

    Per-parameter state: ``"square_avg"`` (v), ``"grad_avg"`` (m, when centered),
    ``"momentum"`` (buf, when momentum > 0).
    """

    HYPERPARAMETERS: ClassVar[tuple[str, ...]] = ("alpha", "eps", "momentum", "weight_decay", "centered", "eps_inside_sqrt")
    STATE_KEYS: ClassVar[dict[str, str]] = {"square_avg": "array", "grad_avg": "array", "momentum": "array"}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.01,
        alpha: float = 0.9,
        eps: float = 1e-8,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        centered: bool = False,
        eps_inside_sqrt: bool = False,
    ) -> None:
        super().__init__(params, lr)
        hyper = dict(
            alpha=alpha,
            eps=eps,
            momentum=momentum,
            weight_decay=weight_decay,
            centered=centered,
            eps_inside_sqrt=eps_inside_sqrt,
        )
        self._check_hyperparameters(hyper)
        self.alpha: float = hyper["alpha"]
        self.eps: float = hyper["eps"]
        self.momentum: float = hyper["momentum"]
        self.weight_decay: float = hyper["weight_decay"]
        self.centered: bool = hyper["centered"]
        self.eps_inside_sqrt: bool = hyper["eps_inside_sqrt"]

    def _check_hyperparameters(self, hyper: dict[str, Any]) -> None:
        owner = type(self).__name__
        hyper["alpha"] = check_real(owner, "alpha", hyper["alpha"], low=0.0, high=1.0, high_open=True)
        hyper["eps"] = check_real(owner, "eps", hyper["eps"], low=0.0, low_open=True)
        hyper["momentum"] = check_real(owner, "momentum", hyper["momentum"], low=0.0, high=1.0, high_open=True)
        hyper["weight_decay"] = check_real(owner, "weight_decay", hyper["weight_decay"], low=0.0)
        hyper["centered"] = check_bool(owner, "centered", hyper["centered"])
        hyper["eps_inside_sqrt"] = check_bool(owner, "eps_inside_sqrt", hyper["eps_inside_sqrt"])

    def _update(self, param: Array, grad: Array, state: dict[str, Any]) -> Array:
        xp = backend.namespace(param)
        g = grad + self.weight_decay * param if self.weight_decay else grad
        v = state.get("square_avg")
        v = (1.0 - self.alpha) * (g * g) if v is None else self.alpha * v + (1.0 - self.alpha) * (g * g)
        state["square_avg"] = v
        s = v
        if self.centered:
            m = state.get("grad_avg")
            m = (1.0 - self.alpha) * g if m is None else self.alpha * m + (1.0 - self.alpha) * g
            state["grad_avg"] = m
            s = v - m * m
            # v >= m**2 in exact arithmetic; rounding can leave a tiny negative, whose sqrt is NaN.
            s = xp.where(s > 0.0, s, xp.zeros_like(s))
        den = xp.sqrt(s + self.eps) if self.eps_inside_sqrt else xp.sqrt(s) + self.eps
        direction = g / den
        if self.momentum:
            buf = state.get("momentum")
            buf = direction if buf is None else self.momentum * buf + direction
            state["momentum"] = buf
            direction = buf
        return param - self.lr * direction


class RMSprop(RMSProp):
    """:class:`RMSProp` under PyTorch's spelling and with PyTorch's defaults: ``lr=0.01, alpha=0.99``.

    Everything else (eps 1e-8 outside the square root, momentum, centering, weight
    decay) is as in :class:`RMSProp`, whose default ``alpha`` is the paper's 0.9.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.01,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        centered: bool = False,
        eps_inside_sqrt: bool = False,
    ) -> None:
        super().__init__(params, lr, alpha, eps, momentum, weight_decay, centered, eps_inside_sqrt)
