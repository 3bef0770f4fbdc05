"""The CPU-only parts of ``benchmarks/gpu_check.py``: arguments, the stop without CUDA, the commands and the summary.

Nothing here installs a package or starts a training run: the stages that need
a GPU are replaced by stand-ins that record their calls.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.backends("numpy")

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the script is executed
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["gpu_check"]


@pytest.fixture
def stages(gpu_check, monkeypatch):
    """Every stage replaced by a recorder; CUDA present unless a test says otherwise."""
    calls: list[str] = []

    def stage(name, row=None):
        def record(*args, **kwargs):
            calls.append(name)
            return row if row is not None else gpu_check.Row(name, "PASS", "ok")

        return record

    monkeypatch.setattr(gpu_check, "driver_problem", lambda: None)
    monkeypatch.setattr(gpu_check, "cuda_problem", lambda: None)
    monkeypatch.setattr(gpu_check, "install_gpu_extra", stage("install"))
    monkeypatch.setattr(gpu_check, "cuda_row", stage("cuda"))
    monkeypatch.setattr(gpu_check, "gpu_tests", stage("tests"))
    monkeypatch.setattr(gpu_check, "train", stage("train"))
    monkeypatch.setattr(gpu_check, "benchmarks", lambda reps: [stage("bench")()])
    monkeypatch.setattr(gpu_check, "run", lambda *a, **k: pytest.fail("a stage ran a command"))
    return calls


def test_arguments_and_their_defaults(gpu_check, tmp_path):
    args = gpu_check.parse_args([])
    assert args.data is None and args.steps == 300 and args.batch_size == 128 and not args.no_install
    args = gpu_check.parse_args([str(tmp_path), "--steps", "5", "--no-install", "--skip-bench"])
    assert args.data == str(tmp_path) and args.steps == 5 and args.no_install and args.skip_bench


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["/no/such/cifar.tar.gz"], "data: no such file or folder: '/no/such/cifar.tar.gz'"),
        (["--steps", "0"], "--steps: expected a positive integer, got 0"),
        (["--reps", "many"], "--reps: expected a positive integer, got 'many'"),
    ],
)
def test_bad_arguments_stop_with_one_clear_line(gpu_check, stages, capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        gpu_check.main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert stages == []  # nothing installed, nothing run


def test_without_a_driver_nothing_is_installed_or_run(gpu_check, stages, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "driver_problem", lambda: "no NVIDIA driver found")
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available here" in err and "no NVIDIA driver found" in err and "Traceback" not in err
    assert stages == []


def test_with_a_driver_but_no_usable_device_the_install_runs_then_it_stops(gpu_check, stages, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "cuda_problem", lambda: "backend 'cupy': no CUDA device was found")
    assert gpu_check.main([]) == 2
    assert stages == ["install"] and "no CUDA device was found" in capsys.readouterr().err
    stages.clear()
    assert gpu_check.main(["--no-install"]) == 2 and stages == []


def test_the_real_checks_on_this_cpu_machine(gpu_check):
    """Here there is no CUDA: at least one of the two checks says why (CuPy may or may not be installed)."""
    from minigrad import backend

    if backend.cuda_available():
        pytest.skip("this machine has CUDA")
    problems = [gpu_check.driver_problem(), gpu_check.cuda_problem()]
    assert any(problems) and backend.active_backend() == "numpy"
    assert all(p is None or (isinstance(p, str) and p) for p in problems)


def test_every_stage_runs_and_the_summary_is_one_table(gpu_check, stages, capsys, tmp_path):
    report = tmp_path / "gpu.json"
    assert gpu_check.main(["--json", str(report)]) == 0
    assert stages == ["install", "cuda", "tests", "train", "bench"]
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0].startswith("| stage") and set(table[1]) <= {"|", "-"} and len(table) == 2 + 5
    assert [row["stage"] for row in json.loads(report.read_text())] == stages


def test_skipped_stages_and_a_failing_stage(gpu_check, stages, monkeypatch):
    assert gpu_check.main(["--no-install", "--skip-tests", "--skip-train", "--skip-bench"]) == 0
    assert stages == ["cuda"]
    monkeypatch.setattr(gpu_check, "gpu_tests", lambda: gpu_check.Row("pytest -m gpu", "FAIL", "1 failed"))
    assert gpu_check.main(["--no-install", "--skip-train", "--skip-bench"]) == 1


def test_the_training_command(gpu_check, tmp_path):
    digits = gpu_check.train_command(None, 300, 128, tmp_path)
    assert digits[1:4] == ["-m", "minigrad", "train"] and "--backend" in digits and "cupy" in digits
    assert digits[digits.index("--dataset") + 1] == "digits" and "--data" not in digits
    archive = tmp_path / "cifar-10-python.tar.gz"
    cifar = gpu_check.train_command(str(archive), 50, 64, tmp_path / "run")
    assert cifar[cifar.index("--dataset") + 1] == "cifar10" and cifar[cifar.index("--data") + 1] == str(archive)
    assert cifar[cifar.index("--steps") + 1] == "50" and cifar[cifar.index("--eval-every") + 1] == "50"
    assert cifar[cifar.index("--out") + 1] == str(tmp_path / "run")


def test_the_training_command_is_one_minigrad_train_accepts(gpu_check, tmp_path):
    """The options exist: the command line parses (on the CPU, with the backend swapped for numpy)."""
    from minigrad import cli

    command = gpu_check.train_command(str(tmp_path), 10, 8, tmp_path / "run")
    command[command.index("cupy")] = "numpy"
    parser = cli.build_parser() if hasattr(cli, "build_parser") else None
    if parser is None:
        pytest.skip("minigrad.cli has no build_parser to parse with")
    parser.parse_args(command[3:])


def test_reading_the_metrics_of_a_run(gpu_check, tmp_path):
    lines = [
        {"step": 1, "kind": "train", "loss": 2.3},
        {"step": 2, "kind": "train", "loss": 1.9},
        {"step": 2, "kind": "eval", "test_accuracy": 0.41, "test_loss": 1.7},
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert gpu_check.read_metrics(path) == {"loss": 1.9, "step": 2, "test_accuracy": 0.41}


def test_the_interleaved_timer_synchronizes_around_every_repetition(gpu_check):
    events: list[str] = []
    cases = {"a": lambda: events.append("a"), "b": lambda: events.append("b")}
    times = gpu_check.time_on_gpu(cases, lambda: events.append("sync"), reps=4, warmup=1)
    assert set(times) == {"a", "b"} and all(t.shape == (4,) and np.all(t >= 0) for t in times.values())
    timed = events[events.index("sync") + 1 :]
    assert timed.count("a") == timed.count("b") == 4 and timed.count("sync") == 2 * 8


def test_the_benchmarks_skip_without_pytorch(gpu_check, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    rows = gpu_check.benchmarks(reps=3)
    assert [row.status for row in rows] == ["SKIP"] and "PyTorch is not installed" in rows[0].detail


def test_the_gpu_marker_is_registered_and_gpu_tests_skip_cleanly_without_cuda(pytestconfig, tmp_path):
    """``pytest -m gpu`` without CUDA: every selected test is skipped with the reason, and the run succeeds."""
    from minigrad import backend

    assert any(marker.startswith("gpu:") for marker in pytestconfig.getini("markers"))
    if backend.cuda_available():
        pytest.skip("this machine has CUDA: the gpu tests run instead of skipping")
    root = SCRIPT.parent.parent
    process = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-m", "gpu", "-p", "no:cacheprovider", "tests/test_tensor.py"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert process.returncode == 0, process.stdout + process.stderr
    assert "CuPy or a CUDA device is not available" in process.stdout
    assert " skipped" in process.stdout and " passed" not in process.stdout and " failed" not in process.stdout
