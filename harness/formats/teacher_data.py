"""The teacher samples the formats are built from, read from a sealed teacher store.

The store holds each sample's question and gold answer, so nothing is reloaded from the data sets:
a store of any question set builds formats.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import handoff
from harness.errors import DataError
from harness.records import Example
from harness.schemas import TEACHER_STORE

from harness.formats.build import CotSample

COLUMNS = ["question_id", "sample_index", "question", "gold", "text", "teacher_model"]


def read_teacher_store(store: str | Path, setting: str) -> tuple[list[CotSample], dict[str, Any]]:
    """CotSamples (grouped by question, in sample order) and what the store says of itself: its
    settings, teacher model and manifest (for the formats' provenance). Correctness is the
    setting's rule: `correct_faithful` (the authors' last-number rule) or `correct`."""
    import pyarrow as pa

    store = Path(store)
    settings_path = store / "settings.json"
    if not settings_path.is_file():
        raise DataError(f"{store}: not a teacher store (no settings.json); see docs/teacher-store.md")
    manifest = handoff.verify(store, TEACHER_STORE, what="teacher store")
    if not manifest.shards:
        raise DataError(f"{store}: the teacher store holds no samples")
    try:
        settings = json.loads(settings_path.read_text(encoding="utf-8")).get("settings") or {}
    except ValueError as err:
        raise DataError(f"{settings_path}: not valid JSON ({err})") from None
    flag = "correct_faithful" if setting == "faithful" else "correct"
    table = pa.concat_tables(part for _, part in handoff.read_shards(store, TEACHER_STORE, COLUMNS + [flag], manifest))
    source = (settings.get("sampling") or {}).get("source") or "gsm8k"
    groups: dict[str, list[tuple[int, str, bool]]] = {}
    questions: dict[str, Example] = {}
    columns = (table.column(c).to_pylist() for c in ("question_id", "sample_index", "question", "gold", "text", flag))
    for qid, index, question, gold, text, correct in zip(*columns):
        if qid not in questions:
            questions[qid] = Example(id=qid, source=source, question=question, answer=gold, number=None, gold_raw=gold)
        groups.setdefault(qid, []).append((index, text, bool(correct)))
    samples = [CotSample(qid, index, questions[qid], text, correct) for qid, rows in groups.items() for index, text, correct in sorted(rows)]
    teacher_model = table.column("teacher_model")[0].as_py()
    return samples, {"settings": settings, "teacher_model": teacher_model, "manifest": manifest}
