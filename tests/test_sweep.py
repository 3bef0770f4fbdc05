"""The schedule of a run (warm-up rules, explicit ramps and limits) and ``minigrad reproduce --vary``."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad.norm import schedule as S

pytestmark = pytest.mark.backends("numpy")  # schedules and end-to-end runs; no array code of their own

# ----------------------------------------------------------------------------
# The schedule of a run: renorm_schedule_for_run
# ----------------------------------------------------------------------------


def test_the_default_rule_is_one_constant_and_keeps_the_warmup_five_time_constants_long():
    assert S.DEFAULT_WARMUP_RULE == "time-constants" and S.DEFAULT_WARMUP_RULE in S.WARMUP_RULES
    assert mg.nn.renorm_schedule_for_run is S.renorm_schedule_for_run
    default = S.renorm_schedule_for_run(1000, momentum=0.1)
    assert default == S.renorm_schedule_for_run(1000, momentum=0.1, rule="time-constants")
    assert (default.warmup_steps, default.d_max_ramp_end, default.r_max_ramp_end) == (50, 204, 320)


def test_proportional_rule_is_the_paper_recipe_shrunk():
    for total in (300, 1000, 13_000, 130_000):
        assert S.renorm_schedule_for_run(total, 0.01, "proportional") == mg.nn.renorm_schedule().scaled(total)
    short = S.renorm_schedule_for_run(13_000, rule="proportional")  # no rate needed
    assert (short.warmup_steps, short.d_max_ramp_end, short.r_max_ramp_end) == (500, 2500, 4000)


@given(
    total=st.integers(1, 200_000),
    rate=st.floats(1e-4, 1.0),
    r_final=st.floats(1.0, 10.0),
    d_final=st.floats(0.0, 10.0),
)
def test_time_constants_rule_waits_five_time_constants_or_the_whole_run(total, rate, r_final, d_final):
    schedule = S.renorm_schedule_for_run(total, rate, "time-constants", r_max_final=r_final, d_max_final=d_final)
    proportional = S.renorm_schedule_for_run(total, rate, "proportional", r_max_final=r_final, d_max_final=d_final)
    assert schedule.warmup_steps == min(total, max(proportional.warmup_steps, math.ceil(5 / rate)))
    assert schedule.warmup_steps >= proportional.warmup_steps
    assert (1 - rate) ** schedule.warmup_steps < 0.01 or schedule.warmup_steps == total  # e^-5 of (0, 1) left
    for step in (0, schedule.warmup_steps):
        assert (schedule.r_max(step), schedule.d_max(step)) == (1.0, 0.0)
    assert (schedule.r_max(10**9), schedule.d_max(10**9)) == (r_final, d_final)
    if schedule.warmup_steps > proportional.warmup_steps:  # lengthened: the ramps start later and end by the end
        assert schedule.r_max_ramp_end <= total and schedule.d_max_ramp_end <= total


@given(
    total=st.integers(1, 100_000),
    rate=st.floats(1e-3, 1.0),
    rule=st.sampled_from(S.WARMUP_RULES),
    warmup=st.none() | st.integers(0, 10_000),
    ramp=st.none() | st.integers(0, 50_000),
    r_final=st.floats(1.0, 10.0),
    d_final=st.floats(0.0, 10.0),
)
def test_explicit_warmup_and_ramp_are_taken_as_given(total, rate, rule, warmup, ramp, r_final, d_final):
    schedule = S.renorm_schedule_for_run(total, rate, rule, warmup, ramp, r_final, d_final)
    derived = S.renorm_schedule_for_run(total, rate, rule, r_max_final=r_final, d_max_final=d_final)
    start = derived.warmup_steps if warmup is None else warmup
    assert schedule.warmup_steps == start
    assert (schedule.r_max_final, schedule.d_max_final) == (r_final, d_final)
    if ramp is not None:  # d_max's ramp keeps the paper's proportion: 20k steps for r_max's 35k
        assert schedule.r_max_ramp_end == start + ramp
        assert schedule.d_max_ramp_end == start + round(ramp * 20 / 35)
    elif warmup is None:
        assert schedule == derived
    else:  # the scaled ramp lengths, after the given warm-up
        assert schedule.r_max_ramp_end - start == round(35_000 * total / 130_000)
        assert schedule.d_max_ramp_end - start == round(20_000 * total / 130_000)
    for step in range(max(0, start - 2), start + 1):
        assert (schedule.r_max(step), schedule.d_max(step)) == (1.0, 0.0)
    assert schedule.r_max(schedule.r_max_ramp_end) == r_final and schedule.d_max(schedule.d_max_ramp_end) == d_final


def test_a_ramp_of_zero_jumps_to_the_final_limits_when_the_warmup_ends():
    schedule = S.renorm_schedule_for_run(100, 0.1, warmup=10, ramp=0, r_max_final=2.0, d_max_final=0.5)
    assert [schedule.r_max(s) for s in (9, 10, 11)] == [1.0, 2.0, 2.0]
    assert [schedule.d_max(s) for s in (9, 10, 11)] == [0.0, 0.5, 0.5]
    halfway = S.renorm_schedule_for_run(1000, 0.1, warmup=100, ramp=70)  # r_max 1 -> 3 over 70 steps, d_max over 40
    assert halfway.r_max(135) == pytest.approx(2.0) and halfway.d_max(120) == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"total_steps": 0}, r"total_steps: expected a positive integer, got 0"),
        ({"rule": "linear"}, r"rule: expected one of proportional, time-constants, got 'linear'"),
        ({"warmup": -1}, r"warmup: expected a non-negative integer, got -1"),
        ({"warmup": 2.5}, r"warmup: expected a non-negative integer, got 2.5"),
        ({"ramp": -3}, r"ramp: expected a non-negative integer, got -3"),
        ({"r_max_final": 0.5}, r"r_max_final: expected a finite number >= 1, got 0.5"),
        ({"r_max_final": float("nan")}, r"r_max_final: expected a finite number >= 1, got nan"),
        ({"d_max_final": -1.0}, r"d_max_final: expected a finite number >= 0, got -1.0"),
        ({"d_max_final": float("inf")}, r"d_max_final: expected a finite number >= 0, got inf"),
        ({"momentum": None}, r"momentum: the time-constants rule .* needs the update rate Δ"),
        ({"momentum": 1.5}, r"momentum: expected a number in \[0, 1\] .*got 1.5"),
        ({"momentum": float("nan")}, r"momentum: expected a number in \[0, 1\]"),
    ],
)
def test_schedule_for_run_refuses_nonsense_naming_the_argument(kwargs, message):
    arguments = {"total_steps": 100, "momentum": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        S.renorm_schedule_for_run(**arguments)
