"""Every tutorial runs, top to bottom, on the CPU; its own assertions fail the test if they fail.

Tutorials are jupytext "percent" scripts (``tutorials/NN_name.py``): plain
Python that opens as a notebook (``jupytext --to notebook``). Running them as
scripts is the cheapest way to execute every cell in order with no kernel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


@pytest.mark.backends("numpy")
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT), "MINIGRAD_TUTORIAL_OUT": str(tmp_path)}
    env.setdefault("OPENBLAS_NUM_THREADS", "1")  # small models: two BLAS threads only wait for each other
    result = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"


@pytest.mark.backends("numpy")
def test_tutorials_exist_and_are_linked_from_the_readme():
    assert len(TUTORIALS) >= 1
    readme = (ROOT / "README.md").read_text()
    for path in TUTORIALS:
        assert f"tutorials/{path.name}" in readme, f"README.md does not link {path.name}"
