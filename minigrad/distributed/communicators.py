"""Communicators: one interface over MPI (mpi4py) and a single process, the launcher check, and the abort of a failed job."""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from minigrad import backend

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
