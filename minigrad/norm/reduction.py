"""Over which values the batch statistics are summed: this process's batch, or the batches of a process group.

The normalization kernels compute per-channel sums over their own values and
hand them to a reduction. :data:`LOCAL` returns them as they are (BatchNorm
and Batch Renorm on one batch). :class:`GroupReduction` adds them up over the
processes of a group, which turns the same kernels into synchronized
BatchNorm (statistics over the global batch) or, for the moving averages,
into one update shared by every process. The group is any object with
``size`` and ``allreduce_host(numpy_array) -> numpy_array`` (an element-wise
sum over the processes): a :mod:`minigrad.parallel` communicator, or a test's
stand-in. Nothing here imports the MPI code.
"""

from __future__ import annotations

from typing import Any, Protocol

from minigrad import backend

Array = Any
np = backend.host


class ProcessGroup(Protocol):
    """What a reduction needs from a group of processes (duck-typed)."""

    size: int

    def allreduce_host(self, array: Any) -> Any: ...


class LocalReduction:
    """The values of this process alone: every sum and mean is the local one (no copy, no communication)."""

    size = 1

    def mean(self, partial_sum: Array, count: int) -> tuple[Array, int]:
        """(Σ / count, count): the mean of `count` values whose sum is `partial_sum`."""
        return partial_sum / count, count

    def sum(self, *partial_sums: Array) -> tuple[Array, ...]:
        """The sums themselves."""
        return partial_sums

    def average(self, values: Array, weight: float) -> Array:
        """`values` themselves (the weighted mean over one process)."""
        return values


LOCAL = LocalReduction()


class GroupReduction:
    """Sums over every process of `group`, in float64 through host memory, one allreduce per call.

    Every process of the group must make the same calls in the same order
    (each is a collective). The results come back in the dtype and on the
    device of the inputs.
    """

    def __init__(self, group: ProcessGroup) -> None:
        self.group = group
        self.size = int(group.size)

    def _allreduce(self, arrays: tuple[Array, ...], extra: list[float]) -> tuple[list[Array], Any]:
        host = [backend.to_numpy(a).astype(np.float64).reshape(-1) for a in arrays]
        summed = self.group.allreduce_host(np.concatenate(host + [np.asarray(extra, dtype=np.float64)]))
        out, offset = [], 0
        for array, flat in zip(arrays, host):
            piece = summed[offset : offset + flat.size].reshape(tuple(array.shape))
            out.append(backend.to_device(piece.astype(backend.dtype_name(array.dtype)), backend.device_of(array)))
            offset += flat.size
        return out, summed[offset:]

    def mean(self, partial_sum: Array, count: int) -> tuple[Array, int]:
        """(Σ over the group / M, M) with M the group's total count; refuses M < 2 (nothing to normalize)."""
        (total_sum,), tail = self._allreduce((partial_sum,), [count])
        total = round(float(tail[0]))
        if total < 2:
            raise ValueError(
                f"x: expected more than one value per channel in the global batch in training mode, got {total} "
                f"over {self.size} processes"
            )
        return total_sum / total, total

    def sum(self, *partial_sums: Array) -> tuple[Array, ...]:
        """Each of `partial_sums` summed over the group (one allreduce for all of them)."""
        out, _ = self._allreduce(partial_sums, [])
        return tuple(out)

    def average(self, values: Array, weight: float) -> Array:
        """Σ_p weight_p · values_p / Σ_p weight_p over the processes p of the group."""
        (weighted,), tail = self._allreduce((values * weight,), [weight])
        return weighted / float(tail[0])


def reduction_for(group: ProcessGroup | None) -> LocalReduction | GroupReduction:
    """:data:`LOCAL` for no group or a group of one, else a :class:`GroupReduction` over `group`."""
    if group is None or int(group.size) == 1:
        return LOCAL
    return GroupReduction(group)
