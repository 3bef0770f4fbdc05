"""Resuming a run: reading its checkpoint safely, and deciding whether a configuration may continue it.

A checkpoint is refused, with a :class:`~minigrad.train_config.ConfigError`
naming the file, when it cannot be read (empty, truncated, bit-flipped, not a
minigrad checkpoint), when its step is not an integer >= 0, when it was made
by a different run (model, data, sampler, seed, ...), or when the optimization
settings changed (learning rate, schedule, r/d limits, ...) and
``allow_changed`` is not set. With ``allow_changed`` the checkpoint's
``settings_history`` gains a stretch that starts at the next step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from minigrad.checkpoint import atomic_write_text, load_checkpoint
from minigrad.norm.schedule import PAPER_D_MAX_FINAL, PAPER_R_MAX_FINAL
from minigrad.runfolder import (
    CHECKPOINT,
    RunFolderError,
    check_folder_for_new_run,
    remove_orphan_temporaries,
    settings_of,
)
from minigrad.train_config import (
    RENORM_SCHEDULE_FIELDS,
    RESUME_MAY_CHANGE,
    RESUME_MUST_MATCH,
    ConfigError,
    TrainConfig,
)


def read_checkpoint(config: TrainConfig, world_size: int) -> dict[str, Any] | None:
    """The checkpoint that `config` resumes (None for a new run); refuses a missing, foreign or existing one.

    A resumed checkpoint comes back with its ``settings_history`` extended by
    the settings this session runs with, when they changed (allow_changed).
    """
    out = Path(config.out)
    checkpoint_path = out / CHECKPOINT
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"out: {out} is a file, not a folder; pass the folder of the run's files")
    if not config.resume:
        check_folder_for_new_run(out, config.to_json(world_size))
        remove_orphan_temporaries(out)
        return None
    if not checkpoint_path.is_file():
        raise ConfigError(f"resume: no checkpoint at {checkpoint_path}; run without --resume to start this run")
    checkpoint = _load_resumable(checkpoint_path)
    saved = checkpoint["config"]
    check_resumable(saved, config, world_size)
    step = checkpoint["step"]
    if config.steps <= step:
        done = "finished" if saved.get("steps") == step else "is"
        raise ConfigError(
            f"steps: the run in {out} {done} at step {step}, so steps={config.steps} leaves nothing to train; "
            f"pass a larger steps=N to train it further"
            + (" (with allow_changed=True: its schedules are scaled to steps)" if _scaled_to_steps(config) else "")
        )
    changed = _changed_settings(saved, config)
    if changed and not config.allow_changed:
        raise ConfigError(
            f"resume: settings differ from the checkpoint's: {'; '.join(changed)}. Resume with the checkpoint's "
            "values, or pass allow_changed=True to continue with the new ones (config.json then records which steps "
            "ran with which values)"
        )
    names = RESUME_MAY_CHANGE
    recorded = _with_schedule_of_older_checkpoints(saved)
    history = checkpoint.get("settings_history") or [{"first_step": 1, "settings": settings_of(recorded, names)}]
    well_formed = isinstance(history, list) and all(
        isinstance(segment, dict) and isinstance(segment.get("first_step"), int)
        and isinstance(segment.get("settings"), dict) for segment in history
    )  # fmt: skip
    if not well_formed:
        raise ConfigError(f"resume: {checkpoint_path} holds a damaged settings history (a damaged checkpoint?)")
    now = settings_of(json.loads(config.to_json()), names)
    last = history[-1]["settings"]
    if not any(name in last for name in RENORM_SCHEDULE_FIELDS):  # a history written before they existed
        last = _with_schedule_of_older_checkpoints({**last, "norm": saved.get("norm")})
    if now != settings_of(last, names):
        history = [*history, {"first_step": step + 1, "settings": now}]
    checkpoint["settings_history"] = history
    remove_orphan_temporaries(out)
    return checkpoint


def _load_resumable(path: Path) -> dict[str, Any]:
    """The checkpoint at `path` with its configuration parsed; any damage is a ConfigError naming the file."""
    try:
        checkpoint = load_checkpoint(path)
    except Exception as exc:  # truncated, empty, bit-flipped, a .npy, another program's .npz: all say the same
        raise ConfigError(f"resume: {path} is not a readable minigrad checkpoint ({_why_unreadable(path, exc)})") from None
    if not isinstance(checkpoint, dict):
        raise ConfigError(f"resume: {path} is not a minigrad checkpoint (no state dict)")
    missing = [key for key in ("config", "step", "model", "optimizer", "scheduler", "loader") if key not in checkpoint]
    if missing:
        raise ConfigError(f"resume: {path} is not a minigrad training checkpoint (missing {', '.join(missing)})")
    step = checkpoint["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ConfigError(f"resume: {path} records step {step!r}; expected an integer >= 0 (a damaged checkpoint?)")
    try:
        saved = json.loads(checkpoint["config"])
    except (TypeError, ValueError):
        saved = None
    if not isinstance(saved, dict):
        raise ConfigError(f"resume: {path} holds no readable run configuration (a damaged checkpoint?)")
    checkpoint["config"] = saved
    return checkpoint


def _why_unreadable(path: Path, exc: BaseException) -> str:
    """What is wrong with a checkpoint file that failed to load, in a few words."""
    try:
        with path.open("rb") as file:
            head = file.read(6)
    except OSError:
        head = b""
    if not head:
        return "the file is empty"
    if head == b"\x93NUMPY":
        return "a .npy array, not a checkpoint archive"
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return str(cause).strip("'\"") or type(cause).__name__


def _scaled_to_steps(config: TrainConfig | dict[str, Any]) -> bool:
    """Whether a schedule of the run is scaled to its number of steps (so that changing it changes the past)."""
    get = config.get if isinstance(config, dict) else lambda key: getattr(config, key)
    renorm_ramp = get("norm") == "brn" and (get("r_max") is None or get("d_max") is None)
    return get("lr_schedule") in ("cosine", "step") or renorm_ramp


def _changed_settings(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    """The optimization settings of `config` that differ from the checkpoint's, as "name (checkpoint a, now b)"."""
    names = [name for name in RESUME_MAY_CHANGE if name != "steps" or _scaled_to_steps(config) or _scaled_to_steps(saved)]
    if config.optimizer == "adam":
        names.remove("momentum")  # unused (older checkpoints recorded the default)
    recorded = _with_schedule_of_older_checkpoints(saved)
    return [
        f"{name} (checkpoint {recorded.get(name)!r}, now {getattr(config, name)!r})"
        for name in names
        if recorded.get(name) != getattr(config, name)
    ]


