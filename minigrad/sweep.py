"""``minigrad reproduce --vary NAME=V1,V2,...``: every selected arm at every combination of the varied values.

The paper leaves two hyperparameters of Batch Renorm open: the update rate Δ
of the moving averages and the schedule of the limits r_max and d_max. A
sweep runs the study's arms, with the same seeds, at every combination of the
values given for the names of :data:`VARY_NAMES` (the ``minigrad train``
flags without their dashes):

* ``norm-momentum`` (Δ, both BatchNorm and Batch Renorm arms);
* ``renorm-warmup``, ``renorm-ramp``, ``r-max-final``, ``d-max-final`` and
  ``renorm-warmup-rule`` (Batch Renorm's schedule, see
  :func:`minigrad.nn.renorm_schedule_for_run`; BatchNorm arms have none and
  run once per value of the names that apply to them).

Each run has its own folder ``OUT/sweep/<combination>/<arm>-seed<k>/``,
where the combination names only the values that apply to the arm, in a
fixed order (``norm-momentum=0.1_renorm-warmup=50``), so a rerun of the same
command skips the finished runs, and a sweep over other names or values adds
folders without touching the existing ones. ``results.json`` keeps every
run with its varied values; ``results.md`` has a table per arm (mean ± std
test accuracy over seeds per combination, minigrad's and the paper's
defaults marked) and each varied name gets a figure ``sweep_<name>.png``
(with two names, also a heat map ``sweep_heatmap_<arm>.png`` per arm).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minigrad.aggregate import hardware, percent, summarize
from minigrad.norm.schedule import (
    D_RAMP_FRACTION,
    DEFAULT_WARMUP_RULE,
    PAPER_D_MAX_FINAL,
    PAPER_R_MAX_FINAL,
    PAPER_R_MAX_RAMP_END,
    PAPER_TOTAL_STEPS,
    PAPER_WARMUP_STEPS,
    WARMUP_RULES,
    renorm_schedule_for_run,
)
from minigrad.train_config import ConfigError, TrainConfig

# The study's configuration and arms (minigrad.reproduce.ReproduceConfig and Arm) are used here by their
# attributes only: minigrad.reproduce imports this module, not the other way round.
_Study = Any
_Arm = Any

SWEEP_DIR = "sweep"  # OUT/sweep/<combination>/<arm>-seed<k>/
NOT_VARIED = "not-varied"  # the combination folder of an arm to which no varied name applies
MAX_RUNS = 10_000  # a typo such as a value list of thousands should not start a sweep of years


@dataclass(frozen=True)
class VaryName:
    """A name that ``--vary`` accepts: the TrainConfig field it sets, how its values parse, and whom it concerns."""

    field: str
    expected: str  # what a value must be, for the error message
    parse: Callable[[str], Any]  # a value as text -> the value, or ValueError
    norms: tuple[str, ...]  # the arms' normalizations it applies to
    meaning: str


def _number(check: Callable[[float], bool]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not (math.isfinite(value) and check(value)):
            raise ValueError(text)
        return value

    return parse


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _rule(text: str) -> str:
    if text not in WARMUP_RULES:
        raise ValueError(text)
    return text


VARY_NAMES: dict[str, VaryName] = {
    "norm-momentum": VaryName("norm_momentum", "a number in [0, 1]", _number(lambda v: 0 <= v <= 1), ("bn", "brn"),
                              "Δ, the update rate of the moving averages"),
    "renorm-warmup": VaryName("renorm_warmup", "an integer >= 0", _count, ("brn",),
                              "steps of warm-up (r_max = 1, d_max = 0)"),
    "renorm-ramp": VaryName("renorm_ramp", "an integer >= 0", _count, ("brn",),
                            "steps of r_max's ramp (d_max's is 20/35 of it)"),
    "r-max-final": VaryName("r_max_final", "a finite number >= 1", _number(lambda v: v >= 1), ("brn",),
                            "r_max at the end of its ramp"),
    "d-max-final": VaryName("d_max_final", "a finite number >= 0", _number(lambda v: v >= 0), ("brn",),
                            "d_max at the end of its ramp"),
    "renorm-warmup-rule": VaryName("renorm_warmup_rule", f"one of {', '.join(WARMUP_RULES)}", _rule, ("brn",),
                                   "how the warm-up follows from the run's length"),
}  # fmt: skip


class VaryError(ConfigError):
    """A ``--vary`` that cannot work: an unknown name, a bad or repeated value, a name that would change nothing."""


def _error(message: str) -> VaryError:
    return VaryError(f"vary: {message}")


def value_text(value: Any) -> str:
    """A value as it appears in folder names, tables and figures (floats as Python writes them: 0.01, 3.0)."""
    return repr(value) if isinstance(value, float) else str(value)


def parse_vary(items: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """``["NAME=V1,V2", ...]`` as {name: values}, in the order of VARY_NAMES; any error names --vary and the NAME."""
    if isinstance(items, str):
        items = [items]
    known = ", ".join(VARY_NAMES)
    parsed: dict[str, tuple[Any, ...]] = {}
    for item in items:
        name, sep, values = str(item).partition("=")
        name = name.strip()
        if not sep or not name:
            raise _error(f"expected NAME=V1,V2,... with NAME one of {known}, got {item!r}")
        if name not in VARY_NAMES:
            raise _error(f"unknown name {name!r}; expected one of {known}")
        if name in parsed:
            raise _error(f"{name} is given twice; give all its values in one --vary NAME=V1,V2,...")
        spec = VARY_NAMES[name]
        texts = [text.strip() for text in values.split(",")]
        if not any(texts):
            raise _error(f"{name}: no values given; expected a comma-separated list of {spec.expected}")
        chosen: list[Any] = []
        for text in texts:
            try:
                value = spec.parse(text)
            except ValueError:
                raise _error(f"{name}: expected {spec.expected}, got {text!r}") from None
            if value in chosen:
                raise _error(f"{name}: the value {value_text(value)} is given twice")
            chosen.append(value)
        parsed[name] = tuple(chosen)
    if "renorm-warmup" in parsed and "renorm-warmup-rule" in parsed:
        raise _error(
            "renorm-warmup-rule derives the warm-up's length, so it does nothing when renorm-warmup is varied too; "
            "vary one of them"
        )
    return {name: parsed[name] for name in VARY_NAMES if name in parsed}


def applicable(names: Sequence[str], arm: _Arm) -> list[str]:
    """The varied names that change the runs of `arm` (BatchNorm has no r_max/d_max schedule)."""
    return [name for name in names if arm.overrides.get("norm") in VARY_NAMES[name].norms]


def combinations(vary: Mapping[str, Sequence[Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """Every combination of the values of `names`, the first name outermost (one empty combination for none)."""
    return [dict(zip(names, values)) for values in itertools.product(*(vary[name] for name in names))]


def combination_folder(values: Mapping[str, Any]) -> str:
    """The folder of a combination, e.g. ``norm-momentum=0.1_renorm-warmup=50`` (names in VARY_NAMES order)."""
    if not values:
        return NOT_VARIED
    return "_".join(f"{name}={value_text(values[name])}" for name in VARY_NAMES if name in values)


def run_configs(config: _Study) -> list[tuple[_Arm, int, TrainConfig]]:
    """(arm, seed, training configuration) of every run of the sweep: arms outer, then combinations, then seeds."""
    vary = parse_vary(config.vary or [])
    if not vary:
        raise _error("no NAME=V1,V2,... given")
    base = config.base_config()
    arms = config.selected_arms()
    for name in vary:
        if not any(applicable([name], arm) for arm in arms):
            raise _error(
                f"{name} changes only Batch Renorm's schedule, and no Batch Renorm arm is selected; add a brn-* arm "
                f"to --arms, or leave {name} out"
            )
    planned = [(arm, values) for arm in arms for values in combinations(vary, applicable(list(vary), arm))]
    if len(planned) * config.seeds > MAX_RUNS:
        raise _error(f"{len(planned) * config.seeds} runs is more than {MAX_RUNS}; vary fewer names or values")
    runs = []
    for arm, values in planned:
        settings = {VARY_NAMES[name].field: value for name, value in values.items()}
        for k in range(config.seeds):
            seed = config.seed + k
            folder = Path(config.out) / SWEEP_DIR / combination_folder(values) / f"{arm.name}-seed{seed}"
            run_config = dataclasses.replace(
                base,
                **arm.overrides,
                **settings,
                seed=seed,
                out=str(folder),
                extra={"arm": arm.name, "regime": arm.regime, "varied": values},
            )
            runs.append((arm, seed, run_config.resolved()))
    return runs


# ----------------------------------------------------------------------------
# Defaults, and the schedule each combination runs with
# ----------------------------------------------------------------------------


def defaults(base: TrainConfig) -> dict[str, dict[str, Any]]:
    """Per name: the value a run takes when it is not varied (minigrad) and the paper's (None: not stated)."""
    steps = base.steps
    factor = steps / PAPER_TOTAL_STEPS
    derived = renorm_schedule_for_run(steps, momentum=base.norm_momentum, rule=DEFAULT_WARMUP_RULE)
    return {
        "norm-momentum": {"minigrad": base.norm_momentum, "paper": None},
        "renorm-warmup": {"minigrad": derived.warmup_steps, "paper": round(PAPER_WARMUP_STEPS * factor)},
        "renorm-ramp": {
            "minigrad": derived.r_max_ramp_end - derived.warmup_steps,
            "paper": round((PAPER_R_MAX_RAMP_END - PAPER_WARMUP_STEPS) * factor),
        },
        "r-max-final": {"minigrad": PAPER_R_MAX_FINAL, "paper": PAPER_R_MAX_FINAL},
        "d-max-final": {"minigrad": PAPER_D_MAX_FINAL, "paper": PAPER_D_MAX_FINAL},
        "renorm-warmup-rule": {"minigrad": DEFAULT_WARMUP_RULE, "paper": "proportional"},
    }


