"""Build the four training formats from teacher samples: Parquet shards + settings.json + stats.json.

    stats = build_formats(samples, "runs/formats/faithful", setting="faithful",
                          teacher_model="code-davinci-002", aligned=lookup, seed=0)

`samples` yields `CotSample(question_id, sample_index, question, text, correct)` (plain 5-tuples
work too), grouped by question and in sample order, as the teacher stage wrote them. `aligned`
maps (question_id, sample_index) to an alignment row (`harness/align/run.py`'s output: student_ids,
topk_ids, topk_probs, topk_mask; rows with status "rejected" count as missing).

Which records exist:
- only correct samples; CoT formats: one record per correct sample (and, with `aligned`, only
  where the sample has aligned targets), carrying the aligned top-k;
- answer-only formats: at most one record per question, from its first correct sample (lowest
  sample_index) whose text yields "The answer is ..." (`render.answer_only_target`). faithful with
  `aligned`: a sample without aligned targets does not count as correct here either (the authors
  relabelled their 484 alignment failures as wrong before building every format);
- corrected: samples of GSM8K dev questions are skipped (and counted), so dev stays held out.

Output folder: `{format}-{n:05d}.parquet` shards of `shard_size` records in record order (a
format's records are its shards concatenated; `mixing` indexes into that order), written to a temp
file and renamed; `settings.json` (via `harness.resume.claim`; a rerun with the same settings
rewrites every shard, byte-identical for the same input) and `stats.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

from harness.errors import DataError, UsageError, check_choice, check_positive
from harness.records import Example, atomic_write
from harness.resume import claim

from harness.formats.demos import DemoPool, dev_ids, load_pool, record_key
from harness.mixing import BATCH_SIZES, authors_mix_counts, size_config
from harness.formats.render import (
    ANSWER_ONLY_FORMATS,
    COT_FORMATS,
    FORMATS,
    IN_CONTEXT_FORMATS,
    NUM_DEMOS,
    SETTINGS,
    answer_only_target,
    render_record,
)

JOB = "formats.build"
SCHEMA_VERSION = 1
ALIGNED_FIELDS = ("student_ids", "topk_ids", "topk_probs", "topk_mask")


class CotSample(NamedTuple):
    question_id: str
    sample_index: int
    question: Example
    text: str
    correct: bool


def schema():
    import pyarrow as pa

    nested = lambda t: pa.list_(pa.list_(t))  # noqa: E731 - [T][K]
    return pa.schema(
        [
            ("format", pa.string()),
            ("setting", pa.string()),
            ("question_id", pa.string()),
            ("sample_index", pa.int32()),
            ("encoder_input", pa.string()),
            ("decoder_target", pa.string()),
            ("gold_answer", pa.string()),
            ("demo_ids", pa.list_(pa.string())),
            ("student_ids", pa.list_(pa.int32())),  # null for answer-only records
            ("topk_ids", nested(pa.int32())),
            ("topk_probs", nested(pa.float32())),
            ("topk_mask", nested(pa.int8())),
            ("teacher_model", pa.string()),
            ("seed", pa.int64()),
        ],
        metadata={"schema_version": str(SCHEMA_VERSION)},
    )


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


class _ShardWriter:
    """Buffers one format's records and writes `{format}-{n:05d}.parquet` every `shard_size`."""

    def __init__(self, folder: Path, fmt: str, shard_size: int):
        self.folder, self.fmt, self.shard_size = folder, fmt, shard_size
        self.rows: list[dict[str, Any]] = []
        self.written: list[str] = []
        self.count = 0

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.count += 1
        if len(self.rows) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self.rows, schema=schema())
        name = f"{self.fmt}-{len(self.written):05d}.parquet"
        with atomic_write(self.folder / name, "wb") as handle:
            pq.write_table(table, handle, compression="zstd")
        self.written.append(name)
        self.rows = []


