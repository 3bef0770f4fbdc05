"""Functional forms of the layers: plain functions of tensors, no state of their own.

:func:`batch_norm` and :func:`batch_renorm` (from :mod:`minigrad.norm`) are
the exception that proves the rule: in training mode they update the running
statistics they are given, in place, so that a layer can hand them its buffers.
"""

from __future__ import annotations

from minigrad import ops
from minigrad.norm.functional import batch_norm, batch_renorm
from minigrad.norm.layernorm import layer_norm
from minigrad.ops import (
    cross_entropy,
    l1_loss,
    leaky_relu,
    log_sigmoid,
    log_softmax,
    mse_loss,
    nll_loss,
    relu,
    sigmoid,
    softmax,
    tanh,
)
from minigrad.tensor import Tensor

__all__ = [
    "batch_norm", "batch_renorm", "cross_entropy", "l1_loss", "layer_norm", "leaky_relu", "log_sigmoid",
    "log_softmax", "logsigmoid", "mse_loss", "nll_loss", "relu", "sigmoid", "softmax", "softplus", "tanh",
]  # fmt: skip

logsigmoid = log_sigmoid  # PyTorch's name for it


def softplus(x: Tensor, beta: float = 1.0, threshold: float | None = 20.0) -> Tensor:
    """log(1 + e^(beta x)) / beta, and x itself where beta x > threshold, as ``torch.nn.functional.softplus``.

    PyTorch's switch to x above the threshold changes the value by at most
    log(1 + e^-threshold) / beta (2e-9 at the default 20); ``threshold=None``
    keeps the exact value everywhere, as :func:`minigrad.ops.softplus` does by default.
    """
    return ops.softplus(x, beta, threshold)
