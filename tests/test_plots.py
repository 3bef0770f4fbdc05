"""Drawing a figure never takes the program's matplotlib backend away (a notebook keeps its inline figures)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

DRAW = """
import sys
{setup}
from minigrad import plots
figure = plots.accuracy_figure({{"a": [([1, 2], [0.1, 0.2])]}}, title="t")
plots.save(figure, sys.argv[1])
import matplotlib
print(matplotlib.get_backend().lower())
"""


def _backend_after_drawing(setup: str, tmp_path: Path) -> str:
    pytest.importorskip("matplotlib")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MPLBACKEND", None)
    code = DRAW.format(setup=setup)
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "f.png")], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.backends("numpy")
def test_a_program_that_uses_pyplot_keeps_its_backend(tmp_path):
    setup = "import matplotlib\nmatplotlib.use('svg')\nimport matplotlib.pyplot"
    assert _backend_after_drawing(setup, tmp_path) == "svg"


@pytest.mark.backends("numpy")
def test_a_program_without_pyplot_draws_on_agg(tmp_path):
    assert _backend_after_drawing("", tmp_path) == "agg"
