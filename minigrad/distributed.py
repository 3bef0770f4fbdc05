"""Data-parallel training over MPI processes: the paper's synchronized workers, each normalizing its own shard.

Section 4 of Ioffe, *Batch Renormalization* (2017), trains Inception-v3 on 50
synchronized workers: every worker takes a minibatch of 32 examples,
normalizes it with its own statistics (batchnorm or Batch Renorm), computes
gradients, and the gradients of all 50 minibatches are aggregated before each
update. This module reproduces that setting on real processes through MPI
(`mpi4py <https://mpi4py.readthedocs.io>`_), the standard that numerical
Python already uses across machines:

    mpiexec -n 2 minigrad train --norm bn          # 2 ranks, 16 examples each of every global batch of 32

What happens on each step (see :func:`minigrad.train.train`):

1. **Sharding.** Every rank's sampler draws the *same* global batch (it is
   seeded with the run's seed), and rank r keeps its contiguous slice
   (:class:`ShardedLoader`, :func:`shard_bounds`). A global batch of 32 on 2
   ranks is thus exactly one process's batch of 32 with
   ``virtual_batch_size=16`` (ghost batches): rank 0 holds the first ghost
   batch, rank 1 the second. Data augmentation draws from a generator seeded
   with the run's seed and the rank (:func:`rank_seed`), so a rerun is identical.
2. **Normalization per rank.** BatchNorm and Batch Renorm statistics μ_B, σ_B
   (and Batch Renorm's r, d) come from the rank's own shard: the paper's setting.
3. **Running statistics are shared state.** They are read by Batch Renorm in
   training and by both methods in inference, so they must stay identical on
   every rank, like the parameters. Each training forward, the ranks average
   their per-channel μ_B and σ_B (weighted by their number of values; one tiny
   allreduce per layer, :func:`share_running_stats`) and every rank applies the
   same single update: exactly the single-process update with ghost batches,
   which averages the groups' μ_B and σ_B.
4. **Gradients are averaged** with one allreduce over a flat buffer of every
   parameter's gradient before each optimizer step (:func:`average_gradients`),
   so every rank takes the same step and the parameters stay identical; this
   is checked cheaply at every evaluation (:func:`check_in_sync`).

**Synchronized BatchNorm** (:func:`sync_batch_norm`, ``minigrad train --sync-bn``)
is the alternative that the paper's setting is contrasted with: statistics
over the whole *global* batch. The forward makes two passes, each an
allreduce of per-channel numbers: the sums and counts give μ_B, then the sums
of squared deviations from that μ_B give σ_B (no E[x²] − E[x]², which cancels
badly). The backward allreduces the per-channel sums of g and g · x̂.

**Uneven shards** (a global batch that the number of ranks does not divide)
are handled with correct weights: rank r holds n_r of the N examples, its
loss is the mean over its shard, and its gradient enters the sum with weight
n_r / N, so the result is the gradient of the mean loss over the global
batch. Running statistics and synchronized statistics are weighted by counts
in the same way.

**Failures.** A rank that raises while the others wait in a collective would
leave them waiting for ever; :func:`run_or_abort` prints the failing rank's
traceback, prefixed with its rank, and calls ``MPI_Abort``, which stops the
whole job.

**One process.** Without ``mpiexec`` the same code runs with
:class:`SingleProcess`, whose collectives do nothing: minigrad needs neither
mpi4py nor an MPI library then (under ``mpiexec -n 1`` every collective of
the one rank is skipped as well, so the run is the same). ``pip install 'minigrad[mpi]'``
installs mpi4py and the MPICH wheels from PyPI (``mpiexec`` lands in the
environment's ``bin``), so no root and no system MPI are needed.

**GPUs.** Gradients of CuPy arrays are staged through host memory (one copy to
the host, the allreduce, one copy back) unless ``MINIGRAD_MPI_CUDA_AWARE=1``
says that the MPI library is CUDA-aware, in which case the device buffer is
handed to MPI directly. The MPICH wheels on PyPI are *not* CUDA-aware, so
staging is the default. Per-channel statistics (a few hundred numbers) always
go through the host, in float64.

**Several machines.** ``mpiexec -hosts a,b -n 4`` (MPICH's Hydra; ``-f hostfile``
also works) starts ranks over ssh: every machine needs the same Python
environment at the same path and the data set, since every rank loads it.
Only rank 0 writes ``--out`` (on its machine); on ``--resume`` rank 0 reads
the checkpoint and sends it to the others, so no shared file system is needed.

Environment: ``MINIGRAD_DISTRIBUTED=auto`` (default: MPI when launched by
``mpiexec``/``mpirun``, or ``srun --mpi=pmi2``), ``mpi`` (always; needs mpi4py)
or ``none`` (one process even under a launcher).
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, NoReturn

from minigrad import backend
from minigrad.nn import functional as F
from minigrad.ops.norm import (
    NormCache,
    _affine_tensors,
    _AffineInputs,
    check_eps,
    check_input,
    check_per_channel,
    normalized_grad,
    per_group,
    running_stats_update,
)
from minigrad.tensor import Tensor

np = backend.host
Array = Any

_MODE_VARIABLE = "MINIGRAD_DISTRIBUTED"
_CUDA_AWARE_VARIABLE = "MINIGRAD_MPI_CUDA_AWARE"
# Variables that MPI launchers set in every process they start (MPICH/Hydra and Intel MPI, Open MPI, PMIx, MVAPICH).
_LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")


ABORT_GRACE_SECONDS = 1.0  # how long a failing rank waits for its message to be forwarded before MPI_Abort


class DistributedError(RuntimeError):
    """Ranks disagree (parameters diverged, a collective got different shapes) or MPI is missing."""


# ----------------------------------------------------------------------------
# Communicators
# ----------------------------------------------------------------------------


class Communicator:
    """What minigrad needs from a group of processes: rank, size, a few collectives and abort.

    Subclasses implement :meth:`allreduce_host`, :meth:`bcast`, :meth:`gather`,
    :meth:`allgather`, :meth:`barrier` and :meth:`abort`. Every collective must
    be called by every rank, in the same order.
    """

    rank: int = 0
    size: int = 1

    @property
    def is_root(self) -> bool:
        """True on rank 0, the rank that writes files, metrics and the progress bar."""
        return self.rank == 0

    @property
    def label(self) -> str:
        """The text "rank r/K", for messages."""
        return f"rank {self.rank}/{self.size}"

    def allreduce_host(self, array: np.ndarray) -> np.ndarray:
        """The element-wise sum over ranks of a host (NumPy) array, as a new array on every rank."""
        raise NotImplementedError

    def allreduce(self, array: Array) -> Array:
        """The element-wise sum over ranks of a backend array, on the array's library, device and dtype.

        Staged through host memory (see the module docstring for CUDA-aware MPI).
        """
        summed = self.allreduce_host(backend.to_numpy(array))
        return backend.to_device(summed, backend.device_of(array))

    def bcast(self, obj: Any, root: int = 0) -> Any:
        """`obj` of rank `root`, on every rank (any picklable object)."""
        raise NotImplementedError

    def gather(self, obj: Any, root: int = 0) -> list[Any] | None:
        """The list of every rank's `obj` on rank `root` (None on the others)."""
        raise NotImplementedError

    def allgather(self, obj: Any) -> list[Any]:
        """The list of every rank's `obj`, in rank order, on every rank."""
        raise NotImplementedError

    def barrier(self) -> None:
        """Wait until every rank has arrived here."""
        raise NotImplementedError

    def abort(self, code: int = 1) -> NoReturn:
        """Stop every rank of the job at once with exit code `code`."""
        raise NotImplementedError


