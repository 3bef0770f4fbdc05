"""Accuracy and loss of a model over a data loader, read from the device in one copy.

:func:`evaluate` is what a training run reports at each evaluation: inference
mode by default, or each test batch normalized with its own statistics (the
paper's section 4.3 diagnostic). The counts stay on the device until the end,
so that an evaluation costs one device-to-host copy, not one per batch.
"""

from __future__ import annotations

from typing import Any

import minigrad as mg
from minigrad import backend, distributed

np = backend.host


def norm_layers(model: mg.nn.Module) -> list[mg.nn.Module]:
    """The BatchNorm and Batch Renorm layers of `model`."""
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
        for layer in norm_layers(model):
            layer.train()
    losses, hits, sizes = [], [], []  # per batch, on the device until the one read below
    try:
        with mg.no_grad():
            for images, labels in loader:
                logits = model(images)
                losses.append(mg.cross_entropy(logits, labels).data)
                hits.append(correct_count(logits, labels))
                sizes.append(labels.shape[0])
    finally:
        if saved is not None:
            model.load_state_dict(saved)
        model.train()
    correct, total, loss_sum = 0, sum(sizes), 0.0
    if sizes:
        values = read_together(losses + hits)  # one device-to-host copy for the whole evaluation
        loss_sum = float(np.dot(values[: len(sizes)], np.asarray(sizes, dtype=np.float64)))
        correct = int(values[len(sizes) :].sum())
    if comm is not None and comm.size > 1:
        sums = comm.allreduce_host(np.array([correct, total, loss_sum], dtype=np.float64))
        correct, total, loss_sum = int(sums[0]), int(sums[1]), float(sums[2])
    return {"accuracy": correct / max(total, 1), "loss": loss_sum / max(total, 1), "examples": total}


def correct_count(logits: mg.Tensor, labels: mg.Tensor) -> Any:
    """How many rows of `logits` put their maximum at the label, as a 0-d array on the device, in the logits' dtype.

    The logits' floating dtype lets the count travel to the host with the losses in one copy; it holds counts exactly
    up to 2^24 (float32), far above a batch.
    """
    xp = backend.namespace(logits.data)
    return xp.sum(xp.astype(xp.argmax(logits.data, axis=1) == labels.data, logits.data.dtype))


def read_together(scalars: list[Any]) -> np.ndarray:
    """0-d device arrays of one dtype as a float64 NumPy vector, in one device-to-host copy."""
    xp = backend.namespace(*scalars)
    return backend.to_numpy(xp.stack(scalars)).astype(np.float64)