def _with_schedule_of_older_checkpoints(saved: dict[str, Any]) -> dict[str, Any]:
    """`saved` with the Batch Renorm schedule settings that checkpoints made before they existed ran with.

    Such runs shrank the paper's schedule proportionally to their steps, to r_max = 3 and d_max = 5.
    """
    if saved.get("norm") != "brn" or any(name in saved for name in RENORM_SCHEDULE_FIELDS):
        return saved
    older = dict(saved)
    if saved.get("r_max") is None or saved.get("d_max") is None:
        older["renorm_warmup_rule"] = "proportional"
    if saved.get("r_max") is None:
        older["r_max_final"] = PAPER_R_MAX_FINAL
    if saved.get("d_max") is None:
        older["d_max_final"] = PAPER_D_MAX_FINAL
    return older


def check_resumable(saved: dict[str, Any], config: TrainConfig, world_size: int = 1) -> None:
    """Refuse to resume when the checkpoint was made with a different model, data, optimizer or number of ranks.

    A setting missing from an older checkpoint counts as its default.
    """
    defaults = TrainConfig()
    different = [
        f"{key} (checkpoint {saved.get(key, getattr(defaults, key))!r}, now {getattr(config, key)!r})"
        for key in RESUME_MUST_MATCH
        if saved.get(key, getattr(defaults, key)) != getattr(config, key)
    ]
    if saved.get("world_size", 1) != world_size:  # each rank normalizes its shard: the split is part of the model
        different.append(f"world_size (checkpoint {saved.get('world_size', 1)} ranks, now {world_size})")
    if different:
        raise ConfigError("resume: the checkpoint was made by a different run: " + "; ".join(different))


def truncate_metrics(path: Path, step: int) -> list[dict[str, Any]]:
    """Keep the metric lines up to `step` (those after the checkpoint will be recomputed); return its evaluations."""
    if not path.exists():
        return []
    kept, evaluations = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a hard kill
        if record.get("step", 0) <= step:
            kept.append(line)
            if record.get("kind") == "eval":
                evaluations.append(record)
    atomic_write_text(path, "".join(line + "\n" for line in kept))
    return evaluations