class SingleProcess(Communicator):
    """The group of one process: every collective returns its input (a copy for arrays)."""

    def allreduce_host(self, array: np.ndarray) -> np.ndarray:
        return np.array(array, copy=True)

    def allreduce(self, array: Array) -> Array:
        return backend.namespace(array).asarray(array, copy=True)

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def gather(self, obj: Any, root: int = 0) -> list[Any] | None:
        return [obj]

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def barrier(self) -> None:
        return None

    def abort(self, code: int = 1) -> NoReturn:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class MPICommunicator(Communicator):
    """mpi4py's ``COMM_WORLD`` (or the communicator given): the ranks started by ``mpiexec``.

    Arrays are summed with the buffer interface (``Allreduce`` in place, no
    pickling); other objects go through mpi4py's pickle-based lower-case
    collectives. `cuda_aware` (default: the ``MINIGRAD_MPI_CUDA_AWARE``
    environment variable) hands CuPy buffers to MPI directly instead of
    staging them through host memory.
    """

    def __init__(self, comm: Any = None, cuda_aware: bool | None = None) -> None:
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise DistributedError(
                "distributed training needs mpi4py and an MPI library: pip install 'minigrad[mpi]' "
                "(mpi4py and the MPICH wheels; mpiexec is then in the environment's bin folder)"
            ) from exc
        self._mpi = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = int(self.comm.Get_rank())
        self.size = int(self.comm.Get_size())
        if cuda_aware is None:
            cuda_aware = os.environ.get(_CUDA_AWARE_VARIABLE, "").strip().lower() in ("1", "true", "yes")
        self.cuda_aware = bool(cuda_aware)

    def allreduce_host(self, array: np.ndarray) -> np.ndarray:
        buffer = np.array(array, copy=True, order="C")
        self.comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)
        return buffer

    def allreduce(self, array: Array) -> Array:
        if self.cuda_aware and backend.library_of(array) == "cupy":
            xp = backend.namespace(array)
            buffer = xp.reshape(xp.asarray(array, copy=True), (-1,))  # a contiguous copy on the device
            array.device.synchronize()  # the copy must be finished before MPI reads the memory
            self.comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)
            return xp.reshape(buffer, tuple(array.shape))
        return super().allreduce(array)

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return self.comm.bcast(obj, root=root)

    def gather(self, obj: Any, root: int = 0) -> list[Any] | None:
        return self.comm.gather(obj, root=root)

    def allgather(self, obj: Any) -> list[Any]:
        return self.comm.allgather(obj)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1) -> NoReturn:
        sys.stdout.flush()
        sys.stderr.flush()
        # MPI_Abort makes mpiexec kill every rank at once; output this rank has written but mpiexec has not
        # forwarded yet can be lost with them. A moment's pause lets the failing rank's message through.
        time.sleep(ABORT_GRACE_SECONDS)
        self.comm.Abort(code)
        os._exit(code)  # not reached: MPI_Abort does not return