def schedule_of(config: TrainConfig) -> dict[str, int] | None:
    """The warm-up and the ramps' ends that a Batch Renorm run follows (None for other normalizations)."""
    if config.norm != "brn":
        return None
    from minigrad.train import renorm_schedule_of

    schedule = renorm_schedule_of(config)
    return {"warmup": schedule.warmup_steps, "d_max_ramp_end": schedule.d_max_ramp_end,
            "r_max_ramp_end": schedule.r_max_ramp_end}  # fmt: skip


# ----------------------------------------------------------------------------
# results.json and results.md
# ----------------------------------------------------------------------------


def results_document(
    config: _Study, arms: Sequence[_Arm], runs: Sequence[dict[str, Any]], interrupted: bool
) -> dict[str, Any]:
    """results.json of a sweep: the options, every run with its varied values, and per arm and combination the
    mean ± std over seeds."""
    vary = parse_vary(config.vary or [])
    base = config.base_config()
    schedules: dict[tuple[str, str], dict[str, int] | None] = {}
    for arm, _, run_config in run_configs(config):
        schedules.setdefault((arm.name, combination_folder(run_config.extra["varied"])), schedule_of(run_config))
    per_arm = {}
    complete = not interrupted
    for arm in arms:
        names = applicable(list(vary), arm)
        rows = []
        for values in combinations(vary, names):
            folder = combination_folder(values)
            found = [r for r in runs if r["arm"] == arm.name and r.get("combination") == folder]
            summary = summarize(found)
            rows.append({"values": values, "combination": folder, "schedule": schedules[(arm.name, folder)],
                         "seeds": sorted(r["seed"] for r in found), "summary": summary})  # fmt: skip
            complete = complete and len(found) == config.seeds
        per_arm[arm.name] = {
            "regime": arm.regime,
            "description": arm.description,
            "overrides": arm.overrides,
            "varied": names,
            "combinations": rows,
        }
    options = dataclasses.asdict(config)
    options["arms"] = [arm.name for arm in arms]
    return {
        "study": "Batch Renormalization (Ioffe 2017): a sweep of the update rate and the r_max/d_max schedule",
        "smoke_test": bool(config.quick),
        "options": options,
        "base_config": json.loads(base.resolved().to_json()),
        "seeds": [config.seed + k for k in range(config.seeds)],
        "vary": {name: list(values) for name, values in vary.items()},
        "defaults": {name: value for name, value in defaults(base.resolved()).items() if name in vary},
        "complete": complete,
        "hardware": hardware(),
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
        "runs": list(runs),
        "arms": per_arm,
    }


