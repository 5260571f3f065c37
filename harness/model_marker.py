"""The marker file in every model folder the harness builds with weights that are not a result.

Random-init or barely trained models (the tiny T5 student, the CPU default teacher, …) carry
`spec_harness_model.json`; evaluation and reports flag anything that has it as a pipeline check,
whatever the folder is called or wherever it was copied.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.records import atomic_write

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
