"""What the benchmark scripts share: thread limits, the machine report, interleaved timing, tables.

Both sides of a comparison are timed in the same process and the same run,
repetition by repetition (A B C, then C B A, ...), so that a load that comes
and goes on the machine slows both alike. A ratio is the median over
repetitions of the paired ratio (minigrad's time in repetition i over the
reference's time in repetition i), and its IQR says how steady it was.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# The scripts run from a checkout without installing minigrad first.
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

_LIMITS: list[Any] = []  # the functions that undo the thread limits (held for the whole run)


def import_torch():
    """PyTorch, or exit with the command that installs it (it is an optional benchmark dependency).

    PyTorch's OpenMP threads spin-wait between calls by default. In a benchmark
    that runs both libraries in one process, turn by turn, those spinning threads
    take the cores from OpenBLAS's threads in minigrad's turn and the other way
    round, which neither library suffers when used alone. The OpenMP threads wait
    passively here unless ``OMP_WAIT_POLICY`` is set already (it must be set
    before PyTorch is loaded); the header prints the policy.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError:
        sys.exit("PyTorch is needed for the benchmarks: pip install -e '.[bench]'")
    return torch


def set_threads(threads: int, torch: Any) -> None:
    """Limit NumPy's BLAS and minigrad's normalization pool (:mod:`minigrad.threads`, as ``--threads``) and PyTorch."""
    from minigrad.threads import limit_threads

    try:
        _LIMITS.append(limit_threads(threads))
    except ImportError as exc:
        sys.exit(str(exc))
    torch.set_num_threads(threads)


def blas_report() -> list[dict[str, Any]]:
    """The native thread pools loaded in this process: library, version, kernel architecture, threads."""
    from threadpoolctl import threadpool_info

    keys = ("user_api", "internal_api", "version", "architecture", "num_threads", "filepath")
    return [{k: pool.get(k) for k in keys} for pool in threadpool_info()]


def numpy_blas(pools: list[dict[str, Any]]) -> str:
    """A one-line description of the BLAS that NumPy uses (the pool loaded from numpy's own folder)."""
    numpy_dir = Path(np.__file__).resolve().parent.parent
    for pool in pools:
        path = str(pool.get("filepath") or "")
        if pool.get("user_api") == "blas" and (path.startswith(str(numpy_dir)) or "numpy" in path):
            return (
                f"{pool['internal_api']} {pool['version']} ({pool['architecture']} kernels, {pool['num_threads']} threads)"
            )
    blas = [p for p in pools if p.get("user_api") == "blas"]
    return f"{blas[0]['internal_api']} {blas[0]['version']}" if blas else "unknown"


def environment(torch: Any, threads: int) -> dict[str, Any]:
    """Everything that a reader of the numbers needs to know about the machine and the libraries."""
    import minigrad
    from minigrad.norm import fused

    loops = fused._loops()  # imports numba here, when the compiled loops are on and it is installed
    norm_loops = f"compiled (numba {loops.numba.__version__})" if loops is not None else "NumPy calls"
    pools = blas_report()
    load = os.getloadavg()
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "load_average": [round(v, 2) for v in load],
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "minigrad": minigrad.__version__,
        "minigrad_backend": minigrad.active_backend(),
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "numpy_blas": numpy_blas(pools),
        "thread_pools": pools,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "norm_loops": norm_loops,
    }


def print_header(title: str, env: dict[str, Any]) -> None:
    print(f"# {title}")
    print()
    print(f"- date: {env['date']}; nproc: {env['nproc']}; load average (1, 5, 15 min): {env['load_average']}")
    print(
        f"- threads: {env['threads']} (torch.get_num_threads() = {env['torch_threads']}, "
        f"OMP_WAIT_POLICY={env.get('OMP_WAIT_POLICY')}); NumPy BLAS: {env['numpy_blas']}"
    )
    print(
        f"- python {env['python']}, numpy {env['numpy']}, torch {env['torch']}, "
        f"minigrad {env['minigrad']} (backend {env['minigrad_backend']}; normalization block loops: "
        f"{env.get('norm_loops')})"
    )
    if env.get("allocator", "default") != "default":
        print(f"- allocator: {env['allocator']}")
    coretype = env["OPENBLAS_CORETYPE"]
    if coretype or env["OPENBLAS_L2_SIZE"]:
        print(f"- OPENBLAS_CORETYPE={coretype}, OPENBLAS_L2_SIZE={env['OPENBLAS_L2_SIZE']} (they choose OpenBLAS's kernels)")
    print()


class Timings(dict):
    """Per case, seconds of wall-clock time per call (the dict's values), plus CPU time and page faults.

    ``cpu[name]``: seconds of this process's CPU time (user + system) per call, which other
    processes on the machine disturb less than wall-clock time (with one thread, the two
    agree on an idle machine). ``faults[name]``: minor page faults per call, the cost of
    memory that the allocator took fresh from the operating system.
    """

    def __init__(self, names: list[str], reps: int) -> None:
        super().__init__({name: np.empty(reps) for name in names})
        self.cpu = {name: np.empty(reps) for name in names}
        self.faults = {name: np.empty(reps) for name in names}


def time_interleaved(cases: dict[str, Callable[[], Any]], warmup: int, reps: int) -> Timings:
    """Time every case `reps` times, the cases taking turns (order reversed every other round)."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    times = Timings(names, reps)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else reversed(names):
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            cpu = time.process_time()
            start = time.perf_counter()
            cases[name]()
            times[name][rep] = time.perf_counter() - start
            times.cpu[name][rep] = time.process_time() - cpu
            times.faults[name][rep] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return times


def summary(seconds: np.ndarray) -> dict[str, float]:
    """Median and quartiles, in milliseconds."""
    q1, median, q3 = np.percentile(seconds * 1e3, [25, 50, 75])
    return {"median_ms": float(median), "q1_ms": float(q1), "q3_ms": float(q3)}


def paired_ratio(numerator: np.ndarray, denominator: np.ndarray) -> dict[str, float]:
    """Median and quartiles of the per-repetition ratio numerator[i] / denominator[i]."""
    q1, median, q3 = np.percentile(numerator / denominator, [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3)}


def fmt_ms(s: dict[str, float]) -> str:
    """'12.3 (11.9-12.8)': the median and the interquartile range, in ms."""
    digits = 2 if s["median_ms"] < 10 else 1
    return f"{s['median_ms']:.{digits}f} ({s['q1_ms']:.{digits}f}-{s['q3_ms']:.{digits}f})"


def fmt_ratio(r: dict[str, float]) -> str:
    return f"{r['median']:.2f} ({r['q1']:.2f}-{r['q3']:.2f})"


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table with aligned columns (readable in a terminal, pastes into a README)."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))


def save_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nsaved {path}")
