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
  when the run is interrupted with Ctrl-C or SIGTERM.

A run resumed from its checkpoint continues exactly as the uninterrupted run
would have (same batches, same losses, same parameters on the CPU). A resume
with other optimization settings (learning rate, schedule, r/d limits, ...) is
refused unless ``allow_changed`` is set; ``config.json`` then lists which
steps ran with which values (:func:`minigrad.runfolder.config_document`).
What a fresh run may do in an existing folder is in :mod:`minigrad.runfolder`.

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
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import minigrad as mg
from minigrad import backend, distributed
from minigrad.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from minigrad.runfolder import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    RunFolderError,
    RunFolderWriteError,
    check_folder_for_new_run,
    config_document,
    remove_orphan_temporaries,
    settings_of,
)

np = backend.host

MODELS = ("digits_cnn", "digits_gap_cnn", "cifar_cnn")
NORMS = ("bn", "brn", "none")
SAMPLERS = ("iid", "noniid", "halfsplit")
OPTIMIZERS = ("sgd", "rmsprop", "adam")
LR_SCHEDULES = ("constant", "cosine", "step")
DEFAULT_MOMENTUM = 0.9  # of SGD (Nesterov) and RMSProp; Adam has none

# Settings that must match for a checkpoint to be resumed (the rest, such as
# --steps or --eval-every, may change between the interrupted run and the resumed one).
_RESUME_MUST_MATCH = (
    "dataset", "train_subset", "model", "norm", "batch_size", "virtual_batch_size", "sampler",
    "examples_per_label", "optimizer", "seed", "ema", "augment", "norm_momentum", "dtype", "sync_bn",
)  # fmt: skip
# Settings a resume may change only when asked to (allow_changed): the steps already taken used the old values.
# `steps` belongs here when a schedule is scaled to it (cosine/step learning rate, Batch Renorm's r/d ramp).
_RESUME_MAY_CHANGE = ("lr", "momentum", "weight_decay", "lr_schedule", "warmup_steps", "r_max", "d_max", "steps")


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
    momentum: float | None = None  # default: DEFAULT_MOMENTUM for sgd and rmsprop; Adam takes none
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
    allow_changed: bool = False  # resume with other optimization settings (recorded in config.json's history)
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes saved with the config (e.g. an arm's name)

    def resolved(self) -> TrainConfig:
        """A copy with defaults that depend on other options filled in, validated."""
        config = dataclasses.replace(self, extra=dict(self.extra))
        _choice("dataset", config.dataset, ("digits", "cifar10", "imagefolder"))
        if config.resume and config.out is None:
            raise ConfigError("out: resume continues the run in a folder, so it needs that folder (--out DIR)")
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
        for name in ("batch_size", "steps", "eval_every", "eval_batch_size", "examples_per_label", "train_eval_examples"):
            _integer(name, getattr(config, name), low=1)
        _integer("warmup_steps", config.warmup_steps, low=0)
        _integer("seed", config.seed, low=0, high=2**63 - 1)
        if config.train_subset is not None:
            _integer("train_subset", config.train_subset, low=1)
        _number("lr", config.lr, "a positive number", lambda v: v > 0)
        _number("weight_decay", config.weight_decay, "a number >= 0", lambda v: v >= 0)
        _number("norm_momentum", config.norm_momentum, "an update rate in [0, 1]", lambda v: 0 <= v <= 1)
        if config.optimizer == "adam":
            if config.momentum is not None:
                raise ConfigError(
                    f"momentum: the adam optimizer has no momentum setting, so momentum={config.momentum} would do "
                    "nothing; leave it out, or pick optimizer=sgd or optimizer=rmsprop"
                )
        else:
            config.momentum = DEFAULT_MOMENTUM if config.momentum is None else config.momentum
            _number("momentum", config.momentum, "a number in [0, 1)", lambda v: 0 <= v < 1)
        for name, low in (("r_max", 1), ("d_max", 0)):
            value = getattr(config, name)
            if value is None:
                continue
            if config.norm != "brn":
                raise ConfigError(
                    f"{name}: clipping limits are Batch Renorm's, so {name}={value} does nothing with norm="
                    f"{config.norm!r}; leave it out, or pick norm='brn'"
                )
            _number(name, value, f"a number >= {low}", lambda v, low=low: v >= low)
        if config.ema is not None:
            _number("ema", config.ema, "a decay in (0, 1)", lambda v: 0 < v < 1)
        _check_data_options(config)
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
        if config.norm != "none" and (vbs or config.batch_size) < 2:
            name = "virtual_batch_size" if vbs else "batch_size"
            raise ConfigError(
                f"{name}: BatchNorm and Batch Renorm normalize over the examples of a group, so a group needs at "
                f"least 2 of them, got {vbs or config.batch_size}"
            )
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


def _integer(name: str, value: Any, low: int, high: int | None = None) -> None:
    bad = isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high)
    if bad:
        expected = "a positive integer" if low == 1 else f"an integer >= {low}"
        if high is not None:
            expected = f"an integer in [{low}, {high}]"
        raise ConfigError(f"{name}: expected {expected}, got {value!r}")


