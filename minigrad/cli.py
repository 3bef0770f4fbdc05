"""The ``minigrad`` command: ``minigrad train`` and ``minigrad reproduce`` (also as ``python -m minigrad``).

Each sub-command turns its options into a configuration object and hands it
to the module that does the work; this file only parses and reports.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from minigrad import backend, distributed
from minigrad.backend import BackendUnavailableError
from minigrad.memory import keep_freed_memory
from minigrad.norm.schedule import DEFAULT_WARMUP_RULE, PAPER_D_MAX_FINAL, PAPER_R_MAX_FINAL, WARMUP_RULES
from minigrad.runfolder import RunFolderWriteError
from minigrad.train import train
from minigrad.train_config import (
    DEFAULT_OPTIMIZER_MOMENTUM,
    LR_SCHEDULES,
    MODELS,
    NORMS,
    OPTIMIZERS,
    SAMPLERS,
    ConfigError,
    TrainConfig,
)

np = backend.host


def _integer(text: str) -> int:
    """An integer option's value (the range is checked with the configuration, which names the option)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _number(text: str) -> float:
    """A real option's value; NaN and infinities parse, and the configuration refuses them by name."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


# What each option shared by `train` and `reproduce` is: its parser and how argparse stores it, defined once.
# Each command gives its own default and help text (the defaults of a study and of one run differ).
SHARED_OPTIONS: dict[str, dict[str, Any]] = {
    "--data": dict(metavar="PATH"),
    "--data-cache": dict(metavar="FILE.npz"),
    "--train-subset": dict(type=_positive_int, metavar="N"),
    "--no-augment": dict(dest="augment", action="store_false"),
    "--model": dict(choices=MODELS),
    "--norm-momentum": dict(type=_number),
    "--batch-size": dict(type=_positive_int),
    "--lr": dict(type=_number),
    "--steps": dict(type=_positive_int),
    "--eval-every": dict(type=_positive_int),
    "--ema": dict(type=_number, metavar="DECAY"),
    "--backend": dict(choices=("numpy", "cupy", "array_api_strict")),
    "--threads": dict(type=_positive_int, metavar="N"),
    "--seed": dict(type=_integer),
    "--no-progress": dict(dest="progress", action="store_false"),
    "--out": dict(metavar="DIR"),
}
THREADS_HELP = (
    "CPU threads for BLAS (the convolutions' matrix products) and the normalization kernels; recorded in "
    "config.json (default: each library's own choice, recorded as null)"
)


_NO_DEFAULT = object()  # argparse's own default: None, or True for a store_false switch


def add_option(group: argparse._ActionsContainer, flag: str, help: str, default: Any = _NO_DEFAULT) -> None:  # noqa: A002
    """Add one of the SHARED_OPTIONS to `group` with this command's help text and default."""
    defaults = {} if default is _NO_DEFAULT else {"default": default}
    group.add_argument(flag, help=help, **defaults, **SHARED_OPTIONS[flag])


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``minigrad train``; every help text states the default."""
    defaults = TrainConfig()
    data = parser.add_argument_group("data", "what to train on")
    data.add_argument(
        "--dataset",
        choices=("digits", "cifar10", "imagefolder"),
        default=defaults.dataset,
        help="digits: scikit-learn's 8x8 digits, offline; cifar10: see --data and --download; imagefolder: "
        "train/ and test/ folders of class folders given as --data (default: %(default)s)",
    )
    add_option(
        data,
        "--data",
        default=None,
        help="CIFAR-10 python archive (cifar-10-python.tar.gz), its extracted folder, or an image "
        "folder with train/ and test/ (default: the download cache for cifar10)",
    )
    add_option(data, "--data-cache", help="keep decoded image-folder pixels here for fast reloads (default: none)")
    data.add_argument(
        "--download",
        action="store_true",
        help="cifar10: download the archive (MD5-checked) into the cache when it is not there (default: off)",
    )
    add_option(data, "--train-subset", help="train on a stratified subset of N images (default: the whole training set)")
    add_option(data, "--no-augment", default=None, help="no random crop and flip (default: on for CIFAR-10, off for digits)")
    model = parser.add_argument_group("model and normalization")
    add_option(model, "--model", help="default: digits_cnn for digits, cifar_cnn otherwise")
    model.add_argument(
        "--norm", choices=NORMS, default=defaults.norm, help="bn, brn (Batch Renorm) or none (default: %(default)s)"
    )
    model.add_argument(
        "--virtual-batch-size",
        type=_positive_int,
        metavar="K",
        help="normalize groups of K examples on their own, the paper's microbatches (default: the whole batch)",
    )
    model.add_argument(
        "--r-max",
        type=_number,
        help="--norm brn: a fixed r_max instead of its schedule (below) (default: the schedule)",
    )
    model.add_argument(
        "--d-max",
        type=_number,
        help="--norm brn: a fixed d_max instead of its schedule (below) (default: the schedule)",
    )
    add_option(
        model,
        "--norm-momentum",
        default=defaults.norm_momentum,
        help="update rate of the running statistics (default: %(default)s)",
    )
    schedule = parser.add_argument_group(
        "Batch Renorm's schedule",
        "--norm brn: r_max = 1 and d_max = 0 (plain batchnorm) for a warm-up, then linear ramps to the final limits "
        "(the paper's: 5k steps, r_max 3 at 40k, d_max 5 at 25k, of 130k); a --resume that changes one of these "
        "needs --allow-changed",
    )
    schedule.add_argument(
        "--renorm-warmup",
        type=_integer,
        metavar="N",
        help="steps with r_max = 1 and d_max = 0 (default: derived from --steps by --renorm-warmup-rule)",
    )
    schedule.add_argument(
        "--renorm-ramp",
        type=_integer,
        metavar="N",
        help="steps from the end of the warm-up until r_max reaches --r-max-final; d_max's ramp is 20/35 of it, the "
        "paper's proportion (default: the paper's 35k and 20k steps scaled by --steps/130k)",
    )
    schedule.add_argument(
        "--r-max-final",
        type=_number,
        metavar="R",
        help=f"r_max at the end of its ramp, >= 1 (default: {PAPER_R_MAX_FINAL:g}, the paper's)",
    )
    schedule.add_argument(
        "--d-max-final",
        type=_number,
        metavar="D",
        help=f"d_max at the end of its ramp, >= 0 (default: {PAPER_D_MAX_FINAL:g}, the paper's)",
    )
    schedule.add_argument(
        "--renorm-warmup-rule",
        choices=WARMUP_RULES,
        help="how the warm-up follows from --steps: proportional is the paper's 5k steps x --steps/130k; "
        "time-constants is that or 5/--norm-momentum steps (5 time constants of the moving averages), whichever "
        f"is longer, at most --steps (default: {DEFAULT_WARMUP_RULE})",
    )
    model.add_argument(
        "--sync-bn",
        action="store_true",
        help="under mpiexec: BatchNorm statistics over the whole global batch (every rank's shard) instead of each "
        "rank's own shard, the paper's setting; needs --norm bn (default: off)",
    )
    batches = parser.add_argument_group("batches")
    add_option(
        batches,
        "--batch-size",
        default=defaults.batch_size,
        help="the global batch: under mpiexec -n K each rank takes its shard of it (default: %(default)s)",
    )
    batches.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=defaults.sampler,
        help="iid; noniid: --examples-per-label images per label; halfsplit: pairs split "
        "across two normalized halves (default: %(default)s)",
    )
    batches.add_argument(
        "--examples-per-label",
        type=_positive_int,
        default=defaults.examples_per_label,
        help="--sampler noniid: images per label in a batch, 2 is the paper's, the batch size gives one label "
        "per batch (default: %(default)s)",
    )
    optim = parser.add_argument_group(
        "optimization",
        "the optimizer and its learning-rate schedule; a --resume that changes one of these needs --allow-changed",
    )
    optim.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=defaults.optimizer,
        help="sgd is Nesterov momentum SGD (default: %(default)s)",
    )
    add_option(optim, "--lr", default=defaults.lr, help="peak learning rate (default: %(default)s)")
    optim.add_argument(
        "--momentum", type=_number, help=f"sgd and rmsprop only; adam has none (default: {DEFAULT_OPTIMIZER_MOMENTUM})"
    )
    optim.add_argument(
        "--weight-decay", type=_number, default=defaults.weight_decay, help="L2 weight decay (default: %(default)s)"
    )
    optim.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=defaults.lr_schedule,
        help="cosine: annealed to 0 over --steps; step: x0.1 every third of --steps (default: %(default)s)",
    )
    optim.add_argument(
        "--warmup-steps",
        type=_integer,
        default=defaults.warmup_steps,
        help="linear learning-rate warm-up over this many steps (default: %(default)s)",
    )
    add_option(optim, "--steps", default=defaults.steps, help="training steps of the run (default: %(default)s)")
    add_option(optim, "--ema", help="evaluate an exponential moving average of the weights with this decay (default: off)")
    run = parser.add_argument_group("run")
    add_option(
        run,
        "--eval-every",
        default=defaults.eval_every,
        help="steps between evaluations, each followed by a checkpoint (default: %(default)s)",
    )
    run.add_argument(
        "--eval-batch-stats",
        action="store_true",
        help="also evaluate with batch statistics on test batches drawn like the training batches (default: off)",
    )
    add_option(run, "--backend", default=defaults.backend, help="numpy (CPU) or cupy (NVIDIA GPU) (default: %(default)s)")
    add_option(run, "--threads", help=THREADS_HELP)
    add_option(run, "--seed", default=defaults.seed, help="seed of weights, batches, augmentation (default: %(default)s)")
    add_option(run, "--no-progress", help="no progress bar (default: a progress bar)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig named by parsed ``minigrad train`` options."""
    fields = TrainConfig.__dataclass_fields__
    return TrainConfig(**{name: value for name, value in vars(args).items() if name in fields})


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``minigrad train: error: argument --lr: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="minigrad", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    train_parser = commands.add_parser(
        "train",
        help="train a CNN with BatchNorm or Batch Renorm",
        description="Train a CNN with BatchNorm or Batch Renorm and evaluate it. Exit status: 0 when the run "
        "finished, 2 for an option that cannot work, 1 when training failed (diverged, a write failed), 130 after "
        "Ctrl-C and 143 after SIGTERM (both save a checkpoint first).",
    )
    add_train_arguments(train_parser)
    folder = train_parser.add_argument_group("run folder")
    add_option(
        folder, "--out", help="output folder, new or empty unless resumed (default: runs/<dataset>-<norm>-<sampler>-<time>)"
    )
    folder.add_argument(
        "--resume", action="store_true", help="continue the run saved in --out from its checkpoint (default: off)"
    )
    folder.add_argument(
        "--allow-changed",
        action="store_true",
        help="with --resume: accept optimization settings that differ from the checkpoint's; config.json then "
        "records which steps ran with which values (default: off, such a resume is refused)",
    )
    reproduce_parser = commands.add_parser(
        "reproduce",
        help="rerun the paper's BatchNorm vs Batch Renorm comparison",
        description="Rerun the comparison of BatchNorm and Batch Renorm of the paper's section 4 (i.i.d., "
        "microbatches, non-i.i.d. batches) and write results.json, results.md and figures beside the paper's numbers.",
    )
    add_reproduce_arguments(reproduce_parser)
    return parser


