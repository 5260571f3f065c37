"""The marker file in every model folder the harness builds with weights that are not a result.

Random-init or barely trained models (the tiny T5 student, the CPU default teacher, …) carry
`spec_harness_model.json`; evaluation and reports flag anything that has it as a pipeline check,
whatever the folder is called or wherever it was copied.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from harness.records import atomic_write, current_umask

MARKER = "spec_harness_model.json"


def write_marker(folder: str | Path, kind: str, **details: Any) -> None:
    record = {"built_by": "spec-harness", "pipeline_check": True, "kind": kind, **details}
    with atomic_write(Path(folder) / MARKER) as handle:
        json.dump(record, handle, indent=1)


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The marker's contents, None when the folder has none (an unreadable one still counts)."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {"pipeline_check": True, "description": f"{MARKER} unreadable"}


def save_model_folder(out_dir: str | Path, save: Callable[[Path], None], kind: str, **details: Any) -> Path:
    """Build a model folder atomically: `save(tmp)` writes it into a temporary sibling, the marker
    is added, and the folder is renamed into place. If another process got there first, its
    folder is kept."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700
        save(tmp)
        write_marker(tmp, kind, **details)
        os.replace(tmp, out_dir)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if (out_dir / "config.json").exists():  # another process built it first
            return out_dir
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
