"""Damaged and foreign files given to load_checkpoint and mg.load: a CheckpointError naming the file, never a crash.

Each test builds its hostile file itself. Readers that could allocate without
bound run in a child process under a memory limit and a timeout
(tests/bounded.py).
"""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest

import minigrad as mg
from minigrad.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tests.bounded import refusal_of

pytestmark = pytest.mark.backends("numpy")  # file formats: host-side code only


def _saved(tmp_path, name="good.npz"):
    state = {"model": {"w": np.arange(6.0).reshape(2, 3), "b": np.ones(2, np.float32)}, "step": 7, "tag": "x"}
    path = save_checkpoint(tmp_path / name, state)
    return path, state


def _expect_refusal(path, match):
    for loader in (load_checkpoint, mg.load):
        with pytest.raises(CheckpointError, match=match) as info:
            loader(path)
        assert str(path) in str(info.value)
        assert isinstance(info.value, ValueError)


def test_empty_file(tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    _expect_refusal(tmp_path / "empty.npz", "the file is empty")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file(tmp_path, keep):
    path, _ = _saved(tmp_path)
    raw = path.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(raw[: int(len(raw) * keep)])
    _expect_refusal(cut, "damaged or truncated")


def test_bit_flips_all_over_the_file_are_refused_or_harmless(tmp_path):
    path, state = _saved(tmp_path)
    raw = path.read_bytes()
    flipped = tmp_path / "flipped.npz"
    refused = 0
    for i in range(0, len(raw), 3):  # every third byte, a different bit each time
        flipped.write_bytes(raw[:i] + bytes([raw[i] ^ (1 << (i % 8))]) + raw[i + 1 :])
        try:
            loaded = load_checkpoint(flipped)
        except CheckpointError as exc:
            assert str(flipped) in str(exc)
            refused += 1
            continue
        # a flip in a field nobody reads (a timestamp, an attribute) may load: then it loads exactly the original
        assert loaded["step"] == 7 and loaded["tag"] == "x"
        np.testing.assert_array_equal(loaded["model"]["w"], state["model"]["w"])
        np.testing.assert_array_equal(loaded["model"]["b"], state["model"]["b"])
    assert refused > len(raw) // 6


def test_a_npy_file(tmp_path):
    np.save(tmp_path / "weights.npy", np.ones(3))
    _expect_refusal(tmp_path / "weights.npy", r"a single \.npy array, not an \.npz archive")


def test_an_npz_without_minigrads_keys(tmp_path):
    np.savez(tmp_path / "other.npz", weight=np.ones(2))
    _expect_refusal(
        tmp_path / "other.npz",
        "not a minigrad checkpoint .an .npz without the 'meta' entry minigrad writes; it holds weight",
    )


@pytest.mark.parametrize(
    "meta, match",
    [
        (np.asarray("{not json"), "'meta' is not valid JSON"),
        (np.asarray('["a list"]'), "'meta' should be an object"),
        (np.asarray('{"format": 9, "tree": {}}'), "has format 9, expected 1"),
        (np.asarray('{"format": 1, "tree": {"w": {"__array__": "w"}}}'), "refers to an array it does not hold"),
        (np.asarray('{"format": 1, "tree": [1, 2]}'), "holds a list, expected a dict"),
        (np.arange(3), "'meta' should be one string"),
    ],
)
def test_a_forged_meta_document(tmp_path, meta, match):
    np.savez(tmp_path / "forged.npz", meta=meta)
    _expect_refusal(tmp_path / "forged.npz", match)


def test_pickles_are_refused_in_every_form(tmp_path):
    (tmp_path / "state.pt").write_bytes(pickle.dumps({"w": [1.0]}))
    _expect_refusal(tmp_path / "state.pt", "Python pickle .refused")
    np.savez(tmp_path / "objects.npz", meta=np.asarray("{}"), objects=np.array([{"a": 1}], dtype=object))
    _expect_refusal(tmp_path / "objects.npz", "holds Python objects")


def test_a_folder_and_a_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="is not a regular file"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="no file at"):
        mg.load(tmp_path / "missing.pt")


def _write_member(path, name, header_shape, body_bytes, compress=zipfile.ZIP_STORED):
    """An .npz with one member whose .npy header claims `header_shape` but holds `body_bytes` zero bytes."""
    archive = zipfile.ZipFile(path, "w", compression=compress)
    with archive, archive.open(name, "w", force_zip64=True) as member:
        header = {"descr": "<f8", "fortran_order": False, "shape": header_shape}
        np.lib.format.write_array_header_1_0(member, header)
        chunk = bytes(1 << 20)
        left = body_bytes
        while left:
            member.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))


def test_a_header_claiming_a_huge_array_is_refused_without_allocating_it(tmp_path):
    path = tmp_path / "liar.npz"
    _write_member(path, "meta.npy", (1 << 40,), 64)
    message = refusal_of(f"minigrad.load({str(path)!r})", extra_mb=100, timeout=60)
    assert message.startswith("CheckpointError: load: cannot read") and "stores" in message, message


def test_a_decompression_bomb_is_refused_before_it_expands(tmp_path):
    path = tmp_path / "bomb.npz"
    _write_member(path, "meta.npy", ((256 << 20) // 8,), 256 << 20, compress=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20  # about 250 kB on disk for 256 MiB of zeros
    message = refusal_of(f"minigrad.load({str(path)!r})", extra_mb=100, timeout=60)
    assert message.startswith("CheckpointError") and "decompression bomb" in message, message


def test_save_and_load_a_state_dict_as_in_pytorch(tmp_path):
    model = mg.nn.Sequential(mg.nn.Linear(3, 4), mg.nn.BatchRenorm1d(4), mg.nn.Linear(4, 2))
    path = mg.save(model.state_dict(), tmp_path / "model.pt")
    assert path == tmp_path / "model.pt" and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    other = mg.nn.Sequential(mg.nn.Linear(3, 4), mg.nn.BatchRenorm1d(4), mg.nn.Linear(4, 2))
    other.load_state_dict(mg.load(path))
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        np.testing.assert_array_equal(
            mg.backend.to_numpy(a) if mg.backend.is_array(a) else a,
            mg.backend.to_numpy(b) if mg.backend.is_array(b) else b,
            err_msg=name,
        )


def test_tensors_in_a_saved_dict_come_back_as_arrays(tmp_path):
    mg.save({"w": mg.Tensor(np.ones((2, 2))), "n": 3}, tmp_path / "s.pt")
    loaded = mg.load(tmp_path / "s.pt")
    np.testing.assert_array_equal(loaded["w"], np.ones((2, 2)))
    assert loaded["n"] == 3


def test_a_failed_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "model.pt"
    mg.save({"w": np.ones(2)}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="cannot store object at 'bad'"):
        mg.save({"w": np.zeros(2), "bad": object()}, path)
    with pytest.raises(TypeError, match="save: state: expected a dict"):
        mg.save([np.ones(2)], path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