def launched_by_mpi() -> bool:
    """True when this process was started by an MPI launcher (``mpiexec``, ``mpirun``, ``srun --mpi``)."""
    return any(name in os.environ for name in _LAUNCHER_VARIABLES)


_world: Communicator | None = None


def world() -> Communicator:
    """The communicator of this job, made once: MPI's ``COMM_WORLD`` under a launcher, else :class:`SingleProcess`.

    ``MINIGRAD_DISTRIBUTED=none`` forces one process, ``=mpi`` forces MPI. A
    job launched with several ranks but without mpi4py fails here with the
    command that installs it (instead of K independent runs writing over each other).
    """
    global _world
    if _world is None:
        mode = os.environ.get(_MODE_VARIABLE, "auto").strip().lower() or "auto"
        if mode not in ("auto", "mpi", "none"):
            raise ValueError(f"environment variable {_MODE_VARIABLE}: expected auto, mpi or none, got {mode!r}")
        use_mpi = mode == "mpi" or (mode == "auto" and launched_by_mpi())
        _world = MPICommunicator() if use_mpi else SingleProcess()
    return _world


# ----------------------------------------------------------------------------
# Failing ranks stop the job
# ----------------------------------------------------------------------------


def _report(comm: Communicator, text: str) -> None:
    prefix = f"[minigrad {comm.label}] "
    lines = text.rstrip("\n").splitlines() or [""]
    sys.stderr.write("".join(prefix + line + "\n" for line in lines))
    sys.stderr.flush()


