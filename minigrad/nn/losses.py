"""Loss layers, as in PyTorch: ``criterion = nn.CrossEntropyLoss(); criterion(logits, labels)``.

Each wraps the function of the same name in :mod:`minigrad.ops.loss` and keeps
only its ``reduction`` ("mean", the default, "sum" or "none").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from minigrad.module import Module
from minigrad.ops import loss
from minigrad.tensor import Tensor

__all__ = ["CrossEntropyLoss", "L1Loss", "MSELoss", "NLLLoss"]


class _Loss(Module):
    function: Callable[..., Tensor]

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = loss.check_reduction(type(self).__name__, reduction)

    def forward(self, input: Tensor, target: Any) -> Tensor:  # noqa: A002 - PyTorch's argument name
        return type(self).function(input, target, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Cross-entropy of logits (N, C) against integer class labels (N,); softmax is applied inside."""

    function = staticmethod(loss.cross_entropy)


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities (N, C) (from LogSoftmax) against labels (N,)."""

    function = staticmethod(loss.nll_loss)


class MSELoss(_Loss):
    """Squared error between an input and a target of the same shape."""

    function = staticmethod(loss.mse_loss)


class L1Loss(_Loss):
    """Absolute error between an input and a target of the same shape."""

    function = staticmethod(loss.l1_loss)
