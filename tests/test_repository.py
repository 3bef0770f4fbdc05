"""The repository keeps its promises: README's commands and CI's test command agree; README's example runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.backends("numpy")
def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert len(blocks) >= 2, "README.md must open with two command blocks (main job, tests)"
    test_command = blocks[1].strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines
    assert readme.index(blocks[0]) < readme.index(blocks[1]) < 400


@pytest.mark.backends("numpy")
def test_readme_api_example_runs_and_saves_a_state_dict(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    example = re.findall(r"```python\n(.*?)\n```", readme, flags=re.S)[0]
    assert "mg.save(model.state_dict()" in example and "mg.load(" in example
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert (tmp_path / "model.npz").is_file() and [p.name for p in tmp_path.iterdir()] == ["model.npz"]
    assert namespace["model"].load_state_dict(namespace["mg"].load("model.npz")) == ([], [])
