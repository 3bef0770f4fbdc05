"""Checkpoints: round trip of nested state, atomic writes, no pickles."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad import backend as B
from minigrad.checkpoint import atomic_write, atomic_write_text, load_checkpoint, save_checkpoint


def test_round_trip_of_nested_state(tmp_path):
    state = {
        "model": {"layer.weight": B.asarray(np.arange(6.0).reshape(2, 3)), "layer.step": 4},
        "optimizer": {"lr": 0.1, "buffers": [B.asarray(np.ones(2)), None]},
        "rng": mg.Generator(3).get_state(),
        "name": "run",
    }
    save_checkpoint(tmp_path / "ckpt.npz", state)
    loaded = load_checkpoint(tmp_path / "ckpt.npz")
    np.testing.assert_array_equal(loaded["model"]["layer.weight"], np.arange(6.0).reshape(2, 3))
    assert loaded["model"]["layer.step"] == 4 and loaded["optimizer"]["lr"] == 0.1
    np.testing.assert_array_equal(loaded["optimizer"]["buffers"][0], np.ones(2))
    assert loaded["optimizer"]["buffers"][1] is None
    assert loaded["rng"] == mg.Generator(3).get_state() and loaded["name"] == "run"


@pytest.mark.backends("numpy")
def test_a_failed_write_leaves_the_previous_file_untouched(tmp_path):
    target = tmp_path / "results.json"
    atomic_write_text(target, "old")

    def crash(file):
        file.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


@pytest.mark.backends("numpy")
def test_objects_that_need_pickle_are_refused(tmp_path):
    with pytest.raises(TypeError, match="cannot store object at 'a/b'"):
        save_checkpoint(tmp_path / "x.npz", {"a": {"b": object()}})
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.backends("numpy")
def test_loading_something_else_is_a_clear_error(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.ones(2))
    with pytest.raises(ValueError, match="not a minigrad checkpoint"):
        load_checkpoint(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="no file at"):
        load_checkpoint(tmp_path / "missing.npz")


@pytest.mark.backends("numpy")
def test_atomic_writes_get_the_usual_file_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "results.md", "table")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