def _number(name: str, value: Any, expected: str, ok: Callable[[float], bool]) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and ok(value)):
        raise ConfigError(f"{name}: expected {expected}, got {value!r}")


def _check_data_options(config: TrainConfig) -> None:
    """Refuse data options that the chosen data set does not use, and paths that cannot be what they name."""
    if config.download and config.dataset != "cifar10":
        raise ConfigError(
            f"download: only CIFAR-10 is downloaded; {config.dataset} is "
            + ("bundled with scikit-learn" if config.dataset == "digits" else "read from the folder given as data")
        )
    if config.download and config.data is not None:
        raise ConfigError("download: it fetches CIFAR-10 into the download cache, so it takes no data path")
    if config.dataset == "digits":
        for name in ("data", "data_cache"):
            if getattr(config, name) is not None:
                raise ConfigError(f"{name}: digits is bundled with scikit-learn and reads no files; leave {name} out")
    if config.dataset == "imagefolder" and config.data is None:
        raise ConfigError("data: the imagefolder data set needs the folder (or tar archive) holding train/ and test/")
    if config.data is not None and not Path(config.data).expanduser().exists():
        raise ConfigError(
            f"data: no file or folder at {config.data}; expected "
            + (
                "the CIFAR-10 python archive (cifar-10-python.tar.gz), its extracted folder, or an image folder "
                "(or leave data out and set download=True to fetch it into the cache)"
                if config.dataset == "cifar10"
                else "an image folder (or tar archive) holding train/ and test/"
            )
        )
    if config.data_cache is not None and Path(config.data_cache).expanduser().is_dir():
        raise ConfigError(f"data_cache: {config.data_cache} is a folder; expected the path of a .npz file")


def _check_data_available(config: TrainConfig) -> None:
    """CIFAR-10 without a path comes from the download cache: say how to get it when it is not there."""
    if config.dataset != "cifar10" or config.data is not None or config.download:
        return
    from minigrad.data import cifar10

    cache = cifar10.default_cache_dir()
    if cifar10.find_cifar10(cache) is None:
        raise ConfigError(
            f"data: CIFAR-10 is not in the download cache ({cache}); download it (about 170 MB, checksum verified) "
            "with download=True, or pass data=PATH (cifar-10-python.tar.gz, its extracted folder, or an image folder)"
        )


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


def _progress_bar(config: TrainConfig, start: int) -> Any:
    if not config.progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=config.steps, initial=start, desc=f"train {config.norm}/{config.sampler}", unit="step", leave=False)


def _diverged(model: mg.nn.Module) -> bool:
    """Whether a parameter or running statistic of `model` holds a NaN or an infinity."""
    for value in model.state_dict().values():
        if backend.is_array(value) and not np.isfinite(backend.to_numpy(value)).all():
            return True
    return False


def _divergence(step: int, what: str) -> FloatingPointError:
    return FloatingPointError(f"training diverged: {what} at step {step}; lower --lr")


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
    if comm.is_root:
        _check_data_available(config)

    with backend.using_backend(config.backend):
        return _run(config, checkpoint, log if comm.is_root else None, stop_at, comm)


def _read_checkpoint(config: TrainConfig, world_size: int) -> dict[str, Any] | None:
    """The checkpoint that `config` resumes (None for a new run); refuses a missing, foreign or existing one.

    A resumed checkpoint comes back with its ``settings_history`` extended by
    the settings this session runs with, when they changed (allow_changed).
    """
    out = Path(config.out)
    checkpoint_path = out / CHECKPOINT
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"out: {out} is a file, not a folder; pass the folder of the run's files")
    if not config.resume:
        check_folder_for_new_run(out, config.to_json(world_size))
        remove_orphan_temporaries(out)
        return None
    if not checkpoint_path.is_file():
        raise ConfigError(f"resume: no checkpoint at {checkpoint_path}; run without --resume to start this run")
    checkpoint = _load_resumable(checkpoint_path)
    saved = checkpoint["config"]
    _check_resumable(saved, config, world_size)
    step = checkpoint["step"]
    if config.steps <= step:
        done = "finished" if saved.get("steps") == step else "is"
        raise ConfigError(
            f"steps: the run in {out} {done} at step {step}, so steps={config.steps} leaves nothing to train; "
            f"pass a larger steps=N to train it further"
            + (" (with allow_changed=True: its schedules are scaled to steps)" if _scaled_to_steps(config) else "")
        )
    changed = _changed_settings(saved, config)
    if changed and not config.allow_changed:
        raise ConfigError(
            f"resume: settings differ from the checkpoint's: {'; '.join(changed)}. Resume with the checkpoint's "
            "values, or pass allow_changed=True to continue with the new ones (config.json then records which steps "
            "ran with which values)"
        )
    names = _RESUME_MAY_CHANGE
    history = checkpoint.get("settings_history") or [{"first_step": 1, "settings": settings_of(saved, names)}]
    well_formed = isinstance(history, list) and all(
        isinstance(segment, dict) and isinstance(segment.get("first_step"), int)
        and isinstance(segment.get("settings"), dict) for segment in history
    )  # fmt: skip
    if not well_formed:
        raise ConfigError(f"resume: {checkpoint_path} holds a damaged settings history (a damaged checkpoint?)")
    now = settings_of(json.loads(config.to_json()), names)
    if now != history[-1]["settings"]:
        history = [*history, {"first_step": step + 1, "settings": now}]
    checkpoint["settings_history"] = history
    remove_orphan_temporaries(out)
    return checkpoint


