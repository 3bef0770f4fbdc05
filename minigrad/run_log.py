"""What a training run tells while it trains: the lines of ``metrics.jsonl``, the console and the progress bar.

On a GPU a device-to-host copy waits for all the work queued before it, so
reading the loss every step would serialize every step. :class:`StepLog`
keeps each step's loss and correct count on the device and reads them in one
copy at a read boundary (see :data:`minigrad.train.READ_EVERY`);
``metrics.jsonl`` then receives the same one line per step as if each had
been read at once. :class:`RunLog` writes those lines and the evaluation
records (rank 0 only) and keeps the progress bar and console in step.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import minigrad as mg
from minigrad import backend, distributed
from minigrad.evaluation import correct_count, read_together
from minigrad.runfolder import METRICS
from minigrad.train_config import TrainConfig

np = backend.host


def divergence(step: int, what: str) -> FloatingPointError:
    """The error of a run whose loss, weights or running statistics stopped being finite at `step`."""
    return FloatingPointError(f"training diverged: {what} at step {step}; lower --lr")


class StepLog:
    """The training loss and batch accuracy of each step, kept on the device until they are read.

    A loss that turned NaN or infinite is found at the next read, which names
    the step where it happened.
    """

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []

    def add(self, step: int, loss: mg.Tensor, logits: mg.Tensor, labels: mg.Tensor, share: float, lr: float,
            seconds: float) -> None:  # fmt: skip
        """Note one step's loss and accuracy (still on the device) and its host-side numbers."""
        self.pending.append({"step": step, "loss": loss.data, "correct": correct_count(logits, labels),
                             "share": share, "examples": labels.shape[0], "lr": lr, "seconds": seconds})  # fmt: skip

    def read(self, comm: distributed.Communicator) -> list[dict[str, Any]]:
        """The pending steps' metric records, oldest first, in one copy (and one allreduce with several ranks)."""
        if not self.pending:
            return []
        pending, self.pending = self.pending, []
        values = read_together([p["loss"] for p in pending] + [p["correct"] for p in pending])
        n = len(pending)
        # this rank's weighted losses, correct counts and batch sizes; with several ranks, summed over them
        sums = np.stack([values[:n] * [p["share"] for p in pending], values[n:], [p["examples"] for p in pending]])
        if comm.size > 1:
            sums = comm.allreduce_host(sums)
        records = []
        for p, loss_value, correct, examples in zip(pending, *sums):
            records.append({"step": p["step"], "kind": "train", "loss": float(loss_value),
                            "batch_accuracy": float(correct / examples), "lr": p["lr"],
                            "images_per_sec": float(examples / max(p["seconds"], 1e-9))})  # fmt: skip
        return records


def progress_bar(config: TrainConfig, start: int) -> Any:
    """A tqdm bar over the run's steps, or None without ``progress`` or without tqdm (an optional extra)."""
    if not config.progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=config.steps, initial=start, desc=f"train {config.norm}/{config.sampler}", unit="step", leave=False)


def evaluation_line(evaluation: dict[str, Any], steps: int) -> str:
    """One evaluation as a console line: test accuracy and test loss (inference mode), and batch statistics if asked."""
    line = (
        f"step {evaluation['step']}/{steps}: test accuracy {evaluation['test_accuracy']:.4f}, "
        f"test loss {evaluation['test_loss']:.4f}"
    )
    if "test_accuracy_batch_stats" in evaluation:
        line += f", test accuracy with batch statistics {evaluation['test_accuracy_batch_stats']:.4f}"
    return line


class RunLog:
    """The outputs of a run while it trains: ``metrics.jsonl`` and the progress bar on rank 0, the console log.

    Opens ``metrics.jsonl`` for appending (a resumed run continues the file);
    call inside :func:`minigrad.runfolder.writing` so that a failed write names
    the folder, and :meth:`close` at the end.
    """

    def __init__(self, config: TrainConfig, comm: distributed.Communicator, log: Callable[[str], None] | None,
                 start_step: int) -> None:  # fmt: skip
        self.config, self.comm, self.log = config, comm, log
        self.steps = StepLog()
        self.bar = progress_bar(config, start_step) if comm.is_root else None
        self.metrics = (Path(config.out) / METRICS).open("a", encoding="utf-8") if comm.is_root else None

    def say(self, line: str) -> None:
        """A line of the console log, printed above the progress bar (which is redrawn below it)."""
        if self.log is None:
            return
        if self.bar is None:
            self.log(line)
            return
        with self.bar.external_write_mode():
            self.log(line)

    def write_steps(self) -> None:
        """Read the pending steps' metrics, write their lines, show the last on the bar; raise at a non-finite loss."""
        records = self.steps.read(self.comm)
        for record in records:
            if not math.isfinite(record["loss"]):
                raise divergence(record["step"], f"the loss is {record['loss']}")
            if self.metrics is not None:
                self.metrics.write(json.dumps(record) + "\n")
        if self.bar is not None and records:
            last = records[-1]
            loss_text, accuracy_text = f"{last['loss']:.3f}", f"{last['batch_accuracy']:.2f}"
            self.bar.set_postfix(loss=loss_text, acc=accuracy_text, img_s=f"{last['images_per_sec']:.0f}",
                                 refresh=False)  # fmt: skip

    def write_evaluation(self, evaluation: dict[str, Any]) -> None:
        """Write an evaluation record (flushed: it is what a resumed run keeps) and its console line."""
        if self.metrics is not None:
            self.metrics.write(json.dumps(evaluation) + "\n")
            self.metrics.flush()
        self.say(evaluation_line(evaluation, self.config.steps))

    def advance(self) -> None:
        """One more step on the progress bar."""
        if self.bar is not None:
            self.bar.update(1)

    def flush(self) -> None:
        """Flush ``metrics.jsonl`` (inside ``writing``, so that a full disk is reported like any failed write)."""
        if self.metrics is not None:
            self.metrics.flush()

    def close(self) -> None:
        """Close the file and the bar; a failed close was reported by the flush or write before it."""
        if self.metrics is not None:
            with suppress(OSError):
                self.metrics.close()
        if self.bar is not None:
            self.bar.close()
