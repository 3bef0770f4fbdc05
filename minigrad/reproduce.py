"""``minigrad reproduce``: the paper's BatchNorm vs Batch Renorm comparison (section 4), rerun at small scale.

The study is a table of *arms* (:mod:`minigrad.arms`). Every arm trains the same model with the same
optimizer, data and seeds through :func:`minigrad.train.train`; only the
normalization (BatchNorm or Batch Renorm) and the way batches are formed
change from one arm to the next:

* ``iid`` (the paper's Figure 1): i.i.d. minibatches of 32;
* ``micro`` (Figure 2): each minibatch normalized in microbatches of 4 (``--microbatch``);
* ``noniid`` (Figure 3): each minibatch made of `L` labels x `B/L` images
  (the paper's 16 x 2), BatchNorm also with the half-split batches, and the
  extreme regime of one label per batch, where the effect shows on digits.

Batch Renorm follows the paper's r_max / d_max schedule shrunk to the run's
length by minigrad's default rule (:func:`minigrad.nn.renorm_schedule_for_run`:
a warm-up of at least 5/Δ steps). ``vary`` (``--vary NAME=V1,V2,...``) turns
the study into a sweep of Δ and of that schedule (:mod:`minigrad.sweep`).

Each (arm, seed) run has its own folder ``OUT/runs/<arm>-seed<k>/``; a rerun
with the same ``OUT`` reuses the finished runs and resumes an unfinished one
from its checkpoint, so an interrupted study costs only the unfinished steps.
The study writes (through :mod:`minigrad.report`)
``results.json`` (every run's numbers), ``results.md`` (mean ± std per arm
beside the paper's number) and PNG figures (see :mod:`minigrad.plots`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minigrad import distributed
from minigrad.arms import (
    ARM_FIELDS,
    ARM_NAMES,
    PAPER_MICROBATCH,
    REGIMES,
    Arm,
    PaperNumber,
    ReproduceError,
    make_arms,
)
from minigrad.checkpoint import atomic_write_text
from minigrad.norm.layers import DEFAULT_MOMENTUM
from minigrad.report import (
    SMOKE_TEST,
    eval_curves,
    read_records,
    results_document,
    results_markdown,
    telemetry_curves,
    write_figures,
)
from minigrad.train import CHECKPOINT, CONFIG, TrainConfig, train

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
FIGURES_JSON = "figures.json"
RUN_INFO = "reproduce.json"  # per run folder: wall time summed over the sessions that trained it

MAX_SEEDS = 1000


@dataclass
class ReproduceConfig:
    """Every choice of a study: the base training run shared by all arms, the arms, seeds and output folder."""

    dataset: str = "digits"
    data: str | None = None
    data_cache: str | None = None  # default for image folders: OUT/data-cache.npz
    train_subset: int | None = None
    model: str | None = None  # default: digits_gap_cnn for digits, cifar_cnn for CIFAR-10
    steps: int | None = None  # default per dataset, see `base_config`
    eval_every: int | None = None
    batch_size: int = 32
    labels_per_batch: int = 16
    microbatch: int = PAPER_MICROBATCH  # examples per normalization group in the bn-micro/brn-micro arms
    lr: float = 0.05
    norm_momentum: float = DEFAULT_MOMENTUM  # Δ, the layers' default
    ema: float | None = None
    augment: bool | None = None
    train_eval_examples: int | None = None
    backend: str = "numpy"
    threads: int | None = None  # CPU threads of every run (minigrad.threads); None: the libraries' own choice
    seeds: int = 1
    seed: int = 0
    arms: Sequence[str] | None = None  # default: all of ARM_NAMES
    vary: Sequence[str] | None = None  # "NAME=V1,V2,..." each: a sweep (minigrad.sweep); None: the plain study
    out: str = "reproduce"
    quick: bool = False
    progress: bool = True

    def selected_arms(self) -> list[Arm]:
        """The arms to run, in the table's order; unknown names raise an error listing the known ones."""
        arms = make_arms(self.batch_size, self.labels_per_batch, self.microbatch)
        if self.arms is None:
            return arms
        names = [name.strip() for name in self.arms if name.strip()]
        known = {arm.name for arm in arms}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ReproduceError(f"arms: unknown arm(s) {', '.join(unknown)}; known arms: {', '.join(ARM_NAMES)}")
        if not names:
            raise ReproduceError(f"arms: no arm given; known arms: {', '.join(ARM_NAMES)}")
        return [arm for arm in arms if arm.name in names]

    def base_config(self) -> TrainConfig:
        """The training configuration every arm starts from (the arm's overrides then change only ARM_FIELDS)."""
        if self.dataset not in ("digits", "cifar10"):
            raise ReproduceError(f"dataset: expected digits or cifar10, got {self.dataset!r}")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ReproduceError(f"seeds: expected a positive integer, got {self.seeds!r}")
        digits = self.dataset == "digits"
        if self.seeds > MAX_SEEDS:
            raise ReproduceError(f"seeds: expected at most {MAX_SEEDS} seeds per arm, got {self.seeds}")
        if self.quick:  # evaluations every 5 steps (at Δ = 0.1 the 5/Δ-step warm-up of Batch Renorm fills 50 of the 60)
            steps, eval_every, probe = 60, 5, 300
        elif digits:
            steps, eval_every, probe = 2000, 100, 2000
        else:
            steps, eval_every, probe = 2000, 250, 1000
        steps = self.steps if self.steps is not None else steps
        eval_every = self.eval_every if self.eval_every is not None else min(eval_every, steps)
        data_cache = self.data_cache
        if data_cache is None and not digits and self.data is not None:
            data_cache = str(Path(self.out) / "data-cache.npz")  # only used when `data` is an image folder
        config = TrainConfig(
            dataset=self.dataset,
            data=self.data,
            data_cache=data_cache,
            train_subset=self.train_subset,
            model=self.model or ("digits_gap_cnn" if digits else "cifar_cnn"),
            batch_size=self.batch_size,
            norm_momentum=self.norm_momentum,
            lr=self.lr,
            ema=self.ema,
            augment=self.augment,
            steps=steps,
            eval_every=eval_every,
            train_eval_examples=self.train_eval_examples or probe,
            backend=self.backend,
            threads=self.threads,
            seed=self.seed,
            progress=self.progress,
        )
        return config

    def run_configs(self) -> list[tuple[Arm, int, TrainConfig]]:
        """(arm, seed, training configuration) of every run of the study, arms outer, seeds inner.

        With `vary`, every arm at every combination of the varied values (see :mod:`minigrad.sweep`).
        """
        if self.vary:
            from minigrad import sweep

            return sweep.run_configs(self)
        base = self.base_config()
        runs = []
        for arm in self.selected_arms():
            for k in range(self.seeds):
                seed = self.seed + k
                config = dataclasses.replace(
                    base,
                    **arm.overrides,
                    seed=seed,
                    out=str(Path(self.out) / "runs" / f"{arm.name}-seed{seed}"),
                    extra={"arm": arm.name, "regime": arm.regime},
                )
                runs.append((arm, seed, config.resolved()))
        return runs


