"""The allocator tuning of the `minigrad` command: applied in a child process, and the opt-out."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.backends("numpy")  # about the process, not arrays

CODE = "from minigrad.memory import keep_freed_memory; print(keep_freed_memory())"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt exists on Linux")
def test_keep_freed_memory_tunes_glibc_and_can_be_turned_off():
    env = {**os.environ}
    env.pop("MINIGRAD_KEEP_FREED_MEMORY", None)
    tuned = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True)
    assert tuned.stdout.startswith("glibc mallopt: M_MMAP_THRESHOLD 32 MiB")
    env["MINIGRAD_KEEP_FREED_MEMORY"] = "0"
    off = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True)
    assert off.stdout.strip() == "default (MINIGRAD_KEEP_FREED_MEMORY=0)"
