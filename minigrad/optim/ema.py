"""An exponential moving average of a model's weights, for evaluation.

Inception-v3 and the Batch Renormalization experiments evaluate not the last
weights of training but a running average of them (TensorFlow's
``ExponentialMovingAverage``): the average smooths out the noise of the final
updates and usually scores better. :class:`EMA` keeps such an average of every
parameter *and* of every floating buffer, so that the running statistics of
normalization layers (running mean and standard deviation) are averaged along
with the weights they belong to.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from minigrad import backend
from minigrad.module import Module
from minigrad.optim.optimizer import array_like, as_number, check_bool, check_int, check_real, copy_array


def _is_float_array(value: Any) -> bool:
    return backend.is_array(value) and backend.is_floating(value)


def _copy(value: Any) -> Any:
    return copy_array(value) if backend.is_array(value) else value


class _Entry:
    """One averaged value of the model: a parameter's ``.data`` or a module's buffer attribute."""

    def __init__(self, owner: Any, attr: str) -> None:
        self.owner = owner  # a Parameter (attr "data") or a Module
        self.attr = attr

    def get(self) -> Any:
        return getattr(self.owner, self.attr)

    def set(self, value: Any) -> None:
        setattr(self.owner, self.attr, value)


class EMA:
    """Exponential moving average of a model's parameters and floating buffers.

    Each :meth:`update` moves every average towards the model's current value::

        d      = decay                                 (warmup=False)
                 min(decay, (1 + n) / (10 + n))        (warmup=True; n = updates done before this one)
        shadow = decay-weighted mean:  shadow <- d * shadow + (1 - d) * value

    computed as ``shadow - (1 - d) * (shadow - value)`` so that a value that stays
    constant stays exactly constant. The averages start as copies of the model's values
    when the EMA is created (as TensorFlow's do). Which values are averaged:

    * parameters and buffers holding *floating* arrays (weights, running mean/std);
    * everything else is copied at each update, not averaged: integer or boolean arrays
      (a ``step`` counter), buffers held as Python numbers (counters, settings), None.

    The warm-up (TensorFlow's ``num_updates`` argument) keeps early averages from being
    dominated by the random initialisation: with decay 0.999 and no warm-up the average
    is still ~37% initial weights after 1000 updates. Use it for short runs; the
    Inception recipe is ``EMA(model, decay=0.9999, warmup=True)``.

    Args:
        model: the Module to average. Its set of parameters and buffers must not change
            afterwards; their device and dtype may (the averages follow them).
        decay: in [0, 1]; the weight of the old average. Default 0.999 (an average over
            roughly the last 1000 updates).
        warmup: use the decay warm-up above.

    Use::

        ema = EMA(model)
        for batch in data:
            ...; opt.step(); ema.update()
        with ema.swapped():          # the model now holds the averages
            evaluate(model)
        # the training values are back, bit for bit

    State dict: ``{"num_updates": int, "decay": float, "warmup": bool,
    "shadow.<name>": array or number}`` with the names of ``model.state_dict()``
    (buffers that are None are left out).
    """

    def __init__(self, model: Module, decay: float = 0.999, warmup: bool = False) -> None:
        if not isinstance(model, Module):
            raise TypeError(f"EMA: model: expected a minigrad Module, got {type(model).__name__}")
        self.model = model
        self.decay = check_real("EMA", "decay", decay, low=0.0, high=1.0)
        self.warmup = check_bool("EMA", "warmup", warmup)
        self.num_updates = 0
        self._entries, self._aliases = self._find_entries()
        self.shadow: dict[str, Any] = {name: _copy(entry.get()) for name, entry in self._entries.items()}
        self._backup: dict[str, Any] | None = None

    def _find_entries(self) -> tuple[dict[str, _Entry], dict[str, str]]:
        """The model's values by state-dict name; buffers reached under two names are kept once (plus an alias)."""
        entries: dict[str, _Entry] = {}
        for name, param in self.model.named_parameters():
            entries[name] = _Entry(param, "data")
        aliases: dict[str, str] = {}
        seen: dict[tuple[int, str], str] = {}
        for name, _ in self.model.named_buffers():
            *path, attr = name.split(".")
            owner = self.model
            for part in path:
                owner = getattr(owner, part)
            key = (id(owner), attr)
            if key in seen:
                aliases[name] = seen[key]
                continue
            seen[key] = name
            entries[name] = _Entry(owner, attr)
        return entries, aliases

    # -- averaging ---------------------------------------------------------
    @property
    def next_decay(self) -> float:
        """The decay the next :meth:`update` will use."""
        if self.warmup:
            n = self.num_updates
            return min(self.decay, (1.0 + n) / (10.0 + n))
        return self.decay

    def update(self) -> None:
        """Move the averages towards the model's current values (call after each optimizer step)."""
        if self._backup is not None:
            raise RuntimeError("EMA.update: the averages are swapped into the model; restore() them first")
        self._check_model()
        weight = 1.0 - self.next_decay
        for name, entry in self._entries.items():
            value = entry.get()
            shadow = self.shadow[name]
            if _is_float_array(value) and _is_float_array(shadow):
                if tuple(shadow.shape) != tuple(value.shape):
                    raise ValueError(
                        f"EMA.update: {name!r} changed shape from {tuple(shadow.shape)} to {tuple(value.shape)}"
                    )
                if shadow.dtype != value.dtype or backend.device_of(shadow) != backend.device_of(value):
                    shadow = array_like(shadow, value)
                self.shadow[name] = shadow - weight * (shadow - value)
            else:
                self.shadow[name] = _copy(value)
        self.num_updates += 1

    def _check_model(self) -> None:
        entries, _ = self._find_entries()
        if set(entries) != set(self._entries):
            added = sorted(set(entries) - set(self._entries))
            removed = sorted(set(self._entries) - set(entries))
            raise RuntimeError(
                "EMA: the model's parameters and buffers changed since the EMA was made "
                f"(added {added}, removed {removed}); create the EMA after the model is complete"
            )

    # -- swapping ----------------------------------------------------------
    def apply(self) -> None:
        """Put the averages into the model (copies), keeping the training values aside for :meth:`restore`."""
        if self._backup is not None:
            raise RuntimeError("EMA.apply: the averages are already swapped into the model")
        self._check_model()
        self._backup = {name: entry.get() for name, entry in self._entries.items()}
        for name, entry in self._entries.items():
            entry.set(_copy(self.shadow[name]))

    def restore(self) -> None:
        """Put back the exact values (the same array objects) the model had before :meth:`apply`."""
        if self._backup is None:
            raise RuntimeError("EMA.restore: nothing to restore; call apply() first")
        for name, entry in self._entries.items():
            entry.set(self._backup[name])
        self._backup = None

    @contextmanager
    def swapped(self) -> Iterator[Module]:
        """``with ema.swapped():`` the model holds the averages inside the block, its own values after it."""
        self.apply()
        try:
            yield self.model
        finally:
            self.restore()

    def averaged_state_dict(self) -> dict[str, Any]:
        """The averages in ``model.state_dict()`` form (copies), e.g. to save the inference model."""
        state = {name: _copy(value) for name, value in self.shadow.items()}
        for alias, name in self._aliases.items():
            state[alias] = _copy(self.shadow[name])
        return state

    # -- checkpointing -----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The averages and the update count as plain data (see the class docstring)."""
        state: dict[str, Any] = {"num_updates": self.num_updates, "decay": self.decay, "warmup": self.warmup}
        for name, value in self.shadow.items():
            if value is not None:
                state[f"shadow.{name}"] = _copy(value)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a dict made by :meth:`state_dict` (possibly after a round trip through NumPy/.npz).

        Arrays go onto the device and dtype of the model's current values. Everything is
        checked before anything changes.
        """
        owner = "EMA.load_state_dict"
        if self._backup is not None:
            raise RuntimeError(f"{owner}: the averages are swapped into the model; restore() them first")
        if not isinstance(state, dict):
            raise TypeError(f"{owner}: expected a dict from state_dict(), got {type(state).__name__}")
        top = ("num_updates", "decay", "warmup")
        expected = set(top) | {f"shadow.{name}" for name, entry in self._entries.items() if entry.get() is not None}
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected)
        if missing or unexpected:
            raise KeyError(f"{owner}: missing keys {missing}, unexpected keys {unexpected}")
        num_updates = check_int(owner, "num_updates", state["num_updates"], low=0)
        decay = check_real(owner, "decay", state["decay"], low=0.0, high=1.0)
        warmup = check_bool(owner, "warmup", state["warmup"])
        shadow: dict[str, Any] = {}
        for name, entry in self._entries.items():
            current = entry.get()
            if current is None:
                shadow[name] = None
                continue
            incoming = state[f"shadow.{name}"]
            if backend.is_array(current):
                shape = tuple(getattr(incoming, "shape", ()))
                if not backend.is_array(incoming) or shape != tuple(current.shape):
                    raise ValueError(
                        f"{owner}: 'shadow.{name}': expected an array of shape {tuple(current.shape)}, got {shape}"
                    )
                shadow[name] = array_like(incoming, current)
            else:
                shadow[name] = type(current)(as_number(incoming))
        self.num_updates, self.decay, self.warmup, self.shadow = num_updates, decay, warmup, shadow

    def __repr__(self) -> str:
        return (
            f"EMA(decay={self.decay!r}, warmup={self.warmup!r}, num_updates={self.num_updates}, values={len(self._entries)})"
        )