# ----------------------------------------------------------------------------
# Reading a run folder
# ----------------------------------------------------------------------------


def is_finished(run_dir: Path, steps: int) -> bool:
    """A run is finished when its folder has a checkpoint and a final evaluation at its last step."""
    if not (run_dir / CHECKPOINT).is_file():
        return False
    evaluations = read_records(run_dir, "eval")
    return bool(evaluations) and evaluations[-1]["step"] == steps


# Fields that may differ between a finished run's config.json and the study's config for it.
_MAY_DIFFER = ("out", "progress", "resume", "allow_changed", "data", "data_cache", "backend", "threads")


def _check_same_run(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to reuse a run folder made with other settings (another --steps, --lr, ...)."""
    saved_path = run_dir / CONFIG
    if not saved_path.exists():
        return
    try:
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReproduceError(
            f"out: {saved_path} is not a readable run configuration ({exc}); use another --out, or remove that "
            "run's folder to train it again"
        ) from None
    if not isinstance(saved, dict) or "settings_history" in saved:
        raise ReproduceError(
            f"out: {saved_path} is not the configuration of a run of this study (its settings were changed on resume "
            "or it is not a run configuration); use another --out"
        )
    wanted = json.loads(config.to_json())
    # a field the saved run does not record (added to TrainConfig since) had its default value then
    defaults = json.loads(TrainConfig().to_json())
    different = [
        f"{key} (saved {saved.get(key, defaults.get(key))!r}, now {wanted[key]!r})"
        for key in wanted
        if key not in _MAY_DIFFER and saved.get(key, defaults.get(key)) != wanted[key]
    ]
    if different:
        raise ReproduceError(
            f"out: {run_dir} holds a run made with other settings: {'; '.join(different)}. "
            "Use another --out for a study with different options"
        )


def run_summary(run_dir: Path, arm: Arm, seed: int) -> dict[str, Any]:
    """The numbers of one finished run, read back from its metrics (so that resumed runs report the same)."""
    evaluations = read_records(run_dir, "eval")
    last = evaluations[-1]
    info_path = run_dir / RUN_INFO
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    return {
        "arm": arm.name,
        "seed": seed,
        "steps": last["step"],
        "test_accuracy": last["test_accuracy"],
        "best_test_accuracy": max(e["test_accuracy"] for e in evaluations),
        "train_accuracy_inference": last["train_accuracy_inference"],
        "test_accuracy_batch_stats": last.get("test_accuracy_batch_stats"),
        "wall_time": info.get("wall_time"),
        "run_dir": str(run_dir),
    }


def _summary(run_dir: Path, arm: Arm, seed: int, config: TrainConfig) -> dict[str, Any]:
    """run_summary, with the varied values and their folder for a run of a sweep."""
    summary = run_summary(run_dir, arm, seed)
    if "varied" in config.extra:
        summary.update(varied=config.extra["varied"], combination=run_dir.parent.name)
    return summary


def _label(arm: Arm, seed: int, config: TrainConfig) -> str:
    """How the console names a run: ``brn-iid seed 0``, with the varied values in a sweep."""
    varied = config.extra.get("varied")
    return f"{arm.name} seed {seed}" + (f" ({Path(config.out).parent.name})" if varied is not None else "")


def _add_wall_time(run_dir: Path, seconds: float) -> None:
    path = run_dir / RUN_INFO
    info = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"wall_time": 0.0, "sessions": 0}
    info["wall_time"] = info["wall_time"] + seconds
    info["sessions"] = info["sessions"] + 1
    atomic_write_text(path, json.dumps(info))


# ----------------------------------------------------------------------------
# The study
# ----------------------------------------------------------------------------


@dataclass
class ReproduceResult:
    """What a study reports: every finished run, and whether it was stopped before the end."""

    out: Path
    runs: list[dict[str, Any]]
    interrupted: bool
    figures: dict[str, Any]
    stop_signal: int | None = None  # the signal (SIGINT, SIGTERM) that stopped a run, if one did


def _outer_bar(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc="reproduce", unit="step", position=0)


def reproduce(
    config: ReproduceConfig,
    log: Callable[[str], None] | None = print,
    stop_after: int | None = None,
    figures: bool = True,
) -> ReproduceResult:
    """Run (or finish) every arm x seed of the study and write results.json, results.md and the figures.

    `stop_after` ends the session after that many runs have been trained in it
    (as an interruption would), for tests of resuming. `figures=False` skips
    the PNGs (matplotlib not needed).
    """
    runs = config.run_configs()
    out = Path(config.out)
    # Under mpiexec every rank trains every run together (see minigrad.distributed); rank 0 alone reads and
    # writes the study's files, decides which runs are already finished and tells the other ranks.
    comm = distributed.world()
    root = comm.is_root
    finished: dict[str, bool] = {}  # by run folder
    if root:
        out.mkdir(parents=True, exist_ok=True)
        for _, _, run_config in runs:
            run_dir = Path(run_config.out)
            _check_same_run(run_dir, run_config)
            if is_finished(run_dir, run_config.steps):
                finished[run_config.out] = True
    finished = comm.bcast(finished)
    if not root:
        log = None
    steps_total = sum(c.steps for _, _, c in runs)
    steps_done = sum(c.steps for _, _, c in runs if c.out in finished)
    bar = _outer_bar(steps_total, steps_done, config.progress and root)
    say = log
    if bar is not None and log is not None:
        say = bar.write
    results: list[dict[str, Any]] = []
    interrupted = False
    stop_signal = None
    trained = 0
    if say is not None and config.quick:
        run_steps = sorted({c.steps for _, _, c in runs})
        say(f"reproduce: {SMOKE_TEST} ({', '.join(map(str, run_steps))} steps per run)")
    try:
        for arm, seed, run_config in runs:
            run_dir = Path(run_config.out)
            if run_config.out in finished:
                if root:
                    if say is not None:
                        say(f"{_label(arm, seed, run_config)}: finished earlier, reusing {run_dir}")
                    results.append(_summary(run_dir, arm, seed, run_config))
                continue
            if stop_after is not None and trained >= stop_after:
                interrupted = True
                break
            if bar is not None:
                bar.set_description(f"reproduce {_label(arm, seed, run_config)}")
            resume = comm.bcast((run_dir / CHECKPOINT).is_file() if root else None)
            before = _checkpoint_step(run_dir) if resume and root else 0
            result = train(dataclasses.replace(run_config, resume=resume), log=None)
            trained += 1
            if result.interrupted:
                interrupted = True
                stop_signal = result.stop_signal
                if root:
                    _add_wall_time(run_dir, result.wall_time)
                break
            if not root:
                continue
            _add_wall_time(run_dir, result.wall_time)
            if bar is not None:
                bar.update(result.step - before)
            summary = _summary(run_dir, arm, seed, run_config)
            results.append(summary)
            if say is not None:
                batch = summary["test_accuracy_batch_stats"]
                extra = f", batch stats {batch:.4f}" if batch is not None else ""
                smoke = " (smoke test)" if config.quick else ""
                say(
                    f"{_label(arm, seed, run_config)}{smoke}: test {summary['test_accuracy']:.4f} "
                    f"(best {summary['best_test_accuracy']:.4f}), "
                    f"train (inference) {summary['train_accuracy_inference']:.4f}{extra}, {summary['wall_time']:.0f} s"
                )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    if not root:
        return ReproduceResult(out=out, runs=[], interrupted=interrupted, figures={}, stop_signal=stop_signal)
    arms = config.selected_arms()
    if config.vary:
        from minigrad import sweep

        document = sweep.results_document(config, arms, results, interrupted)
        markdown = sweep.results_markdown(document)
    else:
        document = results_document(config, arms, results, interrupted)
        markdown = results_markdown(document)
    atomic_write_text(out / RESULTS_JSON, json.dumps(document, indent=2) + "\n")
    atomic_write_text(out / RESULTS_MD, markdown)
    figure_info: dict[str, Any] = {}
    if figures and results:
        if config.vary:
            figure_info = sweep.write_figures(out, document, smoke_test=config.quick)
        else:
            figure_info = write_figures(out, arms, results, smoke_test=config.quick)
        atomic_write_text(out / FIGURES_JSON, json.dumps(figure_info, indent=2) + "\n")
    if log is not None:
        state = "interrupted; rerun the same command to finish" if interrupted else "done"
        smoke = " (a smoke test: its numbers are not results)" if config.quick else ""
        log(f"reproduce {state}{smoke}: {out / RESULTS_MD}, {out / RESULTS_JSON}")
    return ReproduceResult(out=out, runs=results, interrupted=interrupted, figures=figure_info, stop_signal=stop_signal)


def _checkpoint_step(run_dir: Path) -> int:
    evaluations = read_records(run_dir, "train")
    return evaluations[-1]["step"] if evaluations else 0


__all__ = [  # names of the study's pieces, importable from here as before they had modules of their own
    "ARM_FIELDS",
    "ARM_NAMES",
    "REGIMES",
    "SMOKE_TEST",
    "Arm",
    "PaperNumber",
    "ReproduceConfig",
    "ReproduceError",
    "ReproduceResult",
    "eval_curves",
    "make_arms",
    "read_records",
    "reproduce",
    "results_document",
    "results_markdown",
    "telemetry_curves",
    "write_figures",
]
