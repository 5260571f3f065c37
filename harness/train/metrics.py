"""metrics.jsonl: one JSON row per logged step ("train") and per checkpoint score ("eval").

Rows are appended as training goes. A kill can tear the last line: readers drop a torn last line
(no newline at its end), and a resumed run rewrites the file without it. Any other unreadable line
is a DataError naming the file and the line.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import DataError
from harness.records import atomic_write

METRICS = "metrics.jsonl"


def read_metrics(run: Path) -> list[dict]:
    path = Path(run) / METRICS
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as err:
            if n == len(lines) and not line.endswith("\n"):
                break  # torn by a kill mid-append: dropped, and rewritten away on resume
            raise DataError(f"{path}: line {n}: not JSON ({err})") from None
    return rows


def write_metrics(run: Path, rows: list[dict]) -> None:
    with atomic_write(Path(run) / METRICS) as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def append_metrics(run: Path, rows: list[dict]) -> None:
    with open(Path(run) / METRICS, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
