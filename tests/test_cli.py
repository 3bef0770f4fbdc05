"""`minigrad train` and `minigrad reproduce` against hostile input: every failure is one line naming the flag.

Each test calls the command in-process through :func:`minigrad.cli.main` and
checks three things: the exit status, the one line on stderr (it names the
flag, and there is no traceback), and that nothing the user had was changed.
docs/reliability.md lists these cases beside the tests that prove them.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from minigrad import checkpoint as checkpoint_module
from minigrad.checkpoint import load_checkpoint, save_checkpoint
from minigrad.cli import build_parser, main

pytestmark = pytest.mark.backends("numpy")  # end-to-end runs; the array code is tested on every backend elsewhere
pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn (pip install 'minigrad[train]')")

FAST = ["--steps", "4", "--eval-every", "2", "--no-progress"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``minigrad ARGV``, with argparse's SystemExit turned into a status."""
    try:
        status = main(list(argv))
    except SystemExit as exit_info:
        status = exit_info.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line_error(err: str, *needles: str) -> str:
    """The single line of `err`, checked to be an error message holding every needle (and no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    (line,) = lines
    assert line.startswith("minigrad ") and ": error: " in line, line
    assert "Traceback" not in err and "internal error" not in line, line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def finished_run(tmp_path, capsys) -> Path:
    """A finished 4-step run (checkpoint at step 4)."""
    out = tmp_path / "run"
    assert main(["train", *FAST, "--out", str(out)]) == 0
    capsys.readouterr()
    return out


# ----------------------------------------------------------------------------
# The run folder
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["metrics.jsonl", "config.json", "notes.txt"])
def test_a_fresh_run_refuses_a_folder_with_files_it_did_not_write(tmp_path, capsys, name):
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_text("the user's own data\n")
    status, _, err = run(capsys, "train", *FAST, "--out", str(out))
    assert status == 2
    one_line_error(err, "--out", name, "--resume", "another --out")
    assert snapshot(out) == {name: b"the user's own data\n"}


def test_a_fresh_run_refuses_a_folder_holding_a_run(finished_run, capsys):
    before = snapshot(finished_run)
    status, _, err = run(capsys, "train", *FAST, "--out", str(finished_run))
    assert status == 2
    one_line_error(err, "--out", "already holds a run", "--resume")
    assert snapshot(finished_run) == before


def test_out_naming_a_file_is_a_clear_error(tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("keep")
    for extra in ([], ["--resume"]):
        status, _, err = run(capsys, "train", *FAST, "--out", str(target), *extra)
        assert status == 2
        one_line_error(err, "--out", "is a file, not a folder")
    assert target.read_text() == "keep"


def test_a_run_stopped_before_its_first_checkpoint_can_be_started_again(tmp_path, capsys):
    """Its own config.json and metrics.jsonl (no checkpoint): the same command starts it again (reproduce needs it)."""
    out = tmp_path / "run"
    assert main(["train", *FAST, "--out", str(out)]) == 0
    (out / "checkpoint.npz").unlink()  # as if killed before the first evaluation
    assert main(["train", *FAST, "--out", str(out)]) == 0
    assert load_checkpoint(out / "checkpoint.npz")["step"] == 4
    (out / "checkpoint.npz").unlink()
    status, _, err = run(capsys, "train", *FAST, "--lr", "0.01", "--out", str(out))  # another run: refused
    assert status == 2
    one_line_error(err, "--out", "did not write")


def test_orphan_temporary_files_are_removed_and_nothing_else(tmp_path, capsys):
    out = _stopped_run(tmp_path / "run", steps=4, at=2)
    orphans = [".checkpoint.npz.a1b2c3d4.tmp", ".metrics.jsonl.zz_9YY8x.tmp", ".config.json.00000000.tmp"]
    kept = [".checkpoint.npz.mine.tmp", "checkpoint.npz.a1b2c3d4.tmp", ".checkpoint.npz.a1b2c3d4.tmp.bak"]
    for name in orphans + kept:
        (out / name).write_bytes(b"left by a kill")
    assert main(["train", *FAST, "--out", str(out), "--resume"]) == 0
    names = {p.name for p in out.iterdir()}
    assert not names & set(orphans)
    assert set(kept) <= names


# ----------------------------------------------------------------------------
# Resume
# ----------------------------------------------------------------------------


def test_resume_without_out_says_out_is_needed(capsys):
    status, _, err = run(capsys, "train", *FAST, "--resume")
    assert status == 2
    one_line_error(err, "--out", "needs that folder")
    assert not Path("runs").exists() or not any(Path("runs").glob("digits-brn-iid-*/checkpoint.npz"))


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--lr", "0.1"], "lr (checkpoint 0.05, now 0.1)"),
        (["--momentum", "0.5"], "momentum (checkpoint 0.9, now 0.5)"),
        (["--weight-decay", "0"], "weight_decay"),
        (["--lr-schedule", "constant"], "lr_schedule"),
        (["--warmup-steps", "2"], "warmup_steps"),
        (["--r-max", "2"], "r_max (checkpoint None, now 2.0)"),
        (["--d-max", "1"], "d_max"),
        (["--renorm-warmup", "3"], "renorm_warmup (checkpoint None, now 3)"),
        (["--renorm-ramp", "2"], "renorm_ramp (checkpoint None, now 2)"),
        (["--r-max-final", "2"], "r_max_final (checkpoint 3.0, now 2.0)"),
        (["--d-max-final", "1"], "d_max_final (checkpoint 5.0, now 1.0)"),
        (["--renorm-warmup-rule", "proportional"], "renorm_warmup_rule (checkpoint 'time-constants', now 'proportional')"),
    ],
)
def test_resume_with_a_changed_setting_is_refused_by_name(tmp_path, capsys, flags, named):
    out = tmp_path / "run"
    assert main(["train", *FAST, "--steps", "8", "--out", str(out)]) == 0
    (out / "checkpoint.npz").unlink()
    save_checkpoint(out / "checkpoint.npz", _at_step(tmp_path, 4))  # the same run's checkpoint at step 4
    before = snapshot(out)
    status, _, err = run(capsys, "train", *FAST, "--steps", "8", "--out", str(out), "--resume", *flags)
    assert status == 2
    one_line_error(err, named, "--allow-changed")
    assert snapshot(out) == before


def _stopped_run(out: Path, steps: int, at: int) -> Path:
    """A default run of `steps` steps (evaluations every 2) stopped after step `at` in `out`."""
    from minigrad.train import TrainConfig, train

    train(TrainConfig(steps=steps, eval_every=2, out=str(out), progress=False), log=None, stop_at=at)
    return out


def _at_step(tmp_path: Path, step: int) -> dict:
    """The checkpoint of an 8-step default run stopped at `step` (made in its own folder)."""
    from minigrad.train import TrainConfig, train

    folder = tmp_path / f"at-{step}"
    train(TrainConfig(steps=8, eval_every=2, out=str(folder), progress=False), log=None, stop_at=step)
    return load_checkpoint(folder / "checkpoint.npz")


def test_allow_changed_records_which_steps_ran_with_which_settings(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *FAST, "--steps", "8", "--lr-schedule", "constant", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["lr"] == 0.05 and "settings_history" not in config
    argv = ["train", *FAST, "--steps", "12", "--lr-schedule", "constant", "--out", str(out), "--resume"]
    assert main([*argv, "--lr", "0.01", "--allow-changed"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert "lr" not in config and "steps" not in config  # no value claimed for the whole run
    assert config["varying_settings"] == ["lr", "steps"]
    assert config["settings_history"] == [
        {"first_step": 1, "lr": 0.05, "steps": 8},
        {"first_step": 9, "lr": 0.01, "steps": 12},
    ]
    lrs = {r["step"]: r["lr"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
           if r["kind"] == "train"}  # fmt: skip
    assert lrs[8] == pytest.approx(0.05) and lrs[9] == pytest.approx(0.01)
    # a third session: its stretch is added, the earlier ones come back from the checkpoint
    third = ["train", "--eval-every", "2", "--no-progress", "--steps", "16", "--lr-schedule", "constant"]
    assert main([*third, "--lr", "0.01", "--out", str(out), "--resume", "--allow-changed"]) == 0
    history = json.loads((out / "config.json").read_text())["settings_history"]
    assert [s["first_step"] for s in history] == [1, 9, 13] and history[-1] == {"first_step": 13, "lr": 0.01, "steps": 16}
    capsys.readouterr()


@pytest.mark.parametrize("steps", ["4", "2"])
def test_resume_with_steps_at_or_below_the_checkpoint_says_so(finished_run, capsys, steps):
    before = snapshot(finished_run)
    status, _, err = run(capsys, "train", *FAST[2:], "--steps", steps, "--out", str(finished_run), "--resume")
    assert status == 2
    one_line_error(err, "--steps", "at step 4", "nothing to train")
    assert snapshot(finished_run) == before


def _corrupt(kind: str, good: bytes) -> bytes:
    if kind == "empty":
        return b""
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "bit-flipped":
        flipped = bytearray(good)
        flipped[len(good) // 3] ^= 0x10
        return bytes(flipped)
    if kind == "npy":
        import io

        buffer = io.BytesIO()
        np.save(buffer, np.ones(3))
        return buffer.getvalue()
    import io

    buffer = io.BytesIO()
    np.savez(buffer, weights=np.ones(3))  # an .npz of another program
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["empty", "truncated", "bit-flipped", "npy", "foreign-npz"])
def test_a_damaged_or_foreign_checkpoint_is_one_line_naming_the_file(finished_run, capsys, kind):
    path = finished_run / "checkpoint.npz"
    path.write_bytes(_corrupt(kind, path.read_bytes()))
    before = snapshot(finished_run)
    status, _, err = run(capsys, "train", *FAST[2:], "--steps", "8", "--out", str(finished_run), "--resume")
    assert status == 2
    one_line_error(err, "--resume", str(path))
    assert snapshot(finished_run) == before


@pytest.mark.parametrize("step", [-3, 2.5, "4", None])
def test_a_checkpoint_with_a_bad_step_is_refused(finished_run, capsys, step):
    state = load_checkpoint(finished_run / "checkpoint.npz")
    state["step"] = step
    save_checkpoint(finished_run / "checkpoint.npz", state)
    status, _, err = run(capsys, "train", *FAST[2:], "--steps", "8", "--out", str(finished_run), "--resume")
    assert status == 2
    one_line_error(err, "--resume", "step", "expected an integer >= 0")


@pytest.mark.parametrize("errno_code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_full_or_read_only_folder_is_reported_and_the_old_checkpoint_stays(tmp_path, capsys, monkeypatch, errno_code):
    finished_run = _stopped_run(tmp_path / "run", steps=8, at=4)
    before = (finished_run / "checkpoint.npz").read_bytes()

    def failing_fsync(fd):
        raise OSError(errno_code, os.strerror(errno_code))

    monkeypatch.setattr(checkpoint_module.os, "fsync", failing_fsync)
    status, _, err = run(capsys, "train", *FAST[2:], "--steps", "8", "--out", str(finished_run), "--resume")
    assert status == 1
    one_line_error(err, "--out", "cannot write", os.strerror(errno_code), "unchanged")
    assert (finished_run / "checkpoint.npz").read_bytes() == before
    assert not [p for p in finished_run.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    assert load_checkpoint(finished_run / "checkpoint.npz")["step"] == 4


def test_a_folder_that_cannot_be_created_is_reported(tmp_path, capsys, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    status, _, err = run(capsys, "train", *FAST, "--out", str(tmp_path / "new"))
    assert status == 1
    one_line_error(err, "--out", "cannot write", "Permission denied")


# ----------------------------------------------------------------------------
# Options that cannot work, or would do nothing
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--norm", "bn", "--r-max", "2"], ["--r-max", "--norm bn"]),
        (["--norm", "none", "--d-max", "1"], ["--d-max", "--norm none"]),
        (["--optimizer", "adam", "--momentum", "0.5"], ["--momentum", "adam"]),
        (["--download"], ["--download", "digits"]),
        (["--data", "somewhere"], ["--data", "digits"]),
        (["--warmup-steps", "-1"], ["--warmup-steps", "-1"]),
        (["--seed", "-1"], ["--seed", "-1"]),
        (["--lr", "nan"], ["--lr", "nan"]),
        (["--lr", "-0.1"], ["--lr"]),
        (["--momentum", "1"], ["--momentum"]),
        (["--weight-decay", "inf"], ["--weight-decay"]),
        (["--norm-momentum", "2"], ["--norm-momentum"]),
        (["--ema", "1"], ["--ema"]),
        (["--r-max", "0.5"], ["--r-max"]),
        (["--norm", "bn", "--renorm-warmup", "3"], ["--renorm-warmup", "--norm bn"]),
        (["--norm", "none", "--renorm-ramp", "3"], ["--renorm-ramp", "--norm none"]),
        (["--norm", "bn", "--r-max-final", "2"], ["--r-max-final", "--norm bn"]),
        (["--norm", "bn", "--d-max-final", "2"], ["--d-max-final", "--norm bn"]),
        (["--norm", "bn", "--renorm-warmup-rule", "proportional"], ["--renorm-warmup-rule", "--norm bn"]),
        (["--renorm-warmup", "-1"], ["--renorm-warmup", "expected an integer >= 0", "-1"]),
        (["--renorm-ramp", "-5"], ["--renorm-ramp", "expected an integer >= 0", "-5"]),
        (["--renorm-ramp", "1.5"], ["--renorm-ramp", "expected an integer", "1.5"]),
        (["--r-max-final", "0.5"], ["--r-max-final", ">= 1", "0.5"]),
        (["--r-max-final", "nan"], ["--r-max-final", "nan"]),
        (["--d-max-final", "-1"], ["--d-max-final", ">= 0", "-1"]),
        (["--d-max-final", "inf"], ["--d-max-final", "inf"]),
        (["--renorm-warmup-rule", "linear"], ["--renorm-warmup-rule", "linear", "time-constants"]),
        (["--r-max", "2", "--r-max-final", "3"], ["--r-max-final", "--r-max 2.0", "does nothing"]),
        (["--r-max", "2", "--d-max", "1", "--renorm-ramp", "3"], ["--renorm-ramp", "--d-max 1.0", "does nothing"]),
        (["--renorm-warmup", "3", "--renorm-warmup-rule", "proportional"], ["--renorm-warmup-rule", "--renorm-warmup 3"]),
        (["--steps", "0"], ["--steps"]),
        (["--batch-size", "x"], ["--batch-size", "'x'"]),
        (["--batch-size", "5000"], ["--batch-size", "5000"]),
        (["--train-subset", "100000"], ["--train-subset", "1437"]),
        (["--virtual-batch-size", "5"], ["--virtual-batch-size"]),
        (["--sampler", "noniid", "--examples-per-label", "3"], ["--batch-size", "multiple of 3"]),
        (["--sync-bn"], ["--sync-bn", "--norm bn"]),
    ],
)
def test_options_that_cannot_work_are_refused_naming_the_flag(tmp_path, capsys, flags, needles):
    out = tmp_path / "run"
    status, _, err = run(capsys, "train", *FAST, *flags, "--out", str(out))
    assert status == 2
    one_line_error(err, *needles)
    assert not out.exists()


def test_data_cache_naming_a_folder(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    status, _, err = run(capsys, "train", *FAST, "--dataset", "imagefolder", "--data", str(tmp_path / "images"),
                         "--data-cache", str(tmp_path), "--out", str(tmp_path / "run"))  # fmt: skip
    assert status == 2
    one_line_error(err, "--data-cache", "is a folder")


def test_cifar10_not_in_the_cache_names_download_and_data(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINIGRAD_DATA", str(tmp_path / "empty-cache"))
    status, _, err = run(capsys, "train", *FAST, "--dataset", "cifar10", "--out", str(tmp_path / "run"))
    assert status == 2
    line = one_line_error(err, "--download", "--data PATH", str(tmp_path / "empty-cache"))
    assert "download=True" not in line and "path=" not in line
    status, _, err = run(capsys, "train", *FAST, "--dataset", "cifar10", "--data", str(tmp_path / "nowhere"))
    assert status == 2
    one_line_error(err, "--data", "nowhere", "--download")


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


@pytest.mark.parametrize("kind", ["hostile", "garbage"])
def test_bad_cifar_pickles_are_refused_naming_the_file(tmp_path, capsys, kind):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        record = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
        (folder / name).write_bytes(pickle.dumps(record, protocol=2))
    target = tmp_path / "pwned"
    bad = pickle.dumps({b"data": _Exploit(target), b"labels": []}, protocol=2) if kind == "hostile" else b"\x80\x02junk"
    (folder / "data_batch_3").write_bytes(bad)
    status, _, err = run(capsys, "train", *FAST, "--dataset", "cifar10", "--data", str(folder),
                         "--out", str(tmp_path / "run"))  # fmt: skip
    assert status == 2
    one_line_error(err, "--data", "data_batch_3")
    assert not target.exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("hide_cupy", [True, False])
def test_backend_cupy_without_cupy_or_cuda_names_the_flag(tmp_path, capsys, monkeypatch, hide_cupy):
    if hide_cupy:
        monkeypatch.setitem(sys.modules, "cupy", None)  # as if CuPy were not installed
    status, _, err = run(capsys, "train", *FAST, "--backend", "cupy", "--out", str(tmp_path / "run"))
    if status == 0:
        pytest.skip("CuPy and a CUDA device are usable here")
    assert status == 2
    one_line_error(err, "--backend cupy", "CuPy" if hide_cupy else "CUDA")
    assert not (tmp_path / "run").exists()


def test_divergence_says_lower_lr(tmp_path, capsys):
    status, _, err = run(capsys, "train", *FAST, "--steps", "8", "--lr", "1e6", "--out", str(tmp_path / "run"))
    assert status == 1
    one_line_error(err, "training diverged", "lower --lr")
    assert "running_std" not in err and "Warning" not in err


def test_an_unexpected_failure_is_still_one_line(tmp_path, capsys, monkeypatch):
    import minigrad.cli as cli

    def broken(config):
        raise RuntimeError("something nobody foresaw")

    monkeypatch.setattr(cli, "train", broken)
    status, _, err = run(capsys, "train", *FAST, "--out", str(tmp_path / "run"))
    assert status == 1
    (line,) = err.strip().splitlines()
    assert "internal error" in line and "something nobody foresaw" in line and "MINIGRAD_DEBUG" in line


# ----------------------------------------------------------------------------
# minigrad reproduce
# ----------------------------------------------------------------------------


def test_reproduce_stopped_by_sigterm_exits_143(tmp_path, capsys, monkeypatch):
    import signal

    import minigrad.reproduce as reproduce_module
    from minigrad.train import train

    def terminated(config, **kwargs):
        result = train(config, stop_at=2, **kwargs)
        result.stop_signal = signal.SIGTERM  # as if SIGTERM had arrived during step 2
        return result

    monkeypatch.setattr(reproduce_module, "train", terminated)
    status, _, _ = run(capsys, "reproduce", "--quick", "--arms", "bn-iid", "--no-progress", "--out", str(tmp_path))
    assert status == 143
    assert load_checkpoint(tmp_path / "runs" / "bn-iid-seed0" / "checkpoint.npz")["step"] == 2


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", ""])
def test_reproduce_with_a_corrupt_run_config_names_the_file(tmp_path, capsys, content):
    run_dir = tmp_path / "study" / "runs" / "bn-iid-seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(content)
    status, _, err = run(capsys, "reproduce", "--quick", "--arms", "bn-iid", "--no-progress",
                         "--out", str(tmp_path / "study"))  # fmt: skip
    assert status == 2
    one_line_error(err, "--out", str(run_dir / "config.json"))
    assert (run_dir / "config.json").read_text() == content


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--seed", "-1"], ["--seed"]),
        (["--lr", "inf"], ["--lr"]),
        (["--seeds", "100000"], ["--seeds"]),
        (["--labels-per-batch", "5"], ["--labels-per-batch"]),
        (["--microbatch", "3"], ["--microbatch"]),
        (["--ema", "nan"], ["--ema"]),
        (["--train-subset", "0"], ["--train-subset"]),
    ],
)
def test_reproduce_options_that_cannot_work_are_refused_naming_the_flag(tmp_path, capsys, flags, needles):
    status, _, err = run(capsys, "reproduce", "--quick", "--arms", "bn-iid", "--no-progress", *flags,
                         "--out", str(tmp_path / "study"))  # fmt: skip
    assert status == 2
    one_line_error(err, *needles)


# ----------------------------------------------------------------------------
# What the console shows
# ----------------------------------------------------------------------------


def test_evaluations_print_test_loss_and_batch_statistics_and_the_last_line_says_where(tmp_path, capsys):
    out = tmp_path / "run"
    status, printed, _ = run(capsys, "train", *FAST, "--eval-batch-stats", "--out", str(out))
    assert status == 0
    evaluations = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "eval"]
    lines = printed.strip().splitlines()
    assert len(lines) == len(evaluations) + 1
    for line, record in zip(lines, evaluations):
        assert line == (
            f"step {record['step']}/4: test accuracy {record['test_accuracy']:.4f}, "
            f"test loss {record['test_loss']:.4f}, "
            f"test accuracy with batch statistics {record['test_accuracy_batch_stats']:.4f}"
        )
    assert lines[-1].startswith(f"final test accuracy {evaluations[-1]['test_accuracy']:.4f} after 4 steps")
    assert f"files in {out}" in lines[-1]


def test_with_the_progress_bar_evaluations_are_still_printed(tmp_path, capsys):
    pytest.importorskip("tqdm")
    status, printed, _ = run(capsys, "train", "--steps", "4", "--eval-every", "2", "--out", str(tmp_path / "run"))
    assert status == 0
    lines = [line for line in printed.splitlines() if line.strip()]
    assert [line.split(":")[0] for line in lines[:2]] == ["step 2/4", "step 4/4"]
    assert lines[-1].startswith("final test accuracy")


def _option_help(parser, command: str) -> dict[str, str]:
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {action.option_strings[-1]: action.help or "" for action in sub._actions if action.option_strings
            and action.dest != "help"}  # fmt: skip


def test_train_help_shows_a_default_for_every_option_and_describes_the_optimization_group(capsys):
    helps = _option_help(build_parser(), "train")
    missing = [option for option, text in helps.items() if "default" not in text]
    assert not missing, missing
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert re.search(r"optimization:\s+the optimizer and its learning-rate schedule", text)
    assert "(default: 0.05)" in text and "(default: 600)" in text and "(default: cosine)" in text


def test_options_of_both_commands_parse_alike():
    """A flag that `train` and `reproduce` share is one option: same parser, choices, metavar and destination."""
    from minigrad.cli import SHARED_OPTIONS, build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices

    def described(command: str) -> dict[str, tuple]:
        return {
            flag: (action.type, action.choices, action.metavar, action.dest, type(action).__name__)
            for action in commands[command]._actions
            for flag in action.option_strings
        }

    train, reproduce = described("train"), described("reproduce")
    both = set(train) & set(reproduce) - {"-h", "--help", "--dataset"}  # --dataset: reproduce has no image folders
    assert both == set(SHARED_OPTIONS), sorted(both ^ set(SHARED_OPTIONS))
    for flag in both:
        assert train[flag] == reproduce[flag], flag