def run_or_abort(main: Callable[[], int | None], comm: Communicator | None = None) -> int:
    """Run this rank's `main`; if it raises or returns a non-zero code, stop every rank of the job.

    Without this, a rank that fails while the others wait in a collective
    (an allreduce of gradients) leaves them waiting for ever. Here the failing
    rank prints its traceback (or its exit code), each line prefixed with
    ``[minigrad rank r/K]``, and calls ``MPI_Abort``: mpiexec then stops the
    other ranks and exits with the failing rank's code. In one process the
    exception propagates and the code is returned as usual.
    """
    comm = world() if comm is None else comm
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException as exc:
        if comm.size == 1:
            raise
        _report(comm, traceback.format_exc())
        comm.abort(130 if isinstance(exc, KeyboardInterrupt) else 1)
    code = 0 if code is None else int(code)
    if code != 0 and comm.size > 1:
        _report(comm, f"exited with code {code}; stopping every rank")
        comm.abort(code)
    return code


# ----------------------------------------------------------------------------
# Sharding the global batch
# ----------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_group(total: int, rank: int, size: int) -> None:
    if not _is_int(total) or total < 0:
        raise ValueError(f"total: expected a non-negative integer (examples in the batch), got {total!r}")
    if not _is_int(size) or size < 1:
        raise ValueError(f"size: expected a positive integer (number of ranks), got {size!r}")
    if not _is_int(rank) or not 0 <= rank < size:
        raise ValueError(f"rank: expected an integer in [0, {size}), got {rank!r}")


def shard_sizes(total: int, size: int) -> list[int]:
    """How many of `total` examples each of `size` ranks takes: as equal as possible, the first ranks one more."""
    _check_group(total, 0, size)
    base, extra = divmod(int(total), int(size))
    return [base + (1 if r < extra else 0) for r in range(size)]


def shard_bounds(total: int, rank: int, size: int) -> tuple[int, int]:
    """[start, stop) of rank `rank`'s contiguous shard of a batch of `total` examples split over `size` ranks."""
    _check_group(total, rank, size)
    base, extra = divmod(int(total), int(size))
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def check_shards(batch_size: int, size: int, virtual_batch_size: int | None = None) -> list[int]:
    """The shard sizes of a global batch over `size` ranks, or a ValueError saying why it cannot be split.

    Every rank needs at least one example, and ghost batches (`virtual_batch_size`)
    must not straddle two ranks, so they must divide every shard. Uneven shards
    are allowed otherwise: their gradients and statistics are weighted by size.
    """
    sizes = shard_sizes(batch_size, size)
    if sizes[-1] < 1:
        raise ValueError(
            f"batch_size: expected at least one example per rank, got a global batch of {batch_size} for {size} ranks"
        )
    if virtual_batch_size is not None and any(s % virtual_batch_size for s in sizes):
        shown = ", ".join(map(str, sorted(set(sizes))))
        raise ValueError(
            f"virtual_batch_size: each rank normalizes groups of virtual_batch_size examples within its shard of "
            f"the global batch ({batch_size} over {size} ranks gives shards of {shown}), so it must divide every "
            f"shard, got {virtual_batch_size}"
        )
    return sizes


