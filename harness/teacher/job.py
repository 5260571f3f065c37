"""The teacher stage's Python face: a sampling job's config, `run(job)`, `is_complete(output)`.

    job = load_config("teacher.yaml", **{"sampling.limit": 60})   # or SampleJobConfig(...)
    result = run(job)                                              # the store at job.output, sealed

`harness teacher sample` and `harness reproduce` call these. The job's `validate()` holds the
cheap checks and runs first.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from harness import handoff
from harness.schemas import TEACHER_STORE

from harness.teacher.sample import SampleJobConfig, load_config, run_sampling  # noqa: F401 (part of this module's API)


def run(job: SampleJobConfig, progress: Callable[[int, dict[str, int]], None] | None = None,
        note: Callable[[str], None] | None = None) -> dict[str, Any]:
    job.validate()
    return run_sampling(job, progress=progress, note=note)


def is_complete(output: str | os.PathLike) -> bool:
    """A finished teacher store (sealed, every shard present with its size)."""
    return handoff.is_complete(output, TEACHER_STORE)
