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
   (:class:`~minigrad.distributed.sharding.ShardedLoader`). A global batch of 32 on 2
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

**Synchronized BatchNorm** (:func:`convert_sync_batchnorm`, ``minigrad train --sync-bn``)
is the alternative that the paper's setting is contrasted with: statistics
over the whole *global* batch, computed by the same normalization kernels
with their sums taken over every rank (:mod:`minigrad.norm.reduction`).

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
