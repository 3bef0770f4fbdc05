"""The output folder of a training run: which files belong to it, and what a fresh run may do there.

A run writes ``config.json``, ``metrics.jsonl`` and ``checkpoint.npz`` (and
``minigrad reproduce`` adds ``reproduce.json``). Every write goes through a
temporary file ``.<name>.<random>.tmp`` beside its target (see
:func:`minigrad.checkpoint.atomic_write`); a process killed mid-write leaves
that temporary file behind, and the next run in the folder removes it.

A fresh run never takes over a folder holding anything else: a file it did
not write may be the user's, so it is neither overwritten nor deleted. The one
exception is a run of the very same configuration that was stopped before its
first checkpoint (its ``config.json`` matches): nothing of it can be resumed,
so starting it again is what the user (or ``minigrad reproduce``) asked for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
RUN_INFO = "reproduce.json"
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, RUN_INFO)

# The temporary files of atomic_write for the files of a run: "." + name + "." + mkstemp's 8 characters + ".tmp"
_TEMPORARY = re.compile(r"^\.(?:" + "|".join(re.escape(name) for name in RUN_FILES) + r")\.[A-Za-z0-9_]{8}\.tmp$")


class RunFolderError(ValueError):
    """The output folder cannot hold this run (a file, someone else's files); raised before anything is written."""


class RunFolderWriteError(RunFolderError):
    """A write into the run folder failed (read-only, disk full); the files written before are intact."""


@contextmanager
def writing(out: Path) -> Iterator[None]:
    """Turn a failed write into the run folder `out` (read-only, disk full) into a RunFolderWriteError naming it."""
    try:
        yield
    except OSError as exc:
        checkpoint = out / CHECKPOINT
        kept = f"; the last checkpoint {checkpoint} is unchanged" if checkpoint.is_file() else ""
        reason = exc.strerror or str(exc) or type(exc).__name__
        where = f" {exc.filename}" if exc.filename else ""
        raise RunFolderWriteError(f"out: cannot write to {out}{where}: {reason}{kept}") from None


def is_orphan_temporary(name: str) -> bool:
    """Whether `name` is a temporary file that an interrupted atomic write of a run file left behind."""
    return _TEMPORARY.match(name) is not None


def remove_orphan_temporaries(out: Path) -> list[Path]:
    """Delete the temporary files of interrupted writes in `out` (only names of minigrad's own pattern)."""
    removed = []
    if not out.is_dir():
        return removed
    for entry in out.iterdir():
        if is_orphan_temporary(entry.name) and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def check_folder_for_new_run(out: Path, config_json: str) -> None:
    """Refuse an `out` that is a file, that holds a run, or that holds files this run would not write.

    `config_json` is the configuration of the new run as it would be written
    to ``config.json`` (a folder holding the same one, and no checkpoint, is
    a restart of a run stopped before its first checkpoint).
    """
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"out: {out} is a file, not a folder; pass a folder (new or empty) for the run's files")
    if not out.exists():
        return
    entries = sorted(entry.name for entry in out.iterdir() if not is_orphan_temporary(entry.name))
    if not entries:
        return
    if CHECKPOINT in entries:
        raise RunFolderError(
            f"out: {out} already holds a run ({CHECKPOINT}); pass --resume to continue it, or choose another --out"
        )
    foreign = [name for name in entries if name not in (CONFIG, METRICS, RUN_INFO)]
    if not foreign and CONFIG in entries and _same_config(out / CONFIG, config_json):
        return
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    raise RunFolderError(
        f"out: {out} already holds files this run did not write ({shown}); choose another --out "
        "(a new or empty folder), or pass --resume if it is a run to continue"
    )


def _same_config(path: Path, config_json: str) -> bool:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    wanted = json.loads(config_json)
    ignore = ("out", "progress", "resume", "allow_changed", "data", "data_cache", "backend", "threads")  # where, not what
    return isinstance(saved, dict) and all(saved.get(k) == v for k, v in wanted.items() if k not in ignore)


def settings_of(config_fields: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The values of `names` in a configuration's fields (what one segment of a settings history records)."""
    return {name: config_fields.get(name) for name in names}


def config_document(config_fields: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """``config.json`` of a run whose settings changed on resume: the varying settings move into a history.

    The top level keeps only the settings that held for the whole run;
    ``settings_history`` lists, for each stretch of steps, the values the
    changed settings had (a stretch lasts from its ``first_step`` until the
    next one's, or to the last step the run reached).
    """
    varying = sorted(
        name for name in history[0]["settings"] if len({json.dumps(s["settings"].get(name)) for s in history}) > 1
    )
    if not varying:
        return dict(config_fields)
    document = {key: value for key, value in config_fields.items() if key not in varying}
    document["varying_settings"] = varying
    document["settings_history"] = [
        {"first_step": segment["first_step"], **{name: segment["settings"].get(name) for name in varying}}
        for segment in history
    ]
    return document
