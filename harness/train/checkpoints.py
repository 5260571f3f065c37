"""Checkpoint folders: atomic writes, the trainer's position, and which ones to keep.

`<run>/checkpoint-<examples, 9 digits>/` holds
  model/              the student as a Hugging Face folder (+ tokenizer): what eval and release read
  state/              accelerate's state (weights, optimizer, scheduler, every process's RNG)
  trainer_state.json  epoch, step, examples, tokens, next checkpoint: where the run resumes;
                      the config and the run header (precision, device, cadence) that wrote it
  eval/               the evaluation summaries of this checkpoint (written by the evaluator)
It is written under `.tmp-checkpoint-…` and renamed when complete, so a crash never leaves a
half-written checkpoint that looks finished. Only the newest keeps `state/` (resuming needs no
other); every checkpoint keeps `model/` until pruned, since model selection compares them all.
Pruning removes weights only (`model/`, `state/`): a checkpoint's trainer_state.json, its `eval/`
summaries and its metrics rows stay, so the curves and the selection's candidates stay whole.

`done.json` in the run folder marks a finished run (written last, atomically): its final
position and checkpoint.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import DataError, UsageError
from harness.records import atomic_write

PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"
DONE_FILE = "done.json"
WEIGHTS = ("model", "state")  # what pruning removes


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


def _remove(folder: Path) -> int:
    """Delete a folder so that no reader sees it half-deleted: renamed away first, then removed.
    Returns the bytes freed."""
    if not folder.is_dir():
        return 0
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    doomed = folder.with_name(f".{folder.name}.deleting")
    shutil.rmtree(doomed, ignore_errors=True)
    folder.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)
    return size


def has_weights(folder: Path) -> bool:
    return (folder / "model").is_dir()


def prune(run: Path, keep: int | None) -> None:
    """The trainer's pruning after each checkpoint: `state/` off all but the newest, and the
    weights off all but the newest `keep` (`keep_checkpoints`); summaries stay."""
    found = list_checkpoints(run)
    for old in found[:-1]:
        _remove(old / "state")
    if keep is not None and len(found) > keep:
        for old in found[: len(found) - keep]:
            _remove(old / "model")


def prune_weights(run: Path, keep: list[str], *, keep_resumable: bool = True) -> dict:
    """Retention: delete `model/` and `state/` of every checkpoint of `run` not named in `keep`
    (names like `checkpoint-000010000`, or paths to them), and, unless `keep_resumable` is False,
    not the newest resumable one. trainer_state.json, `eval/` and metrics rows stay.

    Checks every name before deleting anything: an unknown name, or a kept checkpoint whose weights
    are already gone, is a UsageError. Returns {"kept", "removed", "freed_bytes"} (names).
    """
    run = Path(run)
    found = {p.name: p for p in list_checkpoints(run)}
    if not found:
        raise UsageError(f"{run}: no checkpoints (not a training run folder, or nothing written yet)")
    wanted = []
    for item in keep:
        name = Path(str(item)).name
        if name not in found:
            shown = ", ".join(list(found)[:3]) + (f", … ({len(found)} in all)" if len(found) > 3 else "")
            raise UsageError(f"--keep: {run} has no checkpoint {name!r}; it has {shown}")
        if not has_weights(found[name]):
            raise UsageError(f"--keep: {name} in {run} has no weights left (pruned earlier); nothing deleted")
        wanted.append(name)
    if keep_resumable:
        latest = latest_resumable(run)
        if latest is not None:
            wanted.append(latest.name)
    kept = sorted(set(wanted))
    removed, freed = [], 0
    for name, folder in found.items():
        if name in kept:
            continue
        gone = sum(_remove(folder / part) for part in WEIGHTS)
        if gone:
            removed.append(name)
            freed += gone
    for leftover in run.glob(f"{PREFIX}*/.*.deleting"):  # a delete interrupted earlier
        shutil.rmtree(leftover, ignore_errors=True)
    return {"kept": kept, "removed": removed, "freed_bytes": freed}


def write_done(run: Path, position: Position, extra: dict) -> Path:
    """The completion marker, written last by the main process."""
    path = Path(run) / DONE_FILE
    with atomic_write(path) as f:
        json.dump({"checkpoint": name_for(position.examples), "position": position.to_dict(), **extra}, f, indent=1)
        f.write("\n")
    return path


def read_done(run: Path) -> dict | None:
    path = Path(run) / DONE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        Position(**data["position"])
        return data
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{path}: not a completion marker this harness wrote; delete it to resume the run") from None


def clear_done(run: Path) -> None:
    (Path(run) / DONE_FILE).unlink(missing_ok=True)


def clear_temp(run: Path) -> None:
    for tmp in run.glob(f".tmp-{PREFIX}*"):
        shutil.rmtree(tmp, ignore_errors=True)
