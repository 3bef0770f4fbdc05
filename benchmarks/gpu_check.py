"""One command for a CUDA machine: install the GPU extra, run the GPU tests, train on CuPy, time against PyTorch CUDA.

    python benchmarks/gpu_check.py ~/data/cifar-10-python.tar.gz     # or its extracted folder, or an image folder
    python benchmarks/gpu_check.py                                   # the built-in digits instead of CIFAR-10
    python benchmarks/gpu_check.py DATA --steps 500 --no-install --json gpu.json

Stages, each a row of the summary table printed at the end:

1. ``pip install -e '.[gpu]'`` (CuPy for CUDA 12) into the running Python,
   unless ``--no-install`` or no NVIDIA driver is visible;
2. the CUDA check: CuPy must import and see a device, else the script stops
   at once with a message saying why (exit code 2): on a machine without an
   NVIDIA driver nothing else is tried, not even the install;
3. ``pytest -m gpu``: the CuPy copies of the test suite;
4. ``minigrad train --backend cupy``: CifarCNN with Batch Renorm for
   ``--steps`` steps (default 300) on the CIFAR-10 data given, or DigitsCNN on
   the built-in digits when no data is given; images per second, the last
   loss and the test accuracy;
5. when PyTorch with CUDA is importable: BatchNorm2d / BatchRenorm2d forward +
   backward on (32, 64, 32, 32) and one CifarCNN training step at batch 32, on
   the GPU, against PyTorch's BatchNorm2d and the same model in PyTorch (the
   twins of ``bench_norm.py`` and ``bench_train_step.py``, timed with a device
   synchronization around every repetition, interleaved, paired ratios).

Exit code: 0 when every stage that ran passed, 1 when one failed, 2 when CUDA
is absent or an argument is wrong. Meant to finish in a few minutes on a
current data-centre GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
for _path in (REPO_ROOT, BENCH_DIR):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

NORM_SHAPE = (32, 64, 32, 32)
STEP_BATCH = 32


class CheckError(Exception):
    """A stage could not run; the message says why (the script prints it as one line)."""


@dataclass
class Row:
    """One line of the summary table."""

    stage: str
    status: str  # "PASS", "FAIL", "SKIP" or "INFO"
    detail: str
    numbers: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options; a data path that does not exist is an error here, before anything is installed."""
    parser = argparse.ArgumentParser(
        prog="gpu_check.py", description="Install the GPU extra, run the GPU tests, train on CuPy, time against PyTorch."
    )
    parser.add_argument(
        "data",
        nargs="?",
        help="CIFAR-10: the python archive (cifar-10-python.tar.gz), its extracted folder, or an image folder "
        "with train/ and test/; default: the built-in digits",
    )
    parser.add_argument("--steps", type=_positive_int, default=300, help="training steps on CuPy (default 300)")
    parser.add_argument("--batch-size", type=_positive_int, default=128, help="training batch size (default 128)")
    parser.add_argument("--reps", type=_positive_int, default=30, help="timed repetitions per benchmark case (default 30)")
    parser.add_argument("--no-install", action="store_true", help="do not pip install the gpu extra first")
    parser.add_argument("--skip-tests", action="store_true", help="do not run pytest -m gpu")
    parser.add_argument("--skip-train", action="store_true", help="do not train")
    parser.add_argument("--skip-bench", action="store_true", help="do not time against PyTorch")
    parser.add_argument("--out", metavar="DIR", help="folder for the training run (default: a temporary folder)")
    parser.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    args = parser.parse_args(argv)
    if args.data is not None and not Path(args.data).expanduser().exists():
        parser.error(f"data: no such file or folder: {args.data!r} (give the CIFAR-10 archive or folder, or nothing)")
    return args


# ----------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------


