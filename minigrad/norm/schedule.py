"""The r_max / d_max schedule of section 4: plain batchnorm for a warm-up, then a linear ramp to the final limits.

The paper found the warm-up and the slow ramp important early in training;
a layer takes the two halves of a schedule as its limits::

    r, d = renorm_schedule_for_run(total_steps=10_000, momentum=0.01)
    layer = mg.nn.BatchRenorm2d(16, r_max=r, d_max=d)

A shorter run than the paper's 130k steps needs the schedule shrunk, and two
rules do it (:data:`WARMUP_RULES`): ``"proportional"`` multiplies every step
count by total_steps / 130k; ``"time-constants"`` (:data:`DEFAULT_WARMUP_RULE`)
also keeps the warm-up at least 5 time constants 1/Δ of the moving averages
long (see :meth:`RenormSchedule.scaled`). :func:`renorm_schedule_for_run`
applies a rule and any explicit warm-up, ramp and final limits; ``minigrad
train`` and ``minigrad reproduce`` build their schedules with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import ClassVar

from minigrad import validate

WARMUP_TIME_CONSTANTS = 5.0  # warm-up of at least this many 1/Δ when the rate Δ is known (see scaled)
PAPER_TOTAL_STEPS = 130_000  # the length of the paper's Inception-v3 runs (section 4.1)
PAPER_WARMUP_STEPS = 5000  # r_max = 1, d_max = 0 for the first 5k steps
PAPER_R_MAX_FINAL, PAPER_R_MAX_RAMP_END = 3.0, 40_000  # then r_max rises to 3 at 40k (a ramp of 35k steps)
PAPER_D_MAX_FINAL, PAPER_D_MAX_RAMP_END = 5.0, 25_000  # and d_max to 5 at 25k (a ramp of 20k steps)
# d_max's ramp is this fraction of r_max's (20k / 35k) when a ramp length is given
D_RAMP_FRACTION = (PAPER_D_MAX_RAMP_END - PAPER_WARMUP_STEPS) / (PAPER_R_MAX_RAMP_END - PAPER_WARMUP_STEPS)

# How a schedule is shrunk to a run's length: "proportional" scales every step count by total / 130k (the paper's
# recipe, shrunk); "time-constants" also keeps the warm-up at least WARMUP_TIME_CONSTANTS / Δ steps long.
WARMUP_RULES = ("proportional", "time-constants")
DEFAULT_WARMUP_RULE = "time-constants"  # the one default of minigrad train, minigrad reproduce and the tutorials


# ----------------------------------------------------------------------------
# The r_max / d_max schedule of section 4
# ----------------------------------------------------------------------------


def _check_step(step: object) -> int:
    return validate.non_negative_int("step", step)


def _ramp(step: int, start: float, final: float, begin: int, end: int) -> float:
    """`start` until `begin`, then linear to `final` at `end`, then `final` for ever (a jump if begin = end)."""
    if step >= end:
        return float(final)
    if step <= begin:
        return float(start)
    return float(start + (final - start) * (step - begin) / (end - begin))


@dataclass(frozen=True)
class RenormSchedule:
    """The paper's correction limits as functions of the training step (section 4).

    r_max = 1 and d_max = 0 (plain batchnorm) for the first `warmup_steps`
    steps, then each rises linearly, r_max to `r_max_final` at step
    `r_max_ramp_end` and d_max to `d_max_final` at `d_max_ramp_end`, and stays
    there. The defaults are the paper's: warm-up 5000, r_max = 3 at 40k and
    d_max = 5 at 25k, for runs of 130k steps.

    Use the two methods as the layer's limits (the object also unpacks into
    the pair): ``r, d = schedule; BatchRenorm2d(c, r_max=r, d_max=d)``.
    """

    warmup_steps: int = PAPER_WARMUP_STEPS
    r_max_final: float = PAPER_R_MAX_FINAL
    r_max_ramp_end: int = PAPER_R_MAX_RAMP_END
    d_max_final: float = PAPER_D_MAX_FINAL
    d_max_ramp_end: int = PAPER_D_MAX_RAMP_END
    reference_steps: ClassVar[int] = PAPER_TOTAL_STEPS

    def __post_init__(self) -> None:
        validate.non_negative_int("warmup_steps", self.warmup_steps)
        validate.number_at_least("r_max", self.r_max_final, 1.0, finite=True)
        validate.number_at_least("d_max", self.d_max_final, 0.0, finite=True)
        for name, end in (("r_max_ramp_end", self.r_max_ramp_end), ("d_max_ramp_end", self.d_max_ramp_end)):
            if not validate.is_integer(end) or end < self.warmup_steps:
                raise ValueError(f"{name}: expected an integer >= warmup_steps ({self.warmup_steps}), got {end!r}")

    def r_max(self, step: int) -> float:
        """The limit r_max at training step `step` (0 for the first training forward)."""
        return _ramp(_check_step(step), 1.0, self.r_max_final, self.warmup_steps, self.r_max_ramp_end)

    def d_max(self, step: int) -> float:
        """The limit d_max at training step `step`."""
        return _ramp(_check_step(step), 0.0, self.d_max_final, self.warmup_steps, self.d_max_ramp_end)

    def __iter__(self) -> Iterator[Callable[[int], float]]:
        return iter((self.r_max, self.d_max))

    def scaled(
        self,
        total_steps: int,
        reference_steps: int = PAPER_TOTAL_STEPS,
        *,
        momentum: float | None = None,
        time_constants: float = WARMUP_TIME_CONSTANTS,
    ) -> RenormSchedule:
        """The same schedule for a run of `total_steps` instead of `reference_steps` (the paper's 130k).

        Every step count is multiplied by total_steps / reference_steps and
        rounded: the paper's recipe scaled to 13k steps warms up for 500 steps
        and reaches d_max = 5 at 2500 and r_max = 3 at 4000.

        With `momentum` (the update rate Δ of the moving averages), the
        warm-up also lasts at least `time_constants` / Δ steps. The averages
        forget their initial values (μ = 0, σ = 1) as (1 − Δ)^n ≈ e^(−nΔ), so
        r and d, which correct towards them, are meaningful only after a few
        time constants 1/Δ; the paper's 5000-step warm-up is 50 of them at
        Δ = 0.01, while the plain proportional scaling to 300 steps leaves 12
        steps, a tenth of one. The default 5 leaves e^(−5) < 1% of the
        initial values. The ramps keep their scaled lengths and start after
        the warm-up, and a lengthened schedule ends by `total_steps`. This is
        the ``"time-constants"`` rule of :func:`renorm_schedule_for_run`
        (minigrad's default, :data:`DEFAULT_WARMUP_RULE`); without `momentum`
        it is the ``"proportional"`` rule. Tutorial 03 shows the rule at work.
        """
        validate.positive_int("total_steps", total_steps)
        validate.positive_int("reference_steps", reference_steps)
        factor = total_steps / reference_steps
        scaled_warmup = round(self.warmup_steps * factor)
        warmup = scaled_warmup
        if momentum is not None:
            rate = validate.fraction("momentum", momentum, why="the update rate Δ of the moving averages")
            validate.positive_number("time_constants", time_constants)
            if rate > 0:
                warmup = min(total_steps, max(warmup, math.ceil(time_constants / rate)))
        later = warmup - scaled_warmup  # the ramps start that much later, at their scaled lengths

        def ramp_end(end: int) -> int:
            shifted = round(end * factor) + later
            return max(warmup, min(total_steps, shifted) if later else shifted)

        return replace(
            self,
            warmup_steps=warmup,
            r_max_ramp_end=ramp_end(self.r_max_ramp_end),
            d_max_ramp_end=ramp_end(self.d_max_ramp_end),
        )


def renorm_schedule(
    warmup_steps: int = PAPER_WARMUP_STEPS,
    r_max: float = PAPER_R_MAX_FINAL,
    r_max_ramp_end: int = PAPER_R_MAX_RAMP_END,
    d_max: float = PAPER_D_MAX_FINAL,
    d_max_ramp_end: int = PAPER_D_MAX_RAMP_END,
) -> RenormSchedule:
    """The paper's r_max / d_max schedule (section 4); the defaults are its values for 130k-step runs.

    Returns a :class:`RenormSchedule` with ``.r_max(step)`` and ``.d_max(step)``,
    which unpacks into that pair of callables, and ``.scaled(total_steps)`` for
    shorter runs::

        r, d = mg.nn.renorm_schedule().scaled(total_steps=10_000, momentum=0.01)
        layer = mg.nn.BatchRenorm2d(16, r_max=r, d_max=d)

    ``scaled(total_steps)`` alone shrinks every step count proportionally (the
    ``"proportional"`` rule); with ``momentum=Δ`` the warm-up also lasts at
    least 5/Δ steps, so that the moving averages have forgotten their initial
    values before r and d correct towards them (the ``"time-constants"``
    rule, minigrad's default). :func:`renorm_schedule_for_run` picks the rule by
    name and takes explicit lengths and limits.
    """
    return RenormSchedule(
        warmup_steps=warmup_steps,
        r_max_final=r_max,
        r_max_ramp_end=r_max_ramp_end,
        d_max_final=d_max,
        d_max_ramp_end=d_max_ramp_end,
    )


def renorm_schedule_for_run(
    total_steps: int,
    momentum: float | None = None,
    rule: str = DEFAULT_WARMUP_RULE,
    warmup: int | None = None,
    ramp: int | None = None,
    r_max_final: float = PAPER_R_MAX_FINAL,
    d_max_final: float = PAPER_D_MAX_FINAL,
) -> RenormSchedule:
    """The r_max / d_max schedule of a run of `total_steps` steps, from the paper's by `rule`, with any explicit part.

    * `rule` derives the warm-up (r_max = 1, d_max = 0) from the run's length:
      ``"proportional"`` is the paper's 5k steps x total_steps / 130k;
      ``"time-constants"`` (the default) is at least 5/Δ steps as well, with Δ
      = `momentum` the update rate of the moving averages
      (:meth:`RenormSchedule.scaled` with `momentum`).
    * `warmup`, when given, is the warm-up's length in steps instead.
    * `ramp`, when given, is the number of steps from the end of the warm-up
      until r_max reaches `r_max_final`; d_max reaches `d_max_final` after
      round(ramp x 20/35) steps (the paper's ramps are 35k and 20k steps).
      Otherwise both ramps keep the lengths the rule gives them (scaled).

    Explicit lengths are taken as given, even beyond `total_steps`; a 0 ramp
    jumps to the final limit when the warm-up ends.
    """
    validate.positive_int("total_steps", total_steps)
    if rule not in WARMUP_RULES:
        raise ValueError(f"rule: expected one of {', '.join(WARMUP_RULES)}, got {rule!r}")
    if warmup is not None:
        validate.non_negative_int("warmup", warmup)
    if ramp is not None:
        validate.non_negative_int("ramp", ramp)
    r_max_final = validate.number_at_least("r_max_final", r_max_final, 1.0, finite=True)
    d_max_final = validate.number_at_least("d_max_final", d_max_final, 0.0, finite=True)
    if rule == "time-constants":
        if momentum is None:
            raise ValueError(
                "momentum: the time-constants rule keeps the warm-up 5/Δ steps long, so it needs the update rate Δ "
                "of the moving averages; pass momentum=Δ, or rule='proportional'"
            )
        validate.fraction("momentum", momentum, why="the update rate Δ of the moving averages")
    paper = renorm_schedule(r_max=r_max_final, d_max=d_max_final)
    derived = paper.scaled(total_steps, momentum=momentum if rule == "time-constants" else None)
    if warmup is None and ramp is None:
        return derived
    start = derived.warmup_steps if warmup is None else int(warmup)
    if ramp is None:  # the lengths the rule gives the ramps
        r_ramp, d_ramp = derived.r_max_ramp_end - derived.warmup_steps, derived.d_max_ramp_end - derived.warmup_steps
        if warmup is not None:  # scaled, not cut short by the end of the run as a lengthened warm-up's are
            factor = total_steps / PAPER_TOTAL_STEPS
            r_ramp = round((PAPER_R_MAX_RAMP_END - PAPER_WARMUP_STEPS) * factor)
            d_ramp = round((PAPER_D_MAX_RAMP_END - PAPER_WARMUP_STEPS) * factor)
    else:
        r_ramp, d_ramp = int(ramp), round(ramp * D_RAMP_FRACTION)
    return RenormSchedule(
        warmup_steps=start,
        r_max_final=r_max_final,
        r_max_ramp_end=start + r_ramp,
        d_max_final=d_max_final,
        d_max_ramp_end=start + d_ramp,
    )
