"""One training run, from a configuration to metrics, checkpoints and a final accuracy.

:class:`TrainConfig` holds every choice of a run (data, model, normalization,
sampler, optimizer, schedule, evaluation); :func:`train` carries it out and
is what ``minigrad train`` and ``minigrad reproduce`` call. A run writes, in
its output folder:

* ``config.json`` — the full configuration;
* ``metrics.jsonl`` — one JSON line per training step (loss, batch accuracy,
  learning rate, images/s; read from the device every :data:`READ_EVERY`
  steps, at each evaluation and at a stop, not every step) and one per evaluation (test accuracy in
  inference mode, training accuracy in inference mode, accuracy with batch
  statistics on request, Batch Renorm clipping telemetry);
* ``checkpoint.npz`` — model, optimizer, EMA, learning-rate schedule, sampler
  and random state, written atomically at every evaluation, at the end, and
  when the run is interrupted with Ctrl-C or SIGTERM.

A run resumed from its checkpoint continues exactly as the uninterrupted run
would have (same batches, same losses, same parameters on the CPU). A resume
with other optimization settings (learning rate, schedule, r/d limits, ...) is
refused unless ``allow_changed`` is set; ``config.json`` then lists which
steps ran with which values (:func:`minigrad.runfolder.config_document`).
The configuration and its checks are in :mod:`minigrad.train_config`, what a
resume accepts in :mod:`minigrad.resume`, and what a fresh run may do in an
existing folder in :mod:`minigrad.runfolder`, how a model is scored in
:mod:`minigrad.evaluation`, and how the step records and console lines are
written in :mod:`minigrad.run_log`.

Under ``mpiexec -n K`` every rank runs :func:`train` (the paper's synchronized
workers, see :mod:`minigrad.distributed`): each global batch of
``batch_size`` examples is split into K shards, each rank normalizes its own
shard, gradients are averaged before every step, and only rank 0 writes files.
``config.json`` records the number of ranks as ``world_size``.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import minigrad as mg
from minigrad import backend, distributed
from minigrad.checkpoint import atomic_write_text, save_checkpoint
from minigrad.evaluation import evaluate
from minigrad.norm.schedule import DEFAULT_WARMUP_RULE, PAPER_D_MAX_FINAL, PAPER_R_MAX_FINAL
from minigrad.random import Generator
from minigrad.resume import read_checkpoint, truncate_metrics
from minigrad.run_log import RunLog, divergence
from minigrad.runfolder import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    config_document,
    settings_of,
    writing,
)
from minigrad.runfolder import RunFolderError as RunFolderError  # re-exported: raised by train()
from minigrad.threads import thread_limit
from minigrad.train_config import RESUME_MAY_CHANGE, ConfigError, TrainConfig, check_data_available

np = backend.host

# ----------------------------------------------------------------------------
# Building the pieces of a run
# ----------------------------------------------------------------------------


def renorm_schedule_of(config: TrainConfig) -> mg.nn.RenormSchedule:
    """Batch Renorm's r_max / d_max schedule for the run of `config` (its fixed r_max/d_max, if any, aside).

    The warm-up follows from ``steps`` and ``norm_momentum`` by the configured
    rule (default :data:`~minigrad.norm.schedule.DEFAULT_WARMUP_RULE`) unless
    ``renorm_warmup`` gives it; see :func:`minigrad.nn.renorm_schedule_for_run`.
    """
    return mg.nn.renorm_schedule_for_run(
        config.steps,
        momentum=config.norm_momentum,
        rule=config.renorm_warmup_rule or DEFAULT_WARMUP_RULE,
        warmup=config.renorm_warmup,
        ramp=config.renorm_ramp,
        r_max_final=PAPER_R_MAX_FINAL if config.r_max_final is None else config.r_max_final,
        d_max_final=PAPER_D_MAX_FINAL if config.d_max_final is None else config.d_max_final,
    )


def build_model(config: TrainConfig, in_channels: int, num_classes: int) -> mg.nn.Module:
    """The model named by the configuration, with its normalization layers configured."""
    norm_kwargs: dict[str, Any] = {"momentum": config.norm_momentum}
    if config.virtual_batch_size is not None:
        norm_kwargs["virtual_batch_size"] = config.virtual_batch_size
    if config.norm == "brn":
        schedule = renorm_schedule_of(config)  # the paper's 130k-step recipe, shrunk to the run
        norm_kwargs["r_max"] = config.r_max if config.r_max is not None else schedule.r_max
        norm_kwargs["d_max"] = config.d_max if config.d_max is not None else schedule.d_max
    generator = Generator(config.seed)
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
    stop_signal: int | None = None  # the signal (SIGINT, SIGTERM) that stopped the run, if one did


class _StopRequest:
    """Turns the first Ctrl-C or SIGTERM into a request to stop (and save) at the end of the current step.

    SIGTERM is what ``timeout``, Slurm, ``docker stop`` and schedulers send
    before killing a job: it is handled like Ctrl-C, so the run keeps its work.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None

    @contextmanager
    def installed(self) -> Iterator[None]:
        previous = {}
        try:
            for signum in self.SIGNALS:
                previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: no handler, Ctrl-C raises as usual
            pass
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second signal stops at once
            raise KeyboardInterrupt
        self.requested = True
        self.signal = signum