def rank_seed(seed: int | None, rank: int) -> int | None:
    """A seed for rank `rank`'s own random stream (data augmentation), derived from the run's seed and the rank."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed), 0xA06, int(rank)]).generate_state(1, np.uint64)[0])


class ShardedLoader:
    """This rank's shard of every batch of a :class:`~minigrad.data.DataLoader`.

    The loader's sampler draws the global batch (the same on every rank: it is
    seeded with the run's seed), the rank keeps the slice
    :func:`shard_bounds` gives it, and only that slice is gathered, augmented
    and copied to the device. With several ranks the loader's augmentation
    generator is reseeded from (`seed`, rank), so each rank's augmentation is
    its own and reproducible. The state (sampler position, augmentation state)
    is the wrapped loader's.

    Evaluation uses it too: inference normalizes each example on its own, so
    splitting every test batch over the ranks changes nothing but the time
    (the per-rank sums are then added, :func:`minigrad.train.evaluate`). A
    batch smaller than the number of ranks leaves some shards empty; iterating
    skips those (training batches never have one: :func:`check_shards`).
    """

    def __init__(self, loader: Any, comm: Communicator, seed: int | None = 0) -> None:
        self.loader = loader
        self.comm = comm
        self.batch_size = loader.batch_size
        if comm.size > 1:
            loader.augmentation_generator = backend.Generator(rank_seed(seed, comm.rank))

    def shard(self, indices: np.ndarray) -> np.ndarray:
        """This rank's part of the global batch `indices`."""
        start, stop = shard_bounds(len(indices), self.comm.rank, self.comm.size)
        return indices[start:stop]

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's shards of the (rest of the) current epoch, empty ones skipped."""
        for indices in self.loader.sampler:
            shard = self.shard(indices)
            if len(shard):
                yield self.loader.collate(shard)

    def batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """Shards forever, epoch after epoch (``next(it)`` per training step)."""
        for indices in self.loader.sampler.batches():
            yield self.loader.collate(self.shard(indices))

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state)


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


# ----------------------------------------------------------------------------
# Running statistics shared across ranks
# ----------------------------------------------------------------------------


def _host_stats(values: Sequence[Array]) -> np.ndarray:
    """Small per-channel arrays concatenated on the host, in float64."""
    return np.concatenate([backend.to_numpy(v).astype(np.float64).reshape(-1) for v in values])


def _stat_like(values: np.ndarray, like: Array, shape: tuple[int, ...]) -> Array:
    """Host float64 numbers as an array of `like`'s dtype and device, reshaped to `shape`."""
    host = np.asarray(values, dtype=backend.dtype_name(like.dtype)).reshape(shape)
    return backend.to_device(host, backend.device_of(like))


def rank_average_stats(cache: NormCache, comm: Communicator) -> NormCache:
    """A copy of `cache` whose μ_B and σ_B are their averages over the ranks, weighted by each rank's count.

    Each rank first averages its own ghost batches' μ_B and σ_B (as the
    single-process update does); the ranks' averages are then combined with
    weights m_r / Σ m (m_r: values per channel in rank r's batch), in float64,
    in one allreduce of 2C + 1 numbers. With equal shards this is the plain
    mean over every ghost batch of the global batch: the single-process update.
    """
    mu_b = per_group(cache.mu_b)  # (G, C)
    sigma_b = per_group(cache.sigma_b)
    groups, channels = mu_b.shape
    count = float(groups * cache.m)
    local = _host_stats([mu_b, sigma_b]).reshape(2, groups, channels).mean(axis=1)  # mean over this rank's groups
    summed = comm.allreduce_host(np.concatenate([count * local.reshape(-1), [count]]))
    mean = summed[:-1].reshape(2, channels) / summed[-1]
    shape = (1, 1, channels) + (1,) * (cache.mu_b.ndim - 3)
    return replace(cache, mu_b=_stat_like(mean[0], cache.mu_b, shape), sigma_b=_stat_like(mean[1], cache.sigma_b, shape))


