"""`minigrad train` end to end on digits: accuracy, files, resume, Ctrl-C and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad.checkpoint import load_checkpoint
from minigrad.cli import main
from minigrad.train import ConfigError, RunFolderError, TrainConfig, train

pytestmark = pytest.mark.backends("numpy")  # end-to-end runs; the array code is tested on every backend elsewhere
pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn (pip install 'minigrad[train]')")


def _records(out: Path, kind: str) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_train_on_digits_learns_and_writes_its_files(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--steps", "200", "--eval-every", "100", "--out", str(out), "--no-progress",
                 "--eval-batch-stats"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    *evaluation_lines, last = printed.splitlines()
    assert evaluation_lines[0].startswith("step 100/200: test accuracy ") and "test loss" in evaluation_lines[0]
    assert last.startswith("final test accuracy ") and str(out) in last and "metrics.jsonl" in last
    config = json.loads((out / "config.json").read_text())
    assert config["norm"] == "brn" and config["dataset"] == "digits" and config["steps"] == 200
    steps = _records(out, "train")
    assert [r["step"] for r in steps] == list(range(1, 201))
    assert np.mean([r["loss"] for r in steps[-20:]]) < 0.5 * np.mean([r["loss"] for r in steps[:20]])
    evaluations = _records(out, "eval")
    assert [e["step"] for e in evaluations] == [100, 200]
    assert evaluations[-1]["test_accuracy"] > 0.9
    assert 0 <= evaluations[-1]["test_accuracy_batch_stats"] <= 1
    assert set(next(iter(evaluations[-1]["renorm"].values()))) >= {"r_clipped_fraction", "d_clipped_fraction"}
    state = load_checkpoint(out / "checkpoint.npz")
    assert state["step"] == 200


def _config(out: Path, **overrides) -> TrainConfig:
    settings = dict(steps=24, eval_every=8, out=str(out), progress=False, ema=0.9)
    settings.update(overrides)
    return TrainConfig(**settings)


def test_resumed_run_continues_exactly_as_the_uninterrupted_one(tmp_path):
    whole = train(_config(tmp_path / "whole"), log=None)
    first = train(_config(tmp_path / "pieces"), log=None, stop_at=12)
    assert first.interrupted and first.step == 12
    second = train(_config(tmp_path / "pieces", resume=True), log=None)
    assert second.step == 24 and not second.interrupted
    assert _records(tmp_path / "whole", "train") == [
        {**r, "images_per_sec": w["images_per_sec"]}
        for r, w in zip(_records(tmp_path / "pieces", "train"), _records(tmp_path / "whole", "train"))
    ]
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.npz")
    b = load_checkpoint(tmp_path / "pieces" / "checkpoint.npz")
    for name, value in a["model"].items():
        np.testing.assert_array_equal(value, b["model"][name], err_msg=name)
    assert whole.test_accuracy == second.test_accuracy


def test_resume_with_another_model_is_refused_and_leaves_results_untouched(tmp_path):
    out = tmp_path / "run"
    train(_config(out, steps=8), log=None)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ConfigError, match="different run: norm \\(checkpoint 'brn', now 'bn'\\)"):
        train(_config(out, steps=16, norm="bn", resume=True), log=None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_an_existing_run_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    train(_config(out, steps=8), log=None)
    with pytest.raises(RunFolderError, match="already holds a run.*--resume"):
        train(_config(out, steps=8), log=None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sampler": "noniid", "examples_per_label": 3}, "multiple of 3, got 32"),
        ({"virtual_batch_size": 5}, "virtual_batch_size: expected a positive divisor of batch_size=32, got 5"),
        ({"sampler": "halfsplit", "virtual_batch_size": 8}, "needs virtual_batch_size=16"),
        ({"norm": "group"}, "norm: expected one of bn, brn, none, got 'group'"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train(_config(tmp_path / "run", **overrides), log=None)
    assert not (tmp_path / "run").exists()


def test_missing_cifar_path_says_how_to_get_the_data(tmp_path, capsys):
    code = main(["train", "--dataset", "cifar10", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and ("download" in err.lower())
    assert not (tmp_path / "r").exists()


def test_unknown_option_value_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--sampler", "random"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'random'" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT and SIGTERM delivery differ on Windows")
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_save_a_checkpoint_and_exit_cleanly(tmp_path, signum, status):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "minigrad", "train", "--steps", "100000", "--eval-every", "100000",
               "--out", str(out), "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        metrics = out / "metrics.jsonl"
        while time.monotonic() < deadline and not (metrics.exists() and metrics.stat().st_size > 0):
            time.sleep(0.2)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == status, stderr
    name = signal.Signals(signum).name
    assert f"interrupted by {name} at step" in stdout and f"--resume --out {out}" in stdout
    assert str(out / "checkpoint.npz") in stdout.splitlines()[-1]
    state = load_checkpoint(out / "checkpoint.npz")
    assert state["step"] >= 1
    assert mg.backend.active_backend() == "numpy"


@pytest.mark.slow
def test_readme_bn_vs_brn(tmp_path, capsys):
    """README's first screen: the single-label commands print the numbers shown, BatchNorm clearly below Batch Renorm."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("<!-- bn-vs-brn:", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = block.strip().splitlines()
    commands = [line.split() for line in lines if line.startswith("python -m minigrad train")]
    assert [c[-1] for c in commands] == ["bn", "brn"]
    shown = {0: [float(line.split()[4]) for line in lines if line.startswith("# final test accuracy")]}
    (seeds,) = [line for line in lines if line.startswith("# the same two commands with --seed")]
    for part in seeds.split(";"):  # "... --seed 1: bn 0.8778, brn 0.9611"
        seed, numbers = part.split("--seed ")[1].split(":")
        shown[int(seed)] = [float(n.split()[1]) for n in numbers.split(",")]
    assert sorted(shown) == [0, 1, 2] and all(len(pair) == 2 for pair in shown.values())
    for seed, expected in shown.items():
        accuracies = []
        for command in commands:
            out = tmp_path / f"{command[-1]}-{seed}"
            assert main([*command[3:], "--seed", str(seed), "--no-progress", "--out", str(out)]) == 0
            last = capsys.readouterr().out.strip().splitlines()[-1]
            accuracies.append(float(last.split()[3]))
        assert accuracies == pytest.approx(expected, abs=0.02), seed  # the numbers shown come from these commands
        bn, brn = accuracies
        assert brn - bn > 0.05 and brn > 0.95, seed


