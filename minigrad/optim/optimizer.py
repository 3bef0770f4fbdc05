"""The optimizer base class: parameter bookkeeping, the step loop and checkpointable state.

A concrete optimizer (SGD, RMSProp, Adam) writes one method, :meth:`Optimizer._update`,
which maps a parameter's array, its gradient and its per-parameter state to a
new array. Everything else is shared and lives here:

* parameters are kept in the order given, and per-parameter state is keyed by
  that position, so a checkpoint can be restored into a freshly built model
  whose parameters come in the same order;
* :meth:`Optimizer.step` runs under :func:`~minigrad.tensor.no_grad`, skips
  parameters whose ``.grad`` is None, and *replaces* ``param.data`` with a new
  array of the same dtype (never writing into the old one, so an array held
  elsewhere, e.g. by an EMA or a saved state dict, is not changed behind its back);
* :meth:`Optimizer.state_dict` returns plain data, a flat dict of backend arrays
  and Python numbers, that a checkpoint can write into an ``.npz`` file and
  :meth:`Optimizer.load_state_dict` can read back (0-d NumPy arrays are accepted
  wherever a number is expected, as ``numpy.load`` returns them).

State dict format (flat ``dict[str, array | int | float | bool]``)::

    "step"              number of step() calls so far (int)
    "lr"                current learning rate (float; schedules change it)
    "num_params"        number of parameters the optimizer was built with (int)
    "<hyper>"           every other hyperparameter, e.g. "momentum", "beta1" (float or bool)
    "state.<i>.<key>"   per-parameter state of parameter number i, e.g. "state.3.momentum"
                        (backend array of the parameter's shape, or an int such as Adam's
                        "state.<i>.step")

Hyperparameters are restored by ``load_state_dict`` (as PyTorch does), so a
resumed run continues with the values it was saved with.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

from minigrad import backend
from minigrad.tensor import Tensor, no_grad

Array = backend.Array


# ----------------------------------------------------------------------------
# Argument checks shared by the optimizers, schedules and EMA
# ----------------------------------------------------------------------------


def check_real(
    owner: str,
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """`value` as a float when it is a finite real number in the given interval, else a clear error.

    The interval is ``[low, high]``; ``low_open``/``high_open`` exclude an end.
    The message names the owner and argument, what was expected and what was given,
    e.g. ``SGD: momentum: expected a number in [0, 1), got 1.5``.
    """
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    if low is not None and high is not None:
        expected = f"a number in {left}{_fmt(low)}, {_fmt(high)}{right}"
    elif low is not None:
        expected = f"a number {'>' if low_open else '>='} {_fmt(low)}"
    elif high is not None:
        expected = f"a number {'<' if high_open else '<='} {_fmt(high)}"
    else:
        expected = "a finite number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if backend.is_array(value) and getattr(value, "ndim", 1) == 0:
            value = backend.item(value)
        else:
            raise TypeError(f"{owner}: {name}: expected {expected}, got {type(value).__name__} {value!r}")
    value = float(value)
    bad = not math.isfinite(value)
    if low is not None:
        bad = bad or value < low or (low_open and value == low)
    if high is not None:
        bad = bad or value > high or (high_open and value == high)
    if bad:
        raise ValueError(f"{owner}: {name}: expected {expected}, got {value!r}")
    return value


def check_int(owner: str, name: str, value: Any, low: int | None = None) -> int:
    """`value` when it is an integer (not a bool) of at least `low`, else a clear error."""
    expected = "an integer" if low is None else f"an integer >= {low}"
    if isinstance(value, bool) or not isinstance(value, int):
        if backend.is_array(value) and getattr(value, "ndim", 1) == 0 and not backend.is_floating(value):
            value = int(backend.item(value))
        else:
            raise TypeError(f"{owner}: {name}: expected {expected}, got {type(value).__name__} {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{owner}: {name}: expected {expected}, got {value!r}")
    return int(value)


def check_bool(owner: str, name: str, value: Any) -> bool:
    """`value` when it is a bool (or a 0-d boolean array, as ``numpy.load`` returns), else a TypeError."""
    if backend.is_array(value) and getattr(value, "ndim", 1) == 0:
        value = backend.item(value)
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name}: expected True or False, got {type(value).__name__} {value!r}")
    return value


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def copy_array(array: Array) -> Array:
    """A copy of `array` in its own library and on its own device."""
    return backend.namespace(array).asarray(array, copy=True)


def array_like(value: Any, like: Array) -> Array:
    """`value` (any supported array, e.g. a NumPy array from an .npz) on `like`'s device with its dtype.

    Always a fresh array, so that later in-place changes to `value` cannot reach the result.
    """
    if not backend.is_array(value):
        raise TypeError(f"expected an array, got {type(value).__name__}")
    array = backend.to_device(value, backend.device_of(like))
    if array is value:
        array = copy_array(array)
    return backend.astype(array, like.dtype)


def as_number(value: Any) -> Any:
    """A Python number from a number or a one-element array (``numpy.load`` gives 0-d arrays)."""
    if backend.is_array(value):
        if getattr(value, "ndim", 0) != 0:
            raise TypeError(f"expected a number, got an array of shape {tuple(value.shape)}")
        return backend.item(value)
    return value


# ----------------------------------------------------------------------------
# The base class
# ----------------------------------------------------------------------------


class Optimizer:
    """Base class of the optimizers: keeps the parameters, the learning rate and per-parameter state.

    Args:
        params: the parameters to train, e.g. ``model.parameters()``; also accepted are the
            ``(name, parameter)`` pairs of ``model.named_parameters()``, whose names then
            appear in error messages. Order matters: state is saved by position.
        lr: the learning rate, > 0. It is a plain attribute, ``opt.lr``, which learning-rate
            schedules (:class:`~minigrad.optim.schedules.LRScheduler`) reassign; it may then
            reach 0 (the end of a cosine schedule) but never go negative.

    Subclasses set ``HYPERPARAMETERS`` (names of float/bool attributes saved in the state
    dict besides ``lr``), ``STATE_KEYS`` (the per-parameter state entries they may create,
    mapped to ``"array"`` or ``"int"``) and write :meth:`_update`.
    """

    HYPERPARAMETERS: ClassVar[tuple[str, ...]] = ()
    STATE_KEYS: ClassVar[dict[str, str]] = {}

    def __init__(self, params: Iterable[Any], lr: float) -> None:
        owner = type(self).__name__
        self.params, self.param_names = _collect_params(owner, params)
        self.lr = check_real(owner, "lr", lr, low=0.0, low_open=True)
        self.step_count = 0
        self.state: dict[int, dict[str, Any]] = {}

    # -- the learning rate -------------------------------------------------
    @property
    def lr(self) -> float:
        """The learning rate used by the next :meth:`step`."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = check_real(type(self).__name__, "lr", value, low=0.0)

    # -- stepping ----------------------------------------------------------
    def step(self) -> None:
        """Update every parameter that has a gradient, once; parameters with ``.grad`` None are skipped."""
        with no_grad():
            for index, param in enumerate(self.params):
                if param.grad is None:
                    continue
                grad = self._checked_grad(index, param)
                state = self.state.setdefault(index, {})
                new = self._update(param.data, grad, state)
                param.data = backend.astype(new, param.dtype)
        self.step_count += 1

    def zero_grad(self) -> None:
        """Forget the gradient of every parameter (set ``.grad`` to None), before the next backward."""
        for param in self.params:
            param.grad = None

    def _update(self, param: Array, grad: Array, state: dict[str, Any]) -> Array:
        """The parameter's new array, given its current array, its gradient and its state (updated in place)."""
        raise NotImplementedError(f"{type(self).__name__} must define _update()")

    def _checked_grad(self, index: int, param: Tensor) -> Array:
        grad = param.grad
        if not backend.is_array(grad):
            raise TypeError(
                f"{type(self).__name__}.step: {self._describe(index)}.grad must be an array, got {type(grad).__name__}"
            )
        if tuple(grad.shape) != param.shape:
            raise ValueError(
                f"{type(self).__name__}.step: {self._describe(index)}.grad must have the parameter's shape "
                f"{param.shape}, got {tuple(grad.shape)}"
            )
        return backend.astype(grad, param.dtype)

    def _describe(self, index: int) -> str:
        name = self.param_names[index]
        return f"parameter {index}" + (f" ({name!r})" if name else "")

    # -- checkpointing -----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state as a flat dict of Python numbers and backend arrays (copies).

        See the module docstring for the keys. Arrays stay on the parameters' device;
        a checkpoint writer converts them to host arrays itself.
        """
        state: dict[str, Any] = {"step": self.step_count, "lr": self.lr, "num_params": len(self.params)}
        for name in self.HYPERPARAMETERS:
            state[name] = getattr(self, name)
        for index in sorted(self.state):
            for key, value in self.state[index].items():
                state[f"state.{index}.{key}"] = copy_array(value) if backend.is_array(value) else value
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a dict made by :meth:`state_dict` (possibly after a round trip through NumPy/.npz).

        Arrays are copied onto each parameter's device and dtype. Everything is checked
        before anything changes: unknown or missing keys, a different number of parameters,
        state of the wrong shape or kind raise an error and leave the optimizer as it was.
        """
        owner = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, dict):
            raise TypeError(f"{owner}: expected a dict from state_dict(), got {type(state).__name__}")
        top = ("step", "lr", "num_params", *self.HYPERPARAMETERS)
        missing = [key for key in top if key not in state]
        unexpected = sorted(key for key in state if key not in top and not key.startswith("state."))
        if missing or unexpected:
            raise KeyError(f"{owner}: missing keys {missing}, unexpected keys {unexpected}")
        num_params = check_int(owner, "num_params", state["num_params"], low=0)
        if num_params != len(self.params):
            raise ValueError(f"{owner}: the state is for {num_params} parameters, this optimizer has {len(self.params)}")
        step = check_int(owner, "step", state["step"], low=0)
        lr = check_real(owner, "lr", state["lr"], low=0.0)
        hyper = {name: as_number(state[name]) for name in self.HYPERPARAMETERS}

        per_param: dict[int, dict[str, Any]] = {}
        for key, value in state.items():
            if not key.startswith("state."):
                continue
            index, entry = self._parse_state_key(owner, key)
            per_param.setdefault(index, {})[entry] = self._load_entry(owner, key, index, entry, value)

        # Validate the hyperparameters with the constructor's own checks before committing.
        self._check_hyperparameters(hyper)
        self.step_count = step
        self.lr = lr
        for name, value in hyper.items():
            setattr(self, name, value)
        self.state = per_param

    def _parse_state_key(self, owner: str, key: str) -> tuple[int, str]:
        parts = key.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            raise KeyError(f"{owner}: expected per-parameter keys like 'state.<index>.<name>', got {key!r}")
        index, entry = int(parts[1]), parts[2]
        if index >= len(self.params):
            raise KeyError(f"{owner}: {key!r} refers to parameter {index}, but there are {len(self.params)} parameters")
        if entry not in self.STATE_KEYS:
            raise KeyError(f"{owner}: {key!r}: expected a state name among {sorted(self.STATE_KEYS)}, got {entry!r}")
        return index, entry

    def _load_entry(self, owner: str, key: str, index: int, entry: str, value: Any) -> Any:
        if self.STATE_KEYS[entry] == "int":
            return check_int(owner, key, value, low=0)
        param = self.params[index]
        if not backend.is_array(value):
            raise TypeError(f"{owner}: {key!r}: expected an array of shape {param.shape}, got {type(value).__name__}")
        if tuple(value.shape) != param.shape:
            raise ValueError(f"{owner}: {key!r}: expected an array of shape {param.shape}, got {tuple(value.shape)}")
        return array_like(value, param.data)

    def _check_hyperparameters(self, hyper: dict[str, Any]) -> None:
        """Raise when loaded hyperparameters are invalid (subclasses run their constructor checks)."""

    # -- display -----------------------------------------------------------
    def __repr__(self) -> str:
        hyper = ", ".join(f"{name}={getattr(self, name)!r}" for name in ("lr", *self.HYPERPARAMETERS))
        return f"{type(self).__name__}({hyper}; {len(self.params)} parameters)"


