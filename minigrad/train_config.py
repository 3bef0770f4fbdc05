"""The configuration of a training run: every choice, its defaults, and the checks that refuse what cannot work.

:class:`TrainConfig` is what ``minigrad train`` builds from its options and
what :func:`minigrad.train.train` carries out. :meth:`TrainConfig.resolved`
fills in the defaults that depend on other choices and raises a
:class:`ConfigError` naming the field for any value that cannot work, or that
would do nothing in the chosen configuration (``r_max`` without Batch Renorm,
``momentum`` with Adam, ``download`` for digits), before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minigrad import backend
from minigrad.norm.layers import DEFAULT_MOMENTUM
from minigrad.norm.schedule import DEFAULT_WARMUP_RULE, PAPER_D_MAX_FINAL, PAPER_R_MAX_FINAL, WARMUP_RULES
from minigrad.threads import MAX_THREADS

MODELS = ("digits_cnn", "digits_gap_cnn", "cifar_cnn")
NORMS = ("bn", "brn", "none")
SAMPLERS = ("iid", "noniid", "halfsplit")
OPTIMIZERS = ("sgd", "rmsprop", "adam")
LR_SCHEDULES = ("constant", "cosine", "step")
DEFAULT_OPTIMIZER_MOMENTUM = 0.9  # of SGD (Nesterov) and RMSProp; Adam has none

# Settings that must match for a checkpoint to be resumed (the rest, such as
# --steps or --eval-every, may change between the interrupted run and the resumed one).
RESUME_MUST_MATCH = (
    "dataset", "train_subset", "model", "norm", "batch_size", "virtual_batch_size", "sampler",
    "examples_per_label", "optimizer", "seed", "ema", "augment", "norm_momentum", "dtype", "sync_bn",
)  # fmt: skip
# Settings a resume may change only when asked to (allow_changed): the steps already taken used the old values.
# `steps` belongs here when a schedule is scaled to it (cosine/step learning rate, Batch Renorm's r/d ramp).
RESUME_MAY_CHANGE = (
    "lr", "momentum", "weight_decay", "lr_schedule", "warmup_steps", "r_max", "d_max", "steps",
    "renorm_warmup", "renorm_ramp", "r_max_final", "d_max_final", "renorm_warmup_rule",
)  # fmt: skip
# Batch Renorm's schedule settings (None: derived from the run's length, or the paper's final limits).
RENORM_SCHEDULE_FIELDS = ("renorm_warmup", "renorm_ramp", "r_max_final", "d_max_final", "renorm_warmup_rule")


class ConfigError(ValueError):
    """A training option has a value that cannot work; raised before anything is written."""


@dataclass
class TrainConfig:
    """Every choice of a training run; the defaults train a Batch Renorm CNN on digits in well under a minute.

    ``r_max``/``d_max`` fixed numbers replace the paper's schedule (r_max = 1,
    d_max = 0 for a warm-up, then linear ramps to 3 and 5), which is otherwise
    shrunk to the run's length (:func:`minigrad.nn.renorm_schedule_for_run`):
    ``renorm_warmup_rule`` derives the warm-up from ``steps`` (default
    :data:`~minigrad.norm.schedule.DEFAULT_WARMUP_RULE`, at least 5/Δ steps),
    unless ``renorm_warmup`` gives it; ``renorm_ramp`` is the length of
    r_max's ramp (d_max's is 20/35 of it); ``r_max_final``/``d_max_final``
    are the limits the ramps reach (the paper's 3 and 5). :meth:`resolved`
    fills in the rule and the final limits that a Batch Renorm run uses.
    ``norm_momentum`` is the update rate Δ of the running statistics.
    ``threads`` limits the CPU threads of BLAS and of the normalization kernels
    for the run (:func:`minigrad.threads.thread_limit`); ``None`` leaves each
    library its own choice, and ``config.json`` records it as ``null``.
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
    norm_momentum: float = DEFAULT_MOMENTUM  # Δ: the layers' default (minigrad.norm.DEFAULT_MOMENTUM)
    renorm_warmup: int | None = None  # default: derived from steps by renorm_warmup_rule
    renorm_ramp: int | None = None  # default: the paper's ramps scaled to steps
    r_max_final: float | None = None  # default: PAPER_R_MAX_FINAL (3)
    d_max_final: float | None = None  # default: PAPER_D_MAX_FINAL (5)
    renorm_warmup_rule: str | None = None  # default: DEFAULT_WARMUP_RULE (unless renorm_warmup is given)
    sync_bn: bool = False  # BatchNorm statistics over every rank's shard (mpiexec); see minigrad.distributed
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float | None = None  # default: DEFAULT_OPTIMIZER_MOMENTUM for sgd and rmsprop; Adam takes none
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
    threads: int | None = None  # BLAS and normalization threads (minigrad.threads); None: each library's own choice
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
        if config.threads is not None:
            _integer("threads", config.threads, low=1, high=MAX_THREADS)
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
            config.momentum = DEFAULT_OPTIMIZER_MOMENTUM if config.momentum is None else config.momentum
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
        _check_renorm_schedule(config)
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


def _check_renorm_schedule(config: TrainConfig) -> None:
    """Refuse schedule settings that cannot work or would do nothing; fill in the rule and limits a run uses."""
    given = {name: getattr(config, name) for name in RENORM_SCHEDULE_FIELDS if getattr(config, name) is not None}
    for name, value in given.items():
        if config.norm != "brn":
            raise ConfigError(
                f"{name}: the r_max/d_max schedule is Batch Renorm's, so {name}={value} does nothing with norm="
                f"{config.norm!r}; leave it out, or pick norm='brn'"
            )
    for name in ("renorm_warmup", "renorm_ramp"):
        if name in given:
            _integer(name, given[name], low=0)
    for name, low in (("r_max_final", 1), ("d_max_final", 0)):
        if name in given:
            _number(name, given[name], f"a finite number >= {low}", lambda v, low=low: v >= low)
    if "renorm_warmup_rule" in given:
        _choice("renorm_warmup_rule", given["renorm_warmup_rule"], WARMUP_RULES)
    if config.norm != "brn":
        return
    for limit in ("r_max", "d_max"):
        fixed = getattr(config, limit)
        if fixed is not None and f"{limit}_final" in given:
            raise ConfigError(
                f"{limit}_final: a fixed {limit}={fixed} replaces {limit}'s schedule, so {limit}_final="
                f"{given[limit + '_final']} does nothing; leave one of them out"
            )
    if config.r_max is not None and config.d_max is not None:
        for name in ("renorm_warmup", "renorm_ramp", "renorm_warmup_rule"):
            if name in given:
                raise ConfigError(
                    f"{name}: fixed r_max={config.r_max} and d_max={config.d_max} replace the whole schedule, so "
                    f"{name}={given[name]} does nothing; leave it out, or fix only one of the two limits"
                )
        return
    if "renorm_warmup" in given and "renorm_warmup_rule" in given:
        raise ConfigError(
            f"renorm_warmup_rule: the rule derives the warm-up's length, so renorm_warmup_rule="
            f"{given['renorm_warmup_rule']} does nothing with renorm_warmup={given['renorm_warmup']} given; "
            "leave one of them out"
        )
    if config.renorm_warmup is None:
        config.renorm_warmup_rule = config.renorm_warmup_rule or DEFAULT_WARMUP_RULE
    if config.r_max is None and config.r_max_final is None:
        config.r_max_final = PAPER_R_MAX_FINAL
    if config.d_max is None and config.d_max_final is None:
        config.d_max_final = PAPER_D_MAX_FINAL


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


def check_data_available(config: TrainConfig) -> None:
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
