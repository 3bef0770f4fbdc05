"""Module and Parameter: the containers that layers, models and optimizers share.

A Module finds its parameters, buffers and sub-modules by looking at the
attributes set on it, so a layer only assigns them in ``__init__``. Buffers
are state that is not trained by gradients (BatchNorm's running statistics,
a step counter): backend arrays or Python numbers, saved in the state dict
and moved by :meth:`Module.to` together with the parameters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from minigrad import backend
from minigrad.tensor import Tensor


class IncompatibleKeys(NamedTuple):
    """What :meth:`Module.load_state_dict` found: names the module has and the state lacks, and the reverse."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class StateDictKeyError(KeyError, RuntimeError):
    """A strict ``load_state_dict`` met missing or unexpected keys.

    A KeyError, and a RuntimeError as PyTorch raises, so either ``except`` catches it.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Parameter(Tensor):
    """A Tensor that a Module trains: it requires grad by default and is found by ``parameters()``."""

    def __init__(self, data: Any, requires_grad: bool = True, dtype: Any = None) -> None:
        super().__init__(data, requires_grad=requires_grad, dtype=dtype)


class Module:
    """Base class of every layer and model: subclass it, set attributes in ``__init__``, write ``forward``."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    # -- registration ------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self.__dict__.get("_buffer_names", ()):
            self._buffers[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: Any) -> None:
        """Declare `name` as a buffer: state saved in ``state_dict`` and moved by ``to`` (array or number)."""
        if not (backend.is_array(value) or isinstance(value, (int, float)) or value is None):
            raise TypeError(f"register_buffer: {name!r} must be a backend array or a number, got {type(value).__name__}")
        names = self.__dict__.setdefault("_buffer_names", set())
        names.add(name)
        setattr(self, name, value)

    # -- traversal ---------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every sub-module, each once, with dotted names ("" for this one)."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{child}" if name else child, sub) for child, sub in module._modules.items()]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        """This module and every sub-module."""
        for _, module in self.named_modules():
            yield module

    def children(self) -> Iterator[Module]:
        """The direct sub-modules."""
        yield from self._modules.values()

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """Every parameter of this module and its sub-modules, with dotted names, each once."""
        seen: set[int] = set()
        for prefix, module in self.named_modules():
            for name, param in module._parameters.items():
                if id(param) not in seen:
                    seen.add(id(param))
                    yield (f"{prefix}.{name}" if prefix else name), param

    def parameters(self) -> list[Parameter]:
        """Every parameter, each once (the list to give an optimizer)."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, Any]]:
        """Every buffer of this module and its sub-modules, with dotted names."""
        for prefix, module in self.named_modules():
            for name, value in module._buffers.items():
                yield (f"{prefix}.{name}" if prefix else name), value

    # -- modes and gradients ----------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Training mode (batch statistics, dropout on) for this module and all sub-modules."""
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        """Inference mode (running statistics, dropout off)."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Forget the gradients of every parameter."""
        for param in self.parameters():
            param.grad = None

    # -- state -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Copies of every parameter's and buffer's value by dotted name (backend arrays; numbers for numbers)."""
        state: dict[str, Any] = {}
        for name, param in self.named_parameters():
            state[name] = backend.namespace(param.data).asarray(param.data, copy=True)
        for name, value in self.named_buffers():
            state[name] = backend.namespace(value).asarray(value, copy=True) if backend.is_array(value) else value
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Set parameters and buffers from `state`, as PyTorch's ``load_state_dict``.

        With ``strict=True`` (the default) the names must match exactly, else
        :class:`StateDictKeyError` names the missing and unexpected keys. With
        ``strict=False`` the names both sides have are loaded and the others are
        left alone. Shapes must always match: a wrong one raises ValueError naming
        the key and both shapes. Nothing is changed when anything is wrong.

        Values are copied onto the device and dtype each parameter already has.
        Returns the missing and unexpected keys, as ``(missing_keys, unexpected_keys)``.
        """
        if not isinstance(strict, bool):
            raise TypeError(f"load_state_dict: strict: expected True or False, got {strict!r}")
        if not isinstance(state, Mapping):
            raise TypeError(f"load_state_dict: state: expected a dict of name -> array, got {type(state).__name__}")
        own = self.state_dict()
        result = IncompatibleKeys(sorted(set(own) - set(state)), sorted(set(state) - set(own)))
        if strict and (result.missing_keys or result.unexpected_keys):
            raise StateDictKeyError(
                f"load_state_dict: missing keys {result.missing_keys}, unexpected keys {result.unexpected_keys}"
                " (pass strict=False to load the keys both sides have)"
            )
        for name, current in own.items():
            if name in state and backend.is_array(current):
                shape = tuple(getattr(state[name], "shape", ()))
                if shape != tuple(current.shape):
                    raise ValueError(f"load_state_dict: {name!r} expects shape {tuple(current.shape)}, got {shape}")
        for prefix, module in self.named_modules():
            for table in (module._parameters, module._buffers):
                for name in list(table):
                    key = f"{prefix}.{name}" if prefix else name
                    if key in state:
                        module._load_value(name, state[key])
        return result

    def _load_value(self, name: str, incoming: Any) -> None:
        current = getattr(self, name)
        if isinstance(current, Tensor) or backend.is_array(current):
            device = current.device if isinstance(current, Tensor) else backend.device_of(current)
            array = backend.astype(backend.to_device(backend.asarray(incoming), device), current.dtype)
            array = backend.namespace(array).asarray(array, copy=True)  # never share the caller's arrays
            if isinstance(current, Tensor):
                current.data = array
            else:
                setattr(self, name, array)
            return
        setattr(self, name, type(current)(backend.item(incoming)) if backend.is_array(incoming) else incoming)

    def to(self, device_or_dtype: Any) -> Module:
        """Move (or cast) every parameter and array buffer in place, on this module and its sub-modules.

        Accepts a device ("cpu", "cuda", "cuda:N", "array_api_strict") or a floating dtype.
        Gradients are dropped. Returns the module.
        """
        is_device = isinstance(device_or_dtype, str) and device_or_dtype not in backend.DTYPE_NAMES
        if not is_device and not backend.dtype_name(device_or_dtype).startswith("float"):
            raise ValueError(f"Module.to: expected a device or a floating dtype, got {device_or_dtype!r}")

        def convert(array: Any) -> Any:
            if is_device:
                return backend.to_device(array, device_or_dtype)
            return backend.astype(array, device_or_dtype) if backend.is_floating(array) else array

        for module in self.modules():
            for param in module._parameters.values():
                param.data = convert(param.data)
                param.grad = None
            for name, value in list(module._buffers.items()):
                if backend.is_array(value):
                    setattr(module, name, convert(value))
        return self

    # -- calling -----------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr`` (override in layers)."""
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, module in self._modules.items():
            child = repr(module).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        return "\n".join(lines) + ("\n)" if self._modules else ")")
