"""Figures of ``minigrad reproduce``: test accuracy against step per regime, and Batch Renorm's clipping telemetry.

matplotlib is an optional dependency (``pip install 'minigrad[train]'``); it
is imported on first use, with the non-interactive Agg backend so that the
figures render on machines without a display, unless the program already uses
pyplot (a notebook, a script with its own figures): then its backend is left alone. Each function returns the
matplotlib Figure, so that callers (and tests) can inspect what was drawn;
:func:`save` writes it as PNG and closes it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from minigrad.checkpoint import atomic_write

Curve = tuple[Sequence[int], Sequence[float]]  # (steps, values) of one run


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or an ImportError saying how to install it."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(
            "the figures of minigrad reproduce need matplotlib, which is not installed: pip install 'minigrad[train]'"
        ) from exc
    if "matplotlib.pyplot" not in sys.modules:  # a command-line run; a notebook keeps its inline figures
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _mean_band(curves: Sequence[Curve]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Steps common to every seed's curve, with the mean, min and max over seeds at each."""
    common = set(curves[0][0])
    for steps, _ in curves[1:]:
        common &= set(steps)
    steps = sorted(common)
    columns = []
    for run_steps, values in curves:
        lookup = dict(zip(run_steps, values))
        columns.append([lookup[s] for s in steps])
    rows = list(zip(*columns)) if columns else []
    mean = [sum(row) / len(row) for row in rows]
    return steps, mean, [min(row) for row in rows], [max(row) for row in rows]


def accuracy_figure(
    curves: Mapping[str, Sequence[Curve]], title: str, labels: Mapping[str, str] | None = None, percent: bool = True
) -> Any:
    """Test accuracy against step: one line per arm (mean over seeds) and a shaded band from min to max over seeds.

    `curves` maps an arm's name to one (steps, accuracies) curve per seed.
    The bands are patches, not lines, so ``figure.axes[0].get_lines()`` has
    exactly one line per arm.
    """
    plt = _pyplot()
    shown = sum(1 for runs in curves.values() if any(len(run[0]) for run in runs))
    figure, ax = plt.subplots(figsize=(6.4, 4.2 + 0.17 * shown), dpi=100)
    scale = 100.0 if percent else 1.0
    for name, runs in curves.items():
        runs = [run for run in runs if len(run[0])]
        if not runs:
            continue
        steps, mean, low, high = _mean_band(runs)
        label = (labels or {}).get(name, name)
        if len(runs) > 1:
            label += f", {len(runs)} seeds"
        (line,) = ax.plot(steps, [scale * v for v in mean], marker="o", markersize=2.5, linewidth=1.5, label=label)
        if len(runs) > 1:
            ax.fill_between(steps, [scale * v for v in low], [scale * v for v in high], color=line.get_color(), alpha=0.2)
    ax.set_title(title)
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy, inference mode" + (" (%)" if percent else ""))
    ax.grid(True, alpha=0.3)
    if ax.get_lines():  # below the axes, so that it never covers a curve
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    figure.tight_layout()
    return figure