@contextmanager
def share_running_stats(comm: Communicator) -> Iterator[None]:
    """Within the block, every running-statistic update (BatchNorm, Batch Renorm) uses the ranks' average μ_B, σ_B.

    See :func:`rank_average_stats`. Every rank must run the same training-mode
    forwards (each update is a collective). Nothing changes in one process.
    """
    if comm.size == 1:
        yield
        return
    with F.reducing_batch_stats(lambda cache: rank_average_stats(cache, comm)):
        yield


# ----------------------------------------------------------------------------
# Synchronized BatchNorm: statistics over the global batch
# ----------------------------------------------------------------------------


class SyncBatchNormTrain(_AffineInputs):
    """BatchNorm in training mode with μ_B and σ_B over every rank's batch (the global batch).

    Forward, two passes (each an allreduce of per-channel float64 numbers):
    Σ x and the count m give μ_B = Σ x / M over the M values of all ranks; then
    Σ (x − μ_B)² gives σ_B = sqrt(ε + Σ (x − μ_B)² / M). x̂ and y are computed
    locally. Backward: dℓ/dx_i = γ/σ_B · (g_i − (Σ g)/M − x̂_i (Σ g x̂)/M) with the
    sums over the global batch, i.e. the kernels' :func:`normalized_grad` given
    allreduced sums. dℓ/dγ and dℓ/dβ are this rank's part; the gradient
    averaging adds them up.

    Weights. Rank r's loss is the mean over its n_r examples and enters the
    global loss with weight w_r = n_r / N (:func:`average_gradients`), so its
    dℓ/dy is 1/w_r times the global loss's. The sums are therefore allreduced
    as Σ_r w_r Σ_{i∈r} g_i (global units), and the local result stays in local
    units, so that the weighted gradient sum is exact even for uneven shards.
    With equal shards this is the usual SyncBN (PyTorch's).
    """

    comm: Communicator
    eps: float

    def forward(self, x, *affine):
        gamma, beta = self._unpack(affine)
        xp = backend.namespace(x)
        channels = x.shape[1]
        xg = xp.reshape(x, (1,) + tuple(x.shape))  # the kernels' grouped layout with one group: (1, N, C, *S)
        axes = (1,) + tuple(range(3, xg.ndim))
        m_local = math.prod(xg.shape[a] for a in axes)
        stat_shape = (1, 1, channels) + (1,) * (xg.ndim - 3)
        # pass 1: μ_B ← Σ x / M over the global batch
        summed = self.comm.allreduce_host(np.concatenate([_host_stats([xp.sum(xg, axis=axes)]), [m_local]]))
        total = summed[-1]
        if total < 2:
            raise ValueError(
                f"x: expected more than one value per channel in the global batch in training mode, got {int(total)} "
                f"over {self.comm.size} ranks (this rank's x has shape {tuple(x.shape)})"
            )
        mu_b = _stat_like(summed[:channels] / total, x, stat_shape)
        xc = xg - mu_b  # x_i − μ_B (second pass)
        # pass 2: σ_B ← sqrt(ε + Σ (x − μ_B)² / M)
        squares = self.comm.allreduce_host(_host_stats([xp.sum(xc * xc, axis=axes)]))
        sigma_b = _stat_like(np.sqrt(self.eps + squares / total), x, stat_shape)
        x_norm = xc / sigma_b  # x̂_i ← (x_i − μ_B)/σ_B
        y = x_norm
        if gamma is not None:
            y = y * xp.reshape(gamma, stat_shape)  # γ x̂_i
        if beta is not None:
            y = y + xp.reshape(beta, stat_shape)  # y_i ← γ x̂_i + β
        self.share = m_local / total  # w_r = n_r / N: this rank's weight in the global loss
        self.cache = NormCache(x_norm=x_norm, mu_b=mu_b, sigma_b=sigma_b, gamma=gamma, input_shape=tuple(x.shape), axes=axes)
        self.sink.append(self.cache)
        return xp.reshape(y, tuple(x.shape))

    def backward(self, grad):
        cache = self.cache
        xp = backend.namespace(grad)
        channels = cache.x_norm.shape[2]
        dyg = xp.reshape(grad, tuple(cache.x_norm.shape))
        sum_dy = xp.sum(dyg, axis=cache.axes, keepdims=True)  # Σ_i dℓ/dy_i over this rank's values
        sum_dy_xn = xp.sum(dyg * cache.x_norm, axis=cache.axes, keepdims=True)  # Σ_i dℓ/dy_i · x̂_i
        dbeta = xp.reshape(sum_dy, (channels,))  # this rank's part of ∂ℓ/∂β
        dgamma = xp.reshape(sum_dy_xn, (channels,))  # this rank's part of ∂ℓ/∂γ
        dx = None
        if self.needs_input_grad[0]:
            both = self.comm.allreduce_host(self.share * _host_stats([sum_dy, sum_dy_xn]))
            shape = tuple(sum_dy.shape)
            gamma = None if cache.gamma is None else xp.reshape(cache.gamma, shape)
            dx = normalized_grad(
                dyg,
                cache.x_norm,
                cache.sigma_b,
                cache.axes,
                gamma,
                sum_g=_stat_like(both[:channels], grad, shape),
                sum_g_x_norm=_stat_like(both[channels:], grad, shape),
            )
            dx = xp.reshape(dx, cache.input_shape)
        return self._pack(dx, dgamma, dbeta)