def run(command: list[str], timeout: float, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """`command` with its output passed through and kept (the last lines go into the summary)."""
    print("$ " + " ".join(command), flush=True)
    process = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    sys.stdout.write(process.stdout)
    sys.stderr.write(process.stderr)
    return process


def install_gpu_extra() -> Row:
    process = run([sys.executable, "-m", "pip", "install", "-q", "-e", f"{REPO_ROOT}[gpu]"], timeout=900)
    if process.returncode != 0:
        return Row("install .[gpu]", "FAIL", _last_line(process.stderr or process.stdout))
    return Row("install .[gpu]", "PASS", "pip install -e '.[gpu]'")


def driver_problem() -> str | None:
    """Why no NVIDIA driver is visible (checked before installing anything), or None when one may be."""
    if shutil.which("nvidia-smi") or Path("/proc/driver/nvidia/version").exists():
        return None
    return "no NVIDIA driver found (no nvidia-smi on PATH, no /proc/driver/nvidia/version)"


def cuda_problem() -> str | None:
    """Why CuPy cannot run here (not installed, no driver, no device), or None when it can."""
    from minigrad import backend

    try:
        backend.use_backend("cupy")
    except backend.BackendUnavailableError as exc:
        return str(exc)
    finally:
        backend.use_backend("numpy")
    return None


def cuda_row() -> Row:
    import cupy

    device = cupy.cuda.Device(0)
    properties = cupy.cuda.runtime.getDeviceProperties(device.id)
    name = properties["name"].decode() if isinstance(properties["name"], bytes) else str(properties["name"])
    count, runtime = cupy.cuda.runtime.getDeviceCount(), cupy.cuda.runtime.runtimeGetVersion()
    detail = f"{count} device(s); device 0: {name}; CuPy {cupy.__version__}, CUDA runtime {runtime}"
    return Row("CUDA", "PASS", detail, {"device": name, "devices": count})


def gpu_tests() -> Row:
    process = run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"], timeout=1800)
    status = "PASS" if process.returncode == 0 else "FAIL"
    return Row("pytest -m gpu", status, _last_line(process.stdout))


def train_command(data: str | None, steps: int, batch_size: int, out: Path) -> list[str]:
    """The ``minigrad train`` command of the training stage: CIFAR-10 from `data`, or the digits when None."""
    command = [sys.executable, "-m", "minigrad", "train", "--backend", "cupy", "--norm", "brn", "--no-progress"]
    if data is None:
        command += ["--dataset", "digits"]
    else:
        command += ["--dataset", "cifar10", "--data", str(Path(data).expanduser()), "--data-cache", str(out / "pixels.npz")]
    return command + ["--steps", str(steps), "--batch-size", str(batch_size), "--eval-every", str(steps), "--out", str(out)]


def read_metrics(path: Path) -> dict[str, Any]:
    """The last training loss and the last test accuracy in a run's ``metrics.jsonl``."""
    result: dict[str, Any] = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("kind") == "train":
                result["loss"] = record.get("loss")
                result["step"] = record.get("step")
            elif record.get("kind") == "eval" and "test_accuracy" in record:
                result["test_accuracy"] = record["test_accuracy"]
    return result


def train(data: str | None, steps: int, batch_size: int, out: Path) -> Row:
    stage = f"train {'cifar10' if data else 'digits'} on CuPy"
    out.mkdir(parents=True, exist_ok=True)  # the pixel cache of an image folder is written there first
    start = time.perf_counter()
    process = run(train_command(data, steps, batch_size, out), timeout=3600)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        return Row(stage, "FAIL", _last_line(process.stderr or process.stdout))
    metrics = read_metrics(out / "metrics.jsonl")
    numbers = {"seconds": seconds, "images_per_second": steps * batch_size / seconds, **metrics}
    detail = (
        f"{steps} steps x {batch_size} in {seconds:.0f} s ({numbers['images_per_second']:.0f} img/s, start-up "
        f"and evaluation included); last loss {metrics.get('loss', float('nan')):.3f}, "
        f"test accuracy {metrics.get('test_accuracy', float('nan')):.3f}"
    )
    return Row(stage, "PASS", detail, numbers)


def time_on_gpu(cases: dict[str, Callable[[], Any]], synchronize: Callable[[], None], reps: int, warmup: int = 3):
    """Seconds per repetition of each case, the cases taking turns, the device synchronized around each one."""
    import numpy as np

    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    synchronize()
    times = {name: np.empty(reps) for name in names}
    for rep in range(reps):
        for name in names if rep % 2 == 0 else reversed(names):
            synchronize()
            start = time.perf_counter()
            cases[name]()
            synchronize()
            times[name][rep] = time.perf_counter() - start
    return times


def benchmarks(reps: int) -> list[Row]:
    """Normalization layers and the CifarCNN step on the GPU, against PyTorch CUDA (SKIP without it)."""
    try:
        import torch
    except ImportError:
        return [Row("bench vs PyTorch CUDA", "SKIP", "PyTorch is not installed (pip install torch with CUDA)")]
    if not torch.cuda.is_available():
        return [Row("bench vs PyTorch CUDA", "SKIP", f"PyTorch {torch.__version__} sees no CUDA device")]
    import cupy
    import numpy as np
    from _common import fmt_ms, fmt_ratio, paired_ratio, summary
    from bench_train_step import LR, MOMENTUM, copy_weights, torch_cifar_cnn

    import minigrad as mg

    def synchronize() -> None:
        cupy.cuda.Device().synchronize()
        torch.cuda.synchronize()

    rows = []
    rng = np.random.default_rng(0)
    with mg.using_backend("cupy"):
        x_host, dy_host = (rng.standard_normal(NORM_SHAPE).astype(np.float32) for _ in range(2))
        x_device, dy = mg.backend.from_numpy(x_host), mg.Tensor(dy_host)
        layers = {"BatchNorm2d": mg.nn.BatchNorm2d(NORM_SHAPE[1]), "BatchRenorm2d": mg.nn.BatchRenorm2d(NORM_SHAPE[1])}
        twin = torch.nn.BatchNorm2d(NORM_SHAPE[1]).cuda()
        tx = torch.from_numpy(x_host).cuda().requires_grad_()
        tdy = torch.from_numpy(dy_host).cuda()

        def ours(layer: mg.Module) -> Callable[[], None]:
            def case() -> None:
                layer(mg.Tensor(x_device, requires_grad=True)).backward(dy)

            return case

        cases = {name: ours(layer) for name, layer in layers.items()}
        cases["torch"] = lambda: twin(tx).backward(tdy)
        times = time_on_gpu(cases, synchronize, reps)
        for name in layers:
            ratio = paired_ratio(times[name], times["torch"])
            rows.append(
                Row(
                    f"{name} fwd+bwd {NORM_SHAPE}",
                    "INFO",
                    f"{fmt_ms(summary(times[name]))} ms, PyTorch {fmt_ms(summary(times['torch']))} ms, "
                    f"ratio {fmt_ratio(ratio)}",
                    {"ratio": ratio["median"]},
                )
            )

        for norm in ("bn", "brn"):
            images = rng.standard_normal((STEP_BATCH, 3, 32, 32)).astype(np.float32)
            labels = rng.integers(0, 10, size=STEP_BATCH)
            model = mg.models.CifarCNN(norm=norm, generator=mg.Generator(0)).train()
            optimizer = mg.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
            x, y = mg.Tensor(images), mg.Tensor(labels)
            torch_model = torch_cifar_cnn(torch, "bn").cuda().train()
            copy_weights(torch, model, torch_model)
            torch_optimizer = torch.optim.SGD(torch_model.parameters(), lr=LR, momentum=MOMENTUM)
            ti, tl = torch.from_numpy(images).cuda(), torch.from_numpy(labels).cuda()

            def minigrad_step(model=model, optimizer=optimizer, x=x, y=y) -> None:
                optimizer.zero_grad()
                mg.cross_entropy(model(x), y).backward()
                optimizer.step()

            def torch_step(model=torch_model, optimizer=torch_optimizer, ti=ti, tl=tl) -> None:
                optimizer.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(ti), tl).backward()
                optimizer.step()

            times = time_on_gpu({"minigrad": minigrad_step, "torch": torch_step}, synchronize, reps)
            ratio = paired_ratio(times["minigrad"], times["torch"])
            rows.append(
                Row(
                    f"CifarCNN step {norm}, batch {STEP_BATCH}",
                    "INFO",
                    f"{fmt_ms(summary(times['minigrad']))} ms, PyTorch {fmt_ms(summary(times['torch']))} ms "
                    f"[BatchNorm2d], ratio {fmt_ratio(ratio)}",
                    {"ratio": ratio["median"]},
                )
            )
    return rows


