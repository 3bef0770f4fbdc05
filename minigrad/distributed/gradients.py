"""Gradient averaging over the ranks (one flat allreduce per step) and the check that the ranks' state agrees."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from minigrad import backend
from minigrad.distributed.communicators import Communicator, DistributedError
from minigrad.tensor import Tensor

np = backend.host
Array = Any

# ----------------------------------------------------------------------------
# Gradients and the check that ranks agree
# ----------------------------------------------------------------------------


def average_gradients(
    parameters: Iterable[Tensor], comm: Communicator, weight: float | None = None, extra: Sequence[float] = ()
) -> list[float]:
    """Replace every parameter's ``.grad`` by the weighted sum over ranks of the ranks' gradients, in one allreduce.

    Rank r's gradients are multiplied by `weight` (default 1/K; n_r / N, the
    rank's share of the global batch, for uneven shards) and summed over the
    ranks, so that the result is the gradient of the mean loss over the global
    batch when each rank's loss is the mean over its shard: the paper's
    aggregation of the workers' gradients. Every gradient, a presence flag per
    parameter (a parameter without a gradient on every rank keeps ``None``) and
    the numbers in `extra` travel in one flat buffer of the parameters' dtype.

    Returns the sums over ranks of `extra` (e.g. weighted losses, correct
    counts, a stop request), which thus cost no second allreduce. In one
    process with weight 1 nothing is touched.
    """
    params = list(parameters)
    weight = 1.0 / comm.size if weight is None else float(weight)
    extra = [float(v) for v in extra]
    if comm.size == 1 and weight == 1.0:
        return extra
    if not params:
        return comm.allreduce_host(np.asarray(extra, dtype=np.float64)).tolist()
    datas = [p.data for p in params]
    xp = backend.namespace(*datas)
    dtype = backend.dtype_name(xp.result_type(*datas))
    device = backend.device_of(datas[0])
    pieces = []
    for param in params:
        if param.grad is None:
            pieces.append(backend.to_device(np.zeros(param.size, dtype=dtype), device))
        else:
            pieces.append(xp.reshape(backend.astype(param.grad, dtype), (-1,)) * weight)
    flags = [0.0 if p.grad is None else 1.0 for p in params]
    pieces.append(backend.to_device(np.asarray(flags + extra, dtype=dtype), device))
    summed = comm.allreduce(xp.concat(pieces))
    offset = sum(p.size for p in params)
    tail = backend.to_numpy(summed[offset:]).astype(np.float64)
    offset = 0
    for param, present in zip(params, tail[: len(params)]):
        piece = summed[offset : offset + param.size]
        offset += param.size
        param.grad = None if present == 0 else xp.reshape(backend.astype(piece, param.dtype), param.shape)
    return tail[len(params) :].tolist()


def _state_arrays(model: Any) -> list[tuple[str, Array]]:
    """The parameters and floating buffers (running statistics) of `model`, by name."""
    entries = [(name, p.data) for name, p in model.named_parameters()]
    entries += [(name, v) for name, v in model.named_buffers() if backend.is_array(v) and backend.is_floating(v)]
    return entries


def _checksums(array: Array) -> np.ndarray:
    """(Σ x, Σ x · w, Σ |x|) in float64, with fixed weights w in [0.5, 1.5] so that a permutation changes the second."""
    host = backend.to_numpy(array).astype(np.float64).reshape(-1)
    weights = 1.0 + 0.5 * np.sin(np.arange(host.size, dtype=np.float64) * 1.618)
    return np.array([host.sum(), host @ weights, np.abs(host).sum()])


def check_in_sync(model: Any, comm: Communicator, step: int | None = None, rtol: float = 1e-6) -> None:
    """Raise :class:`DistributedError` when `model`'s parameters or running statistics differ across ranks.

    Cheap: three float64 checksums per array (sum, weighted sum, sum of
    magnitudes) gathered from every rank, not the arrays themselves. Two
    checksums differ when they are further apart than `rtol` times the sum of
    magnitudes; the ranks all take identical steps, so any difference means a
    rank ran other code, other data or a step the others did not. Every rank
    raises the same error, which names the first array that differs.
    """
    if comm.size == 1:
        return
    entries = _state_arrays(model)
    mine = np.stack([_checksums(a) for _, a in entries]) if entries else np.zeros((0, 3))
    everyone = comm.allgather(mine)
    reference = everyone[0]
    when = "" if step is None else f" at step {step}"
    for rank, other in enumerate(everyone[1:], start=1):
        if other.shape != reference.shape:
            raise DistributedError(
                f"the ranks' models differ{when}: rank {rank} has {other.shape[0]} parameter and statistic arrays, "
                f"rank 0 has {reference.shape[0]}"
            )
        tolerance = rtol * np.maximum(reference[:, 2], other[:, 2])
        apart = np.abs(other[:, :2] - reference[:, :2]) > tolerance[:, None]
        apart |= np.isnan(other[:, :2]) != np.isnan(reference[:, :2])
        bad = np.flatnonzero(apart.any(axis=1))
        if bad.size:
            i = int(bad[0])
            raise DistributedError(
                f"parameters differ across ranks{when}: {entries[i][0]!r} has checksums {other[i, :2].tolist()} on "
                f"rank {rank} and {reference[i, :2].tolist()} on rank 0 ({bad.size} of {len(entries)} arrays differ). "
                "Every rank should take the same averaged step; did a rank load other weights or skip a step?"
            )
