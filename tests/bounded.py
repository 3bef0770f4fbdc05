"""Run a hostile reader in a child process with a memory limit and a timeout, so a test can never hang or swap.

The child imports minigrad first, then limits its address space to what it
already uses plus `extra_mb` (``resource.setrlimit(RLIMIT_AS)``), then runs
the test's code. A reader that tried to allocate a bomb's worth of memory
dies with MemoryError instead of taking the machine down; one that blocked
(a FIFO) is killed at the timeout and the test fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

_PRELUDE = """
import resource
import minigrad
import minigrad.data
try:
    from PIL import Image  # noqa: F401 - loaded before the limit, as a real program would have it
except ImportError:
    pass

def _address_space():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0

_limit = _address_space() + {extra} * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (_limit, _limit))
"""

ROOT = Path(__file__).resolve().parents[1]


def run_bounded(code: str, *, extra_mb: int = 200, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python with at most `extra_mb` MiB of new memory; fails the test on a timeout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    script = _PRELUDE.format(extra=extra_mb) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def refusal_of(code: str, **limits) -> str:
    """Run `code`, which must raise; return ``"<ExceptionType>: <message>"`` of what it raised (not a crash)."""
    wrapped = (
        "try:\n"
        + textwrap.indent(textwrap.dedent(code), "    ")
        + ("\nexcept Exception as exc:\n    print(f'{type(exc).__name__}: {exc}')\nelse:\n    print('no error')\n")
    )
    result = run_bounded(wrapped, **limits)
    assert result.returncode == 0, f"the reader crashed (exit {result.returncode}): {result.stderr[-2000:]}"
    return result.stdout.strip()
