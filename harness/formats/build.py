"""Build the four training formats from teacher samples: Parquet shards + settings.json + stats.json.

    stats = build_formats(samples, "runs/formats/faithful", setting="faithful",
                          teacher_model="code-davinci-002", aligned=lookup, seed=0)

`samples` yields `CotSample(question_id, sample_index, question, text, correct)` (plain 5-tuples
work too), grouped by question and in sample order, as the teacher stage wrote them
(`teacher_data.read_teacher_store`). `aligned` gives each sample's aligned targets: an
`AlignedTargets` (a sealed `align run` output, read column-wise: each shard takes its records' rows
from the table, and no top-k list becomes Python objects) or a plain mapping of (question_id,
sample_index) to rows with student_ids, topk_ids, topk_probs, topk_mask (status "rejected" =
missing), turned into the same table once.

Which records exist:
- only correct samples; CoT formats: one record per correct sample (and, with `aligned`, only
  where the sample has aligned targets), carrying the aligned top-k;
- answer-only formats: at most one record per question, from its first correct sample (lowest
  sample_index) whose text yields "The answer is ..." (`render.answer_only_target`). faithful with
  `aligned`: a sample without aligned targets does not count as correct here either (the authors
  relabelled their 484 alignment failures as wrong before building every format);
- corrected: samples of GSM8K dev questions are skipped (and counted), so dev stays held out.

Output folder (contract `harness.schemas.FORMATS`): `{format}-{n:05d}.parquet` shards of
`shard_size` records in record order (a format's records are its shards concatenated; `mixing`
indexes into that order), written to a temp file and renamed; `settings.json` (via
`harness.resume.claim`; a rerun with the same settings rewrites every shard, byte-identical for the
same input), `stats.json`, and `manifest.json` sealed last with the content of the inputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

from harness import handoff
from harness.errors import DataError, UsageError, check_choice, check_positive
from harness.records import Example, atomic_write
from harness.schemas import FORMATS as FORMATS_CONTRACT, TARGET_COLUMNS

from harness.formats.aligned import AlignedTargets
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
SCHEMA_VERSION = FORMATS_CONTRACT.version
ALIGNED_FIELDS = TARGET_COLUMNS


class CotSample(NamedTuple):
    question_id: str
    sample_index: int
    question: Example
    text: str
    correct: bool


def schema():
    return FORMATS_CONTRACT.schema


PLAIN_FIELDS = ("format", "setting", "question_id", "sample_index", "encoder_input", "decoder_target", "gold_answer",
                "demo_ids", "teacher_model", "seed")


class ShardWriter:
    """One format's records, column by column: every `shard_size` records a shard
    (`{format}-{n:05d}.parquet`) is assembled column-wise and handed to `files`. A record's targets
    are a row of `aligned` (the build) or lists given with the record (the authors' importer)."""

    def __init__(self, out: handoff.OutputFolder, fmt: str, shard_size: int, files: "ShardFiles",
                 aligned: AlignedTargets | None = None):
        self.out, self.fmt, self.shard_size, self.files, self.aligned = out, fmt, shard_size, files, aligned
        self.written: list[str] = []
        self.count = 0
        self._reset()

    def _reset(self) -> None:
        self.columns: dict[str, list] = {name: [] for name in PLAIN_FIELDS}
        self.rows: list[int | None] = []  # each record's aligned row, None for none
        self.targets: dict[str, list] = {name: [] for name in ALIGNED_FIELDS}  # lists given with the records

    def add(self, values: Sequence[Any], row: int | None = None, targets: Mapping[str, Any] | None = None) -> None:
        for column, value in zip(self.columns.values(), values):
            column.append(value)
        self.rows.append(row)
        for name in ALIGNED_FIELDS:
            self.targets[name].append(None if targets is None else targets[name])
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
            arrays.update({name: pa.array(values, types.field(name).type) for name, values in self.targets.items()})
        table = pa.Table.from_arrays([arrays[name] for name in types.names], schema=types)
        path = self.out.root / FORMATS_CONTRACT.shard_name(len(self.written), self.fmt)
        self.files.write(path, table)
        self.written.append(path.name)
        self._reset()


class ShardFiles:
    """Writes finished shards on one background thread: Parquet encoding and zstd run without the
    GIL, so rendering the next records overlaps writing the last. The two CoT formats finish their
    shards together, so up to two shards wait. Each shard enters the manifest once it is on disk."""

    def __init__(self, out: handoff.OutputFolder, depth: int = 2):
        from concurrent.futures import ThreadPoolExecutor

        self.out = out
        self.pool = ThreadPoolExecutor(1)
        self.depth = depth
        self.pending: list = []

    def write(self, path: Path, table) -> None:
        if len(self.pending) >= self.depth:
            self._collect()  # a failed write raises here
        self.pending.append((path, self.pool.submit(handoff.write_parquet, path, table, FORMATS_CONTRACT)))

    def _collect(self) -> None:
        path, future = self.pending.pop(0)
        self.out.add_shard(path, future.result())

    def close(self) -> None:
        try:
            while self.pending:
                self._collect()
        finally:
            self.pool.shutdown()


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
    inputs: Mapping[str, Any] | None = None,
    data_dir=None,
) -> dict[str, Any]:
    """Write the records of `formats` under `output`; returns the statistics (also in stats.json).

    `pool`: demo pool (default: `demos.load_pool(setting)` from the data directory).
    `dev_question_ids`: corrected only; default the GSM8K dev ids from the data directory.
    `encode`: optional T5 encoder (text -> ids without EOS); each CoT target must encode to its
    aligned `student_ids`, else DataError (the alignment was run on another text).
    `source`: what the samples came from (file paths); stored with the settings.
    `inputs`: the content of the teacher store and aligned targets (`handoff.inputs_of`), sealed
    into the manifest so that training can tell what its data came from.
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
    out = handoff.OutputFolder(output, FORMATS_CONTRACT)
    try:
        out.open(JOB, settings)  # every shard is written again: none of an earlier run is kept
        return _build(samples, out, settings, aligned, pool, dev_question_ids, encode, inputs, data_dir)
    finally:
        out.close()


def _build(samples, out: handoff.OutputFolder, settings: dict[str, Any], aligned, pool, dev_question_ids, encode, inputs, data_dir):
    setting, seed, teacher_model, formats, shard_size = (settings[k] for k in ("setting", "seed", "teacher_model", "formats", "shard_size"))
    if pool is None and any(f in IN_CONTEXT_FORMATS for f in formats):
        pool = load_pool(setting, data_dir)
    banned = frozenset()
    if setting == "corrected":
        banned = frozenset(dev_question_ids) if dev_question_ids is not None else dev_ids(data_dir)

    source_rows = None if aligned is None else AlignedTargets.of(aligned)
    files = ShardFiles(out)  # a failure mid-build leaves at most the shard being written, complete (renamed) or absent
    writers = {f: ShardWriter(out, f, shard_size, files, source_rows) for f in formats}
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
    try:
        for writer in writers.values():
            writer.flush()
    finally:
        files.close()

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
    with atomic_write(out.root / "stats.json") as handle:
        json.dump(stats, handle, indent=1)
        handle.write("\n")
    out.seal(dict(inputs or {}), prune=True)  # prune: shards of an earlier, longer build
    return stats


def _mix_summary(record_counts: Mapping[str, int], size: str) -> dict[str, Any]:
    """Micro-batches per epoch in the authors' mix for one model size."""
    batch_sizes, grad_accum = size_config(size)
    per = authors_mix_counts(record_counts, batch_sizes, grad_accum)
    total = sum(per.values())
    return {"micro_batches": total, "optimizer_steps": -(-total // grad_accum), "per_format": per}
