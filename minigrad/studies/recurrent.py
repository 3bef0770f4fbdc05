"""The recurrent study: can Batch Renorm share one set of statistics across the timesteps of an LSTM?

Section 5 of the paper conjectures that Batch Renormalization "may make it
possible to use the same running averages to normalize all timesteps, and
then update those averages using all timesteps". This study trains the same
LSTM with each normalization of :mod:`minigrad.norm.recurrent` (none, layer,
batch-per-step, batch-shared, renorm-shared) on tasks built offline:

* ``digits-rows``: the 8x8 digits fed one row per timestep (8 steps of 8 pixels), classified from the last state;
* ``digits-pixels``: the same digits one pixel per timestep (64 steps);
* ``adding``: the adding problem (two marked numbers among T uniform ones; predict their sum), trained at
  length T and tested at T, 2T and 4T (mean squared error; predicting 1 always scores about 0.167);
* ``digits-rows-batch4``: digits by rows with batches of 4;
* ``digits-rows-single-label``: digits by rows, every batch of 16 drawn from one label (section 4's
  non-i.i.d. extreme).

Every arm has the same model, optimizer, data and seeds; only the
normalization changes. Per run: the test metric in inference mode, the
train/inference gap (the metric on training data with batch statistics, in
batches formed as in training, against the moving averages), whether the loss
diverged, and the number of running statistics the model keeps.

:func:`run_study` writes ``results.json`` (every run, rewritten atomically
after each), ``results.md`` and PNG figures into the output folder; a rerun
skips the runs already in ``results.json``. ``quick`` is a tiny budget for
tests and a first look (under a minute).
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import minigrad as mg
from minigrad import backend
from minigrad.checkpoint import atomic_write_text
from minigrad.module import Module
from minigrad.nn.layers import Linear
from minigrad.nn.recurrent import LSTM
from minigrad.norm.layers import DEFAULT_MOMENTUM
from minigrad.norm.recurrent import MODES, recurrent_norms
from minigrad.norm.schedule import DEFAULT_WARMUP_RULE, renorm_schedule_for_run
from minigrad.optim import Adam
from minigrad.tensor import Tensor, no_grad

np = backend.host

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
STUDY = "recurrent"
LENGTH_FACTORS = (1, 2, 4)


@dataclass(frozen=True)
class Task:
    """One task of the study: its data, sequence length and batches."""

    name: str
    kind: str  # "digits" (classification) or "adding" (regression)
    length: int  # training sequence length T
    input_size: int
    batch_size: int
    sampler: str = "iid"  # or "single-label"
    what: str = ""


def make_tasks(quick: bool = False) -> list[Task]:
    """The study's tasks (the adding problem is shorter in the quick mode)."""
    adding_length = 8 if quick else 16
    return [
        Task("digits-rows", "digits", 8, 8, 32, what="digits, one row per step (T = 8)"),
        Task("digits-pixels", "digits", 64, 1, 32, what="digits, one pixel per step (T = 64)"),
        Task("adding", "adding", adding_length, 2, 32, what=f"adding problem, trained at T = {adding_length}"),
        Task("digits-rows-batch4", "digits", 8, 8, 4, what="digits by rows, batches of 4"),
        Task("digits-rows-single-label", "digits", 8, 8, 16, "single-label", what="digits by rows, one label per batch"),
    ]


