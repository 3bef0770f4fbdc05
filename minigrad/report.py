"""The written results of ``minigrad reproduce``: results.json's document, results.md and the figures.

Everything here reads finished run folders (their ``metrics.jsonl``) and the arm
table; nothing trains. :mod:`minigrad.reproduce` runs the study and calls these.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from minigrad.aggregate import RUN_METRICS, hardware, mean_std, percent
from minigrad.arms import PAPER_MICROBATCH, REGIMES, Arm
from minigrad.train import METRICS

SMOKE_TEST = "smoke test (--quick): short runs that only check that the study runs; these numbers are not results"


def read_records(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    """The metric records of `kind` ("train" or "eval") in a run folder (none if it has no metrics yet)."""
    path = run_dir / METRICS
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a hard kill; train drops it on resume
        if record.get("kind") == kind:
            records.append(record)
    return records


# ----------------------------------------------------------------------------
# Aggregation and the written results
# ----------------------------------------------------------------------------


def results_document(config: Any, arms: Sequence[Arm], runs: Sequence[dict[str, Any]], interrupted: bool) -> dict[str, Any]:
    """The content of results.json: the study's options, every run, and mean/std per arm beside the paper.

    `config` is the study's :class:`minigrad.reproduce.ReproduceConfig` (not imported: reproduce imports this module).
    """
    base = config.base_config()
    per_arm = {}
    for arm in arms:
        arm_runs = [r for r in runs if r["arm"] == arm.name]
        summary = {}
        for metric in RUN_METRICS:
            stats = mean_std([r[metric] for r in arm_runs])
            summary[metric] = None if stats is None else {"mean": stats[0], "std": stats[1], "n": stats[2]}
        per_arm[arm.name] = {
            "regime": arm.regime,
            "description": arm.description,
            "overrides": arm.overrides,
            "paper": dataclasses.asdict(arm.paper),
            "runs": arm_runs,
            "summary": summary,
        }
    options = dataclasses.asdict(config)
    options["arms"] = [arm.name for arm in arms]
    return {
        "study": "Batch Renormalization (Ioffe 2017), section 4, at small scale",
        "smoke_test": bool(config.quick),
        "options": options,
        "base_config": json.loads(base.resolved().to_json()),
        "seeds": [config.seed + k for k in range(config.seeds)],
        "complete": not interrupted and all(len(per_arm[a.name]["runs"]) == config.seeds for a in arms),
        "hardware": hardware(),
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
        "arms": per_arm,
    }


def _gap(document: dict[str, Any], bn: str, brn: str, metric: str = "test_accuracy") -> str:
    """BRN − BN in points, mean ± std over the seeds both arms have (paired by seed)."""
    arms = document["arms"]
    if bn not in arms or brn not in arms:
        return "—"
    a = {r["seed"]: r[metric] for r in arms[bn]["runs"]}
    b = {r["seed"]: r[metric] for r in arms[brn]["runs"]}
    diffs = [100 * (b[s] - a[s]) for s in sorted(set(a) & set(b))]
    if not diffs:
        return "—"
    if len(diffs) == 1:
        return f"{diffs[0]:+.1f}"
    return f"{statistics.fmean(diffs):+.1f} ± {statistics.stdev(diffs):.1f}"


def _gaps(microbatch: int) -> tuple[tuple[str, str, str, str], ...]:
    """(what, BN arm, BRN arm, the paper's BRN − BN in points) per regime; the paper's microbatches hold 4."""
    paper_micro = "+2.3 (BN at 210k, BRN at 130k)" if microbatch == PAPER_MICROBATCH else "not in the paper"
    return (
        ("i.i.d.", "bn-iid", "brn-iid", "+0.2"),
        (f"microbatches of {microbatch}", "bn-micro", "brn-micro", paper_micro),
        ("non-i.i.d. (paper's grouping)", "bn-noniid", "brn-noniid", "+11.5"),
        ("one label per batch", "bn-noniid1", "brn-noniid1", "not in the paper"),
    )


def results_markdown(document: dict[str, Any]) -> str:
    """results.md: a table of mean ± std per arm beside the paper's number, and the BRN − BN gaps."""
    options = document["options"]
    base = document["base_config"]
    smoke = bool(document.get("smoke_test"))
    lines = [
        "# Batch Renorm vs BatchNorm: smoke test (--quick), not results"
        if smoke
        else "# Batch Renorm vs BatchNorm: reproduction",
        "",
    ]
    if smoke:
        lines += [
            f"**This is a {SMOKE_TEST}.** Each run stops long before it has learned what it can, so the accuracies "
            "and the gaps below say nothing about BatchNorm or Batch Renorm; run `minigrad reproduce` without "
            "`--quick` for the study.",
            "",
        ]
    lines += [
        f"Data {base['dataset']}"
        + (f" (train subset {base['train_subset']})" if base["train_subset"] else "")
        + f", model {base['model']}, {base['steps']} steps of batch {base['batch_size']}, "
        f"{base['optimizer']} lr {base['lr']} ({base['lr_schedule']}), norm momentum {base['norm_momentum']}, "
        f"seeds {document['seeds']}, backend {base['backend']}. "
        f"{'Complete.' if document['complete'] else 'INCOMPLETE: some runs have not finished.'}",
        "",
        "Accuracies in %, mean ± std over seeds; *test* and *train* in inference mode (running statistics), "
        "*batch stats*: test batches drawn like the training batches and normalized with their own statistics. "
        "The paper's numbers are Inception-v3 on ImageNet (top-1 validation).",
        "",
        "| arm | regime | test (final) | test (best) | train (inference) | batch stats | steps | wall time (s) | paper |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, arm in document["arms"].items():
        s = arm["summary"]
        steps = sorted({r["steps"] for r in arm["runs"]})
        wall = "—" if s["wall_time"] is None else format(s["wall_time"]["mean"], ".0f")
        lines.append(
            f"| {name} | {arm['regime']} | {percent(s['test_accuracy'])} | {percent(s['best_test_accuracy'])} | "
            f"{percent(s['train_accuracy_inference'])} | {percent(s['test_accuracy_batch_stats'])} | "
            f"{', '.join(map(str, steps)) or '—'} | {wall} | {arm['paper']['note']} |"
        )
    ours = "smoke test" if smoke else "ours"
    lines += ["", "Batch Renorm minus BatchNorm, test accuracy in points (paired by seed):", "",
              f"| regime | {ours} | paper |", "|---|---|---|"]  # fmt: skip
    microbatch = options.get("microbatch", PAPER_MICROBATCH)  # results.json files older than the option held 4
    for what, bn, brn, paper in _gaps(microbatch):
        lines.append(f"| {what} | {_gap(document, bn, brn)} | {paper} |")
    lines += ["", f"Labels per non-i.i.d. batch: {options['labels_per_batch']}; examples per microbatch: {microbatch}.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------


def eval_curves(run_dir: Path, key: str = "test_accuracy") -> tuple[list[int], list[float]]:
    """(steps, values of `key`) over the evaluations of a run."""
    evaluations = [e for e in read_records(run_dir, "eval") if key in e]
    return [e["step"] for e in evaluations], [e[key] for e in evaluations]


def telemetry_curves(run_dir: Path) -> dict[str, dict[str, list[float]]]:
    """Per Batch Renorm layer: steps and fractions of r and d clipped, at each evaluation (one training batch each)."""
    layers: dict[str, dict[str, list[float]]] = {}
    for record in read_records(run_dir, "eval"):
        for layer, values in (record.get("renorm") or {}).items():
            if "r_clipped_fraction" not in values:
                continue
            series = layers.setdefault(layer, {"step": [], "r_clipped_fraction": [], "d_clipped_fraction": []})
            series["step"].append(record["step"])
            series["r_clipped_fraction"].append(values["r_clipped_fraction"])
            series["d_clipped_fraction"].append(values["d_clipped_fraction"])
    return layers


def write_figures(
    out: Path, arms: Sequence[Arm], runs: Sequence[dict[str, Any]], smoke_test: bool = False
) -> dict[str, Any]:
    """One PNG per regime (test accuracy vs step, a line per arm, a band over seeds) and the clipping telemetry.

    With `smoke_test` (``--quick``) every title says that the figure is a smoke test.
    """
    mark = " (smoke test, not results)" if smoke_test else ""
    from minigrad import plots

    by_arm: dict[str, list[Path]] = {}
    for run in runs:
        by_arm.setdefault(run["arm"], []).append(Path(run["run_dir"]))
    info: dict[str, Any] = {}
    for index, (regime, title) in enumerate(REGIMES.items(), start=1):
        members = [arm for arm in arms if arm.regime == regime and arm.name in by_arm]
        if not members:
            continue
        if regime == "micro":
            title = f"{title} of {members[0].overrides['virtual_batch_size']}"
        curves = {arm.name: [eval_curves(d) for d in by_arm[arm.name]] for arm in members}
        labels = {arm.name: f"{arm.name} (paper: {arm.paper.note})" for arm in members}
        path = out / f"figure{index}_{regime}.png"
        figure = plots.accuracy_figure(curves, title=title + mark, labels=labels)
        info[path.name] = {"regime": regime, "arms": [a.name for a in members], "lines": plots.count_lines(figure),
                           "title": title + mark}  # fmt: skip
        plots.save(figure, path)
    renorm = [arm for arm in arms if arm.overrides.get("norm") == "brn" and arm.name in by_arm]
    if renorm:
        telemetry = {arm.name: [telemetry_curves(d) for d in by_arm[arm.name]] for arm in renorm}
        path = out / "telemetry.png"
        figure = plots.telemetry_figure(telemetry, title="Batch Renorm clipping" + mark)
        info[path.name] = {"regime": "telemetry", "arms": [a.name for a in renorm], "lines": plots.count_lines(figure),
                           "title": "Batch Renorm clipping" + mark}  # fmt: skip
        plots.save(figure, path)
    return info