def _load_resumable(path: Path) -> dict[str, Any]:
    """The checkpoint at `path` with its configuration parsed; any damage is a ConfigError naming the file."""
    try:
        checkpoint = load_checkpoint(path)
    except Exception as exc:  # truncated, empty, bit-flipped, a .npy, another program's .npz: all say the same
        raise ConfigError(f"resume: {path} is not a readable minigrad checkpoint ({_why_unreadable(path, exc)})") from None
    if not isinstance(checkpoint, dict):
        raise ConfigError(f"resume: {path} is not a minigrad checkpoint (no state dict)")
    missing = [key for key in ("config", "step", "model", "optimizer", "scheduler", "loader") if key not in checkpoint]
    if missing:
        raise ConfigError(f"resume: {path} is not a minigrad training checkpoint (missing {', '.join(missing)})")
    step = checkpoint["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ConfigError(f"resume: {path} records step {step!r}; expected an integer >= 0 (a damaged checkpoint?)")
    try:
        saved = json.loads(checkpoint["config"])
    except (TypeError, ValueError):
        saved = None
    if not isinstance(saved, dict):
        raise ConfigError(f"resume: {path} holds no readable run configuration (a damaged checkpoint?)")
    checkpoint["config"] = saved
    return checkpoint


def _why_unreadable(path: Path, exc: BaseException) -> str:
    """What is wrong with a checkpoint file that failed to load, in a few words."""
    try:
        with path.open("rb") as file:
            head = file.read(6)
    except OSError:
        head = b""
    if not head:
        return "the file is empty"
    if head == b"\x93NUMPY":
        return "a .npy array, not a checkpoint archive"
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return str(cause).strip("'\"") or type(cause).__name__


def _scaled_to_steps(config: TrainConfig | dict[str, Any]) -> bool:
    """Whether a schedule of the run is scaled to its number of steps (so that changing it changes the past)."""
    get = config.get if isinstance(config, dict) else lambda key: getattr(config, key)
    renorm_ramp = get("norm") == "brn" and (get("r_max") is None or get("d_max") is None)
    return get("lr_schedule") in ("cosine", "step") or renorm_ramp


def _changed_settings(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    """The optimization settings of `config` that differ from the checkpoint's, as "name (checkpoint a, now b)"."""
    names = [name for name in _RESUME_MAY_CHANGE if name != "steps" or _scaled_to_steps(config) or _scaled_to_steps(saved)]
    if config.optimizer == "adam":
        names.remove("momentum")  # unused (older checkpoints recorded the default)
    return [
        f"{name} (checkpoint {saved.get(name)!r}, now {getattr(config, name)!r})"
        for name in names
        if saved.get(name) != getattr(config, name)
    ]


def _run(config: TrainConfig, checkpoint: dict[str, Any] | None, log: Callable[[str], None] | None,
         stop_at: int | None, comm: distributed.Communicator) -> RunResult:  # fmt: skip
    """The body of :func:`train`, on the configured backend (on every rank; `log` is None but on rank 0)."""
    out = Path(config.out)
    checkpoint_path = out / CHECKPOINT
    root = comm.is_root
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

    start_step = 0
    evaluations: list[dict[str, Any]] = []
    names = _RESUME_MAY_CHANGE
    history = [{"first_step": 1, "settings": settings_of(json.loads(config.to_json()), names)}]
    if checkpoint is not None:
        history = checkpoint["settings_history"]
        try:
            model.load_state_dict(checkpoint["model"])
            # the optimization settings are this session's (the same as the checkpoint's unless allow_changed)
            fresh = optimizer.state_dict()
            settings = {key: fresh[key] for key in ("lr", *type(optimizer).HYPERPARAMETERS)}
            optimizer.load_state_dict({**checkpoint["optimizer"], **settings})
            scheduler.load_state_dict({**checkpoint["scheduler"], "base_lr": config.lr})
            # with several ranks, rank r continues its own augmentation stream (the sampler is the same on all)
            loader.load_state_dict(checkpoint.get("loader_ranks", [checkpoint["loader"]] * comm.size)[comm.rank])
            if ema is not None:
                ema.load_state_dict(checkpoint["ema"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"resume: the checkpoint in {out} does not fit this model/optimizer: {exc}") from None
        start_step = checkpoint["step"]
    if root:
        with _writing(out, checkpoint_path):
            if checkpoint is not None:
                evaluations = _truncate_metrics(out / METRICS, start_step)
            else:
                out.mkdir(parents=True, exist_ok=True)
                (out / METRICS).unlink(missing_ok=True)  # only a restart of this very run's files gets here
            document = config_document(json.loads(config.to_json(comm.size)), history)
            atomic_write_text(out / CONFIG, json.dumps(document, indent=2, sort_keys=True))
    if checkpoint is not None:
        evaluations = comm.bcast(evaluations)

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
            "settings_history": history,
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

    bar = _progress_bar(config, start_step) if root else None

    def say(line: str) -> None:
        """A line of the log, printed above the progress bar (which is redrawn below it)."""
        if log is None:
            return
        if bar is None:
            log(line)
            return
        with bar.external_write_mode():
            log(line)

    with _writing(out, checkpoint_path):
        metrics = (out / METRICS).open("a", encoding="utf-8") if root else None
    stop = _StopRequest()
    started = time.perf_counter()
    step = start_step
    interrupted = False
    model.train()
    try:
        with stop.installed(), _writing(out, checkpoint_path):
            batches = loader.batches()
            while step < config.steps:
                tick = time.perf_counter()
                images, labels = next(batches)
                try:
                    logits = model(images)
                    loss = mg.cross_entropy(logits, labels)
                except ValueError as exc:  # a layer refusing non-finite running statistics, after a blow-up
                    if _diverged(model):
                        raise _divergence(step + 1, "the weights or running statistics are not finite") from exc
                    raise
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
                    raise _divergence(step, f"the loss is {loss_value}")
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
                    try:
                        evaluation = run_evaluation(step)
                    except ValueError as exc:
                        if _diverged(model):
                            raise _divergence(step, "the weights or running statistics are not finite") from exc
                        raise
                    evaluations.append(evaluation)
                    if metrics is not None:
                        metrics.write(json.dumps(evaluation) + "\n")
                        metrics.flush()
                    save(step)
                    say(_evaluation_line(evaluation, config.steps))
                # every rank must stop at the same step: with several, a Ctrl-C counts once all have voted on it
                requested = stop.requested if comm.size == 1 else stop_votes > 0
                if requested or (step == stop_at and step < config.steps):
                    interrupted = True
                    save(step)
                    break
            if metrics is not None:
                metrics.flush()  # here, so that a full disk is reported like any other failed write
    finally:
        if metrics is not None:
            with suppress(OSError):  # already reported by the flush above, or by the write that failed
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
        stop_signal=stop.signal,
    )
    if log is not None:
        if interrupted:
            cause = f" by {signal.Signals(stop.signal).name}" if stop.signal is not None else ""
            log(
                f"interrupted{cause} at step {step} of {config.steps}: checkpoint saved to {checkpoint_path}; "
                f"continue with --resume --out {out}"
            )
        else:
            accuracy = "n/a" if result.test_accuracy is None else f"{result.test_accuracy:.4f}"
            log(
                f"final test accuracy {accuracy} after {step} steps ({wall:.1f} s); files in {out}: "
                f"{CONFIG}, {METRICS}, {CHECKPOINT}"
            )
    return result


def _evaluation_line(evaluation: dict[str, Any], steps: int) -> str:
    """One evaluation as a console line: test accuracy and test loss (inference mode), and batch statistics if asked."""
    line = (
        f"step {evaluation['step']}/{steps}: test accuracy {evaluation['test_accuracy']:.4f}, "
        f"test loss {evaluation['test_loss']:.4f}"
    )
    if "test_accuracy_batch_stats" in evaluation:
        line += f", test accuracy with batch statistics {evaluation['test_accuracy_batch_stats']:.4f}"
    return line


@contextmanager
def _writing(out: Path, checkpoint_path: Path) -> Iterator[None]:
    """Turn a failed write into the run folder (read-only, disk full) into a RunFolderError naming the folder."""
    try:
        yield
    except OSError as exc:
        kept = f"; the last checkpoint {checkpoint_path} is unchanged" if checkpoint_path.is_file() else ""
        reason = exc.strerror or str(exc) or type(exc).__name__
        where = f" {exc.filename}" if exc.filename else ""
        raise RunFolderWriteError(f"out: cannot write to {out}{where}: {reason}{kept}") from None


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