@dataclass(frozen=True)
class StudyConfig:
    """Settings shared by every run; ``steps`` maps a task to its training steps (defaults per mode)."""

    out: str = "reproduce-recurrent"
    seeds: int = 3
    first_seed: int = 0
    quick: bool = False
    hidden_size: int = 32
    lr: float = 5e-3
    clip_norm: float = 1.0  # global gradient-norm clipping, the usual guard for recurrent nets
    momentum: float = DEFAULT_MOMENTUM  # Δ of the moving averages, the layers' default
    renorm_warmup_rule: str = DEFAULT_WARMUP_RULE  # how renorm-shared's r_max/d_max schedule follows the run's length
    evals: int = 5  # evaluations per run (the curves)
    test_size: int | None = None  # examples (sequences) in each test set; None: all digits, 1000 adding sequences
    progress: bool = True
    steps: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"seeds: expected a positive number of seeds, got {self.seeds!r}")
        if self.quick:
            object.__setattr__(self, "hidden_size", min(self.hidden_size, 12))
            object.__setattr__(self, "evals", min(self.evals, 2))
            if self.test_size is None:
                object.__setattr__(self, "test_size", 120)

    def steps_for(self, task: Task) -> int:
        if task.name in self.steps:
            return int(self.steps[task.name])
        if self.quick:
            return 6
        return {"digits-pixels": 250, "adding": 600}.get(task.name, 600)

    def settings(self) -> dict[str, Any]:
        """What must match for a rerun to resume a folder (everything but where and how it is shown)."""
        record = asdict(self)
        for name in ("out", "seeds", "first_seed", "progress"):
            record.pop(name)
        record["steps"] = {task.name: self.steps_for(task) for task in make_tasks(self.quick)}
        return record


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------

_DIGITS: dict[str, Any] = {}


def digits_sequences(pixels: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) with x (N, T, features): rows (T = 8, 8 features) or pixels (T = 64, 1)."""
    if not _DIGITS:
        from minigrad.data import load_digits

        train, test = load_digits()
        _DIGITS.update(train=(train.images[:, 0], train.labels), test=(test.images[:, 0], test.labels))
    (xtr, ytr), (xte, yte) = _DIGITS["train"], _DIGITS["test"]
    shape = (64, 1) if pixels else (8, 8)
    return xtr.reshape((-1, *shape)), ytr, xte.reshape((-1, *shape)), yte


def adding_problem(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n sequences (n, length, 2): a uniform value and a 0/1 marker, one marked in each half; target their sum."""
    values = rng.uniform(0.0, 1.0, (n, length)).astype(np.float32)
    half = length // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, length, n)
    markers = np.zeros((n, length), np.float32)
    markers[np.arange(n), first] = 1.0
    markers[np.arange(n), second] = 1.0
    target = values[np.arange(n), first] + values[np.arange(n), second]
    return np.stack([values, markers], axis=2), target.astype(np.float32)


class Batches:
    """The training batches of a task: i.i.d. (epochs of a permutation) or single-label, from one generator."""

    def __init__(self, task: Task, rng: np.random.Generator, x: np.ndarray | None, y: np.ndarray | None) -> None:
        self.task, self.rng, self.x, self.y = task, rng, x, y
        self._order: list[int] = []

    def indices(self) -> np.ndarray:
        k = self.task.batch_size
        if self.task.sampler == "single-label":
            label = self.rng.integers(0, int(self.y.max()) + 1)
            members = np.flatnonzero(self.y == label)
            return self.rng.choice(members, size=k, replace=False)
        if len(self._order) < k:
            self._order += self.rng.permutation(len(self.y)).tolist()
        chosen, self._order = self._order[:k], self._order[k:]
        return np.asarray(chosen)

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        if self.task.kind == "adding":
            return adding_problem(self.task.batch_size, self.task.length, self.rng)
        chosen = self.indices()
        return self.x[chosen], self.y[chosen]


# ----------------------------------------------------------------------------
# Model, training and measurements
# ----------------------------------------------------------------------------


class SequenceModel(Module):
    """An LSTM read out from its last hidden state by a linear layer (10 logits, or one number for adding)."""

    def __init__(self, task: Task, norm: str, hidden_size: int, steps: int, momentum: float,
                 warmup_rule: str = DEFAULT_WARMUP_RULE) -> None:  # fmt: skip
        super().__init__()
        options: dict[str, Any] = {"momentum": momentum}
        if norm == "renorm-shared":  # the paper's schedule fitted to the run, as in minigrad train
            r_max, d_max = renorm_schedule_for_run(steps, momentum=momentum, rule=warmup_rule)
            options.update(r_max=r_max, d_max=d_max)
        self.lstm = LSTM(
            task.input_size, hidden_size, batch_first=True, norm=norm, max_steps=task.length, norm_options=options
        )
        self.head = Linear(hidden_size, 10 if task.kind == "digits" else 1)

    def forward(self, x: Tensor) -> Tensor:
        _, (h_n, _) = self.lstm(x)
        return self.head(h_n[0, :, :])


