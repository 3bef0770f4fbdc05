"""Weight initialisation: He (Kaiming) and Glorot (Xavier) schemes, and constants.

Why the scale matters: a layer's output is a sum over ``fan_in`` products, so
its variance is ``fan_in * Var(w) * E[x^2]``. Choosing ``Var(w)`` to cancel
``fan_in`` keeps activations (and, with ``fan_out``, gradients) from growing
or shrinking layer after layer.

* **He / Kaiming** (He et al., 2015), for ReLU networks: ``std = gain / sqrt(fan)``
  with ``gain = sqrt(2)`` for ReLU, because ReLU zeroes half of its input and
  so halves the second moment. ``fan`` is ``fan_in`` (keeps forward activations
  steady, the default) or ``fan_out`` (keeps backward gradients steady).
* **Glorot / Xavier** (Glorot & Bengio, 2010), for symmetric activations such as
  tanh: ``std = gain * sqrt(2 / (fan_in + fan_out))``, a compromise between the
  forward and backward conditions.

A uniform distribution on [-b, b] has std ``b / sqrt(3)``, so the uniform
variants use ``b = sqrt(3) * std``.

Fans: a Linear weight (out_features, in_features) has ``fan_in = in_features``
and ``fan_out = out_features``; a Conv2d weight (out_c, in_c, kh, kw) has
``fan_in = in_c * kh * kw`` and ``fan_out = out_c * kh * kw`` (every output
pixel sums over a window of every input channel).

Every function fills a tensor in place (the trailing underscore, as in
PyTorch), keeps its dtype and device, draws from `generator` (default
:func:`minigrad.random.default_generator`) and returns the tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from minigrad import backend
from minigrad.random import Generator, default_generator
from minigrad.tensor import Tensor

__all__ = [
    "calculate_fan_in_and_fan_out",
    "calculate_gain",
    "constant_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]


def calculate_fan_in_and_fan_out(shape: Sequence[int]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of `shape`: ``(out, in)`` for Linear, ``(out, in, *kernel)`` for convolutions."""
    shape = tuple(int(n) for n in shape)
    if len(shape) < 2:
        raise ValueError(f"calculate_fan_in_and_fan_out: expected a weight with at least 2 axes, got shape {shape}")
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor by which `nonlinearity` should scale the std of the weights before it.

    "linear", "conv2d", "sigmoid": 1; "tanh": 5/3; "relu": sqrt(2);
    "leaky_relu": sqrt(2 / (1 + slope^2)) with slope `param` (default 0.01).
    """
    if nonlinearity in ("linear", "conv2d", "identity", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + slope**2))
    raise ValueError(
        "calculate_gain: nonlinearity: expected one of 'linear', 'conv2d', 'identity', 'sigmoid', 'tanh', "
        f"'relu', 'leaky_relu', got {nonlinearity!r}"
    )


def _check_tensor(name: str, tensor: Tensor) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name}: tensor: expected a Tensor, got {type(tensor).__name__}")
    if not backend.is_floating(tensor.data):
        raise TypeError(f"{name}: tensor: expected a floating tensor, got dtype {backend.dtype_name(tensor.dtype)}")


def _fill(tensor: Tensor, array) -> Tensor:
    """Replace `tensor`'s values by `array` (moved to its device, cast to its dtype)."""
    array = backend.to_device(array, tensor.device)
    tensor.data = backend.astype(array, tensor.dtype)
    return tensor


def _generator(generator: Generator | None) -> Generator:
    return generator if generator is not None else default_generator()


def uniform_(tensor: Tensor, low: float = 0.0, high: float = 1.0, generator: Generator | None = None) -> Tensor:
    """Fill `tensor` with draws uniform on [low, high)."""
    _check_tensor("uniform_", tensor)
    if not high > low:
        raise ValueError(f"uniform_: expected low < high, got low={low}, high={high}")
    draws = _generator(generator).uniform(tensor.shape, tensor.dtype, backend.library_of(tensor.data))
    return _fill(tensor, draws * (high - low) + low)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator: Generator | None = None) -> Tensor:
    """Fill `tensor` with normal draws of the given mean and std."""
    _check_tensor("normal_", tensor)
    if std < 0:
        raise ValueError(f"normal_: std: expected a non-negative number, got {std}")
    draws = _generator(generator).normal(tensor.shape, tensor.dtype, backend.library_of(tensor.data))
    return _fill(tensor, draws * std + mean)


def constant_(tensor: Tensor, value: float) -> Tensor:
    """Fill `tensor` with `value`."""
    _check_tensor("constant_", tensor)
    xp = backend.namespace(tensor.data)
    return _fill(tensor, xp.full_like(tensor.data, value))


def zeros_(tensor: Tensor) -> Tensor:
    """Fill `tensor` with zeros (the usual bias initialisation)."""
    return constant_(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    """Fill `tensor` with ones."""
    return constant_(tensor, 1.0)


def _kaiming_std(tensor: Tensor, a: float, mode: str, nonlinearity: str, name: str) -> float:
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor.shape)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{name}: mode: expected 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_normal_(
    tensor: Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "relu",
    generator: Generator | None = None,
) -> Tensor:
    """He normal: N(0, std^2) with ``std = gain / sqrt(fan)``; gain sqrt(2) for ReLU.

    `a` is the negative slope when ``nonlinearity="leaky_relu"``; `mode` picks fan_in or fan_out.
    """
    _check_tensor("kaiming_normal_", tensor)
    std = _kaiming_std(tensor, a, mode, nonlinearity, "kaiming_normal_")
    return normal_(tensor, 0.0, std, generator)


def kaiming_uniform_(
    tensor: Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "relu",
    generator: Generator | None = None,
) -> Tensor:
    """He uniform: U(-b, b) with ``b = sqrt(3) * gain / sqrt(fan)`` (the std of :func:`kaiming_normal_`)."""
    _check_tensor("kaiming_uniform_", tensor)
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity, "kaiming_uniform_")
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator: Generator | None = None) -> Tensor:
    """Glorot normal: N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    _check_tensor("xavier_normal_", tensor)
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor.shape)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator: Generator | None = None) -> Tensor:
    """Glorot uniform: U(-b, b) with ``b = gain * sqrt(6 / (fan_in + fan_out))``."""
    _check_tensor("xavier_uniform_", tensor)
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)
