"""Checkpoints and result files that are never half-written.

A checkpoint is one ``.npz`` file. Arrays anywhere in a nested dict of state
(model, optimizer, EMA, sampler, random state...) are stored as NumPy arrays
under their path ("model/layer1.weight"); everything else (numbers, strings,
lists, nested dicts) goes into one JSON document stored as a string array.
Loading uses ``allow_pickle=False``, so a checkpoint cannot run code.

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


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; arrays come back as NumPy arrays."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no file at {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            arrays = {key[len("array/") :]: archive[key] for key in archive.files if key.startswith("array/")}
    except (ValueError, KeyError, OSError) as exc:
        raise ValueError(f"checkpoint: {path} is not a minigrad checkpoint ({exc})") from exc
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"checkpoint: {path} has format {meta.get('format')!r}, expected {FORMAT_VERSION}")
    return _join(meta["tree"], arrays)