def telemetry_figure(
    telemetry: Mapping[str, Sequence[Mapping[str, Mapping[str, Sequence[float]]]]], title: str | None = None
) -> Any:
    """Fraction of r and of d clipped over training, per Batch Renorm layer: a row per arm, columns r and d.

    `telemetry` maps an arm to one record per seed: layer name -> {"step", "r_clipped_fraction", "d_clipped_fraction"}.
    Each line is a layer (mean over seeds). The values are those of the training
    batch just before each evaluation, so they are samples, not averages over steps.
    """
    plt = _pyplot()
    arms = list(telemetry)
    figure, axes = plt.subplots(len(arms), 2, figsize=(9, 2.3 * len(arms) + 0.6), dpi=90, squeeze=False, sharex=True)
    for row, arm in enumerate(arms):
        seeds = [s for s in telemetry[arm] if s]
        layers = list(seeds[0]) if seeds else []
        for col, key in enumerate(("r_clipped_fraction", "d_clipped_fraction")):
            ax = axes[row][col]
            for layer in layers:
                runs = [(s[layer]["step"], s[layer][key]) for s in seeds if layer in s]
                steps, mean, _, _ = _mean_band(runs)
                ax.plot(steps, mean, linewidth=1.2, label=layer)
            ax.set_ylim(-0.03, 1.03)
            ax.set_title(f"{arm}: fraction of {key[0]} clipped", fontsize=9)
            ax.grid(True, alpha=0.3)
            if row == len(arms) - 1:
                ax.set_xlabel("training step")
        if layers:
            axes[row][0].legend(fontsize=6, loc="upper right")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def sweep_figure(
    series: Mapping[str, Sequence[tuple[Any, Sequence[float]]]],
    values: Sequence[Any],
    ticks: Mapping[Any, str],
    xlabel: str,
    title: str,
    percent: bool = True,
    references: Sequence[str] = (),
) -> Any:
    """Final accuracy against a varied value: a line per series (mean over seeds), a bar from min to max over seeds
    (moved a little sideways per series, so that they do not hide each other).

    `series` maps a label to (value, accuracies of its seeds) points; `values`
    are the varied values in order and `ticks` their labels (where defaults are
    marked), `references` the series drawn dashed (runs the value does not
    change, the same at every value). Numbers spanning a factor of 10 or more get a log axis; other values
    (names, such as a rule) are placed evenly. The bars are collections, not
    lines, so ``figure.axes[0].get_lines()`` has exactly one line per series.
    """
    plt = _pyplot()
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    log = numeric and all(v > 0 for v in values) and max(values) >= 10 * min(values)

    def x(value: Any) -> float:
        return float(value) if numeric else float(list(values).index(value))

    def dodged(xs: list[float], k: float) -> list[float]:
        """`xs` moved sideways by k hundredths of the axis, so that the bars of several series stay apart."""
        if log:
            return [v * (max(values) / min(values)) ** (0.01 * k) for v in xs]
        span = (max(map(x, values)) - min(map(x, values))) or 1.0
        return [v + 0.01 * k * span for v in xs]

    figure, ax = plt.subplots(figsize=(6.4, 4.2 + 0.17 * len(series)), dpi=100)
    scale = 100.0 if percent else 1.0
    for index, (label, points) in enumerate(series.items()):
        points = [(value, accuracies) for value, accuracies in points if len(accuracies)]
        if not points:
            continue
        xs = [x(value) for value, _ in points]
        means = [scale * sum(a) / len(a) for _, a in points]
        style = {"linestyle": "--", "marker": None} if label in references else {"marker": "o", "markersize": 3.5}
        (line,) = ax.plot(xs, means, linewidth=1.5, label=label, **style)
        if any(len(a) > 1 for _, a in points):
            ax.vlines(dodged(xs, index - (len(series) - 1) / 2), [scale * min(a) for _, a in points],
                      [scale * max(a) for _, a in points], color=line.get_color(), alpha=0.5, linewidth=3)  # fmt: skip
    if log:
        ax.set_xscale("log")
    ax.set_xticks([x(value) for value in values])
    ax.set_xticklabels([ticks.get(value, str(value)).replace(" [", "\n[") for value in values], fontsize=7)
    ax.minorticks_off()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("final test accuracy, inference mode" + (" (%)" if percent else ""))
    ax.grid(True, alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False)
    figure.tight_layout()
    return figure


def heatmap_figure(
    cells: Sequence[Sequence[Sequence[float]]],
    rows: Sequence[str],
    columns: Sequence[str],
    ylabel: str,
    xlabel: str,
    title: str,
) -> Any:
    """A grid of final accuracies for two varied names: colour the mean over seeds, text "mean ± std" (in %).

    ``cells[i][j]`` holds the accuracies of the seeds at row value i and column
    value j (an empty cell, a run not finished, is left blank).
    """
    plt = _pyplot()
    means = [[100 * sum(c) / len(c) if len(c) else float("nan") for c in row] for row in cells]
    figure, ax = plt.subplots(figsize=(1.3 * len(columns) + 2.6, 0.6 * len(rows) + 2.2), dpi=100)
    image = ax.imshow(means, cmap="viridis", aspect="auto")
    shown = [m for row in means for m in row if m == m]  # not NaN
    low, high = (min(shown), max(shown)) if shown else (0.0, 1.0)
    for i, row in enumerate(cells):
        for j, seeds in enumerate(row):
            if not len(seeds):
                continue
            mean = 100 * sum(seeds) / len(seeds)
            spread = (sum((100 * a - mean) ** 2 for a in seeds) / (len(seeds) - 1)) ** 0.5 if len(seeds) > 1 else None
            text = f"{mean:.1f}" + (f"\n± {spread:.1f}" if spread is not None else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if mean < (low + high) / 2 else "black")
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([c.replace(" [", "\n[") for c in columns], fontsize=7)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    figure.colorbar(image, ax=ax, label="final test accuracy (%)")
    figure.tight_layout()
    return figure


def count_lines(figure: Any) -> list[int]:
    """The number of plotted lines on each axes of `figure` (what the tests check against the arms)."""
    return [len(ax.get_lines()) for ax in figure.axes]


def save(figure: Any, path: str | Path) -> Path:
    """Write `figure` as a PNG atomically and close it."""
    plt = _pyplot()
    try:
        return atomic_write(path, lambda file: figure.savefig(file, format="png"))
    finally:
        plt.close(figure)
