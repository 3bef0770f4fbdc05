"""The arms of ``minigrad reproduce``: the paper's regimes (section 4) as a table of training settings.

Every arm trains the same model with the same optimizer, data and seeds; an arm
changes only the fields in :data:`ARM_FIELDS` (the normalization and the way
batches are formed), and carries the paper's number for its regime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minigrad.train_config import ConfigError


class ReproduceError(ConfigError):
    """An option of ``minigrad reproduce`` that cannot work, or an output folder made by another study."""


# The only TrainConfig fields in which two arms may differ (besides `out` and the `extra` notes).
ARM_FIELDS = ("norm", "sampler", "examples_per_label", "virtual_batch_size", "eval_batch_stats")

# Regimes in figure order, with the paper's figure each one is the analogue of.
REGIMES = {
    "iid": "Figure 1: i.i.d. minibatches",
    "micro": "Figure 2: microbatches",
    "noniid": "Figure 3: non-i.i.d. minibatches",
}


@dataclass(frozen=True)
class PaperNumber:
    """What the paper reports for an arm (Inception-v3 on ImageNet, top-1 validation accuracy)."""

    accuracy: float | None  # test accuracy in inference mode, as a fraction
    note: str  # e.g. "78.3% at 130k steps"
    batch_stats: float | None = None  # accuracy with batch statistics of non-i.i.d. test batches
    train_accuracy: float | None = None  # training accuracy (BatchNorm, non-i.i.d.)


@dataclass(frozen=True)
class Arm:
    """One row of the study: a name, the regime (figure) it belongs to, and how its run differs from the base."""

    name: str
    regime: str
    description: str
    overrides: dict[str, Any]
    paper: PaperNumber


PAPER_MICROBATCH = 4  # the paper's Figure 2 normalizes microbatches of 4 examples


def make_arms(batch_size: int = 32, labels_per_batch: int = 16, microbatch: int = PAPER_MICROBATCH) -> list[Arm]:
    """The study's arms for minibatches of `batch_size` with `labels_per_batch` labels in the non-i.i.d. arms
    and normalization groups of `microbatch` examples in the microbatch arms.

    The paper's settings are 32 images of 16 labels (2 per label) and
    microbatches of 4; the extreme arms draw each batch from a single label
    (examples_per_label = batch size). The paper's numbers are attached to the
    microbatch arms only at its microbatch size.
    """
    for name, value in (("labels_per_batch", labels_per_batch), ("microbatch", microbatch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ReproduceError(f"{name}: expected a positive integer, got {value!r}")
    if batch_size % labels_per_batch:
        raise ReproduceError(
            f"labels_per_batch: {labels_per_batch} labels must divide the batch size {batch_size} "
            f"(each label gets batch_size / labels_per_batch images)"
        )
    if microbatch < 2:
        raise ReproduceError(
            f"microbatch: a group of {microbatch} example has no variance to normalize by; expected 2 or more"
        )
    if batch_size % microbatch:
        raise ReproduceError(
            f"microbatch: the microbatch arms normalize groups of {microbatch}, which must divide the batch size "
            f"{batch_size}"
        )
    k = batch_size // labels_per_batch
    nb = PaperNumber(None, "not in the paper")
    iid = {"sampler": "iid"}
    micro = {"sampler": "iid", "virtual_batch_size": microbatch}
    paper_micro = microbatch == PAPER_MICROBATCH
    noniid = {"sampler": "noniid", "examples_per_label": k}
    extreme = {"sampler": "noniid", "examples_per_label": batch_size}
    return [
        Arm("bn-iid", "iid", f"BatchNorm, i.i.d. batches of {batch_size}", {"norm": "bn", **iid},
            PaperNumber(0.783, "78.3% at 130k")),
        Arm("brn-iid", "iid", f"Batch Renorm, i.i.d. batches of {batch_size}", {"norm": "brn", **iid},
            PaperNumber(0.785, "78.5% at 130k")),
        Arm("bn-micro", "micro", f"BatchNorm, normalized in microbatches of {microbatch}", {"norm": "bn", **micro},
            PaperNumber(0.742, "74.2% at 210k") if paper_micro else nb),
        Arm("brn-micro", "micro", f"Batch Renorm, normalized in microbatches of {microbatch}",
            {"norm": "brn", **micro}, PaperNumber(0.765, "76.5% at 130k") if paper_micro else nb),
        Arm("bn-noniid", "noniid", f"BatchNorm, {labels_per_batch} labels x {k} images per batch",
            {"norm": "bn", **noniid, "eval_batch_stats": True},
            PaperNumber(0.67, "67% (76.5% with batch stats; train 72.8%)", batch_stats=0.765, train_accuracy=0.728)),
        Arm("brn-noniid", "noniid", f"Batch Renorm, {labels_per_batch} labels x {k} images per batch",
            {"norm": "brn", **noniid}, PaperNumber(0.785, "78.5% at 120k")),
        Arm("bn-halfsplit", "noniid", f"BatchNorm, {batch_size // 2} labels x 2 images, pairs split across halves",
            {"norm": "bn", "sampler": "halfsplit", "eval_batch_stats": True}, PaperNumber(0.774, "77.4% at 140k")),
        Arm("bn-noniid1", "noniid", f"BatchNorm, one label per batch ({batch_size} images of it)",
            {"norm": "bn", **extreme, "eval_batch_stats": True}, nb),
        Arm("brn-noniid1", "noniid", f"Batch Renorm, one label per batch ({batch_size} images of it)",
            {"norm": "brn", **extreme}, nb),
    ]  # fmt: skip


ARM_NAMES = tuple(arm.name for arm in make_arms())
