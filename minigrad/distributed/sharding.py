"""Sharding one global batch over the ranks: shard sizes, the check that a batch can be split, per-rank seeds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from minigrad import backend, validate
from minigrad.distributed.communicators import Communicator
from minigrad.random import Generator
from minigrad.tensor import Tensor

np = backend.host

# ----------------------------------------------------------------------------
# Sharding the global batch
# ----------------------------------------------------------------------------


def _check_group(total: int, rank: int, size: int) -> None:
    if not validate.is_integer(total) or total < 0:
        raise ValueError(f"total: expected a non-negative integer (examples in the batch), got {total!r}")
    if not validate.is_integer(size) or size < 1:
        raise ValueError(f"size: expected a positive integer (number of ranks), got {size!r}")
    if not validate.is_integer(rank) or not 0 <= rank < size:
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
    (the per-rank sums are then added, :func:`minigrad.evaluation.evaluate`). A
    batch smaller than the number of ranks leaves some shards empty; iterating
    skips those (training batches never have one: :func:`check_shards`).
    """

    def __init__(self, loader: Any, comm: Communicator, seed: int | None = 0) -> None:
        self.loader = loader
        self.comm = comm
        self.batch_size = loader.batch_size
        if comm.size > 1:
            loader.augmentation_generator = Generator(rank_seed(seed, comm.rank))

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
