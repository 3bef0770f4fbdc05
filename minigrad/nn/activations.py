"""Activation layers beside :class:`~minigrad.nn.ReLU`: Tanh, Sigmoid, LogSigmoid, Softplus, LeakyReLU, Softmax, ...

Each wraps the op of the same name, so ``nn.Sequential(nn.Linear(4, 8), nn.Tanh())``
reads as it does in PyTorch. They hold no parameters.
"""

from __future__ import annotations

import math

from minigrad import validate
from minigrad.module import Module
from minigrad.ops import elementwise, loss
from minigrad.tensor import Tensor

__all__ = ["LeakyReLU", "LogSigmoid", "LogSoftmax", "Sigmoid", "Softmax", "Softplus", "Tanh"]


class Tanh(Module):
    """Hyperbolic tangent elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return elementwise.tanh(x)


class Sigmoid(Module):
    """Logistic function 1 / (1 + e^-x) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return elementwise.sigmoid(x)


class LogSigmoid(Module):
    """log(sigmoid(x)) = -softplus(-x) elementwise, accurate in both tails."""

    def forward(self, x: Tensor) -> Tensor:
        return elementwise.log_sigmoid(x)


class Softplus(Module):
    """log(1 + e^(beta x)) / beta elementwise, x itself where beta x > threshold: PyTorch's layer and defaults.

    ``threshold=None`` gives the exact value everywhere (PyTorch's switch changes it by at most
    log(1 + e^-threshold) / beta).
    """

    def __init__(self, beta: float = 1.0, threshold: float | None = 20.0) -> None:
        super().__init__()
        self.beta, self.threshold = elementwise.softplus_settings("Softplus", beta, threshold)

    def forward(self, x: Tensor) -> Tensor:
        return elementwise.softplus(x, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class LeakyReLU(Module):
    """x where x > 0, else ``negative_slope * x``; PyTorch's default slope 0.01."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        if not (validate.is_real(negative_slope) and math.isfinite(negative_slope)):
            raise ValueError(f"LeakyReLU: negative_slope: expected a finite number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        return elementwise.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class _AlongDim(Module):
    """A layer that normalises along one axis, which must be named (PyTorch's implicit choice is deprecated)."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        if dim is None:
            raise TypeError(
                f"{name}: dim: expected the axis to normalise over, e.g. {name}(dim=1) for (N, C) scores, got None"
            )
        if not validate.is_integer(dim):
            raise TypeError(f"{name}: dim: expected an int, got {type(dim).__name__} {dim!r}")
        self.dim = int(dim)

    def _axis(self, x: Tensor) -> int:
        if not -x.ndim <= self.dim < x.ndim:
            raise ValueError(f"{type(self).__name__}: dim={self.dim} is out of range for an input of shape {x.shape}")
        return self.dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_AlongDim):
    """exp(x) / sum(exp(x)) along `dim`, computed stably."""

    def forward(self, x: Tensor) -> Tensor:
        return loss.softmax(x, axis=self._axis(x))


class LogSoftmax(_AlongDim):
    """log(softmax(x)) along `dim`, computed stably; feed it to :class:`~minigrad.nn.NLLLoss`."""

    def forward(self, x: Tensor) -> Tensor:
        return loss.log_softmax(x, axis=self._axis(x))
