"""A fuzz test of both commands: hypothesis draws values for every numeric flag (0, negatives, NaN, infinities,
huge numbers, non-numbers) and conflicting choices. Each draw must end in one of two ways: a run that finishes,
or a non-zero exit with a one-line message on stderr and no traceback.

The command runs in-process (:func:`minigrad.cli.main`); a valid draw trains 2 steps and stops as Ctrl-C
would (exit status 130), so that a huge --steps costs no more than a small one.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import minigrad.cli as cli
import minigrad.reproduce as reproduce_module
from minigrad.train import train

pytestmark = pytest.mark.backends("numpy")
pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn (pip install 'minigrad[train]')")

HOSTILE = ["0", "-1", "-0.0", "nan", "inf", "-inf", "1e308", "1e999", str(2**70), "-" + str(2**70), "abc", "", "0x10"]
PLAUSIBLE = ["1", "2", "4", "0.5", "0.9", "0.99", "3", "16", "32", "1e-3"]
values = st.one_of(
    st.sampled_from(HOSTILE + PLAUSIBLE),
    st.integers(min_value=-(2**66), max_value=2**66).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)

TRAIN_NUMERIC = ("--train-subset", "--virtual-batch-size", "--r-max", "--d-max", "--norm-momentum", "--batch-size",
                 "--renorm-warmup", "--renorm-ramp", "--r-max-final", "--d-max-final",
                 "--examples-per-label", "--lr", "--momentum", "--weight-decay", "--warmup-steps", "--steps", "--ema",
                 "--eval-every", "--seed", "--threads")  # fmt: skip
TRAIN_CHOICES = {
    "--norm": ["bn", "brn", "none"],
    "--optimizer": ["sgd", "rmsprop", "adam"],
    "--sampler": ["iid", "noniid", "halfsplit"],
    "--lr-schedule": ["constant", "cosine", "step"],
    "--renorm-warmup-rule": ["proportional", "time-constants", "linear"],  # the last one is refused
}
TRAIN_SWITCHES = ("--download", "--resume", "--sync-bn", "--eval-batch-stats", "--allow-changed")
REPRODUCE_NUMERIC = ("--train-subset", "--seeds", "--seed", "--labels-per-batch", "--steps", "--eval-every",
                     "--batch-size", "--lr", "--norm-momentum", "--ema", "--train-eval-examples", "--threads")  # fmt: skip


def _train_stopping_early(config, *args, **kwargs):
    kwargs.setdefault("stop_at", 2)
    return train(config, *args, **kwargs)


def _check(argv: list[str], status: int, err: str) -> None:
    event(f"exit status {status}")  # pytest --hypothesis-show-statistics: how many draws trained
    if status in (0, 130):  # finished (or stopped by the test after 2 steps, checkpoint saved)
        return
    lines = err.strip().splitlines()
    assert status != 0 and len(lines) == 1, (argv, status, err)
    line = lines[0]
    assert "Traceback" not in err and "internal error" not in line, (argv, line)
    assert line.startswith("minigrad ") and ": error: " in line, (argv, line)
    assert "--" in line or "training diverged" in line, (argv, line)  # it names a flag


def _invoke(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = cli.main(argv)
        except SystemExit as exit_info:
            status = exit_info.code
    return status, err.getvalue()


@settings(max_examples=30)
@given(
    numeric=st.dictionaries(st.sampled_from(TRAIN_NUMERIC), values, max_size=4),
    choices=st.dictionaries(st.sampled_from(sorted(TRAIN_CHOICES)), st.integers(0, 2), max_size=3),
    switches=st.sets(st.sampled_from(TRAIN_SWITCHES), max_size=2),
)
def test_train_fuzzed_flags_give_a_run_or_one_line(numeric, choices, switches):
    with tempfile.TemporaryDirectory() as folder, mock.patch.object(cli, "train", _train_stopping_early):
        argv = ["train", "--no-progress", "--out", str(Path(folder) / "run")]
        for flag, value in numeric.items():
            argv.append(f"{flag}={value}")  # "=" so that "-1" is a value, not an option
        for flag, index in choices.items():
            argv += [flag, TRAIN_CHOICES[flag][index]]
        argv += sorted(switches)
        status, err = _invoke(argv)
        _check(argv, status, err)


@settings(max_examples=20)
@given(
    numeric=st.dictionaries(st.sampled_from(REPRODUCE_NUMERIC), values, max_size=4),
    arms=st.sampled_from(["bn-iid", "brn-micro", "bn-noniid1", "bn-halfsplit", "nope", ","]),
    quick=st.booleans(),
)
def test_reproduce_fuzzed_flags_give_a_run_or_one_line(numeric, arms, quick):
    stub = mock.patch.object(reproduce_module, "train", _train_stopping_early)
    with tempfile.TemporaryDirectory() as folder, stub:
        argv = ["reproduce", "--no-progress", "--arms", arms, "--out", str(Path(folder) / "study")]
        argv += ["--quick"] if quick else []
        for flag, value in numeric.items():
            argv.append(f"{flag}={value}")
        status, err = _invoke(argv)
        _check(argv, status, err)
