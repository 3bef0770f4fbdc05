"""Neural-network building blocks: Module, Parameter, layers and normalization."""

from minigrad.nn.module import Module, Parameter

__all__ = ["Module", "Parameter"]