# ----------------------------------------------------------------------------
# Batch Renorm's schedule settings
# ----------------------------------------------------------------------------


def _renorm_layers(config: TrainConfig) -> list:
    from minigrad.train import build_model

    model = build_model(config.resolved(), in_channels=1, num_classes=10)
    layers = [m for m in model.modules() if isinstance(m, (mg.nn.BatchRenorm1d, mg.nn.BatchRenorm2d))]
    assert layers
    return layers


def test_the_model_follows_the_default_rule_with_the_run_norm_momentum():
    from minigrad.norm.schedule import DEFAULT_WARMUP_RULE

    config = TrainConfig(steps=1000, norm_momentum=0.1)
    resolved = config.resolved()
    assert (resolved.renorm_warmup_rule, resolved.r_max_final, resolved.d_max_final) == (DEFAULT_WARMUP_RULE, 3.0, 5.0)
    expected = mg.nn.renorm_schedule_for_run(1000, momentum=0.1, rule=DEFAULT_WARMUP_RULE)
    assert expected.warmup_steps == 50  # 5 / Δ: longer than the proportional 38
    for layer in _renorm_layers(config):
        for step in (0, 49, 50, 51, 120, 204, 320, 999):
            assert layer.limits(step) == (expected.r_max(step), expected.d_max(step)), step