def sync_batch_norm(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Array | None,
    running_std: Array | None,
    comm: Communicator,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """BatchNorm in training mode with statistics over the global batch (every rank's `x`); see :class:`SyncBatchNormTrain`.

    The running statistics, when given, are updated in place with the global
    μ_B and σ_B, which are the same on every rank. Every rank must call it the
    same number of times (each call is a collective). In one process it is
    plain BatchNorm.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a Tensor, got {type(x).__name__}")
    check_input(x.data)
    check_eps(eps, allow_zero=False)
    for name, value in (("weight", weight), ("bias", bias)):
        check_per_channel(name, None if value is None else value.data, x.shape[1])
    if not (isinstance(momentum, (int, float)) and 0 <= momentum <= 1):
        raise ValueError(f"momentum: expected a number in [0, 1] (the update rate Δ), got {momentum!r}")
    tensors, flags = _affine_tensors(x, weight, bias)
    sink: list[NormCache] = []
    y = SyncBatchNormTrain.apply(*tensors, comm=comm, eps=float(eps), sink=sink, **flags)
    if running_mean is not None and running_std is not None:
        new_mean, new_std = running_stats_update(running_mean, running_std, sink[0], momentum)
        running_mean[...] = new_mean  # μ := μ + Δ(μ_B − μ) with the global μ_B
        running_std[...] = new_std  # σ := σ + Δ(σ_B − σ)
    return y


def convert_sync_batchnorm(model: Any, comm: Communicator) -> Any:
    """Make every BatchNorm layer of `model` normalize over the global batch of the ranks of `comm` (in place).

    In training mode those layers then call :func:`sync_batch_norm`; eval mode
    is unchanged. Batch Renorm layers and ghost batches are refused: both are
    ways of normalizing over *part* of the batch, the opposite of this.
    Returns `model`.
    """
    from minigrad.nn.norm import _BatchNorm, _BatchRenorm

    for name, layer in model.named_modules():
        if isinstance(layer, _BatchRenorm):
            raise ValueError(
                f"model: synchronized statistics are for BatchNorm only, got {type(layer).__name__} at {name!r} "
                "(use norm='bn')"
            )
        if isinstance(layer, _BatchNorm):
            if layer.virtual_batch_size is not None:
                raise ValueError(
                    f"model: layer {name!r} has virtual_batch_size={layer.virtual_batch_size}; synchronized BatchNorm "
                    "normalizes over the whole global batch, so it needs virtual_batch_size=None"
                )
            layer.sync_group = comm
    return model
