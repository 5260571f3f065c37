"""Build the four training formats from teacher samples: Parquet shards + settings.json + stats.json.

    stats = build_formats(samples, "runs/formats/faithful", setting="faithful",
                          teacher_model="code-davinci-002", aligned=lookup, seed=0)

`samples` yields `CotSample(question_id, sample_index, question, text, correct)` (plain 5-tuples
work too), grouped by question and in sample order, as the teacher stage wrote them. `aligned`
maps (question_id, sample_index) to an alignment row (`harness/align/run.py`'s output: student_ids,
topk_ids, topk_probs, topk_mask; rows with status "rejected" count as missing). A mapping that also
carries `table` (a pyarrow Table with those four columns, usable rows only) and `index` ((question_id,
sample_index) -> row of `table`), as the CLI's lookup does, is read column-wise: each shard takes
its records' rows from the table, and no top-k list becomes Python objects.

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


PLAIN_FIELDS = ("format", "setting", "question_id", "sample_index", "encoder_input", "decoder_target", "gold_answer",
                "demo_ids", "teacher_model", "seed")


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


class _ArrowAligned:
    """Aligned targets in an Arrow table (the CLI's lookup): a record keeps a row number, a shard
    takes its rows column-wise. Turning 15M top-k lists into Python objects and back was most
    of the build's time."""

    def __init__(self, table, index: Mapping[tuple[str, int], int]):
        import numpy as np
        import pyarrow.compute as pc

        self.table, self.index = table.select(list(ALIGNED_FIELDS)), index
        lengths = [pc.list_value_length(self.table.column(name)).to_numpy(zero_copy_only=False) for name in ALIGNED_FIELDS]
        self.ragged = np.zeros(len(self.table), dtype=bool)  # rows whose four lists differ in length
        for other in lengths[1:]:
            self.ragged |= other != lengths[0]

    @classmethod
    def of(cls, aligned: Any) -> "_ArrowAligned | None":
        import pyarrow as pa

        table, index = getattr(aligned, "table", None), getattr(aligned, "index", None)
        if isinstance(table, pa.Table) and isinstance(index, Mapping) and set(ALIGNED_FIELDS) <= set(table.column_names):
            return cls(table, index)
        return None

    def row(self, key: tuple[str, int]) -> int | None:
        row = self.index.get(key)
        if row is not None and self.ragged[row]:
            raise DataError(f"aligned targets of {key}: student_ids, topk_ids, topk_probs and topk_mask differ in length")
        return row

    def student_ids(self, row: int) -> list[int]:
        return self.table.column("student_ids")[row].as_py()

    def take(self, rows: list[int | None]) -> dict[str, Any]:
        import pyarrow as pa

        taken = self.table.take(pa.array(rows, pa.int64()))  # a null row number gives null lists
        return {name: taken.column(name) for name in ALIGNED_FIELDS}


class _MappingAligned:
    """Any other mapping of aligned rows (dicts, numpy arrays): rows are checked and kept as lists."""

    def __init__(self, aligned: Mapping[tuple[str, int], Mapping[str, Any]]):
        self.aligned = aligned
        self.rows: list[dict[str, Any]] = []

    def row(self, key: tuple[str, int]) -> int | None:
        alignment = self.aligned.get(key)
        if alignment is None or alignment.get("status", "ok") != "ok":
            return None
        _check_alignment(key, alignment)
        self.rows.append({name: _plain(alignment[name]) for name in ALIGNED_FIELDS})
        return len(self.rows) - 1

    def student_ids(self, row: int) -> list[int]:
        return list(self.rows[row]["student_ids"])

    def take(self, rows: list[int | None]) -> dict[str, Any]:
        import pyarrow as pa

        types = schema()
        return {name: pa.array([None if r is None else self.rows[r][name] for r in rows], types.field(name).type)
                for name in ALIGNED_FIELDS}


class _ShardWriter:
    """Buffers one format's records (row dicts) and writes `{format}-{n:05d}.parquet` every
    `shard_size`, in place (the authors' importer writes through it)."""

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

        name = f"{self.fmt}-{len(self.written):05d}.parquet"
        _write_shard(self.folder / name, pa.Table.from_pylist(self.rows, schema=schema()))
        self.written.append(name)
        self.rows = []


class _RecordWriter:
    """The build's writer: one format's records as columns plus their aligned rows; every
    `shard_size` records the shard is assembled column-wise and handed to `files`."""

    def __init__(self, folder: Path, fmt: str, shard_size: int, aligned: "_ArrowAligned | _MappingAligned | None", files: "_Files"):
        self.folder, self.fmt, self.shard_size, self.aligned, self.files = folder, fmt, shard_size, aligned, files
        self.columns: dict[str, list] = {name: [] for name in PLAIN_FIELDS}
        self.rows: list[int | None] = []  # each record's aligned row, None for none
        self.written: list[str] = []
        self.count = 0

    def add(self, values: Sequence[Any], row: int | None) -> None:
        for column, value in zip(self.columns.values(), values):
            column.append(value)
        self.rows.append(row)
        self.count += 1
        if len(self.rows) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        import pyarrow as pa

        types = schema()
        arrays = {name: pa.array(values, types.field(name).type) for name, values in self.columns.items()}
        if self.aligned is not None:
            arrays.update(self.aligned.take(self.rows))
        else:
            arrays.update({name: pa.nulls(len(self.rows), types.field(name).type) for name in ALIGNED_FIELDS})
        table = pa.Table.from_arrays([arrays[name] for name in types.names], schema=types)
        name = f"{self.fmt}-{len(self.written):05d}.parquet"
        self.files.write(self.folder / name, table)
        self.written.append(name)
        self.columns = {name: [] for name in PLAIN_FIELDS}
        self.rows = []


class _Files:
    """Writes finished shards on one background thread: Parquet encoding and zstd run without the
    GIL, so rendering the next records overlaps writing the last. The two CoT formats finish their
    shards together, so up to two shards wait."""

    def __init__(self, depth: int = 2):
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(1)
        self.depth = depth
        self.pending: list = []

    def write(self, path: Path, table) -> None:
        if len(self.pending) >= self.depth:
            self.pending.pop(0).result()  # a failed write raises here
        self.pending.append(self.pool.submit(_write_shard, path, table))

    def close(self) -> None:
        while self.pending:
            self.pending.pop(0).result()
        self.pool.shutdown()


def _write_shard(path: Path, table) -> None:
    import pyarrow.parquet as pq

    with atomic_write(path, "wb") as handle:  # temp file + rename
        pq.write_table(table, handle, compression="zstd")


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

    source_rows = None if aligned is None else (_ArrowAligned.of(aligned) or _MappingAligned(aligned))
    files = _Files()  # a failure mid-build leaves at most the shard being written, complete (renamed) or absent
    writers = {f: _RecordWriter(output, f, shard_size, source_rows, files) for f in formats}
    counts = {"samples": 0, "correct": 0, "questions": 0, "skipped_incorrect": 0,
              "skipped_dev_question": 0, "cot_without_alignment": 0}
    ao_pick: dict[str, CotSample] = {}  # question id -> first qualifying sample, in question order
    seen: set[tuple[str, int]] = set()
    questions: dict[str, None] = {}

    def add(fmt: str, s: CotSample, row: int | None) -> None:
        demos = pool.draw(seed, record_key(fmt, s.question_id, s.sample_index), s.question) if fmt in IN_CONTEXT_FORMATS else []
        enc, dec = render_record(fmt, setting, s.question.question, s.text, demos)
        if row is not None and encode is not None and list(encode(dec)) != list(source_rows.student_ids(row)):
            raise DataError(f"{s.question_id}#{s.sample_index}: the aligned student_ids are not the T5 ids of the "
                            f"{setting} CoT target; align the text `formats.render.clean_text(text, {setting!r})`")
        writers[fmt].add((fmt, setting, s.question_id, s.sample_index, enc, dec, s.question.answer, [d.id for d in demos],
                          teacher_model, seed), row)

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
        row = None
        if source_rows is not None:
            row = source_rows.row(key)
            if row is None:
                counts["cot_without_alignment"] += 1
        cot_ok = source_rows is None or row is not None
        if cot_ok:
            for fmt in COT_FORMATS:
                if fmt in writers:
                    add(fmt, s, row)
        ao_ok = cot_ok or setting == "corrected"
        best = ao_pick.get(s.question_id)
        if ao_ok and (best is None or s.sample_index < best.sample_index) and answer_only_target(s.text, setting) is not None:
            ao_pick[s.question_id] = s

    for fmt in ANSWER_ONLY_FORMATS:
        if fmt in writers:
            for qid in questions:
                if qid in ao_pick:
                    add(fmt, ao_pick[qid], None)
    for writer in writers.values():
        writer.flush()
    files.close()
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
