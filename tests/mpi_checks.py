"""Data-parallel runs that tests/test_distributed.py launches under ``mpiexec -n 2`` (and runs in one process).

One launch does several checks, because starting MPI costs about a second;
rank 0 writes what the ranks computed to a file that the test compares with a
computation in one process (the test's own, without MPI)::

    mpiexec -n 2 python tests/mpi_checks.py checks OUT.npz    # gradients, parameters, statistics, sync-BN, resume
    mpiexec -n 2 python tests/mpi_checks.py fail              # rank 1 raises while rank 0 waits in an allreduce

:func:`data_parallel_run` is the procedure both sides run: with the ranks of
``mpiexec`` it is the paper's setting (each rank normalizes its shard of the
global batch, gradients averaged); in one process, with ``virtual_batch_size``
equal to the shard size, it is the ghost-batch run that the ranks must match.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import minigrad as mg
from minigrad import distributed
from minigrad.train import TrainConfig, train

STEPS = 4  # optimizer steps of each run
CASES = {  # name: (norm, global batch, synchronized BatchNorm)
    "bn": ("bn", 32, False),
    "brn": ("brn", 32, False),
    "bn_uneven": ("bn", 33, False),
    "sync": ("bn", 32, True),
    "sync_uneven": ("bn", 33, True),
}


def make_model(norm: str, virtual_batch_size: int | None = None) -> mg.nn.Module:
    """A small digits CNN in float64 (three BatchNorm2d/BatchRenorm2d layers and one 1-d), the same on every rank."""
    options: dict[str, Any] = {"momentum": 0.3}  # a fast update rate, so that the running statistics matter
    if norm == "brn":
        options.update(r_max=1.5, d_max=0.5)  # tight limits: some r and d are clipped
    return mg.models.DigitsCNN(
        norm=norm,
        channels=(4, 6, 8),
        hidden=12,
        dtype="float64",
        generator=mg.Generator(0),
        virtual_batch_size=virtual_batch_size,
        **options,
    )


def global_batches(batch_size: int, steps: int = STEPS) -> list[tuple[np.ndarray, np.ndarray]]:
    """The global batches of a run: the same on every rank (seeded), images (B, 1, 8, 8) and labels (B,)."""
    rng = np.random.default_rng(1234)
    return [(rng.normal(size=(batch_size, 1, 8, 8)) * 2 + 1, rng.integers(0, 10, size=batch_size)) for _ in range(steps)]


def data_parallel_run(
    norm: str,
    batch_size: int,
    comm: distributed.Communicator,
    virtual_batch_size: int | None = None,
    sync_bn: bool = False,
    share_stats: bool = True,
) -> dict[str, np.ndarray]:
    """Train :func:`make_model` for :data:`STEPS` SGD steps on this rank's shards; return what rank 0 should save.

    Returned (as host arrays): ``logits`` of the first step (every rank's shard,
    gathered in rank order), ``loss`` per step (the weighted mean over the global
    batch), ``grad/<name>`` after the first averaging, ``final/<name>`` the
    parameters and running statistics after the last step.
    """
    model = make_model(norm, virtual_batch_size)
    if sync_bn:
        distributed.convert_sync_batchnorm(model, comm)
    elif share_stats:
        distributed.share_running_stats(model, comm)
    optimizer = mg.optim.SGD(list(model.named_parameters()), lr=0.1, momentum=0.9)
    record: dict[str, np.ndarray] = {}
    losses = []
    for step, (images, labels) in enumerate(global_batches(batch_size)):
        start, stop = distributed.shard_bounds(batch_size, comm.rank, comm.size)
        logits = model(mg.Tensor(images[start:stop], dtype="float64"))
        loss = mg.cross_entropy(logits, mg.Tensor(labels[start:stop], dtype="int64"))
        optimizer.zero_grad()
        loss.backward()
        share = (stop - start) / batch_size
        (total,) = distributed.average_gradients(model.parameters(), comm, share, extra=[share * loss.item()])
        losses.append(total)
        if step == 0:
            record["logits"] = np.concatenate(comm.allgather(logits.numpy()))
            for name, param in model.named_parameters():
                record[f"grad/{name}"] = mg.backend.to_numpy(param.grad)
        optimizer.step()
    record["loss"] = np.array(losses)
    for name, value in model.state_dict().items():
        if mg.backend.is_array(value) and mg.backend.is_floating(value):
            record[f"final/{name}"] = mg.backend.to_numpy(value)
    distributed.check_in_sync(model, comm)
    return record


def _divergence_message(comm: distributed.Communicator) -> str:
    """The error check_in_sync gives when rank 1's weights were changed behind the others' backs ('' if none)."""
    model = make_model("bn")
    if comm.rank == 1:
        param = dict(model.named_parameters())["head.4.weight"]
        param.data = param.data * 1.001
    try:
        distributed.check_in_sync(model, comm, step=7)
    except distributed.DistributedError as exc:
        return str(exc)
    return ""


def _train_records(config: TrainConfig, comm: distributed.Communicator, **kwargs: Any) -> list[dict]:
    result = train(config, log=None, comm=comm, **kwargs)
    if not comm.is_root:
        return []
    lines = (Path(result.out) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "images_per_sec"} for line in lines]


def _resume_check(comm: distributed.Communicator, folder: Path) -> dict[str, Any]:
    """A 2-rank run interrupted at step 6 and resumed, against the same run without interruption."""
    settings = dict(steps=12, eval_every=4, progress=False, norm="brn", train_subset=400, ema=0.9)
    whole = _train_records(TrainConfig(out=str(folder / "whole"), **settings), comm)
    _train_records(TrainConfig(out=str(folder / "pieces"), **settings), comm, stop_at=6)
    resumed = _train_records(TrainConfig(out=str(folder / "pieces"), resume=True, **settings), comm)
    return {"whole": whole, "resumed": resumed}


def main(argv: list[str]) -> int:
    mode = argv[0]
    comm = distributed.world()
    if mode == "fail":
        if comm.rank == 1:
            raise RuntimeError("rank 1 broke on purpose")
        comm.allreduce_host(np.zeros(1))  # rank 0 waits here for ever unless the job is stopped
        return 0
    if mode != "checks":
        raise SystemExit(f"mode: expected 'checks' or 'fail', got {mode!r}")
    if comm.size != 2:
        raise SystemExit(f"expected 2 MPI ranks, got {comm.size}: is mpiexec the one of mpi4py's MPI library?")
    saved: dict[str, np.ndarray] = {}
    for case, (norm, batch_size, sync_bn) in CASES.items():
        for key, value in data_parallel_run(norm, batch_size, comm, sync_bn=sync_bn).items():
            saved[f"{case}/{key}"] = value
    extra = {"divergence": _divergence_message(comm)}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(comm.bcast(scratch))  # rank 0's folder: only rank 0 writes in it
        extra["resume"] = _resume_check(comm, folder)
        if comm.is_root:
            extra["files"] = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    if comm.is_root:
        saved["extra"] = np.array(json.dumps(extra))
        np.savez(argv[1], **saved)
    return 0


if __name__ == "__main__":
    sys.exit(distributed.run_or_abort(lambda: main(sys.argv[1:])))
