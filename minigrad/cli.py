"""The ``minigrad`` command: ``minigrad train`` (and ``python -m minigrad train``).

Each sub-command turns its options into a configuration object and hands it
to the module that does the work; this file only parses and reports.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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
    batches = parser.add_argument_group("batches")
    batches.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``minigrad`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            result = train(config_from_args(args))
            return 0 if not result.interrupted else 130
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"minigrad {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
