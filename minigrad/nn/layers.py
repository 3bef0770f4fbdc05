"""Layers other than normalization: Linear, Conv2d, pooling, ReLU, Dropout, Flatten, Sequential, ModuleList.

Constructor arguments follow PyTorch's names so that models read the same.
Layers with weights take ``dtype`` and a ``generator``
(:class:`minigrad.random.Generator`, default the global one) that draws the
initial weights, so a model built after ``mg.manual_seed(s)`` (or from
``Generator(s)``) is the same every time.

Default initialisation: weights He-uniform for ReLU (``kaiming_uniform_`` with
fan_in, see :mod:`minigrad.nn.init`), biases zero. PyTorch uses a smaller
uniform bound (1 / sqrt(fan_in)) and random biases; He scaling is chosen here
because every model in :mod:`minigrad.models` is a ReLU network, and it keeps
the activations of the un-normalized ("none") arm from shrinking with depth.
Re-initialise with the functions in :mod:`minigrad.nn.init` to get another scheme.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from numbers import Real
from typing import Any

from minigrad import backend, validate
from minigrad.module import Module, Parameter
from minigrad.nn import init
from minigrad.ops import conv as conv_ops
from minigrad.ops.elementwise import relu
from minigrad.ops.shape import flatten
from minigrad.random import Generator
from minigrad.tensor import Tensor

__all__ = [
    "AvgPool2d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2d",
    "Identity",
    "Linear",
    "MaxPool2d",
    "ModuleList",
    "ReLU",
    "Sequential",
]


def _empty_parameter(shape: tuple[int, ...], dtype: Any) -> Parameter:
    """A parameter of `shape` and floating `dtype` on the active backend, to be filled by an init function."""
    if not backend.dtype_name(dtype).startswith("float"):
        raise ValueError(f"dtype: expected a floating dtype, got {dtype!r}")
    return Parameter(backend.host.zeros(shape), dtype=dtype)


class Identity(Module):
    """Returns its input (the "none" normalization arm of the models)."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class Linear(Module):
    """y = x W^T + b, with W of shape (out_features, in_features); x of shape (..., in_features)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        dtype: Any = "float32",
        generator: Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_features = validate.positive_int("in_features", in_features, owner="Linear")
        self.out_features = validate.positive_int("out_features", out_features, owner="Linear")
        self.weight = init.kaiming_uniform_(
            _empty_parameter((self.out_features, self.in_features), dtype), generator=generator
        )
        self.bias = init.zeros_(_empty_parameter((self.out_features,), dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: x: expected a last axis of size in_features={self.in_features}, got shape {x.shape}")
        out = x @ self.weight.T
        return out + self.bias if self.bias is not None else out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-d convolution of NCHW input, weight (out_channels, in_channels, kh, kw); see :func:`minigrad.ops.conv.conv2d`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        dtype: Any = "float32",
        generator: Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = validate.positive_int("in_channels", in_channels, owner="Conv2d")
        self.out_channels = validate.positive_int("out_channels", out_channels, owner="Conv2d")
        self.kernel_size = conv_ops.pair_argument(kernel_size, "Conv2d", "kernel_size", 1)
        self.stride = conv_ops.pair_argument(stride, "Conv2d", "stride", 1)
        self.padding = conv_ops.pair_argument(padding, "Conv2d", "padding", 0)
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        self.weight = init.kaiming_uniform_(_empty_parameter(shape, dtype), generator=generator)
        self.bias = init.zeros_(_empty_parameter((self.out_channels,), dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return conv_ops.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, bias={self.bias is not None}"
        )


class _Pool2d(Module):
    """What the pooling layers share: kernel_size, stride (default: kernel_size) and padding as pairs."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.kernel_size = conv_ops.pair_argument(kernel_size, name, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else conv_ops.pair_argument(stride, name, "stride", 1)
        self.padding = conv_ops.pair_argument(padding, name, "padding", 0)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Maximum over windows (padding counts as -inf); see :func:`minigrad.ops.conv.max_pool2d`."""

    def forward(self, x: Tensor) -> Tensor:
        return conv_ops.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """Mean over windows (padded zeros count in the mean); see :func:`minigrad.ops.conv.avg_pool2d`."""

    def forward(self, x: Tensor) -> Tensor:
        return conv_ops.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class GlobalAvgPool2d(Module):
    """Mean over all pixels of each channel: (N, C, H, W) -> (N, C)."""

    def forward(self, x: Tensor) -> Tensor:
        return conv_ops.global_avg_pool2d(x)


class ReLU(Module):
    """max(x, 0) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return relu(x)


