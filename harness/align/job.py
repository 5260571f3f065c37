"""The alignment stage's Python face: what to align, `run(job)`, `is_complete(output)`.

    stats = run(AlignJob(store="runs/teacher/x", output="runs/aligned/x", setting="corrected"))

The CLI (`harness align run` on a store) and `harness reproduce` call these; `check()` runs the
cheap checks (options, the input is a teacher store, the output can be written) before any work.
The student tokenizer is `config.student` (T5 by default; `hf-gpt2`, `hf:<folder or hub id>`);
`config.k` None takes `default_k(store)`; the settings and stats record both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness import handoff
from harness.errors import DataError, check_choice, check_positive
from harness.schemas import ALIGNED

from harness.align.api import AlignConfig
from harness.align.store import SELECT, SETTINGS, check_student, default_k, is_teacher_store, run_store_alignment  # noqa: F401 (default_k: part of the face)


@dataclass(frozen=True)
class AlignJob:
    store: Path
    output: Path
    config: AlignConfig = field(default_factory=AlignConfig)
    setting: str = "corrected"  # the text the formats train on: faithful (the authors' ': '-deleted) | corrected
    select: str = "correct"  # which samples: correct | correct_faithful | all
    workers: int = 0  # processes; 0 = every core
    chunk_size: int = 64  # samples per work unit sent to a worker
    shard_rows: int = 4096  # aligned rows per output shard

    def check(self) -> None:
        check_choice("--setting", self.setting, SETTINGS)
        check_choice("--select", self.select, SELECT)
        check_positive("--workers", self.workers, allow_zero=True)
        check_positive("--chunk-size", self.chunk_size)
        check_positive("--shard-rows", self.shard_rows)
        if not is_teacher_store(self.store):
            raise DataError(f"{self.store}: not a teacher store (expected settings.json and data/part-*.parquet; see docs/teacher-store.md)")
        handoff.check_output(self.output, "OUTPUT")
        check_student(self.store, self.config)  # the student tokenizer loads; `identity="require"`: it is the teacher's


def run(job: AlignJob, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    job.check()
    return run_store_alignment(job.store, job.output, job.config, setting=job.setting, select=job.select,
                               workers=job.workers or os.cpu_count() or 1, chunk_size=job.chunk_size, shard_rows=job.shard_rows,
                               progress=progress)


def is_complete(output: str | os.PathLike) -> bool:
    """A finished alignment (sealed, every shard present with its size)."""
    return handoff.is_complete(output, ALIGNED)
