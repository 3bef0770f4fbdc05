"""Functional forms of the layers: plain functions of tensors, no state of their own.

:func:`batch_norm` and :func:`batch_renorm` (from :mod:`minigrad.norm`) are
the exception that proves the rule: in training mode they update the running
statistics they are given, in place, so that a layer can hand them its buffers.
"""

from __future__ import annotations

from minigrad.norm.functional import batch_norm, batch_renorm
from minigrad.norm.layernorm import layer_norm
from minigrad.ops import (
    cross_entropy,
    l1_loss,
    leaky_relu,
    log_softmax,
    mse_loss,
    nll_loss,
    relu,
    sigmoid,
    softmax,
    tanh,
)

__all__ = [
    "batch_norm", "batch_renorm", "cross_entropy", "l1_loss", "layer_norm", "leaky_relu", "log_softmax", "mse_loss",
    "nll_loss", "relu", "sigmoid", "softmax", "tanh",
]  # fmt: skip
