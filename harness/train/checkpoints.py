"""Checkpoint folders: atomic writes, the trainer's position, and which ones to keep.

`<run>/checkpoint-<examples, 9 digits>/` holds
  model/              the student as a Hugging Face folder (+ tokenizer): what eval and release read
  state/              accelerate's state (weights, optimizer, scheduler, every process's RNG)
  trainer_state.json  epoch, step, examples, tokens, next checkpoint: where the run resumes
It is written under `.tmp-checkpoint-…` and renamed when complete, so a crash never leaves a
half-written checkpoint that looks finished. Only the newest keeps `state/` (resuming needs no
other); every checkpoint keeps `model/`, since model selection compares them all.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"


@dataclass
class Position:
    epoch: int = 0
    step_in_epoch: int = 0  # the next step to run in `epoch`
    global_step: int = 0
    examples: int = 0
    tokens: int = 0
    next_checkpoint: int = 0  # examples at which the next checkpoint is due

    def to_dict(self) -> dict:
        return asdict(self)


def name_for(examples: int) -> str:
    return f"{PREFIX}{examples:09d}"


def list_checkpoints(run: Path) -> list[Path]:
    """Finished checkpoints, oldest first."""
    if not run.is_dir():
        return []
    return sorted(p for p in run.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / STATE_FILE).is_file())


def latest_resumable(run: Path) -> Path | None:
    found = [p for p in list_checkpoints(run) if (p / "state").is_dir()]
    return found[-1] if found else None


def read_position(folder: Path) -> Position:
    data = json.loads((folder / STATE_FILE).read_text())
    return Position(**{k: data[k] for k in Position.__dataclass_fields__})


def temp_folder(run: Path, examples: int) -> Path:
    return run / f".tmp-{name_for(examples)}"


def finish(run: Path, tmp: Path, position: Position, extra: dict) -> Path:
    """Write the trainer state into `tmp`, then rename it into place (main process only)."""
    (tmp / STATE_FILE).write_text(json.dumps({**position.to_dict(), **extra}, indent=1))
    final = run / name_for(position.examples)
    if final.exists():  # the same position written again (a rerun after a crash right after rename)
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def prune(run: Path, keep: int | None) -> None:
    """Drop `state/` from all but the newest checkpoint, and whole checkpoints beyond `keep`."""
    found = list_checkpoints(run)
    for old in found[:-1]:
        shutil.rmtree(old / "state", ignore_errors=True)
    if keep is not None and len(found) > keep:
        for old in found[: len(found) - keep]:
            shutil.rmtree(old, ignore_errors=True)


def clear_temp(run: Path) -> None:
    for tmp in run.glob(f".tmp-{PREFIX}*"):
        shutil.rmtree(tmp, ignore_errors=True)
