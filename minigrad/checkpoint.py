"""Checkpoints and result files that are never half-written.

A checkpoint is one ``.npz`` file. Arrays anywhere in a nested dict of state
(model, optimizer, EMA, sampler, random state...) are stored as NumPy arrays
under their path ("model/layer1.weight"); everything else (numbers, strings,
lists, nested dicts) goes into one JSON document stored as a string array.
Loading never unpickles (:mod:`minigrad.npz` reads plain arrays only), so a
checkpoint cannot run code, and a damaged file is a :class:`CheckpointError`
naming the file and the defect. :func:`save` and :func:`load` are the same
format for a state dict, as PyTorch's ``torch.save``/``torch.load`` habit.

Every write goes to a temporary file in the same folder first, is flushed to
disk, and then renamed over the target: a crash or Ctrl-C leaves either the
old file or the new one, never a truncated mix.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from minigrad import backend
from minigrad.npz import read_npz
from minigrad.tensor import Tensor

np = backend.host

FORMAT_VERSION = 1
_ARRAY_MARK = "__array__"


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary file beside `path`, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def _split(state: Any, prefix: str, arrays: dict[str, Any]) -> Any:
    """Replace arrays in `state` by markers, collecting them into `arrays` by path."""
    if isinstance(state, dict):
        for key in state:
            if not isinstance(key, str) or "/" in key:
                raise ValueError(f"checkpoint: state keys must be strings without '/', got {key!r} under {prefix!r}")
        return {key: _split(value, f"{prefix}{key}/", arrays) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return [_split(value, f"{prefix}{i}/", arrays) for i, value in enumerate(state)]
    if isinstance(state, Tensor):
        state = state.data
    if backend.is_array(state):
        name = prefix.rstrip("/")
        arrays[name] = backend.to_numpy(state)
        return {_ARRAY_MARK: name}
    if isinstance(state, np.generic):
        return state.item()
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    raise TypeError(f"checkpoint: cannot store {type(state).__name__} at {prefix.rstrip('/')!r}")


def _join(tree: Any, arrays: Any) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {_ARRAY_MARK}:
            return arrays[tree[_ARRAY_MARK]]
        return {key: _join(value, arrays) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_join(value, arrays) for value in tree]
    return tree


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Save a nested dict of arrays and plain data to `path` (.npz), atomically."""
    arrays: dict[str, Any] = {}
    tree = _split(state, "", arrays)
    meta = json.dumps({"format": FORMAT_VERSION, "tree": tree})
    payload = {f"array/{name}": value for name, value in arrays.items()}
    payload["meta"] = np.asarray(meta)
    return atomic_write(path, lambda file: np.savez(file, **payload))


class CheckpointError(ValueError):
    """A checkpoint or saved state dict that cannot be loaded: the message names the file and what is wrong."""


def _join_checked(tree: Any, arrays: dict[str, Any], path: Path, what: str) -> Any:
    try:
        return _join(tree, arrays)
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{what}: {path} refers to an array it does not hold ({exc})") from None


def _read(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """The state stored at `path` by :func:`save_checkpoint`, every defect a :class:`CheckpointError`."""
    path = Path(path)
    stored = read_npz(path, CheckpointError, what)
    if "meta" not in stored:
        keys = ", ".join(sorted(stored)[:5]) or "none"
        raise CheckpointError(
            f"{what}: {path} is not a minigrad checkpoint (an .npz without the 'meta' entry minigrad writes; "
            f"it holds {keys})"
        )
    meta_array = stored["meta"]
    if meta_array.shape != () or meta_array.dtype.kind != "U":
        raise CheckpointError(f"{what}: {path}: 'meta' should be one string, got {meta_array.dtype} {meta_array.shape}")
    try:
        meta = json.loads(str(meta_array))
    except ValueError as exc:
        raise CheckpointError(f"{what}: {path}: 'meta' is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or "tree" not in meta:
        raise CheckpointError(f"{what}: {path}: 'meta' should be an object with 'format' and 'tree'")
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{what}: {path} has format {meta.get('format')!r}, expected {FORMAT_VERSION}")
    arrays = {key[len("array/") :]: value for key, value in stored.items() if key.startswith("array/")}
    state = _join_checked(meta["tree"], arrays, path, what)
    if not isinstance(state, dict):
        raise CheckpointError(f"{what}: {path} holds a {type(state).__name__}, expected a dict")
    return state


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; arrays come back as NumPy arrays.

    A missing file raises FileNotFoundError; anything else wrong (empty,
    truncated, a flipped bit, a ``.npy``, a pickle, another program's ``.npz``)
    raises :class:`CheckpointError` naming the file and the defect.
    """
    return _read(path, "checkpoint")


def save(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Save a state dict (``module.state_dict()``, ``optimizer.state_dict()``, or any dict of them) to `path`.

    PyTorch's ``torch.save(model.state_dict(), path)`` habit, without pickle:
    the file is the checkpoint format (an ``.npz`` of arrays plus a JSON
    document), written to a temporary file and renamed, so an interrupted save
    leaves the previous file intact. Tensors are stored as their arrays;
    values must be arrays, Tensors, numbers, strings, None, or lists and dicts
    of them. The name is used as given (no suffix is added).
    """
    if not isinstance(state, dict):
        raise TypeError(f"save: state: expected a dict (e.g. model.state_dict()), got {type(state).__name__}")
    return save_checkpoint(path, state)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Load a state dict written by :func:`save`; arrays come back as NumPy arrays (``load_state_dict`` takes them).

    Raises FileNotFoundError for a missing file and :class:`CheckpointError`
    for one that is damaged or was not written by :func:`save`; never unpickles.
    """
    return _read(path, "load")
