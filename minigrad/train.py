"""One training run, from a configuration to metrics, checkpoints and a final accuracy.

:class:`TrainConfig` holds every choice of a run (data, model, normalization,
sampler, optimizer, schedule, evaluation); :func:`train` carries it out and
is what ``minigrad train`` and ``minigrad reproduce`` call. A run writes, in
its output folder:

* ``config.json`` — the full configuration;
* ``metrics.jsonl`` — one JSON line per training step (loss, batch accuracy,
  learning rate, images/s) and one per evaluation (test accuracy in
  inference mode, training accuracy in inference mode, accuracy with batch
  statistics on request, Batch Renorm clipping telemetry);
* ``checkpoint.npz`` — model, optimizer, EMA, learning-rate schedule, sampler
  and random state, written atomically at every evaluation, at the end, and
  when the run is interrupted with Ctrl-C.

A run resumed from its checkpoint continues exactly as the uninterrupted run
would have (same batches, same losses, same parameters on the CPU).

Under ``mpiexec -n K`` every rank runs :func:`train` (the paper's synchronized
workers, see :mod:`minigrad.distributed`): each global batch of
``batch_size`` examples is split into K shards, each rank normalizes its own
shard, gradients are averaged before every step, and only rank 0 writes files.
``config.json`` records the number of ranks as ``world_size``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import minigrad as mg
from minigrad import backend, distributed
from minigrad.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint

np = backend.host

MODELS = ("digits_cnn", "digits_gap_cnn", "cifar_cnn")
NORMS = ("bn", "brn", "none")
SAMPLERS = ("iid", "noniid", "halfsplit")
OPTIMIZERS = ("sgd", "rmsprop", "adam")
LR_SCHEDULES = ("constant", "cosine", "step")
CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
CONFIG = "config.json"

# Settings that must match for a checkpoint to be resumed (the rest, such as
# --steps or --eval-every, may change between the interrupted run and the resumed one).
_RESUME_MUST_MATCH = (
    "dataset", "train_subset", "model", "norm", "batch_size", "virtual_batch_size", "sampler",
    "examples_per_label", "optimizer", "seed", "ema", "augment", "norm_momentum", "dtype", "sync_bn",
)  # fmt: skip


class ConfigError(ValueError):
    """A training option has a value that cannot work; raised before anything is written."""


@dataclass
class TrainConfig:
    """Every choice of a training run; the defaults train a Batch Renorm CNN on digits in well under a minute.

    ``r_max``/``d_max`` fixed numbers replace the paper's schedule (r_max = 1,
    d_max = 0 for a warm-up, then linear ramps to 3 and 5), which is otherwise
    scaled to the run's length (:meth:`minigrad.nn.RenormSchedule.scaled`).
    ``norm_momentum`` is the update rate Δ of the running statistics.
    ``batch_size`` is the global batch: under ``mpiexec -n K`` each rank takes
    its shard of it. ``sync_bn`` makes BatchNorm normalize over the whole global
    batch instead of each rank's shard (in one process it is plain BatchNorm).
    """

    dataset: str = "digits"
    data: str | None = None
    data_cache: str | None = None  # .npz of decoded pixels for image folders (decoding 60k JPEGs takes ~10 s)
    download: bool = False
    train_subset: int | None = None
    model: str | None = None  # default: digits_cnn for digits, cifar_cnn otherwise
    norm: str = "brn"
    batch_size: int = 32
    virtual_batch_size: int | None = None
    sampler: str = "iid"
    examples_per_label: int = 2
    r_max: float | None = None
    d_max: float | None = None
    norm_momentum: float = 0.01
    sync_bn: bool = False  # BatchNorm statistics over every rank's shard (mpiexec); see minigrad.distributed
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "cosine"
    warmup_steps: int = 0
    steps: int = 600
    eval_every: int = 200
    eval_batch_size: int = 500
    eval_batch_stats: bool = False
    train_eval_examples: int = 2000
    ema: float | None = None
    augment: bool | None = None  # default: on for CIFAR-10 (random crop and flip), off for digits
    backend: str = "numpy"
    dtype: str = "float32"
    seed: int = 0
    out: str | None = None
    resume: bool = False
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes saved with the config (e.g. an arm's name)

    def resolved(self) -> TrainConfig:
        """A copy with defaults that depend on other options filled in, validated."""
        config = dataclasses.replace(self, extra=dict(self.extra))
        _choice("dataset", config.dataset, ("digits", "cifar10", "imagefolder"))
        if config.model is None:
            config.model = "digits_cnn" if config.dataset == "digits" else "cifar_cnn"
        if config.augment is None:
            config.augment = config.dataset != "digits"
        if config.out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            config.out = str(Path("runs") / f"{config.dataset}-{config.norm}-{config.sampler}-{stamp}")
        _choice("model", config.model, MODELS)
        _choice("norm", config.norm, NORMS)
        _choice("sampler", config.sampler, SAMPLERS)
        _choice("optimizer", config.optimizer, OPTIMIZERS)
        _choice("lr_schedule", config.lr_schedule, LR_SCHEDULES)
        _choice("backend", config.backend, backend.BACKENDS)
        for name in ("batch_size", "steps", "eval_every", "eval_batch_size", "examples_per_label"):
            value = getattr(config, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
        if not (isinstance(config.lr, (int, float)) and config.lr > 0 and math.isfinite(config.lr)):
            raise ConfigError(f"lr: expected a positive number, got {config.lr!r}")
        if config.sampler == "halfsplit":
            half = config.batch_size // 2
            if config.batch_size % 2:
                raise ConfigError(f"batch_size: the halfsplit sampler needs an even batch size, got {config.batch_size}")
            if config.virtual_batch_size not in (None, half):
                raise ConfigError(
                    f"virtual_batch_size: the halfsplit sampler normalizes each half of the batch on its own, so it "
                    f"needs virtual_batch_size={half} (or none given), got {config.virtual_batch_size}"
                )
            config.virtual_batch_size = half
        if config.sampler in ("noniid", "halfsplit"):
            group = config.examples_per_label if config.sampler == "noniid" else 2
            if config.batch_size % group:
                raise ConfigError(
                    f"batch_size: the {config.sampler} sampler puts {group} examples of a label together, so the batch "
                    f"size must be a multiple of {group}, got {config.batch_size}"
                )
        vbs = config.virtual_batch_size
        if vbs is not None and (vbs < 1 or config.batch_size % vbs):
            raise ConfigError(
                f"virtual_batch_size: expected a positive divisor of batch_size={config.batch_size}, got {vbs}"
            )
        if config.sync_bn and config.norm != "bn":
            raise ConfigError(
                f"sync_bn: synchronized statistics are for BatchNorm, so it needs norm='bn', got norm={config.norm!r}"
            )
        if config.sync_bn and config.virtual_batch_size is not None:
            raise ConfigError(
                "sync_bn: synchronized BatchNorm normalizes over the whole global batch, so it needs no "
                f"virtual_batch_size (nor the halfsplit sampler, which sets one), got {config.virtual_batch_size}"
            )
        if config.ema is not None and not 0 < config.ema < 1:
            raise ConfigError(f"ema: expected a decay in (0, 1), got {config.ema}")
        return config

    def to_json(self, world_size: int | None = None) -> str:
        """The configuration as JSON; with `world_size`, also the number of ranks the run is split over."""
        fields = dataclasses.asdict(self)
        if world_size is not None:
            fields["world_size"] = world_size
        return json.dumps(fields, indent=2, sort_keys=True)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")


# ----------------------------------------------------------------------------
# Building the pieces of a run
# ----------------------------------------------------------------------------


def build_model(config: TrainConfig, in_channels: int, num_classes: int) -> mg.nn.Module:
    """The model named by the configuration, with its normalization layers configured."""
    norm_kwargs: dict[str, Any] = {"momentum": config.norm_momentum}
    if config.virtual_batch_size is not None:
        norm_kwargs["virtual_batch_size"] = config.virtual_batch_size
    if config.norm == "brn":
        schedule = mg.nn.renorm_schedule().scaled(total_steps=config.steps)  # the paper's 130k-step recipe, shrunk
        norm_kwargs["r_max"] = config.r_max if config.r_max is not None else schedule.r_max
        norm_kwargs["d_max"] = config.d_max if config.d_max is not None else schedule.d_max
    generator = backend.Generator(config.seed)
    common = dict(norm=config.norm, num_classes=num_classes, in_channels=in_channels, generator=generator)
    if config.model == "cifar_cnn":
        return mg.models.CifarCNN(**common, **norm_kwargs)
    return mg.models.DigitsCNN(global_pool=config.model == "digits_gap_cnn", **common, **norm_kwargs)


def build_optimizer(config: TrainConfig, model: mg.nn.Module) -> mg.optim.Optimizer:
    """The optimizer of the configuration over the model's parameters."""
    params = list(model.named_parameters())
    if config.optimizer == "sgd":
        return mg.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0, weight_decay=config.weight_decay
        )
    if config.optimizer == "rmsprop":
        return mg.optim.RMSProp(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return mg.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def build_lr_schedule(config: TrainConfig) -> Callable[[int], float]:
    """The learning-rate multiplier as a function of the step."""
    if config.lr_schedule == "cosine":
        schedule: Any = mg.optim.CosineAnnealing(config.steps, min_factor=0.0)
    elif config.lr_schedule == "step":
        schedule = mg.optim.StepDecay(max(1, config.steps // 3), gamma=0.1)
    else:
        schedule = None
    if config.warmup_steps > 0:
        return mg.optim.Warmup(config.warmup_steps, schedule)
    return schedule if schedule is not None else (lambda step: 1.0)


def build_sampler(config: TrainConfig, labels: Any) -> mg.data.Sampler:
    """The training sampler of the configuration's regime (i.i.d., non-i.i.d., half-split)."""
    if config.sampler == "iid":
        return mg.data.IIDSampler(labels, config.batch_size, seed=config.seed)
    if config.sampler == "noniid":
        return mg.data.NonIIDSampler(labels, config.batch_size, config.examples_per_label, seed=config.seed)
    return mg.data.HalfSplitSampler(labels, config.batch_size, seed=config.seed)


# ----------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------


def _norm_layers(model: mg.nn.Module) -> list[mg.nn.Module]:
    kinds = (mg.nn.BatchNorm1d, mg.nn.BatchNorm2d, mg.nn.BatchRenorm1d, mg.nn.BatchRenorm2d)
    return [m for m in model.modules() if isinstance(m, kinds)]


def evaluate(
    model: mg.nn.Module, loader: Any, batch_statistics: bool = False, comm: distributed.Communicator | None = None
) -> dict[str, float]:
    """Accuracy and mean loss of `model` over the batches of `loader`.

    Inference mode by default (running statistics). With `batch_statistics`,
    the normalization layers normalize each test batch with its own statistics
    (the paper's section 4.3 diagnostic); everything else stays in inference
    mode, and the running statistics are restored afterwards. With a
    communicator of several ranks, each rank evaluates its own batches and the
    counts and loss sums are added over the ranks (one allreduce).
    """
    saved = model.state_dict() if batch_statistics else None
    model.eval()
    if batch_statistics:
        for layer in _norm_layers(model):
            layer.train()
    correct, total, loss_sum = 0, 0, 0.0
    try:
        with mg.no_grad():
            for images, labels in loader:
                logits = model(images)
                loss_sum += mg.cross_entropy(logits, labels).item() * labels.shape[0]
                correct += int((logits.argmax(axis=1) == labels).numpy().sum())
                total += labels.shape[0]
    finally:
        if saved is not None:
            model.load_state_dict(saved)
        model.train()
    if comm is not None and comm.size > 1:
        sums = comm.allreduce_host(np.array([correct, total, loss_sum], dtype=np.float64))
        correct, total, loss_sum = int(sums[0]), int(sums[1]), float(sums[2])
    return {"accuracy": correct / max(total, 1), "loss": loss_sum / max(total, 1), "examples": total}


# ----------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------


@dataclass
class RunResult:
    """What a finished (or interrupted) run reports."""

    out: Path
    step: int
    test_accuracy: float | None
    best_test_accuracy: float | None
    train_accuracy_inference: float | None
    test_accuracy_batch_stats: float | None
    interrupted: bool
    wall_time: float
    evaluations: list[dict[str, Any]]


class _StopRequest:
    """Turns the first Ctrl-C into a request to stop at the end of the current step."""

    def __init__(self) -> None:
        self.requested = False

    @contextmanager
    def installed(self) -> Iterator[None]:
        try:
            previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: no handler, Ctrl-C raises as usual
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True


def _progress_bar(config: TrainConfig, start: int) -> Any:
    if not config.progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=config.steps, initial=start, desc=f"train {config.norm}/{config.sampler}", unit="step", leave=False)


def train(
    config: TrainConfig,
    log: Callable[[str], None] | None = print,
    stop_at: int | None = None,
    comm: distributed.Communicator | None = None,
) -> RunResult:
    """Carry out a training run (see the module docstring); returns its final numbers.

    `stop_at` ends the session after that step as Ctrl-C would (checkpoint saved,
    ``interrupted`` set), so that a long run can be done in pieces with ``resume``.
    `comm` is the group of data-parallel ranks (default :func:`minigrad.distributed.world`:
    the ranks of ``mpiexec``, or this process alone). Every rank calls ``train``;
    rank 0's configuration is used by all, rank 0 alone reads the checkpoint
    (the others receive it) and writes files and logs.
    """
    comm = distributed.world() if comm is None else comm
    config = config.resolved()
    if comm.size > 1:
        config = comm.bcast(config)  # rank 0's (a default --out carries a time stamp)
    try:
        distributed.check_shards(config.batch_size, comm.size, config.virtual_batch_size)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    checkpoint, problem = None, None
    if comm.is_root:
        try:
            checkpoint = _read_checkpoint(config, comm.size)
        except ConfigError as exc:
            problem = str(exc)
    if comm.size > 1:
        checkpoint, problem = comm.bcast((checkpoint, problem))
    if problem is not None:
        raise ConfigError(problem)

    with backend.using_backend(config.backend):
        return _run(config, checkpoint, log if comm.is_root else None, stop_at, comm)


def _read_checkpoint(config: TrainConfig, world_size: int) -> dict[str, Any] | None:
    """The checkpoint that `config` resumes (None for a new run); refuses a missing, foreign or existing one."""
    out = Path(config.out)
    checkpoint_path = out / CHECKPOINT
    if config.resume:
        if not checkpoint_path.is_file():
            raise ConfigError(f"resume: no checkpoint at {checkpoint_path}; run without --resume to start this run")
        checkpoint = load_checkpoint(checkpoint_path)
        _check_resumable(json.loads(checkpoint["config"]), config, world_size)
        return checkpoint
    if checkpoint_path.exists():
        raise ConfigError(
            f"out: {out} already holds a run ({CHECKPOINT}); pass --resume to continue it or choose another --out"
        )
    return None


def _run(config: TrainConfig, checkpoint: dict[str, Any] | None, log: Callable[[str], None] | None,
         stop_at: int | None, comm: distributed.Communicator) -> RunResult:  # fmt: skip
    """The body of :func:`train`, on the configured backend (on every rank; `log` is None but on rank 0)."""
    out = Path(config.out)
    checkpoint_path = out / CHECKPOINT
    root = comm.is_root
    train_set, test_set = mg.data.load_dataset(
        config.dataset,
        config.data,
        download=config.download,
        cache=config.data_cache,
        train_subset=config.train_subset,
        subset_seed=config.seed,
    )
    normalize = mg.data.Normalize.fit(train_set)
    transform = mg.data.cifar_train_transform(normalize) if config.augment else normalize
    sampler = build_sampler(config, train_set.labels)
    loader = mg.data.DataLoader(train_set, sampler=sampler, transform=transform, seed=config.seed)
    test_loader = mg.data.eval_loader(test_set, config.eval_batch_size, transform=normalize)
    train_probe = train_set.subset(min(config.train_eval_examples, len(train_set)), seed=config.seed)
    train_probe_loader = mg.data.eval_loader(train_probe, config.eval_batch_size, transform=normalize)
    stats_loader = None
    if config.eval_batch_stats:
        stats_loader = mg.data.sampled_eval_loader(
            test_set, sampler, config.batch_size, transform=normalize, seed=config.seed
        )
    if comm.size > 1:
        # every rank draws the same global batches and keeps its shard; evaluation batches are split the same way
        loader = distributed.ShardedLoader(loader, comm, seed=config.seed)
        test_loader = distributed.ShardedLoader(test_loader, comm)
        train_probe_loader = distributed.ShardedLoader(train_probe_loader, comm)
        if stats_loader is not None:
            stats_loader = distributed.ShardedLoader(stats_loader, comm)

    model = build_model(config, train_set.image_shape[0], train_set.num_classes)
    if config.dtype != "float32":
        model.to(config.dtype)
    if config.sync_bn and comm.size > 1:
        distributed.convert_sync_batchnorm(model, comm)
    elif comm.size > 1:
        distributed.share_running_stats(model, comm)  # one update of μ, σ shared by the ranks
    optimizer = build_optimizer(config, model)
    scheduler = mg.optim.LRScheduler(optimizer, build_lr_schedule(config))
    ema = mg.optim.EMA(model, decay=config.ema) if config.ema else None

    start_step = 0
    evaluations: list[dict[str, Any]] = []
    if checkpoint is not None:
        try:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            # with several ranks, rank r continues its own augmentation stream (the sampler is the same on all)
            loader.load_state_dict(checkpoint.get("loader_ranks", [checkpoint["loader"]] * comm.size)[comm.rank])
            if ema is not None:
                ema.load_state_dict(checkpoint["ema"])
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"resume: the checkpoint in {out} does not fit this model/optimizer: {exc}") from exc
        start_step = int(checkpoint["step"])
        evaluations = _truncate_metrics(out / METRICS, start_step) if root else []
        evaluations = comm.bcast(evaluations)
    elif root:
        out.mkdir(parents=True, exist_ok=True)
        (out / METRICS).unlink(missing_ok=True)
    if root:
        atomic_write_text(out / CONFIG, config.to_json(comm.size))

    def save(step: int) -> None:
        loader_states = comm.gather(loader.state_dict()) if comm.size > 1 else None  # a collective: every rank
        if not root:
            return
        state = {
            "config": config.to_json(comm.size),
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "loader": loader.state_dict(),
        }
        if loader_states is not None:
            state["loader_ranks"] = loader_states
        if ema is not None:
            state["ema"] = ema.state_dict()
        save_checkpoint(checkpoint_path, state)

    def run_evaluation(step: int) -> dict[str, Any]:
        distributed.check_in_sync(model, comm, step)  # parameters and running statistics identical on every rank
        # Read the clipping telemetry of the last training step before a batch-statistics evaluation overwrites it.
        telemetry = mg.nn.renorm_telemetry(model)  # rank 0's own shards, with several ranks
        context = ema.swapped() if ema is not None else nullcontext()
        with context:
            record: dict[str, Any] = {"step": step, "kind": "eval"}
            test = evaluate(model, test_loader, comm=comm)
            record["test_accuracy"], record["test_loss"] = test["accuracy"], test["loss"]
            record["train_accuracy_inference"] = evaluate(model, train_probe_loader, comm=comm)["accuracy"]
            if stats_loader is not None:
                stats = evaluate(model, stats_loader, batch_statistics=True, comm=comm)
                record["test_accuracy_batch_stats"] = stats["accuracy"]
        if telemetry:
            record["renorm"] = telemetry
        return record

    metrics = (out / METRICS).open("a", encoding="utf-8") if root else None
    stop = _StopRequest()
    bar = _progress_bar(config, start_step) if root else None
    started = time.perf_counter()
    step = start_step
    interrupted = False
    model.train()
    try:
        with stop.installed():
            batches = loader.batches()
            while step < config.steps:
                tick = time.perf_counter()
                images, labels = next(batches)
                logits = model(images)
                loss = mg.cross_entropy(logits, labels)
                optimizer.zero_grad()
                loss.backward()
                examples = labels.shape[0]
                share = examples / config.batch_size  # this rank's weight in the global batch's mean loss (1 alone)
                correct = int((logits.argmax(axis=1) == labels).numpy().sum())
                # one allreduce: the gradients (weighted), and the loss, accuracy and stop requests for the log
                loss_value, correct, examples, stop_votes = distributed.average_gradients(
                    model.parameters(), comm, share, extra=(share * loss.item(), correct, examples, stop.requested)
                )
                optimizer.step()
                if ema is not None:
                    ema.update()
                step += 1
                scheduler.step()
                if not math.isfinite(loss_value):
                    raise FloatingPointError(f"training diverged: the loss is {loss_value} at step {step}; lower --lr")
                accuracy = correct / examples
                speed = examples / max(time.perf_counter() - tick, 1e-9)
                record = {"step": step, "kind": "train", "loss": loss_value, "batch_accuracy": accuracy,
                          "lr": optimizer.lr, "images_per_sec": speed}  # fmt: skip
                if metrics is not None:
                    metrics.write(json.dumps(record) + "\n")
                if bar is not None:
                    bar.set_postfix(loss=f"{loss_value:.3f}", acc=f"{accuracy:.2f}", img_s=f"{speed:.0f}")
                    bar.update(1)
                if step % config.eval_every == 0 or step == config.steps:
                    evaluation = run_evaluation(step)
                    evaluations.append(evaluation)
                    if metrics is not None:
                        metrics.write(json.dumps(evaluation) + "\n")
                        metrics.flush()
                    save(step)
                    if log is not None and bar is None:
                        log(f"step {step}: test accuracy {evaluation['test_accuracy']:.4f}, loss {loss_value:.4f}")
                # every rank must stop at the same step: with several, a Ctrl-C counts once all have voted on it
                requested = stop.requested if comm.size == 1 else stop_votes > 0
                if requested or (step == stop_at and step < config.steps):
                    interrupted = True
                    save(step)
                    break
    finally:
        if metrics is not None:
            metrics.close()
        if bar is not None:
            bar.close()
    comm.barrier()  # the other ranks return once rank 0 has written everything
    wall = time.perf_counter() - started
    last = evaluations[-1] if evaluations else {}
    result = RunResult(
        out=out,
        step=step,
        test_accuracy=last.get("test_accuracy"),
        best_test_accuracy=max((e["test_accuracy"] for e in evaluations), default=None),
        train_accuracy_inference=last.get("train_accuracy_inference"),
        test_accuracy_batch_stats=last.get("test_accuracy_batch_stats"),
        interrupted=interrupted,
        wall_time=wall,
        evaluations=evaluations,
    )
    if log is not None:
        if interrupted:
            log(f"interrupted at step {step}: checkpoint saved to {checkpoint_path}; continue with --resume --out {out}")
        elif result.test_accuracy is not None:
            log(f"test accuracy {result.test_accuracy:.4f} after {step} steps ({wall:.1f} s)")
        log(f"metrics: {out / METRICS}  config: {out / CONFIG}  checkpoint: {checkpoint_path}")
    return result


def _check_resumable(saved: dict[str, Any], config: TrainConfig, world_size: int = 1) -> None:
    """Refuse to resume when the checkpoint was made with a different model, data, optimizer or number of ranks.

    A setting missing from an older checkpoint counts as its default.
    """
    defaults = TrainConfig()
    different = [
        f"{key} (checkpoint {saved.get(key, getattr(defaults, key))!r}, now {getattr(config, key)!r})"
        for key in _RESUME_MUST_MATCH
        if saved.get(key, getattr(defaults, key)) != getattr(config, key)
    ]
    if saved.get("world_size", 1) != world_size:  # each rank normalizes its shard: the split is part of the model
        different.append(f"world_size (checkpoint {saved.get('world_size', 1)} ranks, now {world_size})")
    if different:
        raise ConfigError("resume: the checkpoint was made by a different run: " + "; ".join(different))


def _truncate_metrics(path: Path, step: int) -> list[dict[str, Any]]:
    """Keep the metric lines up to `step` (those after the checkpoint will be recomputed); return its evaluations."""
    if not path.exists():
        return []
    kept, evaluations = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a hard kill
        if record.get("step", 0) <= step:
            kept.append(line)
            if record.get("kind") == "eval":
                evaluations.append(record)
    atomic_write_text(path, "".join(line + "\n" for line in kept))
    return evaluations