class Dropout(Module):
    """Inverted dropout with drop probability `p` in training mode; the identity in eval mode.

    Masks are drawn from `generator` (default: the global generator at call time).
    """

    def __init__(self, p: float = 0.5, generator: Generator | None = None) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, Real) or not 0 <= p < 1:
            raise ValueError(f"Dropout: p: expected a probability in [0, 1), got {p!r}")
        self.p = float(p)
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        return conv_ops.dropout(x, self.p, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Flatten(Module):
    """Merge axes `start_dim` to `end_dim` into one: (N, C, H, W) -> (N, C*H*W) by default, as ``nn.Flatten``."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        for name, value in (("start_dim", start_dim), ("end_dim", end_dim)):
            if not validate.is_integer(value):
                raise TypeError(f"Flatten: {name}: expected an int, got {type(value).__name__} {value!r}")
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x: Tensor) -> Tensor:
        if not -x.ndim <= self.start_dim < x.ndim:
            raise ValueError(f"Flatten: start_dim={self.start_dim} is out of range for an input of shape {x.shape}")
        return flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Sequential(Module):
    """Modules applied in order; indexable (an int gives a module, a slice a Sequential), iterable, sized.

    Sub-modules are named "0", "1", ..., so their parameters appear in the
    state dict as "0.weight", "1.bias", and so on.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module: Module) -> Sequential:
        """Add `module` at the end; returns self."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: expected Modules, got {type(module).__name__} at position {len(self)}")
        setattr(self, str(len(self)), module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def __getitem__(self, index: int | slice) -> Module:
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"Sequential: index: expected an int or a slice, got {type(index).__name__}")
        if not -len(modules) <= index < len(modules):
            raise IndexError(f"Sequential: index {index} is out of range for {len(modules)} modules")
        return modules[index]

    def forward(self, x: Any) -> Any:
        for module in self._modules.values():
            x = module(x)
        return x


class ModuleList(Module):
    """A list of sub-modules whose parameters the parent finds; it has no ``forward`` (loop over it yourself).

    Sub-modules are named "0", "1", ..., as in :class:`Sequential` and in PyTorch.
    """

    def __init__(self, modules: Iterable[Module] = ()) -> None:
        super().__init__()
        self.extend(modules)

    def _check(self, module: Any, position: int) -> Module:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList: expected Modules, got {type(module).__name__} at position {position}")
        return module

    def _index(self, index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"ModuleList: index: expected an int or a slice, got {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"ModuleList: index {index} is out of range for {len(self)} modules")
        return index % len(self)

    def _renumber(self, modules: list[Module]) -> None:
        for name in list(self._modules):
            delattr(self, name)
            self._modules.pop(name, None)
        for i, module in enumerate(modules):
            setattr(self, str(i), module)

    def append(self, module: Module) -> ModuleList:
        """Add `module` at the end; returns self."""
        setattr(self, str(len(self)), self._check(module, len(self)))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        """Add every module of `modules` at the end; returns self."""
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> None:
        """Put `module` before position `index` (as ``list.insert``)."""
        modules = list(self._modules.values())
        modules.insert(index, self._check(module, index))
        self._renumber(modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def __getitem__(self, index: int | slice) -> Module:
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(modules[index])
        return modules[self._index(index)]

    def __setitem__(self, index: int, module: Module) -> None:
        setattr(self, str(self._index(index)), self._check(module, index))

    def __delitem__(self, index: int) -> None:
        modules = list(self._modules.values())
        del modules[self._index(index)]
        self._renumber(modules)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "ModuleList has no forward: loop over it (for layer in self.layers: x = layer(x)), or use Sequential"
        )