def build_formats(
    samples: Iterable[CotSample | Sequence],
    output: str | Path,
    *,
    setting: str,
    teacher_model: str,
    seed: int = 0,
    aligned: Mapping[tuple[str, int], Mapping[str, Any]] | None = None,
    formats: Sequence[str] = FORMATS,
    shard_size: int = 5000,
    pool: DemoPool | None = None,
    dev_question_ids: Iterable[str] | None = None,
    encode: Callable[[str], list[int]] | None = None,
    source: Mapping[str, Any] | None = None,
    data_dir=None,
) -> dict[str, Any]:
    """Write the records of `formats` under `output`; returns the statistics (also in stats.json).

    `pool`: demo pool (default: `demos.load_pool(setting)` from the data directory).
    `dev_question_ids`: corrected only; default the GSM8K dev ids from the data directory.
    `encode`: optional T5 encoder (text -> ids without EOS); each CoT target must encode to its
    aligned `student_ids`, else DataError (the alignment was run on another text).
    `source`: what the samples came from (file paths, hashes); stored with the settings.
    """
    check_choice("setting", setting, SETTINGS)
    for fmt in formats:
        check_choice("format", fmt, FORMATS)
    check_positive("shard_size", shard_size)
    if not teacher_model:
        raise UsageError("teacher_model: give the teacher's model name (it is stored with every record)")
    formats = [f for f in FORMATS if f in formats]
    output = Path(output)
    settings = {
        "setting": setting, "formats": formats, "seed": seed, "teacher_model": teacher_model,
        "num_demos": NUM_DEMOS, "shard_size": shard_size, "aligned": aligned is not None,
        "source": dict(source or {}), "schema_version": SCHEMA_VERSION,
    }
    claim(output, JOB, settings, folder=True)
    if pool is None and any(f in IN_CONTEXT_FORMATS for f in formats):
        pool = load_pool(setting, data_dir)
    banned = frozenset()
    if setting == "corrected":
        banned = frozenset(dev_question_ids) if dev_question_ids is not None else dev_ids(data_dir)

    writers = {f: _ShardWriter(output, f, shard_size) for f in formats}
    counts = {"samples": 0, "correct": 0, "questions": 0, "skipped_incorrect": 0,
              "skipped_dev_question": 0, "cot_without_alignment": 0}
    ao_pick: dict[str, CotSample] = {}  # question id -> first qualifying sample, in question order
    seen: set[tuple[str, int]] = set()
    questions: dict[str, None] = {}

    def row(fmt: str, s: CotSample, alignment: Mapping[str, Any] | None) -> dict[str, Any]:
        demos = pool.draw(seed, record_key(fmt, s.question_id, s.sample_index), s.question) if fmt in IN_CONTEXT_FORMATS else []
        enc, dec = render_record(fmt, setting, s.question.question, s.text, demos)
        out = {"format": fmt, "setting": setting, "question_id": s.question_id, "sample_index": s.sample_index,
               "encoder_input": enc, "decoder_target": dec, "gold_answer": s.question.answer,
               "demo_ids": [d.id for d in demos], "teacher_model": teacher_model, "seed": seed}
        for name in ALIGNED_FIELDS:
            out[name] = _plain(alignment[name]) if alignment is not None else None
        if alignment is not None and encode is not None and list(encode(dec)) != list(out["student_ids"]):
            raise DataError(f"{s.question_id}#{s.sample_index}: the aligned student_ids are not the T5 ids of the "
                            f"{setting} CoT target; align the text `formats.render.clean_text(text, {setting!r})`")
        return out

    for raw in samples:
        s = raw if isinstance(raw, CotSample) else CotSample(*raw)
        key = (s.question_id, int(s.sample_index))
        if s.question_id != s.question.id:
            raise DataError(f"sample {key}: question_id does not match its question's id {s.question.id!r}")
        if key in seen:
            raise DataError(f"sample {key} appears twice in the teacher samples")
        seen.add(key)
        questions.setdefault(s.question_id)
        counts["samples"] += 1
        if not s.correct:
            counts["skipped_incorrect"] += 1
            continue
        counts["correct"] += 1
        if s.question_id in banned:
            counts["skipped_dev_question"] += 1
            continue
        alignment = None
        if aligned is not None:
            alignment = aligned.get(key)
            if alignment is not None and alignment.get("status", "ok") != "ok":
                alignment = None
            if alignment is None:
                counts["cot_without_alignment"] += 1
        cot_ok = aligned is None or alignment is not None
        if cot_ok:
            if alignment is not None:
                _check_alignment(key, alignment)
            for fmt in COT_FORMATS:
                if fmt in writers:
                    writers[fmt].add(row(fmt, s, alignment))
        ao_ok = cot_ok or setting == "corrected"
        best = ao_pick.get(s.question_id)
        if ao_ok and (best is None or s.sample_index < best.sample_index) and answer_only_target(s.text, setting) is not None:
            ao_pick[s.question_id] = s

    for fmt in ANSWER_ONLY_FORMATS:
        if fmt in writers:
            for qid in questions:
                if qid in ao_pick:
                    writers[fmt].add(row(fmt, ao_pick[qid], None))
    for writer in writers.values():
        writer.flush()
    written = {name for w in writers.values() for name in w.written}
    for stale in output.glob("*.parquet"):  # shards of an earlier, longer build with the same settings
        if stale.name not in written and stale.name.split("-")[0] in FORMATS:
            stale.unlink()

    counts["questions"] = len(questions)
    record_counts = {f: w.count for f, w in writers.items()}
    stats = {
        "settings": settings,
        "counts": counts,
        "records": record_counts,
        "answer_only_questions_without_target": len(questions) - len(ao_pick),
        "shards": {f: w.written for f, w in writers.items()},
        "authors_mix": {size: _mix_summary(record_counts, size) for size in BATCH_SIZES},
    }
    with atomic_write(output / "stats.json") as handle:
        json.dump(stats, handle, indent=1)
        handle.write("\n")
    return stats


def _check_alignment(key: tuple[str, int], alignment: Mapping[str, Any]) -> None:
    missing = [f for f in ALIGNED_FIELDS if f not in alignment]
    if missing:
        raise DataError(f"aligned targets of {key}: missing {', '.join(missing)}")
    n = len(alignment["student_ids"])
    if not all(len(alignment[f]) == n for f in ALIGNED_FIELDS[1:]):
        raise DataError(f"aligned targets of {key}: student_ids, topk_ids, topk_probs and topk_mask differ in length")


def _mix_summary(record_counts: Mapping[str, int], size: str) -> dict[str, Any]:
    """Micro-batches per epoch in the authors' mix for one model size."""
    batch_sizes, grad_accum = size_config(size)
    per = authors_mix_counts(record_counts, batch_sizes, grad_accum)
    total = sum(per.values())
    return {"micro_batches": total, "optimizer_steps": -(-total // grad_accum), "per_format": per}