# ----------------------------------------------------------------------------
# The summary
# ----------------------------------------------------------------------------


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no output)"


def format_table(rows: list[Row]) -> str:
    """The summary as a Markdown table."""
    header = ["stage", "result", "detail"]
    body = [[row.stage, row.status, row.detail] for row in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(3)]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(r, widths)) + " |" for r in [header, *body]]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def exit_code(rows: list[Row]) -> int:
    return 1 if any(row.status == "FAIL" for row in rows) else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rows: list[Row] = []
    problem = driver_problem()
    if problem is None and not args.no_install:
        rows.append(install_gpu_extra())
    problem = problem or cuda_problem()
    if problem is not None:
        print(f"gpu_check: CUDA is not available here, so nothing was run on a GPU: {problem}", file=sys.stderr)
        return 2
    rows.append(cuda_row())
    if not args.skip_tests:
        rows.append(gpu_tests())
    if not args.skip_train:
        with tempfile.TemporaryDirectory(prefix="gpu_check-") as scratch:
            out = Path(args.out) if args.out else Path(scratch) / "run"
            rows.append(train(args.data, args.steps, args.batch_size, out))
    if not args.skip_bench:
        rows.extend(benchmarks(args.reps))
    print()
    print(format_table(rows))
    if args.json:
        payload = [row.__dict__ for row in rows]
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    return exit_code(rows)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