READ_EVERY = 25  # steps between reads of the training loss and accuracy (besides evaluations and the end)


def _diverged(model: mg.nn.Module) -> bool:
    """Whether a parameter or running statistic of `model` holds a NaN or an infinity."""
    for value in model.state_dict().values():
        if backend.is_array(value) and not np.isfinite(backend.to_numpy(value)).all():
            return True
    return False


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
            checkpoint = read_checkpoint(config, comm.size)
        except ConfigError as exc:
            problem = str(exc)
    if comm.size > 1:
        checkpoint, problem = comm.bcast((checkpoint, problem))
    if problem is not None:
        raise ConfigError(problem)
    if comm.is_root:
        check_data_available(config)

    with thread_limit(config.threads), backend.using_backend(config.backend):
        return _run(config, checkpoint, log if comm.is_root else None, stop_at, comm)


@dataclass
class _RunPieces:
    """What one run trains and evaluates with, built from its configuration (on every rank)."""

    loader: Any  # the training batches (this rank's shard of each global batch)
    test_loader: Any
    train_probe_loader: Any  # a fixed subset of the training set, evaluated in inference mode
    stats_loader: Any | None  # test batches drawn like the training batches, for batch-statistics evaluation
    model: mg.nn.Module
    optimizer: mg.optim.Optimizer
    scheduler: mg.optim.LRScheduler
    ema: mg.optim.EMA | None


def _build_pieces(config: TrainConfig, comm: distributed.Communicator) -> _RunPieces:
    """The data loaders (sharded across ranks), the model, its optimizer, learning-rate schedule and weight EMA."""
    train_set, test_set = _load_data(config)
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
    return _RunPieces(loader, test_loader, train_probe_loader, stats_loader, model, optimizer, scheduler, ema)