def _arm_list(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def add_reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``minigrad reproduce``: the data, the budget shared by every arm, arms, seeds and output."""
    from minigrad.reproduce import ARM_NAMES, ReproduceConfig

    defaults = ReproduceConfig()
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        choices=("digits", "cifar10"),
        default=defaults.dataset,
        help="digits (built in, offline; default) or cifar10",
    )
    add_option(
        data,
        "--data",
        help="CIFAR-10: the official python archive, its folder, or an image folder / tar of one "
        "(default: the download cache)",
    )
    add_option(data, "--data-cache", help="decoded image-folder pixels (default: OUT/data-cache.npz)")
    add_option(data, "--train-subset", help="train on a stratified subset of N images")
    study = parser.add_argument_group("study")
    study.add_argument(
        "--study",
        choices=("paper", "recurrent"),
        default="paper",
        help="paper: section 4 (default); recurrent: section 5's shared statistics in an LSTM (--quick, --seeds, --out)",
    )
    study.add_argument(
        "--arms",
        type=_arm_list,
        metavar="A,B,...",
        help=f"comma-separated arms to run (default: all): {', '.join(ARM_NAMES)}",
    )
    study.add_argument(
        "--vary",
        action="append",
        metavar="NAME=V1,V2,...",
        help="repeatable: run every selected arm at every combination of these values, with the same seeds, each "
        "in OUT/sweep/<combination>/; NAME is one of norm-momentum, renorm-warmup, renorm-ramp, r-max-final, "
        "d-max-final, renorm-warmup-rule (the minigrad train flags; the schedule names apply to the brn-* arms) "
        "(default: no sweep, the study itself)",
    )
    study.add_argument("--seeds", type=_positive_int, default=defaults.seeds, help="seeds per arm (default: %(default)s)")
    add_option(study, "--seed", default=defaults.seed, help="first seed (default: %(default)s)")
    study.add_argument(
        "--labels-per-batch",
        type=_positive_int,
        default=defaults.labels_per_batch,
        metavar="L",
        help="labels per batch of the non-i.i.d. arms bn-noniid/brn-noniid (default 16: the paper's 16 x 2 "
        "at batch 32); must divide --batch-size",
    )
    study.add_argument(
        "--microbatch",
        type=_positive_int,
        default=defaults.microbatch,
        metavar="M",
        help="examples per normalization group of the microbatch arms bn-micro/brn-micro (default %(default)s: "
        "the paper's Figure 2); must divide --batch-size",
    )
    study.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: a tiny budget (60 steps per arm) that checks the study runs; its numbers are not results",
    )
    budget = parser.add_argument_group("budget shared by every arm")
    add_option(budget, "--steps", help="steps per run (default: 2000; 60 with --quick)")
    add_option(
        budget, "--eval-every", help="steps between evaluations (default: 100 for digits, 250 for cifar10, 5 with --quick)"
    )
    add_option(budget, "--batch-size", default=defaults.batch_size, help="batch size (default: %(default)s)")
    add_option(budget, "--lr", default=defaults.lr, help="peak learning rate (default: %(default)s)")
    add_option(
        budget,
        "--norm-momentum",
        default=defaults.norm_momentum,
        help=f"update rate of the running statistics (default {defaults.norm_momentum})",
    )
    add_option(budget, "--model", help="default: digits_gap_cnn for digits, cifar_cnn for cifar10")
    add_option(budget, "--ema", help="evaluate an exponential moving average of the weights")
    add_option(budget, "--no-augment", default=None, help="no crop and flip on CIFAR-10")
    budget.add_argument(
        "--train-eval-examples", type=_positive_int, metavar="N", help="training images probed at each evaluation"
    )
    run = parser.add_argument_group("run")
    add_option(run, "--backend", default=defaults.backend, help="numpy (CPU) or cupy (NVIDIA GPU) (default: %(default)s)")
    add_option(run, "--threads", help=THREADS_HELP)
    add_option(run, "--out", default=defaults.out, help="output folder; a rerun resumes it (default: reproduce)")
    add_option(run, "--no-progress", help="no progress bars")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``minigrad`` console script.

    Under ``mpiexec -n K`` every rank runs the command (see :mod:`minigrad.distributed`);
    a rank that fails stops the whole job with its message instead of leaving the others waiting.
    """
    keep_freed_memory()  # reuse freed blocks across training steps instead of page-faulting them in again
    comm = distributed.world()
    if comm.size > 1:
        return distributed.run_or_abort(lambda: _run_command(argv), comm)
    return _run_command(argv)


def _run_command(argv: Sequence[str] | None) -> int:
    """Parse `argv` and run the sub-command; a failure is one line on stderr and a non-zero exit status.

    2: an option that cannot work (nothing was trained); 1: the run failed (diverged, a write failed);
    130 / 143: stopped by Ctrl-C / SIGTERM after saving a checkpoint.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"minigrad {args.command}"
    try:
        if args.command == "train":
            with np.errstate(all="ignore"):  # a blow-up is reported once, as "training diverged", not as warnings
                result = train(config_from_args(args))
            return _exit_status(result.interrupted, result.stop_signal)
        if args.command == "reproduce" and args.study == "recurrent":
            from minigrad.studies.recurrent import run_from_args
            from minigrad.threads import thread_limit

            if args.vary:
                raise ConfigError("vary: the sweep runs the arms of --study paper; the recurrent study has no sweep")

            with thread_limit(args.threads):
                return run_from_args(args)
        if args.command == "reproduce":
            from minigrad.reproduce import ReproduceConfig, reproduce

            fields = ReproduceConfig.__dataclass_fields__
            with np.errstate(all="ignore"):
                study = reproduce(ReproduceConfig(**{k: v for k, v in vars(args).items() if k in fields}))
            return _exit_status(study.interrupted, study.stop_signal)
    except RunFolderWriteError as exc:
        return _fail(prog, exc, 1)
    except (ConfigError, FileNotFoundError, ValueError) as exc:  # ValueError: a layer or loader refusing a value
        return _fail(prog, exc, 2)
    except BackendUnavailableError as exc:
        return _fail(prog, f"--backend {args.backend}: {exc}", 2)
    except (FloatingPointError, ImportError) as exc:
        return _fail(prog, exc, 1)
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        where = f"; the last checkpoint in {out} is kept" if out else ""
        return _fail(prog, f"interrupted{where}", 130, label="stopped")
    except Exception as exc:
        if os.environ.get("MINIGRAD_DEBUG"):
            raise
        detail = f"{type(exc).__name__}: {exc}"
        return _fail(prog, f"internal error, please report it ({detail}); MINIGRAD_DEBUG=1 shows the traceback", 1)
    return 1


def _exit_status(interrupted: bool, stop_signal: int | None) -> int:
    if stop_signal is not None:
        return 128 + stop_signal  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    return 130 if interrupted else 0


def _fail(prog: str, error: BaseException | str, status: int, label: str = "error") -> int:
    message = " ".join(str(error).split())  # one line, whatever the message held
    print(f"{prog}: {label}: {speak_flags(message)}", file=sys.stderr)
    return status


_FLAGS = {
    name: "--" + name.replace("_", "-")
    for name in (*TrainConfig.__dataclass_fields__, "seeds", "labels_per_batch", "microbatch", "arms", "quick", "vary")
    if name not in ("extra", "dtype", "eval_batch_size", "augment", "progress")
}
_PREFIX = re.compile(r"^(" + "|".join(_FLAGS) + r"): ")
_ASSIGNMENT = re.compile(r"\b(" + "|".join(_FLAGS) + r")=('[^']*'|\"[^\"]*\"|[^\s,;:)]+)")


def speak_flags(message: str) -> str:
    """A message of the training library in the command's words: ``lr: ...`` and ``norm='bn'`` become
    ``--lr: ...`` and ``--norm bn`` (``download=True`` becomes ``--download``)."""
    message = _PREFIX.sub(lambda m: f"{_FLAGS[m.group(1)]}: ", message)

    def flag(match: re.Match[str]) -> str:
        name, value = _FLAGS[match.group(1)], match.group(2).strip("'\"")
        return name if value == "True" else f"{name} {value}"

    return _ASSIGNMENT.sub(flag, message)


if __name__ == "__main__":
    sys.exit(main())