def test_the_schedule_settings_reach_every_layer():
    config = TrainConfig(steps=100, renorm_warmup=10, renorm_ramp=35, r_max_final=2.0, d_max_final=1.0)
    for layer in _renorm_layers(config):
        assert layer.limits(10) == (1.0, 0.0)
        assert layer.limits(45) == (2.0, 1.0) and layer.limits(30)[1] == 1.0  # d_max's ramp: 20 of r_max's 35
        assert layer.limits(20) == pytest.approx((1 + 10 / 35, 0.5))
    proportional = TrainConfig(steps=1000, norm_momentum=0.1, renorm_warmup_rule="proportional")
    for layer in _renorm_layers(proportional):
        assert layer.limits(38) == (1.0, 0.0) and layer.limits(39) > (1.0, 0.0)  # the paper's 5k of 130k, shrunk
    fixed_r = TrainConfig(steps=100, r_max=1.5, renorm_warmup=10, renorm_ramp=0, d_max_final=2.0)
    for layer in _renorm_layers(fixed_r):
        assert layer.limits(5) == (1.5, 0.0) and layer.limits(10) == (1.5, 2.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"norm": "bn", "renorm_warmup": 5}, r"renorm_warmup: the r_max/d_max schedule is Batch Renorm's.*norm='bn'"),
        ({"norm": "none", "renorm_warmup_rule": "proportional"}, r"renorm_warmup_rule: .* norm='none'"),
        ({"renorm_warmup": -1}, r"renorm_warmup: expected an integer >= 0, got -1"),
        ({"renorm_ramp": -1}, r"renorm_ramp: expected an integer >= 0, got -1"),
        ({"renorm_ramp": True}, r"renorm_ramp: expected an integer >= 0, got True"),
        ({"r_max_final": 0.9}, r"r_max_final: expected a finite number >= 1, got 0.9"),
        ({"r_max_final": float("nan")}, r"r_max_final: expected a finite number >= 1, got nan"),
        ({"d_max_final": -0.5}, r"d_max_final: expected a finite number >= 0, got -0.5"),
        ({"d_max_final": float("inf")}, r"d_max_final: expected a finite number >= 0, got inf"),
        ({"renorm_warmup_rule": "half"}, r"renorm_warmup_rule: expected one of proportional, time-constants"),
        ({"d_max": 1.0, "d_max_final": 2.0}, r"d_max_final: a fixed d_max=1.0 replaces d_max's schedule"),
        ({"r_max": 2.0, "d_max": 1.0, "renorm_warmup": 3}, r"renorm_warmup: fixed r_max=2.0 and d_max=1.0"),
        ({"renorm_warmup": 3, "renorm_warmup_rule": "time-constants"}, r"renorm_warmup_rule: the rule derives"),
    ],
)
def test_schedule_settings_that_cannot_work_are_refused_by_name(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train(_config(tmp_path / "run", **overrides), log=None)
    assert not (tmp_path / "run").exists()


def test_resolving_twice_changes_nothing_and_bn_runs_record_no_schedule():
    once = TrainConfig(renorm_ramp=7).resolved()
    assert once.resolved() == once
    bn = TrainConfig(norm="bn").resolved()
    assert [getattr(bn, name) for name in ("renorm_warmup", "renorm_ramp", "r_max_final", "d_max_final",
                                           "renorm_warmup_rule")] == [None] * 5  # fmt: skip


def test_a_checkpoint_from_before_the_schedule_settings_resumes_as_the_proportional_rule(tmp_path):
    """Older checkpoints record no schedule settings: they ran the proportional rule, so resuming asks to allow it."""
    from minigrad.checkpoint import save_checkpoint

    out = tmp_path / "run"
    train(_config(out, steps=8, ema=None, eval_every=4), log=None, stop_at=4)
    state = load_checkpoint(out / "checkpoint.npz")
    saved = json.loads(state["config"])
    for name in ("renorm_warmup", "renorm_ramp", "r_max_final", "d_max_final", "renorm_warmup_rule"):
        del saved[name]
    state["config"] = json.dumps(saved)
    save_checkpoint(out / "checkpoint.npz", state)
    with pytest.raises(ConfigError, match=r"renorm_warmup_rule \(checkpoint 'proportional', now 'time-constants'\)"):
        train(_config(out, steps=8, ema=None, eval_every=4, resume=True), log=None)
    old = _config(out, steps=8, ema=None, eval_every=4, resume=True, renorm_warmup_rule="proportional")
    assert train(old, log=None).step == 8  # the same schedule as before: nothing changed