def _collect_params(owner: str, params: Iterable[Any]) -> tuple[list[Tensor], list[str | None]]:
    """The parameters (and their names, when given as pairs) from `params`, each exactly once."""
    kind = type(params).__name__
    if isinstance(params, Tensor) or hasattr(params, "named_parameters"):
        raise TypeError(
            f"{owner}: params: expected an iterable of Parameters such as model.parameters(), got a {kind} itself"
        )
    try:
        items = list(params)
    except TypeError:
        raise TypeError(
            f"{owner}: params: expected an iterable of Parameters such as model.parameters(), got {kind}"
        ) from None
    if not items:
        raise ValueError(f"{owner}: params: expected at least one parameter, got an empty iterable")
    tensors: list[Tensor] = []
    names: list[str | None] = []
    seen: dict[int, int] = {}
    for position, item in enumerate(items):
        name = None
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            name, item = item
        if isinstance(item, dict):
            raise TypeError(
                f"{owner}: params[{position}]: expected a Parameter (or Tensor), got a dict; parameter groups with "
                "their own settings are not supported: build one optimizer per group"
            )
        if not isinstance(item, Tensor):
            raise TypeError(f"{owner}: params[{position}]: expected a Parameter (or Tensor), got {type(item).__name__}")
        if id(item) in seen:
            raise ValueError(f"{owner}: params[{position}]: the same parameter already appears at position {seen[id(item)]}")
        seen[id(item)] = position
        tensors.append(item)
        names.append(name)
    return tensors, names
