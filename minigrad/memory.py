"""Process-wide allocator tuning for training runs: keep freed memory instead of returning it to the system.

NumPy allocates every large temporary (activations, im2col columns, gradients)
with ``malloc``. glibc maps each block above its mmap threshold fresh from the
operating system and unmaps it when freed, and trims the top of the heap, so
every training step faults its big temporaries back in page by page: about
9,000 minor page faults and a fifth of the step's time for the CIFAR model
(see ``benchmarks/README.md``). Raising the mmap and trim thresholds lets
freed blocks be reused by the next step.

This changes the allocator of the whole process, so minigrad never does it on
import: the ``minigrad`` command calls :func:`keep_freed_memory` at start-up
(opt out with ``MINIGRAD_KEEP_FREED_MEMORY=0``), and so do the benchmarks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's <malloc.h>
MMAP_THRESHOLD = 32 * 2**20  # blocks up to 32 MiB come from the reusable heap
TRIM_THRESHOLD = 2**30  # keep up to 1 GiB of freed heap before trimming


def keep_freed_memory() -> str:
    """Ask glibc's malloc to keep freed memory for reuse; returns what was done, for logs and reports.

    A no-op (saying so) on systems without glibc's ``mallopt`` or when the
    environment variable ``MINIGRAD_KEEP_FREED_MEMORY`` is ``0``.
    """
    if os.environ.get("MINIGRAD_KEEP_FREED_MEMORY", "1").strip() == "0":
        return "default (MINIGRAD_KEEP_FREED_MEMORY=0)"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):
        ok = False
    if not ok:
        return "default (glibc's mallopt is not available)"
    return f"glibc mallopt: M_MMAP_THRESHOLD {MMAP_THRESHOLD >> 20} MiB, M_TRIM_THRESHOLD {TRIM_THRESHOLD >> 30} GiB"