def _restore(pieces: _RunPieces, checkpoint: dict[str, Any], config: TrainConfig, comm: distributed.Communicator) -> None:
    """Load a checkpoint's model, optimizer state, schedule position, batch stream and EMA into the run's pieces."""
    optimizer = pieces.optimizer
    try:
        pieces.model.load_state_dict(checkpoint["model"])
        # the optimization settings are this session's (the same as the checkpoint's unless allow_changed)
        fresh = optimizer.state_dict()
        settings = {key: fresh[key] for key in ("lr", *type(optimizer).HYPERPARAMETERS)}
        optimizer.load_state_dict({**checkpoint["optimizer"], **settings})
        pieces.scheduler.load_state_dict({**checkpoint["scheduler"], "base_lr": config.lr})
        # with several ranks, rank r continues its own augmentation stream (the sampler is the same on all)
        pieces.loader.load_state_dict(checkpoint.get("loader_ranks", [checkpoint["loader"]] * comm.size)[comm.rank])
        if pieces.ema is not None:
            pieces.ema.load_state_dict(checkpoint["ema"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"resume: the checkpoint in {config.out} does not fit this model/optimizer: {exc}") from None


def _save(pieces: _RunPieces, config: TrainConfig, comm: distributed.Communicator, step: int,
          history: list[dict[str, Any]]) -> None:  # fmt: skip
    """Write the checkpoint of `step` (a collective: every rank calls it; rank 0 writes)."""
    loader = pieces.loader
    loader_states = comm.gather(loader.state_dict()) if comm.size > 1 else None
    if not comm.is_root:
        return
    state = {
        "config": config.to_json(comm.size),
        "step": step,
        "model": pieces.model.state_dict(),
        "optimizer": pieces.optimizer.state_dict(),
        "scheduler": pieces.scheduler.state_dict(),
        "loader": loader.state_dict(),
        "settings_history": history,
    }
    if loader_states is not None:
        state["loader_ranks"] = loader_states
    if pieces.ema is not None:
        state["ema"] = pieces.ema.state_dict()
    save_checkpoint(Path(config.out) / CHECKPOINT, state)


def _evaluation(pieces: _RunPieces, comm: distributed.Communicator, step: int) -> dict[str, Any]:
    """The eval record of `step`: test accuracy and loss, training-probe accuracy, batch statistics, telemetry."""
    model = pieces.model
    distributed.check_in_sync(model, comm, step)  # parameters and running statistics identical on every rank
    # Read the clipping telemetry of the last training step before a batch-statistics evaluation overwrites it.
    telemetry = mg.nn.renorm_telemetry(model)  # rank 0's own shards, with several ranks
    context = pieces.ema.swapped() if pieces.ema is not None else nullcontext()
    with context:
        record: dict[str, Any] = {"step": step, "kind": "eval"}
        test = evaluate(model, pieces.test_loader, comm=comm)
        record["test_accuracy"], record["test_loss"] = test["accuracy"], test["loss"]
        record["train_accuracy_inference"] = evaluate(model, pieces.train_probe_loader, comm=comm)["accuracy"]
        if pieces.stats_loader is not None:
            stats = evaluate(model, pieces.stats_loader, batch_statistics=True, comm=comm)
            record["test_accuracy_batch_stats"] = stats["accuracy"]
    if telemetry:
        record["renorm"] = telemetry
    return record


def _last_line(result: RunResult, config: TrainConfig, stop_signal: int | None) -> str:
    """The run's closing console line: where the checkpoint is and how to resume, or the final accuracy and files."""
    out, checkpoint_path = result.out, result.out / CHECKPOINT
    if result.interrupted:
        cause = f" by {signal.Signals(stop_signal).name}" if stop_signal is not None else ""
        return (
            f"interrupted{cause} at step {result.step} of {config.steps}: checkpoint saved to {checkpoint_path}; "
            f"continue with --resume --out {out}"
        )
    accuracy = "n/a" if result.test_accuracy is None else f"{result.test_accuracy:.4f}"
    return (
        f"final test accuracy {accuracy} after {result.step} steps ({result.wall_time:.1f} s); files in {out}: "
        f"{CONFIG}, {METRICS}, {CHECKPOINT}"
    )


def _open_folder(config: TrainConfig, checkpoint: dict[str, Any] | None, pieces: _RunPieces,
                 comm: distributed.Communicator) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:  # fmt: skip
    """Restore a checkpoint into `pieces` (on every rank) and write ``config.json`` (rank 0).

    Returns the step to start from, the evaluations already made (a resumed
    run's ``metrics.jsonl`` cut back to its checkpoint) and the settings history.
    """
    out = Path(config.out)
    start_step, evaluations = 0, []
    history = [{"first_step": 1, "settings": settings_of(json.loads(config.to_json()), RESUME_MAY_CHANGE)}]
    if checkpoint is not None:
        history = checkpoint["settings_history"]
        _restore(pieces, checkpoint, config, comm)
        start_step = checkpoint["step"]
    if comm.is_root:
        with writing(out):
            if checkpoint is not None:
                evaluations = truncate_metrics(out / METRICS, start_step)
            else:
                out.mkdir(parents=True, exist_ok=True)
                (out / METRICS).unlink(missing_ok=True)  # only a restart of this very run's files gets here
            document = config_document(json.loads(config.to_json(comm.size)), history)
            atomic_write_text(out / CONFIG, json.dumps(document, indent=2, sort_keys=True))
    if checkpoint is not None:
        evaluations = comm.bcast(evaluations)
    return start_step, evaluations, history


def _train_step(
    pieces: _RunPieces,
    images: mg.Tensor,
    labels: mg.Tensor,
    config: TrainConfig,
    comm: distributed.Communicator,
    stop_requested: bool,
) -> tuple[mg.Tensor, mg.Tensor, float, float]:
    """One optimization step on this rank's shard of a batch: forward, backward, gradient averaging, update.

    Returns the loss and logits (still on the device), this rank's share of the
    global batch, and the number of ranks asking to stop (gathered in the same
    allreduce as the gradients, so that a stop costs no extra message).
    """
    logits = pieces.model(images)
    loss = mg.cross_entropy(logits, labels)
    pieces.optimizer.zero_grad()
    loss.backward()
    share = labels.shape[0] / config.batch_size  # this rank's weight in the global batch's mean loss
    (stop_votes,) = distributed.average_gradients(pieces.model.parameters(), comm, share, extra=(stop_requested,))
    pieces.optimizer.step()
    if pieces.ema is not None:
        pieces.ema.update()
    pieces.scheduler.step()
    return loss, logits, share, stop_votes


@contextmanager
def _divergence_named(model: mg.nn.Module, step: int, run_log: RunLog | None = None) -> Iterator[None]:
    """A ValueError of a layer refusing non-finite running statistics becomes "training diverged at `step`".

    With `run_log`, the pending step records are read first, so that a loss
    that turned non-finite at an earlier step names its own step.
    """
    try:
        yield
    except ValueError as exc:
        if run_log is not None:
            run_log.write_steps()
        if _diverged(model):
            raise divergence(step, "the weights or running statistics are not finite") from exc
        raise


def _run(config: TrainConfig, checkpoint: dict[str, Any] | None, log: Callable[[str], None] | None,
         stop_at: int | None, comm: distributed.Communicator) -> RunResult:  # fmt: skip
    """The body of :func:`train`, on the configured backend (on every rank; `log` is None but on rank 0)."""
    out = Path(config.out)
    pieces = _build_pieces(config, comm)
    model = pieces.model
    start_step, evaluations, history = _open_folder(config, checkpoint, pieces, comm)
    with writing(out):
        run_log = RunLog(config, comm, log, start_step)
    stop = _StopRequest()
    started = time.perf_counter()
    step = start_step
    interrupted = False
    model.train()
    try:
        with stop.installed(), writing(out):
            batches = pieces.loader.batches()
            while step < config.steps:
                tick = time.perf_counter()
                images, labels = next(batches)
                with _divergence_named(model, step + 1, run_log):
                    loss, logits, share, stop_votes = _train_step(pieces, images, labels, config, comm, stop.requested)
                step += 1
                run_log.steps.add(step, loss, logits, labels, share, pieces.optimizer.lr, time.perf_counter() - tick)
                evaluating = step % config.eval_every == 0 or step == config.steps
                if evaluating or step % READ_EVERY == 0:
                    run_log.write_steps()
                run_log.advance()
                if evaluating:
                    with _divergence_named(model, step):
                        evaluation = _evaluation(pieces, comm, step)
                    evaluations.append(evaluation)
                    run_log.write_evaluation(evaluation)
                    _save(pieces, config, comm, step, history)
                # every rank must stop at the same step: with several, a Ctrl-C counts once all have voted on it
                requested = stop.requested if comm.size == 1 else stop_votes > 0
                if requested or (step == stop_at and step < config.steps):
                    run_log.write_steps()
                    interrupted = True
                    _save(pieces, config, comm, step, history)
                    break
            run_log.flush()
    finally:
        run_log.close()
    comm.barrier()  # the other ranks return once rank 0 has written everything
    last = evaluations[-1] if evaluations else {}
    result = RunResult(
        out=out,
        step=step,
        test_accuracy=last.get("test_accuracy"),
        best_test_accuracy=max((e["test_accuracy"] for e in evaluations), default=None),
        train_accuracy_inference=last.get("train_accuracy_inference"),
        test_accuracy_batch_stats=last.get("test_accuracy_batch_stats"),
        interrupted=interrupted,
        wall_time=time.perf_counter() - started,
        evaluations=evaluations,
        stop_signal=stop.signal,
    )
    if log is not None:
        log(_last_line(result, config, stop.signal))
    return result


def _load_data(config: TrainConfig) -> tuple[mg.data.Dataset, mg.data.Dataset]:
    """(train, test) of the configuration; a file that cannot be read is a ConfigError naming the data option."""
    try:
        train_set, test_set = mg.data.load_dataset(
            config.dataset, config.data, download=config.download, cache=config.data_cache
        )
    except ImportError:
        raise
    except Exception as exc:  # a missing, damaged, hostile or foreign file: the loaders' messages name it
        source = f"from {config.data}" if config.data is not None else "from the download cache"
        raise ConfigError(f"data: cannot load {config.dataset} {source}: {exc}") from None
    if config.train_subset is not None:
        if config.train_subset > len(train_set):
            raise ConfigError(
                f"train_subset: the training set has {len(train_set)} images, so a subset of "
                f"{config.train_subset} cannot be drawn"
            )
        train_set = train_set.subset(config.train_subset, seed=config.seed)
    if config.batch_size > len(train_set):
        raise ConfigError(
            f"batch_size: the training set has {len(train_set)} images, fewer than one batch of {config.batch_size}"
        )
    return train_set, test_set
