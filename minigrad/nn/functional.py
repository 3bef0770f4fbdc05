"""Functional forms of the layers: plain functions of tensors, no state of their own."""

from minigrad.ops import cross_entropy, log_softmax, relu, softmax

__all__ = ["cross_entropy", "log_softmax", "relu", "softmax"]
