"""Learning-rate schedules: functions of the step number that give a multiplier of the base learning rate.

A schedule is any callable ``schedule(step) -> float`` returning a factor >= 0;
the learning rate at `step` is ``base_lr * schedule(step)``. Returning a factor
rather than a learning rate lets schedules compose (a warm-up multiplies the
schedule it wraps) and lets one schedule serve any base learning rate.

The schedules here are small immutable objects with no state of their own: the
step is counted by :class:`LRScheduler`, which sets ``optimizer.lr`` and is
what a checkpoint saves. Whether a "step" is one optimizer update or one
epoch is up to the caller: call :meth:`LRScheduler.step` accordingly.

Example (the Inception-v3 decay, 0.94 every 2 epochs, after a 1-epoch warm-up)::

    opt = mg.optim.RMSProp(model.parameters(), lr=0.045, momentum=0.9, eps=1.0, eps_inside_sqrt=True)
    sched = mg.optim.LRScheduler(opt, mg.optim.Warmup(steps_per_epoch, mg.optim.StepDecay(2 * steps_per_epoch, 0.94)))
    for batch in loader:
        ...; opt.step(); sched.step()
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from minigrad.optim.optimizer import Optimizer, as_number, check_int, check_real

Schedule = Callable[[int], float]


class _Schedule:
    """Shared parts of the built-in schedules: step checking and a readable repr."""

    def __call__(self, step: int) -> float:
        return self.factor(check_int(type(self).__name__, "step", step, low=0))

    def factor(self, step: int) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class StepDecay(_Schedule):
    """Multiply the learning rate by `gamma` every `every` steps: ``gamma ** (step // every)``.

    With ``gamma=0.94, every=2 epochs`` this is the Inception-v3 / Batch Renorm schedule
    (there called exponential decay, in staircase form).

    Args:
        every: number of steps between decays, >= 1.
        gamma: factor applied at each decay, in (0, 1]. Default 0.1 (a tenfold drop, as PyTorch's StepLR).
    """

    def __init__(self, every: int, gamma: float = 0.1) -> None:
        self.every = check_int("StepDecay", "every", every, low=1)
        self.gamma = check_real("StepDecay", "gamma", gamma, low=0.0, high=1.0, low_open=True)

    def factor(self, step: int) -> float:
        return self.gamma ** (step // self.every)


class CosineAnnealing(_Schedule):
    """Half a cosine from 1 down to `min_factor` over `total_steps` steps, then flat at `min_factor`.

    ``min_factor + (1 - min_factor) * (1 + cos(pi * min(step, total_steps) / total_steps)) / 2``
    (Loshchilov & Hutter 2017, without restarts). The smallest learning rate is
    ``base_lr * min_factor``.

    Args:
        total_steps: length of the decay, >= 1.
        min_factor: final multiplier, in [0, 1]. Default 0.
    """

    def __init__(self, total_steps: int, min_factor: float = 0.0) -> None:
        self.total_steps = check_int("CosineAnnealing", "total_steps", total_steps, low=1)
        self.min_factor = check_real("CosineAnnealing", "min_factor", min_factor, low=0.0, high=1.0)

    def factor(self, step: int) -> float:
        progress = min(step, self.total_steps) / self.total_steps
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Warmup(_Schedule):
    """A linear ramp over the first `steps` steps, multiplying another schedule (or 1).

    ``min(1, (step + 1) / steps) * schedule(step)``: the first update uses ``1/steps`` of
    the learning rate (never 0, so no update is wasted) and update number `steps`
    (step ``steps - 1``) the full rate (Goyal et al. 2017's gradual warm-up). The wrapped
    schedule sees the same step numbers, so its clock includes the warm-up:
    ``Warmup(100, CosineAnnealing(1000))`` reaches its minimum at step 1000.

    Args:
        steps: length of the ramp, >= 1 (1 means no warm-up).
        schedule: the schedule to ramp into; None means a constant 1.
    """

    def __init__(self, steps: int, schedule: Schedule | None = None) -> None:
        self.steps = check_int("Warmup", "steps", steps, low=1)
        if schedule is not None and not callable(schedule):
            raise TypeError(f"Warmup: schedule: expected a callable step -> factor or None, got {type(schedule).__name__}")
        self.schedule = schedule

    def factor(self, step: int) -> float:
        ramp = min(1.0, (step + 1) / self.steps)
        return ramp * (1.0 if self.schedule is None else float(self.schedule(step)))


class LRScheduler:
    """Sets ``optimizer.lr = base_lr * schedule(step)``; call :meth:`step` after each ``optimizer.step()``.

    On construction the scheduler applies ``schedule(0)``, so the first update already
    uses the scheduled rate; each :meth:`step` advances the count and applies the next
    value (as PyTorch's ``LRScheduler``).

    Args:
        optimizer: the optimizer whose ``lr`` to set.
        schedule: a callable ``step -> factor >= 0`` (a :class:`StepDecay`, :class:`CosineAnnealing`,
            :class:`Warmup`, or any function).
        base_lr: the rate the factors multiply; default ``optimizer.lr`` at construction.

    State dict: ``{"step": int, "base_lr": float}``; the schedule itself is code and is
    rebuilt by the caller.
    """

    def __init__(self, optimizer: Optimizer, schedule: Schedule, base_lr: float | None = None) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"LRScheduler: optimizer: expected a minigrad Optimizer, got {type(optimizer).__name__}")
        if not callable(schedule):
            raise TypeError(f"LRScheduler: schedule: expected a callable step -> factor, got {type(schedule).__name__}")
        self.optimizer = optimizer
        self.schedule = schedule
        self.base_lr = check_real(
            "LRScheduler", "base_lr", optimizer.lr if base_lr is None else base_lr, low=0.0, low_open=True
        )
        self.step_count = 0
        self._apply()

    @property
    def lr(self) -> float:
        """The learning rate the scheduler last set."""
        return self.optimizer.lr

    def step(self) -> None:
        """Advance one step and set the optimizer's learning rate for the next update."""
        self.step_count += 1
        self._apply()

    def _apply(self) -> None:
        factor = self.schedule(self.step_count)
        factor = check_real("LRScheduler", f"schedule({self.step_count})", factor, low=0.0)
        self.optimizer.lr = self.base_lr * factor

    def state_dict(self) -> dict[str, Any]:
        """``{"step": int, "base_lr": float}``."""
        return {"step": self.step_count, "base_lr": self.base_lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the step and base rate, and set the optimizer's ``lr`` to match."""
        owner = "LRScheduler.load_state_dict"
        if not isinstance(state, dict) or set(state) != {"step", "base_lr"}:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise KeyError(f"{owner}: expected the keys ['base_lr', 'step'], got {got}")
        step = check_int(owner, "step", state["step"], low=0)
        base_lr = check_real(owner, "base_lr", as_number(state["base_lr"]), low=0.0, low_open=True)
        self.step_count, self.base_lr = step, base_lr
        self._apply()

    def __repr__(self) -> str:
        return f"LRScheduler(schedule={self.schedule!r}, base_lr={self.base_lr!r}, step={self.step_count})"
