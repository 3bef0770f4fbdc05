"""`kill -9` at random moments: the checkpoint always loads, and the resumed run equals the uninterrupted one.

A run that checkpoints every 3 steps is killed (SIGKILL: no handler runs) at a random moment, three times,
each time continued with the same command (``--resume`` once a checkpoint exists). The pieces must add up to
exactly the run that was never interrupted: the same losses at every step, the same evaluations, the same
weights. Temporary files a kill leaves behind are removed by the next session.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minigrad.checkpoint import load_checkpoint
from minigrad.cli import main

pytestmark = [
    pytest.mark.backends("numpy"),
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX"),
]
pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn (pip install 'minigrad[train]')")

OPTIONS = ["--steps", "150", "--eval-every", "3", "--no-progress", "--seed", "3"]
ROOT = Path(__file__).resolve().parent.parent


def _records(out: Path) -> list[dict]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        record.pop("images_per_sec", None)  # timing, the one thing that differs between two runs
    return records


def _kill_at_random(out: Path, rng: random.Random) -> None:
    """Start (or resume) the run in a subprocess and SIGKILL it at a random moment of its training."""
    resume = ["--resume"] if (out / "checkpoint.npz").exists() else []
    command = [sys.executable, "-m", "minigrad", "train", *OPTIONS, "--out", str(out), *resume]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        metrics = out / "metrics.jsonl"
        size = metrics.stat().st_size if metrics.exists() else 0
        while time.monotonic() < deadline and process.poll() is None:
            if metrics.exists() and metrics.stat().st_size != size:  # training (or its truncation) has begun
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.9))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode not in (-signal.SIGKILL, 0):
        raise AssertionError(process.stderr.read().decode())
    process.stderr.close()


def test_kill_9_at_random_moments_then_resume_equals_the_uninterrupted_run(tmp_path, capsys):
    assert main(["train", *OPTIONS, "--out", str(tmp_path / "whole")]) == 0
    rng = random.Random(20261203)
    pieces = tmp_path / "pieces"
    steps_seen = []
    for _ in range(3):
        _kill_at_random(pieces, rng)
        if (pieces / "checkpoint.npz").exists():
            state = load_checkpoint(pieces / "checkpoint.npz")  # every checkpoint a kill leaves loads
            assert isinstance(state["step"], int) and state["step"] % 3 == 0
            steps_seen.append(state["step"])
    resume = ["--resume"] if (pieces / "checkpoint.npz").exists() else []
    assert main(["train", *OPTIONS, "--out", str(pieces), *resume]) == 0
    capsys.readouterr()
    assert not [p.name for p in pieces.iterdir() if p.name.endswith(".tmp")]
    assert _records(pieces) == _records(tmp_path / "whole"), steps_seen
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.npz")
    b = load_checkpoint(pieces / "checkpoint.npz")
    assert a["step"] == b["step"] == 150
    for name, value in a["model"].items():
        np.testing.assert_array_equal(value, b["model"][name], err_msg=name)