def _loss(task: Task, out: Tensor, y: np.ndarray) -> Tensor:
    if task.kind == "digits":
        return mg.cross_entropy(out, Tensor(backend.asarray(y, "int64")))
    diff = out[:, 0] - Tensor(backend.asarray(y, "float32"))
    return (diff * diff).mean()


def _metric(task: Task, out: Tensor, y: np.ndarray) -> float:
    """Accuracy (digits) or mean squared error (adding) of a batch's outputs."""
    values = backend.to_numpy(out.data).astype(np.float64)
    if task.kind == "digits":
        return float((values.argmax(axis=1) == y).mean())
    return float(((values[:, 0] - y) ** 2).mean())


def _clip_gradients(params: Sequence[Any], max_norm: float) -> float:
    """Scale every gradient so that their global L2 norm is at most `max_norm`; returns the norm before."""
    grads = [p.grad for p in params if p.grad is not None]
    total = math.sqrt(sum(float(backend.to_numpy(backend.namespace(g).sum(g * g))) for g in grads))
    if math.isfinite(total) and total > max_norm:
        for p in params:
            if p.grad is not None:
                p.grad = p.grad * (max_norm / total)
    return total


def evaluate(model: SequenceModel, task: Task, x: np.ndarray, y: np.ndarray, chunk: int = 512) -> float:
    """The metric in inference mode (moving averages), over `x` in chunks (outputs do not depend on the chunking)."""
    model.eval()
    total = 0.0
    with no_grad():
        for start in range(0, len(y), chunk):
            out = model(Tensor(backend.asarray(x[start : start + chunk], "float32")))
            total += _metric(task, out, y[start : start + chunk]) * len(y[start : start + chunk])
    model.train()
    return total / len(y)


