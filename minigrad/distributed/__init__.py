"""Data-parallel training over MPI processes: the paper's synchronized workers, each normalizing its own shard.

Section 4 of the paper trains on 50 synchronized workers, each normalizing its
own minibatch, with the gradients of all of them aggregated before each
update. One step here (see :func:`minigrad.train.train`):

1. **Sharding** (:mod:`.sharding`): every rank draws the same global batch
   from the run's seed and keeps its contiguous slice, so 2 ranks x 16 is one
   process's batch of 32 with ``virtual_batch_size=16``.
2. **Normalization per rank**: μ_B, σ_B (and r, d) from the rank's own shard.
3. **Running statistics are shared state** (:mod:`.statistics`): the ranks
   average their μ_B and σ_B, weighted by counts, and make one update, exactly
   as ghost batches do in one process. ``--sync-bn`` instead normalizes over
   the global batch with the same kernels and group sums.
4. **Gradients are averaged** in one flat allreduce (:mod:`.gradients`),
   weighted by shard size for uneven shards, and the ranks' parameters are
   checked to agree at every evaluation.

A failing rank stops the job with its traceback (:func:`run_or_abort`). In
one process :class:`SingleProcess` does nothing and mpi4py is not needed.
Environment: ``MINIGRAD_DISTRIBUTED=auto|mpi|none``;
``MINIGRAD_MPI_CUDA_AWARE=1`` hands CuPy buffers to a CUDA-aware MPI
(otherwise they are staged through the host). README's "Several processes
and machines" shows the commands.
"""

from minigrad.distributed.communicators import (
    _LAUNCHER_VARIABLES,
    ABORT_GRACE_SECONDS,
    Communicator,
    DistributedError,
    MPICommunicator,
    SingleProcess,
    launched_by_mpi,
    run_or_abort,
    world,
)
from minigrad.distributed.gradients import average_gradients, check_in_sync
from minigrad.distributed.sharding import ShardedLoader, check_shards, rank_seed, shard_bounds, shard_sizes
from minigrad.distributed.statistics import convert_sync_batchnorm, share_running_stats

__all__ = [
    "ABORT_GRACE_SECONDS", "Communicator", "DistributedError", "MPICommunicator", "ShardedLoader", "SingleProcess",
    "average_gradients", "check_in_sync", "check_shards", "convert_sync_batchnorm", "launched_by_mpi", "rank_seed",
    "run_or_abort", "shard_bounds", "shard_sizes", "share_running_stats", "world",
]  # fmt: skip
