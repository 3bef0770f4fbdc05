"""``--threads N``: parsed, validated, recorded in config.json, applied during the run and undone after it."""

from __future__ import annotations

import json

import pytest

import minigrad as mg
from minigrad import threads as threads_module
from minigrad.cli import build_parser, main
from minigrad.norm import fused
from minigrad.train_config import ConfigError, TrainConfig

threadpoolctl = pytest.importorskip("threadpoolctl")
pytestmark = pytest.mark.backends("numpy")


def blas_counts() -> set[int]:
    return {pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"}


def needs_blas():
    if not blas_counts():
        pytest.skip("no BLAS thread pool visible to threadpoolctl")


@pytest.mark.parametrize("command", ["train", "reproduce"])
def test_both_commands_parse_threads_and_default_to_none(command):
    parser = build_parser()
    assert parser.parse_args([command, "--threads", "3"]).threads == 3
    assert parser.parse_args([command]).threads is None


@pytest.mark.parametrize("command", ["train", "reproduce"])
@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_thread_count_is_one_line_naming_threads(capsys, command, value):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--threads", value])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "argument --threads" in lines[0] and value in lines[0], lines


@pytest.mark.parametrize("value", [0, -1, 2.0, True, "2", 2**70])
def test_the_configuration_refuses_a_bad_thread_count_by_name(value):
    with pytest.raises(ConfigError, match=r"^threads: expected an integer in \[1, 1024\]"):
        TrainConfig(threads=value).resolved()


def test_a_huge_thread_count_is_refused_by_the_command(tmp_path, capsys):
    assert main(["train", "--threads", str(2**70), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("minigrad train: error: --threads: expected an integer in [1, 1024]"), line
    assert not (tmp_path / "run").exists()


def test_thread_limit_applies_inside_and_restores_after():
    needs_blas()
    before_blas, before_fused = blas_counts(), fused.THREADS
    with threads_module.thread_limit(1):
        assert blas_counts() == {1} and fused.THREADS == 1
        with threads_module.thread_limit(2):
            assert blas_counts() == {2} and fused.THREADS == 2
        assert blas_counts() == {1} and fused.THREADS == 1
    assert (blas_counts(), fused.THREADS) == (before_blas, before_fused)


def test_thread_limit_restores_after_an_error():
    needs_blas()
    before = blas_counts(), fused.THREADS
    with pytest.raises(RuntimeError), threads_module.thread_limit(2):
        raise RuntimeError("inside")
    assert (blas_counts(), fused.THREADS) == before


def test_no_limit_changes_nothing():
    before = blas_counts(), fused.THREADS
    with threads_module.thread_limit(None):
        assert (blas_counts(), fused.THREADS) == before


@pytest.mark.parametrize("value", [0, -3, 1.5, None, 1025])
def test_limit_threads_refuses_a_bad_count_naming_threads(value):
    with pytest.raises(ValueError, match=r"^threads: expected a positive integer"):
        threads_module.limit_threads(value)


def test_without_threadpoolctl_the_message_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_threadpoolctl(name, *args, **kwargs):
        if name == "threadpoolctl":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_threadpoolctl)
    with pytest.raises(ImportError, match=r"threads: .*threadpoolctl.*pip install"):
        threads_module.limit_threads(1)


@pytest.fixture
def watched_run(monkeypatch):
    """Records the BLAS and normalization thread counts seen at every evaluation of a run."""
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    seen = []
    original = mg.train.evaluate

    def watching(*args, **kwargs):
        seen.append((blas_counts(), fused.THREADS))
        return original(*args, **kwargs)

    monkeypatch.setattr(mg.train, "evaluate", watching)
    return seen


@pytest.mark.parametrize("threads", [1, 2, None])
def test_train_records_threads_and_holds_the_limit_for_the_run_only(tmp_path, capsys, watched_run, threads):
    needs_blas()
    before = blas_counts(), fused.THREADS
    out = tmp_path / "run"
    flags = [] if threads is None else ["--threads", str(threads)]
    assert main(["train", "--steps", "2", "--eval-every", "2", "--no-progress", "--out", str(out), *flags]) == 0
    assert json.loads((out / "config.json").read_text())["threads"] == threads
    expected = before if threads is None else ({threads}, threads)
    assert watched_run and all(seen == expected for seen in watched_run)
    assert (blas_counts(), fused.THREADS) == before


def test_reproduce_passes_threads_to_every_run():
    from minigrad.reproduce import ReproduceConfig

    runs = ReproduceConfig(threads=2, quick=True, arms=["bn-iid"]).run_configs()
    assert runs and all(config.threads == 2 for _, _, config in runs)
    assert ReproduceConfig(quick=True, arms=["bn-iid"]).run_configs()[0][2].threads is None
