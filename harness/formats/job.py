"""The formats stage's Python face: what to build, `run(job)`, `is_complete(output)`.

    stats = run(FormatsJob(store="runs/teacher/x", aligned="runs/aligned/x", output="runs/formats/x", setting="corrected"))
    stats = run(AuthorsImportJob(folder="processed_data", output="runs/formats/authors"))

The CLI (`harness formats build | import-authors`) and `harness reproduce` call these; `check()`
runs the cheap checks (options, paths, the aligned data's origin) before any work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import handoff
from harness.errors import DataError, UsageError, check_choice, check_positive
from harness.schemas import FORMATS as FORMATS_CONTRACT

from harness.formats.render import FORMATS, SETTINGS


@dataclass(frozen=True)
class FormatsJob:
    """Build the four formats from a teacher store and (for distribution matching) its aligned targets."""

    store: Path
    output: Path
    aligned: Path | None = None
    setting: str = "corrected"
    seed: int = 0
    formats: tuple[str, ...] = tuple(FORMATS)
    shard_size: int = 5000

    def check(self) -> None:
        check_choice("--setting", self.setting, SETTINGS)
        for fmt in self.formats:
            check_choice("--formats", fmt, FORMATS)
        check_positive("--shard-size", self.shard_size)
        handoff.check_output(self.output, "--output")
        if not Path(self.store).is_dir():
            raise UsageError(f"--store: no such folder {self.store} (a teacher store: `harness teacher sample`)")
        if self.aligned is not None and not Path(self.aligned).is_dir():
            raise UsageError(f"--aligned: no such folder {self.aligned} (aligned targets: `harness align run`)")
        if self.aligned is not None:
            aligned_settings = _settings(Path(self.aligned))
            if aligned_settings.get("setting") not in (None, self.setting):
                raise UsageError(f"--aligned {self.aligned} was aligned for --setting {aligned_settings['setting']}, not {self.setting}: "
                                 f"rerun `harness align run {self.store} OUT --setting {self.setting}`")


@dataclass(frozen=True)
class AuthorsImportJob:
    """Import the authors' released format pickles (docs/formats.md)."""

    folder: Path
    output: Path
    shard_size: int = 5000
    k: int | None = None
    match_gsm8k: bool = True
    drop_unknown: bool = False

    def check(self) -> None:
        check_positive("--shard-size", self.shard_size)
        check_positive("--k", self.k)
        handoff.check_output(self.output, "--output")
        if not Path(self.folder).is_dir():
            raise UsageError(f"FOLDER: no such folder {self.folder} (the authors' format pickles)")


def _settings(folder: Path) -> dict[str, Any]:
    path = folder / "settings.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("settings", {})
    except ValueError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


def run(job: FormatsJob | AuthorsImportJob) -> dict[str, Any]:
    job.check()
    if isinstance(job, AuthorsImportJob):
        from harness.formats.authors_import import import_authors_formats

        return import_authors_formats(job.folder, job.output, shard_size=job.shard_size, k=job.k, match_gsm8k=job.match_gsm8k,
                                      drop_unknown=job.drop_unknown)
    from harness.formats.aligned import AlignedTargets
    from harness.formats.build import build_formats
    from harness.formats.teacher_data import read_teacher_store

    store, output = Path(job.store), Path(job.output)
    samples, source = read_teacher_store(store, job.setting)  # the store verified against its manifest
    inputs = {"teacher-store": handoff.inputs_of(store, source["manifest"])}
    targets = None
    if job.aligned is not None:
        targets = AlignedTargets.load(job.aligned)  # verified too
        origin = targets.manifest.inputs.get("teacher-store")
        if not handoff.same_input(origin, inputs["teacher-store"]):
            raise DataError(f"--aligned {job.aligned} was aligned from other teacher data ({(origin or {}).get('path', 'unknown')}, "
                            f"content {(origin or {}).get('content', '?')}) than --store {store} (content {inputs['teacher-store']['content']}); "
                            f"rerun `harness align run {store} OUT`")
        inputs["aligned"] = handoff.inputs_of(job.aligned, targets.manifest)
    return build_formats(samples, output, setting=job.setting, teacher_model=source["teacher_model"] or "unknown", seed=job.seed,
                         aligned=targets, formats=list(job.formats), shard_size=job.shard_size, inputs=inputs,
                         source={"store": str(store.resolve()), "aligned": str(Path(job.aligned).resolve()) if job.aligned else None,
                                 "teacher": (source["settings"] or {}).get("teacher"),
                                 "student_tokenizer": _settings(Path(job.aligned)).get("student") if job.aligned else None})


def is_complete(output: str | Path) -> bool:
    """A finished formats output (sealed, every shard present with its size)."""
    return handoff.is_complete(output, FORMATS_CONTRACT)

