"""Every tutorial runs, top to bottom, on the CPU; its own assertions fail the test if they fail.

Tutorials are jupytext "percent" scripts (``tutorials/NN_name.py``): plain
Python that opens as a notebook (``jupytext --to notebook``). Running them as
scripts is the cheapest way to execute every cell in order with no kernel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


def _run(path: Path, cwd: Path, **env: str) -> None:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT), **env}
    env.setdefault("OPENBLAS_NUM_THREADS", "1")  # small models: two BLAS threads only wait for each other
    result = subprocess.run([sys.executable, str(path)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"


@pytest.mark.backends("numpy")
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, tmp_path):
    cwd, out = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    _run(path, cwd, MINIGRAD_TUTORIAL_OUT=str(out))
    written = sorted(p.name for p in cwd.iterdir() if p.name != ".hypothesis")  # hypothesis' example database
    assert not written, f"{path.name} wrote into the current folder: {written}"


@pytest.mark.backends("numpy")
def test_figures_go_to_the_tutorials_output_folder_by_default(tmp_path, monkeypatch):
    """Run as README says (no MINIGRAD_TUTORIAL_OUT): figures land in tutorials/output/, beside the script."""
    monkeypatch.delenv("MINIGRAD_TUTORIAL_OUT", raising=False)
    tutorial = TUTORIALS[0]
    copy = tmp_path / "tutorials" / tutorial.name  # a copy, so the test writes nothing into the repository
    copy.parent.mkdir()
    shutil.copy(tutorial, copy)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    _run(copy, cwd)
    assert not list(cwd.iterdir())
    figures = list((copy.parent / "output").iterdir())
    assert figures and all(p.suffix == ".png" and p.stat().st_size > 0 for p in figures)
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "tutorials/output/" in ignored


@pytest.mark.backends("numpy")
def test_tutorials_exist_and_are_linked_from_the_readme():
    assert len(TUTORIALS) >= 1
    readme = (ROOT / "README.md").read_text()
    for path in TUTORIALS:
        assert f"tutorials/{path.name}" in readme, f"README.md does not link {path.name}"
