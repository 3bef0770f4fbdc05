"""Normalization layers across ranks: one shared update of the moving averages, or synchronized BatchNorm.

Both only set attributes of the layers; the arithmetic is the normalization
kernels' own (:mod:`minigrad.norm`), with a group reduction
(:class:`~minigrad.norm.reduction.GroupReduction`) in place of the local one.
"""

from __future__ import annotations

from typing import Any

from minigrad.distributed.communicators import Communicator
from minigrad.module import Module
from minigrad.norm.layers import _BatchNorm, _BatchRenorm, _Norm


def share_running_stats(model: Module, comm: Communicator) -> Module:
    """Make every BatchNorm and Batch Renorm layer of `model` take one update of μ, σ shared by the ranks (in place).

    Each training forward then averages the ranks' μ_B and σ_B, weighted by
    their numbers of values (one allreduce of 2C + 1 numbers per layer), and
    every rank applies that same update: exactly one process's update with
    ghost batches. Every rank must run the same training forwards (each
    update is a collective). Returns `model`; in one process nothing changes.
    """
    for layer in model.modules():
        if isinstance(layer, _Norm):
            layer.stats_group = comm
    return model


def convert_sync_batchnorm(model: Module, comm: Communicator) -> Any:
    """Make every BatchNorm layer of `model` normalize over the global batch of the ranks of `comm` (in place).

    In training mode μ_B and σ_B are then sums over every rank's values
    (two allreduces in the forward, one in the backward); eval mode is
    unchanged. Batch Renorm layers and ghost batches are refused: both
    normalize over *part* of the batch, the opposite of this. Returns `model`.
    """
    layers = []
    for name, layer in model.named_modules():
        if isinstance(layer, _BatchRenorm):
            raise ValueError(
                f"model: synchronized statistics are for BatchNorm only, got {type(layer).__name__} at {name!r} "
                "(use norm='bn')"
            )
        if isinstance(layer, _BatchNorm):
            if layer.virtual_batch_size is not None:
                raise ValueError(
                    f"model: layer {name!r} has virtual_batch_size={layer.virtual_batch_size}; synchronized BatchNorm "
                    "normalizes over the whole global batch, so it needs virtual_batch_size=None"
                )
            layers.append(layer)
    for layer in layers:
        layer.stats_group = comm
        layer.synchronized = True
    return model
