"""Numbers over seeds as the studies report them: mean ± std, table cells in percent, and the machine they ran on.

``minigrad reproduce`` and its sweep (:mod:`minigrad.sweep`) summarize the
same per-run numbers the same way; this module is what they share.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The numbers of one finished run that a study summarizes over seeds (see minigrad.reproduce.run_summary).
RUN_METRICS = ("test_accuracy", "best_test_accuracy", "train_accuracy_inference", "test_accuracy_batch_stats",
               "wall_time")  # fmt: skip


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int] | None:
    """(mean, sample standard deviation, count) of the values that are not None; None when there are none."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    std = statistics.stdev(present) if len(present) > 1 else 0.0
    return statistics.fmean(present), std, len(present)


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, float] | None]:
    """Per metric of RUN_METRICS: {"mean", "std", "n"} over `runs` (None when no run has it)."""
    summary: dict[str, dict[str, float] | None] = {}
    for metric in RUN_METRICS:
        stats = mean_std([run.get(metric) for run in runs])
        summary[metric] = None if stats is None else {"mean": stats[0], "std": stats[1], "n": stats[2]}
    return summary


def percent(stats: dict[str, Any] | None) -> str:
    """A table cell: "87.2 ± 1.3" (in %), "87.2" for one seed, "—" for none."""
    if stats is None:
        return "—"
    if stats["n"] > 1:
        return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"
    return f"{100 * stats['mean']:.1f}"


def hardware() -> dict[str, Any]:
    """The platform, Python, CPU model and number of cores, recorded beside the results."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpu_count": os.cpu_count()}  # fmt: skip