def marked(name: str, value: Any, document: dict[str, Any]) -> str:
    """A value with "[default]" (minigrad's, when not varied) and "[paper]" (the paper's recipe) as they apply."""
    marks = document["defaults"].get(name, {})
    tags = [who if who == "paper" else "default" for who in ("minigrad", "paper") if marks.get(who) == value]
    return value_text(value) + (f" [{', '.join(tags)}]" if tags else "")


def results_markdown(document: dict[str, Any]) -> str:
    """results.md of a sweep: a table per arm, a row per combination of the values that apply to it."""
    base = document["base_config"]
    smoke = bool(document.get("smoke_test"))
    lines = ["# Batch Renorm sweep: smoke test (--quick), not results" if smoke else "# Batch Renorm sweep", ""]
    if smoke:
        lines += [
            "**This is a smoke test (--quick): every run stops long before it has learned what it can, so these "
            "numbers say nothing about the settings varied; they are not results.**",
            "",
        ]
    varied = ", ".join(f"{name} in {{{', '.join(map(value_text, values))}}}" for name, values in document["vary"].items())
    lines += [
        f"Varied: {varied}. Data {base['dataset']}"
        + (f" (train subset {base['train_subset']})" if base["train_subset"] else "")
        + f", model {base['model']}, {base['steps']} steps of batch {base['batch_size']}, "
        f"{base['optimizer']} lr {base['lr']} ({base['lr_schedule']}), norm momentum {base['norm_momentum']} "
        f"unless varied, seeds {document['seeds']}, backend {base['backend']}. "
        f"{'Complete.' if document['complete'] else 'INCOMPLETE: some runs have not finished.'}",
        "",
        "Test accuracy in % (inference mode), mean ± std over seeds. [default]: the value a run takes when the name "
        f"is not varied (warm-up by the {DEFAULT_WARMUP_RULE} rule at the base norm momentum); [paper]: the paper's "
        "recipe (its 130k-step schedule shrunk proportionally to the run; it does not state its update rate). "
        "Schedule: the step at which the warm-up ends, and those at which d_max and r_max reach their final values.",
        "",
    ]
    for name, arm in document["arms"].items():
        names = arm["varied"]
        lines += [f"## {name}", "", arm["description"] + ".", ""]
        if not names:
            lines += [f"None of {', '.join(document['vary'])} applies to this arm (BatchNorm has no r_max/d_max "
                      "schedule): one run per seed, for reference.", ""]  # fmt: skip
        header = [*names, "schedule (warm-up, d_max end, r_max end)", "test (final)", "test (best)", "seeds"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in arm["combinations"]:
            schedule = row["schedule"]
            shown = "—" if schedule is None else (
                f"{schedule['warmup']}, {schedule['d_max_ramp_end']}, {schedule['r_max_ramp_end']}")  # fmt: skip
            cells = [marked(n, row["values"][n], document) for n in names]
            final, best = percent(row["summary"]["test_accuracy"]), percent(row["summary"]["best_test_accuracy"])
            cells += [shown, final, best, str(len(row["seeds"]))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"d_max's ramp is {D_RAMP_FRACTION:.4g} of r_max's (the paper's 20k of 35k steps).", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------


def write_figures(out: Path, document: dict[str, Any], smoke_test: bool = False) -> dict[str, Any]:
    """One PNG per varied name, ``sweep_<name>.png``: final test accuracy against the value, a line per arm (and per
    combination of the other varied names), the spread over seeds as a bar from min to max; defaults marked on
    the axis. An arm the name does not apply to is a flat line: the same runs at every value. With two varied
    names, also a heat map ``sweep_heatmap_<arm>.png`` per arm that both apply to."""
    from minigrad import plots

    mark = " (smoke test, not results)" if smoke_test else ""
    runs = document["runs"]
    info: dict[str, Any] = {}
    for name, values in document["vary"].items():
        series: dict[str, list[tuple[Any, list[float]]]] = {}
        for arm_name, arm in document["arms"].items():
            others = [n for n in arm["varied"] if n != name]
            for row in arm["combinations"]:
                rest = {n: row["values"][n] for n in others}
                label = arm_name + "".join(f", {n} {value_text(v)}" for n, v in rest.items())
                if name not in arm["varied"]:
                    label += f" ({name} does not apply)"
                found = [r["test_accuracy"] for r in runs if r["arm"] == arm_name and r["combination"] == row["combination"]]
                points = series.setdefault(label, [])
                if name in arm["varied"]:
                    points.append((row["values"][name], found))
                else:
                    points.extend((value, found) for value in values)
        series = {label: sorted(points, key=lambda p: list(values).index(p[0])) for label, points in series.items()}
        ticks = {value: marked(name, value, document) for value in values}
        title = f"Final test accuracy against {name}{mark}"
        references = [label for label in series if label.endswith("does not apply)")]
        xlabel = f"{name}: {VARY_NAMES[name].meaning}"
        figure = plots.sweep_figure(series, list(values), ticks, xlabel=xlabel, title=title, references=references)
        path = out / f"sweep_{name}.png"
        info[path.name] = {"vary": name, "series": list(series), "lines": plots.count_lines(figure), "title": title}
        plots.save(figure, path)
    if len(document["vary"]) == 2:  # and a heat map per arm that both names apply to
        (first, first_values), (second, second_values) = document["vary"].items()
        for arm_name, arm in document["arms"].items():
            if arm["varied"] != [first, second]:
                continue
            by_values = {(row["values"][first], row["values"][second]): row["combination"] for row in arm["combinations"]}
            cells = [[[r["test_accuracy"] for r in runs if r["arm"] == arm_name and r["combination"] == by_values[(a, b)]]
                      for b in second_values] for a in first_values]  # fmt: skip
            title = f"{arm_name}: final test accuracy, mean ± std over seeds{mark}"
            figure = plots.heatmap_figure(cells, [marked(first, v, document) for v in first_values],
                                          [marked(second, v, document) for v in second_values],
                                          ylabel=first, xlabel=second, title=title)  # fmt: skip
            path = out / f"sweep_heatmap_{arm_name}.png"
            info[path.name] = {"vary": [first, second], "arm": arm_name, "title": title}
            plots.save(figure, path)
    return info
