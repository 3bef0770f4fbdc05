"""How many threads minigrad's CPU work uses: the BLAS pool and the normalization kernels' own pool.

Two pools do the CPU work of a training step. The BLAS library under NumPy
(OpenBLAS, MKL, ...) runs the matrix products of the convolutions and linear
layers on its threads; :mod:`minigrad.norm.fused` runs the block loops of the
BatchNorm and Batch Renorm kernels on a small thread pool of its own.
:func:`thread_limit` sets both to the same count for a stretch of code and
puts back what was there before; ``minigrad train --threads N``,
``minigrad reproduce --threads N`` and the benchmarks use it.

The BLAS limit goes through threadpoolctl, which finds the native thread pools
loaded in the process whatever library provides them. Without a limit each
library keeps its own choice (OpenBLAS: one thread per core; the normalization
pool: one thread).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from minigrad import validate
from minigrad.norm import fused

MAX_THREADS = 1024  # far above any CPU's cores; the native libraries cap the count at what they were built for


def _threadpool_limits() -> Any:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise ImportError(
            "threads: limiting the BLAS thread count needs threadpoolctl: pip install 'minigrad[train]' "
            "(or pip install threadpoolctl)"
        ) from None
    return threadpool_limits


def limit_threads(threads: int) -> Callable[[], None]:
    """Run BLAS and the normalization kernels on `threads` threads from now on; returns the function that undoes it.

    For code that holds the limit for the rest of a process (a benchmark script);
    elsewhere :func:`thread_limit` is the tidier form.
    """
    threads = validate.positive_int("threads", threads)
    if threads > MAX_THREADS:
        raise ValueError(f"threads: expected a positive integer up to {MAX_THREADS}, got {threads}")
    limits = _threadpool_limits()(limits=threads)
    previous = fused.THREADS
    fused.set_threads(threads)

    def restore() -> None:
        fused.set_threads(previous)
        limits.restore_original_limits()

    return restore


@contextmanager
def thread_limit(threads: int | None) -> Iterator[None]:
    """BLAS and the normalization kernels on `threads` threads inside the block, restored after it.

    ``None`` changes nothing: every library keeps its own choice.
    """
    if threads is None:
        yield
        return
    restore = limit_threads(threads)
    try:
        yield
    finally:
        restore()


def blas_threads() -> dict[str, int]:
    """The thread count of every native (BLAS, OpenMP) pool loaded in this process, by library file name.

    Empty when threadpoolctl is not installed or no such pool is loaded.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    return {str(pool.get("filepath")): int(pool["num_threads"]) for pool in threadpool_info()}
