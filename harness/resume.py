"""Resumable outputs remember the settings that made them, and refuse to mix in others.

A resumable job calls `claim(output, job, settings)` before it does any work. The first run
writes `<output>.settings.json` (for a folder: `<output>/settings.json`); a rerun with the same
settings resumes; a rerun with different settings, or into an output that has no settings file,
stops with a ResumeError naming what differs and how to start fresh.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from harness.errors import ResumeError
from harness.records import atomic_write

SETTINGS_NAME = "settings.json"


def settings_path(output: str | Path, folder: bool | None = None) -> Path:
    """Where the settings of `output` live: inside it for a folder output, beside it for a file.
    `folder=None`: whatever is on disk (an existing folder, else a file)."""
    output = Path(output)
    if folder is None:
        folder = output.is_dir()
    return output / SETTINGS_NAME if folder else output.with_name(output.name + ".settings.json")


def _normalise(settings: dict[str, Any]) -> dict[str, Any]:
    """JSON round trip, so tuples, Paths and numbers compare as they will be read back."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flat(inner, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """'key: stored -> now' for every setting that differs (nested keys dotted)."""
    a, b = _flat(_normalise(stored)), _flat(_normalise(wanted))
    return [f"{key}: {a.get(key, '<unset>')!r} -> {b.get(key, '<unset>')!r}" for key in sorted(set(a) | set(b)) if a.get(key, "<unset>") != b.get(key, "<unset>")]


LOCK_NAME = ".lock"  # a writer's lock file (harness.handoff): taken before the claim, not content


def _has_content(output: Path) -> bool:
    if output.is_dir():
        return any(p.name not in (SETTINGS_NAME, LOCK_NAME) for p in output.iterdir())
    return output.exists() and output.stat().st_size > 0


def claim(output: str | Path, job: str, settings: dict[str, Any], folder: bool = False) -> bool:
    """Record or check the settings of a resumable output (a file, or with `folder=True` a folder,
    created here). Returns True when resuming.

    Raises ResumeError if the output was made with other settings or by something else.
    """
    output = Path(output)
    if folder:
        if output.exists() and not output.is_dir():
            raise ResumeError(f"{output} exists and is not a folder")
        output.mkdir(parents=True, exist_ok=True)
    elif output.is_dir():
        raise ResumeError(f"{output} is a folder; this job writes a file there")
    path = settings_path(output, folder)
    wanted = {"job": job, "settings": _normalise(settings)}
    fresh = f"to start fresh, delete {output}" + (f" and {path}" if path.parent != output else "") + " or choose another output"
    if path.exists():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            stored = {"job": stored["job"], "settings": stored["settings"]}
        except (ValueError, KeyError, TypeError):
            raise ResumeError(f"{path}: not a settings file this harness wrote; {fresh}") from None
        diff = differences(stored, wanted)
        if diff:
            shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
            raise ResumeError(
                f"{output} was written with other settings ({path}): {shown}\n"
                f"Rerun with the stored settings to resume, or {fresh}."
            )
        return True
    if _has_content(output):
        raise ResumeError(f"{output} exists but has no settings file ({path}), so it cannot be resumed safely; {fresh}.")
    record = {**wanted, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    with atomic_write(path) as handle:
        json.dump(record, handle, indent=1, sort_keys=True)
        handle.write("\n")
    return False
