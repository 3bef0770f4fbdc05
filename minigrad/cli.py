"""The ``minigrad`` command: ``minigrad train`` and ``minigrad reproduce`` (also as ``python -m minigrad``).

Each sub-command turns its options into a configuration object and hands it
to the module that does the work; this file only parses and reports.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from minigrad import distributed
from minigrad.memory import keep_freed_memory
from minigrad.train import LR_SCHEDULES, MODELS, NORMS, OPTIMIZERS, SAMPLERS, ConfigError, TrainConfig, train


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``minigrad train`` (also used by ``minigrad reproduce`` for the shared ones)."""
    defaults = TrainConfig()
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        choices=("digits", "cifar10", "imagefolder"),
        default=defaults.dataset,
        help="digits: scikit-learn's 8x8 digits, offline (default); cifar10: see --data",
    )
    data.add_argument(
        "--data",
        metavar="PATH",
        default=None,
        help="CIFAR-10 python archive (cifar-10-python.tar.gz), its extracted folder, or an image "
        "folder with train/ and test/; default: the download cache",
    )
    data.add_argument("--data-cache", metavar="FILE.npz", help="keep decoded image-folder pixels here for fast reloads")
    data.add_argument("--download", action="store_true", help="download CIFAR-10 (with checksum) into the cache")
    data.add_argument("--train-subset", type=_positive_int, metavar="N", help="train on a stratified subset of N images")
    data.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        default=None,
        help="no random crop and flip (on by default for CIFAR-10)",
    )
    model = parser.add_argument_group("model and normalization")
    model.add_argument("--model", choices=MODELS, help="default: digits_cnn for digits, cifar_cnn otherwise")
    model.add_argument("--norm", choices=NORMS, default=defaults.norm, help="bn, brn (Batch Renorm, default) or none")
    model.add_argument(
        "--virtual-batch-size",
        type=_positive_int,
        metavar="K",
        help="normalize groups of K examples on their own (the paper's microbatches)",
    )
    model.add_argument("--r-max", type=float, help="fixed r_max instead of the paper's schedule scaled to --steps")
    model.add_argument("--d-max", type=float, help="fixed d_max instead of the paper's schedule scaled to --steps")
    model.add_argument(
        "--norm-momentum",
        type=float,
        default=defaults.norm_momentum,
        help=f"update rate of the running statistics (default {defaults.norm_momentum})",
    )
    model.add_argument(
        "--sync-bn",
        action="store_true",
        help="under mpiexec: BatchNorm statistics over the whole global batch (every rank's shard) instead of each "
        "rank's own shard, the paper's setting; needs --norm bn (one process: plain BatchNorm)",
    )
    batches = parser.add_argument_group("batches")
    batches.add_argument(
        "--batch-size",
        type=_positive_int,
        default=defaults.batch_size,
        help="the global batch: under mpiexec -n K each rank takes its shard of it (default 32)",
    )
    batches.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=defaults.sampler,
        help="iid (default); noniid: --examples-per-label images per label; halfsplit: pairs split "
        "across two normalized halves",
    )
    batches.add_argument(
        "--examples-per-label",
        type=_positive_int,
        default=defaults.examples_per_label,
        help="non-i.i.d. group size k (2 is the paper's; the batch size gives one label per batch)",
    )
    optim = parser.add_argument_group("optimization")
    optim.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer)
    optim.add_argument("--lr", type=float, default=defaults.lr)
    optim.add_argument("--momentum", type=float, default=defaults.momentum)
    optim.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    optim.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=defaults.lr_schedule)
    optim.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    optim.add_argument("--steps", type=_positive_int, default=defaults.steps)
    optim.add_argument("--ema", type=float, metavar="DECAY", help="evaluate an exponential moving average of the weights")
    run = parser.add_argument_group("run")
    run.add_argument("--eval-every", type=_positive_int, default=defaults.eval_every)
    run.add_argument(
        "--eval-batch-stats",
        action="store_true",
        help="also evaluate with batch statistics on test batches drawn like the training batches",
    )
    run.add_argument("--backend", choices=("numpy", "cupy", "array_api_strict"), default=defaults.backend)
    run.add_argument("--seed", type=int, default=defaults.seed)
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig named by parsed ``minigrad train`` options."""
    fields = TrainConfig.__dataclass_fields__
    return TrainConfig(**{name: value for name, value in vars(args).items() if name in fields})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minigrad", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train_parser = commands.add_parser(
        "train",
        help="train a CNN with BatchNorm or Batch Renorm",
        description="Train a CNN with BatchNorm or Batch Renorm and evaluate it.",
    )
    add_train_arguments(train_parser)
    train_parser.add_argument("--out", metavar="DIR", help="output folder (default: runs/<dataset>-<norm>-<sampler>-<time>)")
    train_parser.add_argument("--resume", action="store_true", help="continue the run saved in --out")
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
    data.add_argument(
        "--data",
        metavar="PATH",
        help="CIFAR-10: the official python archive, its folder, or an image folder / tar of one "
        "(default: the download cache)",
    )
    data.add_argument("--data-cache", metavar="FILE.npz", help="decoded image-folder pixels (default: OUT/data-cache.npz)")
    data.add_argument("--train-subset", type=_positive_int, metavar="N", help="train on a stratified subset of N images")
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
    study.add_argument("--seeds", type=_positive_int, default=defaults.seeds, help="seeds per arm (default 1)")
    study.add_argument("--seed", type=int, default=defaults.seed, help="first seed (default 0)")
    study.add_argument(
        "--labels-per-batch",
        type=_positive_int,
        default=defaults.labels_per_batch,
        metavar="L",
        help="labels per batch of the non-i.i.d. arms bn-noniid/brn-noniid (default 16: the paper's 16 x 2 "
        "at batch 32); must divide --batch-size",
    )
    study.add_argument("--quick", action="store_true", help="a tiny budget (60 steps per arm), for tests and a first look")
    budget = parser.add_argument_group("budget shared by every arm")
    budget.add_argument("--steps", type=_positive_int, help="steps per run (default: 2000; 60 with --quick)")
    budget.add_argument(
        "--eval-every", type=_positive_int, help="steps between evaluations (default 100 digits, 250 cifar10)"
    )
    budget.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size)
    budget.add_argument("--lr", type=float, default=defaults.lr)
    budget.add_argument(
        "--norm-momentum",
        type=float,
        default=defaults.norm_momentum,
        help=f"update rate of the running statistics (default {defaults.norm_momentum})",
    )
    budget.add_argument("--model", choices=MODELS, help="default: digits_gap_cnn for digits, cifar_cnn for cifar10")
    budget.add_argument("--ema", type=float, metavar="DECAY", help="evaluate an exponential moving average of the weights")
    budget.add_argument(
        "--no-augment", dest="augment", action="store_false", default=None, help="no crop and flip on CIFAR-10"
    )
    budget.add_argument(
        "--train-eval-examples", type=_positive_int, metavar="N", help="training images probed at each evaluation"
    )
    run = parser.add_argument_group("run")
    run.add_argument("--backend", choices=("numpy", "cupy", "array_api_strict"), default=defaults.backend)
    run.add_argument(
        "--out", metavar="DIR", default=defaults.out, help="output folder; a rerun resumes it (default: reproduce)"
    )
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


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
    """Parse `argv` and run the sub-command; errors in the options are reported with exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            result = train(config_from_args(args))
            return 0 if not result.interrupted else 130
        if args.command == "reproduce" and args.study == "recurrent":
            from minigrad.studies.recurrent import run_from_args

            return run_from_args(args)
        if args.command == "reproduce":
            from minigrad.reproduce import ReproduceConfig, reproduce

            fields = ReproduceConfig.__dataclass_fields__
            study = reproduce(ReproduceConfig(**{name: value for name, value in vars(args).items() if name in fields}))
            return 0 if not study.interrupted else 130
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"minigrad {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