def evaluate_with_batch_statistics(model: SequenceModel, task: Task, batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The metric in training mode (each batch normalized by its own statistics), the model's state left as it was."""
    saved = model.state_dict()
    model.train()
    total, count = 0.0, 0
    with no_grad():
        for x, y in batches:
            total += _metric(task, model(Tensor(backend.asarray(x, "float32"))), y) * len(y)
            count += len(y)
    model.load_state_dict(saved)
    return total / count


def _clipping(model: Module) -> dict[str, float] | None:
    records = [norm.telemetry for norm in recurrent_norms(model) if norm.mode == "renorm-shared" and norm.telemetry]
    if not records:
        return None
    return {key: float(np.mean([r[key] for r in records])) for key in ("r_clipped_fraction", "d_clipped_fraction")}


def train_run(task: Task, norm: str, seed: int, config: StudyConfig) -> dict[str, Any]:
    """Train one (task, normalization, seed) and measure it; returns the run's record."""
    started = time.perf_counter()
    steps = config.steps_for(task)
    mg.manual_seed(seed)
    data_rng = np.random.default_rng([seed, 1])
    test_rng = np.random.default_rng([10_000 + seed, 2])  # the same test sets for every normalization of a seed
    if task.kind == "digits":
        xtr, ytr, xte, yte = digits_sequences(pixels=task.length == 64)
        if config.test_size is not None:
            xte, yte = xte[: config.test_size], yte[: config.test_size]
        tests = {1: (xte, yte)}
    else:
        xtr = ytr = None
        n_test = config.test_size or 1000
        tests = {f: adding_problem(n_test, f * task.length, test_rng) for f in LENGTH_FACTORS}
    batches = Batches(task, data_rng, xtr, ytr)
    gap_batches = [batches.next() for _ in range(max(1, (config.test_size or 320) // task.batch_size))]
    model = SequenceModel(task, norm, config.hidden_size, steps, config.momentum, config.renorm_warmup_rule)
    optimizer = Adam(model.parameters(), lr=config.lr)
    eval_steps = sorted({max(1, round(steps * (i + 1) / config.evals)) for i in range(config.evals)})
    curve: list[list[float]] = []
    diverged_at = None
    losses: list[float] = []
    for step in range(1, steps + 1):
        x, y = batches.next()
        loss = _loss(task, model(Tensor(backend.asarray(x, "float32"))), y)
        value = loss.item()
        losses.append(value)
        if not math.isfinite(value):
            diverged_at = step
            break
        optimizer.zero_grad()
        loss.backward()
        _clip_gradients(model.parameters(), config.clip_norm)
        optimizer.step()
        if step in eval_steps:
            curve.append([step, evaluate(model, task, *tests[1])])
    clipping = _clipping(model)
    record: dict[str, Any] = {
        "task": task.name, "norm": norm, "seed": seed, "steps": steps, "diverged_at": diverged_at,
        "final_train_loss": float(np.mean(losses[-max(1, steps // 10) :])), "curve": curve,
        "running_statistics": model.lstm.state_size(), "clipping": clipping,
    }  # fmt: skip
    if diverged_at is None:
        record["test"] = {str(f): evaluate(model, task, *tests[f]) for f in tests}
        record["train_batch_stats"] = evaluate_with_batch_statistics(model, task, gap_batches)
        gap_x = np.concatenate([x for x, _ in gap_batches])
        record["train_inference"] = evaluate(model, task, gap_x, np.concatenate([y for _, y in gap_batches]))
        sign = 1.0 if task.kind == "digits" else -1.0  # positive: inference is worse than training-mode normalization
        record["gap"] = sign * (record["train_batch_stats"] - record["train_inference"])
    record["wall_time"] = time.perf_counter() - started
    return record


# ----------------------------------------------------------------------------
# The study: every arm x seed, resumable
# ----------------------------------------------------------------------------


def run_key(task: str, norm: str, seed: int) -> str:
    return f"{task}|{norm}|{seed}"


def _load(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    if not path.exists():
        return {"study": STUDY, "settings": settings, "runs": {}}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"out: {path} exists but cannot be read as a study's results ({exc})") from exc
    if document.get("study") != STUDY:
        raise ValueError(f"out: {path} holds the results of another study ({document.get('study')!r}); choose another --out")
    if document.get("settings") != settings:
        raise ValueError(
            f"out: {path} holds a recurrent study with other settings (quick, steps, hidden size, ...); "
            "rerun with the same options to resume it, or choose another --out"
        )
    return document


@dataclass
class StudyResult:
    out: Path
    document: dict[str, Any]
    trained: int  # runs trained in this session
    interrupted: bool = False


def run_study(
    config: StudyConfig,
    log: Callable[[str], None] | None = print,
    figures: bool = True,
    tasks: Sequence[str] | None = None,
    norms: Sequence[str] = MODES,
) -> StudyResult:
    """Run every (task, normalization, seed) not yet in ``results.json``; write the results and figures after each."""
    out = Path(config.out)
    all_tasks = make_tasks(config.quick)
    chosen = [t for t in all_tasks if tasks is None or t.name in tasks]
    unknown = set(tasks or ()) - {t.name for t in all_tasks}
    if unknown:
        raise ValueError(f"tasks: expected names among {', '.join(t.name for t in all_tasks)}, got {sorted(unknown)}")
    path = out / RESULTS_JSON
    document = _load(path, config.settings())
    document["hardware"] = {
        "machine": platform.machine(), "python": platform.python_version(), "backend": backend.active_backend()
    }  # fmt: skip
    seeds = range(config.first_seed, config.first_seed + config.seeds)
    todo = [(t, n, s) for t in chosen for n in norms for s in seeds if run_key(t.name, n, s) not in document["runs"]]
    trained = 0
    interrupted = False
    try:
        for i, (task, norm, seed) in enumerate(todo):
            record = train_run(task, norm, seed, config)
            document["runs"][run_key(task.name, norm, seed)] = record
            atomic_write_text(path, json.dumps(document, indent=1))
            trained += 1
            if log and config.progress:
                shown = ", ".join(f"{k}x {v:.3f}" for k, v in record.get("test", {}).items()) or "diverged"
                log(f"[{i + 1}/{len(todo)}] {task.name} {norm} seed {seed}: test {shown} ({record['wall_time']:.1f} s)")
    except KeyboardInterrupt:
        interrupted = True
    document["summary"] = summarize(document, all_tasks)
    atomic_write_text(path, json.dumps(document, indent=1))
    atomic_write_text(out / RESULTS_MD, results_markdown(document, all_tasks))
    if figures and not interrupted:
        document["figures"] = write_figures(out, document, all_tasks)
        atomic_write_text(path, json.dumps(document, indent=1))
    return StudyResult(out, document, trained, interrupted)


def _mean_std(values: Sequence[float | None]) -> dict[str, float] | None:
    kept = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not kept:
        return None
    return {"mean": float(np.mean(kept)), "std": float(np.std(kept)), "n": len(kept)}


def summarize(document: dict[str, Any], tasks: Sequence[Task]) -> dict[str, Any]:
    """Mean and std over seeds per (task, normalization): test metric per length, gap, divergences, state, wall time."""
    summary: dict[str, Any] = {}
    for task in tasks:
        for norm in MODES:
            runs = [r for r in document["runs"].values() if r["task"] == task.name and r["norm"] == norm]
            if not runs:
                continue
            factors = LENGTH_FACTORS if task.kind == "adding" else (1,)
            summary[f"{task.name}|{norm}"] = {
                "task": task.name, "norm": norm, "seeds": len(runs),
                "test": {str(f): _mean_std([r.get("test", {}).get(str(f)) for r in runs]) for f in factors},
                "gap": _mean_std([r.get("gap") for r in runs]),
                "diverged": sum(r["diverged_at"] is not None for r in runs),
                "running_statistics": runs[0]["running_statistics"],
                "wall_time": _mean_std([r["wall_time"] for r in runs]),
            }  # fmt: skip
    return summary


def _shown(stats: dict[str, float] | None, percent: bool) -> str:
    if stats is None:
        return "–"
    scale, digits = (100.0, 1) if percent else (1.0, 4)
    text = f"{scale * stats['mean']:.{digits}f}"
    return text + (f" ± {scale * stats['std']:.{digits}f}" if stats["n"] > 1 else "")


def results_markdown(document: dict[str, Any], tasks: Sequence[Task]) -> str:
    """The study's tables: one per task, a row per normalization, mean ± std over seeds."""
    settings = document["settings"]
    lines = [
        "# Batch Renorm through time: the recurrent study",
        "",
        f"LSTM with {settings['hidden_size']} hidden units, Adam (lr {settings['lr']}), gradient norm clipped at "
        f"{settings['clip_norm']}, moving-average rate {settings['momentum']}; renorm-shared uses the paper's "
        "r_max/d_max schedule scaled to the run. Test metrics in inference mode (moving averages). "
        "Gap: the metric on training batches with batch statistics minus with the moving averages "
        "(accuracy points; for adding, inference MSE minus batch-statistics MSE), positive when inference is worse.",
        "",
    ]
    summary = document.get("summary", {})
    for task in tasks:
        rows = [summary[k] for k in (f"{task.name}|{n}" for n in MODES) if k in summary]
        if not rows:
            continue
        percent = task.kind == "digits"
        steps = settings["steps"][task.name]
        lines += [f"## {task.name}: {task.what}, {steps} steps, batch {task.batch_size}", ""]
        if percent:
            header = "| normalization | test accuracy (%) | train/inference gap (points) |"
        else:
            header = "| normalization | test MSE at T | at 2T | at 4T | train/inference gap (MSE) |"
        lines += [header + " diverged | running statistics | seconds per run |"]
        lines += ["|" + "---|" * (header.count("|") + 2)]
        for row in rows:
            tests = [_shown(row["test"].get(str(f)), percent) for f in (LENGTH_FACTORS if not percent else (1,))]
            gap = _shown(row["gap"], percent)
            wall = row["wall_time"]["mean"] if row["wall_time"] else float("nan")
            diverged = f"{row['diverged']}/{row['seeds']}"
            cells = [row["norm"], *tests, gap, diverged, str(row["running_statistics"]), f"{wall:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------


def write_figures(out: Path, document: dict[str, Any], tasks: Sequence[Task]) -> dict[str, str]:
    """Test curves per digits task, the adding problem's error against length, and the gaps; PNG names by figure."""
    from minigrad import plots

    written: dict[str, str] = {}
    runs = list(document["runs"].values())
    for task in tasks:
        if task.kind != "digits":
            continue
        curves = {}
        for n in MODES:
            mine = [r["curve"] for r in runs if r["task"] == task.name and r["norm"] == n and r["curve"]]
            if mine:
                curves[n] = [([int(s) for s, _ in c], [v for _, v in c]) for c in mine]
        if curves:
            name = f"curves-{task.name}.png"
            plots.save(plots.accuracy_figure(curves, f"{task.what}"), out / name)
            written[f"curves-{task.name}"] = name
    summary = document.get("summary", {})
    adding = [t for t in tasks if t.kind == "adding"]
    if adding and any(f"adding|{n}" in summary for n in MODES):
        plots.save(length_figure(summary, adding[0]), out / "length-generalization.png")
        written["length-generalization"] = "length-generalization.png"
    if any(key.split("|")[0] in {t.name for t in tasks if t.kind == "digits"} for key in summary):
        plots.save(gap_figure(summary, tasks), out / "train-inference-gap.png")
        written["train-inference-gap"] = "train-inference-gap.png"
    return written


def length_figure(summary: dict[str, Any], task: Task) -> Any:
    """Test MSE of the adding problem at 1x, 2x and 4x the training length, one line per normalization."""
    from minigrad.plots import _pyplot

    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for norm in MODES:
        row = summary.get(f"{task.name}|{norm}")
        if not row:
            continue
        points = [(f * task.length, row["test"][str(f)]) for f in LENGTH_FACTORS if row["test"].get(str(f))]
        if points:
            xs = [p[0] for p in points]
            means, stds = [p[1]["mean"] for p in points], [p[1]["std"] for p in points]
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=norm)
    ax.axhline(1.0 / 6.0, color="grey", linestyle=":", linewidth=1, label="always predict 1")
    ax.set_xlabel(f"test sequence length (trained at {task.length})")
    ax.set_ylabel("test MSE, inference mode")
    ax.set_yscale("log")
    ax.set_title("adding problem: length generalization")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def gap_figure(summary: dict[str, Any], tasks: Sequence[Task]) -> Any:
    """The train/inference gap per digits task (accuracy points), a bar per normalization."""
    from minigrad.plots import _pyplot

    plt = _pyplot()
    digits = [t for t in tasks if t.kind == "digits" and any(f"{t.name}|{n}" in summary for n in MODES)]
    figure, ax = plt.subplots(figsize=(7.5, 4.2), dpi=100)
    width = 0.8 / len(MODES)
    for i, norm in enumerate(MODES):
        values = [summary.get(f"{t.name}|{norm}", {}).get("gap") for t in digits]
        heights = [100 * v["mean"] if v else 0.0 for v in values]
        errors = [100 * v["std"] if v else 0.0 for v in values]
        ax.bar([j + i * width for j in range(len(digits))], heights, width, yerr=errors, capsize=2, label=norm)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(digits))], [t.name for t in digits], fontsize=7)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel("training-mode minus inference accuracy (points)")
    ax.set_title("train/inference gap on training data")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def run_from_args(args: Any) -> int:
    """``minigrad reproduce --study recurrent``: the study from the command line's options; the exit code."""
    from minigrad.reproduce import ReproduceConfig

    out = args.out if args.out != ReproduceConfig.out else StudyConfig.out  # the paper study's default folder is not ours
    config = StudyConfig(out=out, seeds=args.seeds, first_seed=args.seed, quick=args.quick, progress=args.progress)
    result = run_study(config)
    print(f"minigrad reproduce --study recurrent: {result.trained} runs trained, results in {result.out / RESULTS_MD}")
    return 130 if result.interrupted else 0
