"""`align run TEACHER.jsonl OUT.jsonl`: the JSONL import/export of alignment, on the same runner.

The pipeline aligns teacher stores (`harness.align.store`); this front end serves users who bring
their own teacher output as JSONL (docs/alignment.md). One JSON object per input line (the sample
dict of `harness.align.samples`); one output line per input sample, in input order:
    {"id", "mode", "status": "ok", "k", "student_ids": [T], "topk_ids": [T][K], "topk_probs": [T][K],
     "topk_mask": [T][K] (0/1), "tail_mass": [T] (with --tail), "stats": {...}}
    {"id", "mode", "status": "rejected", "reason"}        # authors' framing check failed

Resuming: complete lines already in the output are kept and their ids skipped; a torn last line
(no trailing newline: the process died mid-write) is cut off first. Rows are appended a chunk at a
time with flush + fsync, so a crash loses at most the chunk in flight and never duplicates a row.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.checksums import sha256_of
from harness.errors import DataError, UsageError, check_positive
from harness.records import RecordError, iter_jsonl, loads_json
from harness.resume import claim

from harness.align import pool
from harness.align.api import AlignConfig, student_fingerprint
from harness.align.errors import AlignmentError
from harness.align.rows import aligned_dict
from harness.align.samples import TeacherSample, parse_record
from harness.align.targets import AlignmentStats

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def read_samples(path: str | os.PathLike, framing: str = "none") -> Iterator[TeacherSample]:
    seen: set[str] = set()
    for line_no, row in iter_jsonl(path):
        sample = parse_record(row, path, line_no, framing)
        if sample.id in seen:
            raise RecordError(path, f"line {line_no}", "id", f"duplicate id {sample.id!r}")
        seen.add(sample.id)
        yield sample


def _work(chunk: list[tuple[int, bytes]]) -> list[tuple]:
    """Parse, validate, align and serialise a chunk of (line number, raw line) pairs in a worker:
    ("row", id, json_line, stats, line) | ("skip", id) | ("error", record, field, problem)."""
    path, done = pool.context()
    aligner = pool.aligner()
    out: list[tuple] = []
    for line_no, line in chunk:
        try:
            try:
                row = loads_json(line)
            except json.JSONDecodeError as err:
                raise RecordError(path, f"line {line_no}", "<json>", f"not valid JSON ({err.msg})") from None
            except UnicodeDecodeError as err:
                raise RecordError(path, f"line {line_no}", "<json>", f"not valid UTF-8 ({err.reason})") from None
            if not isinstance(row, dict):
                raise RecordError(path, f"line {line_no}", "<json>", "expected a JSON object")
            sample = parse_record(row, path, line_no, aligner.config.framing)
        except RecordError as err:
            out.append(("error", err.record, err.field, str(err).split(f"field {err.field!r}: ", 1)[-1]))
            break
        if sample.id in done:
            out.append(("skip", sample.id))
            continue
        try:
            result = aligned_dict(aligner, sample)
        except AlignmentError as err:
            out.append(("error", f"line {line_no} (id {sample.id!r})", "tokens/text", str(err)))
            break  # nothing after a hard error in this chunk is written
        out.append(("row", sample.id, _ENCODER.encode(result) + "\n", result.get("stats"), line_no))
    return out


def resume_state(output: Path) -> tuple[set[str], AlignmentStats]:
    """Ids already written, after cutting off a torn last line; stats of the rows kept."""
    done: set[str] = set()
    stats = AlignmentStats()
    if not output.exists():
        return done, stats
    with open(output, "rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            handle.truncate(keep)
            data = data[:keep]
    for line_no, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = loads_json(line)
        except json.JSONDecodeError as err:
            raise RecordError(output, f"line {line_no}", "<json>", f"existing output line is not valid JSON ({err.msg})") from None
        done.add(str(row["id"]))
        _add_row_stats(stats, row.get("status"), row.get("stats"))
    return done, stats


def _add_row_stats(stats: AlignmentStats, status: str | None, s: dict | None) -> None:
    if status == "rejected" or s is None:
        stats.rejected += 1
        return
    stats.merge(AlignmentStats(1, 0, s["positions"], s["soft"], s["multi_entry"], s["derived"], s["captured_mass"], dict(s["kinds"])))


def count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def run_alignment(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    config: AlignConfig,
    workers: int = 1,
    chunk_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Align every sample of `input_path` not yet in `output_path`; returns the summary statistics."""
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise DataError(f"{input_path}: no such file (the teacher JSONL to align)")
    check_positive("--workers", workers)
    check_positive("--chunk-size", chunk_size)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    config = config.with_k()  # JSONL carries no sampling settings: k defaults to 5
    if config.identity == "require":
        raise UsageError("--identity require: a teacher JSONL names no teacher tokenizer to compare with the student's; "
                         "the identity path is for teacher stores")
    student = student_fingerprint(config.student)
    # The output remembers what made it: a rerun resumes only with the same input and settings.
    # The input's checksum too: a teacher file regenerated under the same name must not be mixed in.
    claim(output_path, "align", {"input": str(input_path.resolve()), "input_sha256": sha256_of(input_path),
                                 "config": asdict(config), "student": student})
    done, stats = resume_state(output_path)

    def chunks() -> Iterator[list[tuple[int, bytes]]]:
        # Raw bytes: the driver neither decodes nor parses; workers do.
        chunk: list[tuple[int, bytes]] = []
        with open(input_path, "rb") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                chunk.append((line_no, line))
                if len(chunk) >= chunk_size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    written = 0
    seen: set[str] = set()

    def write(results: list[tuple], out) -> None:
        nonlocal written
        lines, error, advanced = [], None, 0
        for result in results:
            if result[0] == "error":
                error = RecordError(input_path, result[1], result[2], result[3])
                break
            sample_id = result[1]
            if sample_id in seen:
                error = RecordError(input_path, f"line {result[4]}" if len(result) > 4 else sample_id, "id", f"duplicate id {sample_id!r}")
                break
            seen.add(sample_id)
            advanced += 1
            if result[0] == "row":
                lines.append(result[2])
                _add_row_stats(stats, "ok" if result[3] is not None else "rejected", result[3])
        out.write("".join(lines))
        out.flush()
        os.fsync(out.fileno())
        written += len(lines)
        if progress:
            progress(advanced)
        if error is not None:
            raise error

    with open(output_path, "a", encoding="utf-8") as out:
        pool.run_pool(chunks(), config, workers, lambda results: write(results, out), _work,
                      context=(str(input_path), frozenset(done)))
    summary = {"input": str(input_path), "output": str(output_path), "written_now": written, "config": asdict(config),
               "student": student}
    summary.update(stats.summary())
    return summary
