"""Align a teacher store (Parquet, docs/teacher-store.md) into aligned targets (Parquet).

    python -m harness align run runs/teacher/default runs/aligned/default --setting corrected

Input: the teacher store folder the teacher stage writes (read here as files, through the
documented schema: this stage imports no other stage). Selected samples (by default the correct
ones, as the authors aligned only those) go to the worker processes as Arrow chunks; workers build
the aligner's inputs from the Arrow lists and return Arrow columns, with no JSON in between (it
was most of the time). A chunk holding anything unusual goes through the JSONL runner's own code
instead, so a store and its JSONL export give the same rows and the same errors.

Output folder: `data/part-NNNNN.parquet` shards (temp name, then renamed), `settings.json`
(resume refuses other settings) and `stats.json`. One row per selected sample:
    id ("<question_id>#<sample_index>"), question_id, sample_index, mode, status ("ok"|"rejected"),
    reason, k, student_ids [T], topk_ids [T][K], topk_probs [T][K], topk_mask [T][K], tail_mass [T]
    (with --tail), positions, soft, multi_entry, derived, captured_mass.
`student_ids` are the T5 ids of the text the formats will train on: `--setting faithful` aligns
onto the authors' `": "`-deleted text, `corrected` onto the text as sampled.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from harness.align.api import AlignConfig
from harness.align import run as runner
from harness.align.errors import AlignmentError, FramingError
from harness.align.run import TeacherSample, _config_dict, _init_worker, _loads, _run_pool, sequence_stats
from harness.align.targets import AlignedSequence, AlignmentStats, round6, stored_k
from harness.errors import DataError, check_choice, check_positive
from harness.records import RecordError, atomic_write
from harness.resume import claim
from harness.templates import strip_colons

JOB = "align.store"
DATA_DIR = "data"
SHARD = "part-{:05d}.parquet"
SELECT = ("correct", "correct_faithful", "all")
SETTINGS = ("faithful", "corrected")
STORE_COLUMNS = ["question_id", "sample_index", "text", "tokens", "top_tokens", "top_logprobs", "framing"]  # + select, token_logprobs
STAT_COLUMNS = ("positions", "soft", "multi_entry", "derived", "captured_mass")


def _dumps(row: dict[str, Any]) -> bytes:
    try:
        import orjson

        return orjson.dumps(row)
    except ImportError:  # pragma: no cover - orjson is a pinned dependency
        return json.dumps(row, ensure_ascii=False).encode("utf-8")


def is_teacher_store(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "settings.json").is_file() and (path / DATA_DIR).is_dir()


def schema():
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()), ("question_id", pa.string()), ("sample_index", pa.int32()), ("mode", pa.string()),
        ("status", pa.string()), ("reason", pa.string()), ("k", pa.int32()),
        ("student_ids", pa.list_(pa.int32())), ("topk_ids", pa.list_(pa.list_(pa.int32()))),
        ("topk_probs", pa.list_(pa.list_(pa.float32()))), ("topk_mask", pa.list_(pa.list_(pa.int8()))),
        ("tail_mass", pa.list_(pa.float32())),
        ("positions", pa.int32()), ("soft", pa.int32()), ("multi_entry", pa.int32()), ("derived", pa.int32()),
        ("captured_mass", pa.float64()),
    ])


def student_text(text: str, setting: str) -> str:
    """The text the training formats put in the decoder for this setting."""
    return strip_colons(text) if setting == "faithful" else text.strip()


def _line(row: dict[str, Any], setting: str) -> dict[str, Any]:
    """A store row as the JSONL `align.run` reads (the reference path, used for unusual rows)."""
    text, tokens = row["text"], row["tokens"]
    line = {"id": f"{row['question_id']}#{row['sample_index']}", "text": text, "student_text": student_text(text, setting),
            "tokens": tokens,
            "topk": [[[w, lp] for w, lp in zip(words, lps)] for words, lps in zip(row["top_tokens"], row["top_logprobs"])]}
    if row.get("framing") == "authors":
        # The authors' 6-entry layout: the sampled token first, then the API's top-5;
        # `text` is what the content steps spell (the ' step' / '\n' frame dropped).
        line["token_logprobs"] = row["token_logprobs"]
        if len(tokens) >= 4 and tokens[0] == " step" and tokens[1] == "\n":
            line["text"] = "".join(tokens[2:-2]).strip()
    return line


def _chunks(store: Path, select: str, done: set[str], chunk_size: int) -> Iterator[tuple[Any, list[int]]]:
    """(Arrow table of `chunk_size` selected samples not yet done, their 1-based store row numbers),
    in store order. The driver only filters and slices columns; workers convert and align."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    shards = sorted((store / DATA_DIR).glob("part-*.parquet"))
    if not shards:
        raise DataError(f"{store}: the teacher store holds no shards yet (data/part-*.parquet)")
    done_ids = pa.array(sorted(done), pa.string()) if done else None
    columns = STORE_COLUMNS + ([select] if select != "all" else [])
    if any(pc.any(pc.equal(pq.ParquetFile(shard).read(columns=["framing"]).column("framing"), "authors")).as_py() for shard in shards):
        columns.append("token_logprobs")  # the authors' import: their sampled token's logprob goes first
    parts: list[tuple[Any, Any, Any]] = []  # (batch, positions in it, row numbers) making the next chunk
    count = number = 0
    for shard in shards:
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=8192, columns=columns):
            keep = np.ones(batch.num_rows, dtype=bool)
            if select != "all":
                keep &= pc.fill_null(batch.column(select), False).to_numpy(zero_copy_only=False)
            if done_ids is not None:
                ids = pc.binary_join_element_wise(batch.column("question_id"), pc.cast(batch.column("sample_index"), pa.string()), "#")
                keep &= ~pc.fill_null(pc.is_in(ids, value_set=done_ids), False).to_numpy(zero_copy_only=False)
            positions = np.flatnonzero(keep)
            numbers = number + 1 + positions
            number += batch.num_rows
            start = 0
            while start < len(positions):
                take = min(chunk_size - count, len(positions) - start)
                parts.append((batch, positions[start : start + take], numbers[start : start + take]))
                count += take
                start += take
                if count == chunk_size:
                    yield _join(parts)
                    parts, count = [], 0
    if parts:
        yield _join(parts)


def _join(parts) -> tuple[Any, list[int]]:
    import pyarrow as pa

    # `take` copies the rows out: a slice would pickle its whole parent batch to the worker.
    table = pa.Table.from_batches([batch.take(positions) for batch, positions, _ in parts])
    return table, np.concatenate([numbers for *_, numbers in parts]).tolist()


# ----------------------------------------------------------------------------- worker side


def _align_chunk(job: tuple[Any, list[int], str]) -> tuple[Any, int, tuple | None]:
    """Align one chunk in a worker: (aligned rows as an Arrow batch, rows done, error or None).

    Usual rows take the columnar path (`_samples`, `_Rows`): Arrow lists to Python once per
    chunk, Arrow arrays out, no JSON. A chunk holding anything unusual (nulls, ragged top-k,
    the authors' framing, tokens not spelling the text) goes through the JSONL runner's own
    parse/align/serialise code instead, so its rows and its errors are exactly that path's.
    """
    table, numbers, setting = job
    state = runner._STATE
    assert state is not None
    collecting = gc.isenabled()
    gc.disable()  # a chunk makes ~10^5 small objects and no cycles: collections would only cost time
    try:
        samples = _samples(table, numbers, setting, state.aligner.config.framing)
        if samples is None:
            return _align_chunk_reference(table, numbers, setting)
        aligner = state.aligner
        rows = _Rows(aligner.config, aligner.student_tokenizer.pad_id)
        for sample in samples:
            try:
                seq = aligner.align(sample.tokens, sample.topk, sample.student_text)
            except FramingError as err:
                rows.reject(sample.id, str(err))
                continue
            except AlignmentError as err:
                return rows.batch(), rows.count, (f"line {sample.line} (id {sample.id!r})", "tokens/text", str(err))
            rows.add(sample.id, seq)
        return rows.batch(), rows.count, None
    finally:
        if collecting:
            gc.enable()


def _align_chunk_reference(table, numbers: list[int], setting: str) -> tuple[Any, int, tuple | None]:
    """The same chunk through `align.run`'s JSONL code (store row -> JSON line -> parse, align,
    serialise -> row): what the columnar path must equal (tests/align/test_align_store_columnar.py)."""
    import pyarrow as pa

    results = runner._work([(n, _dumps(_line(row, setting))) for n, row in zip(numbers, table.to_pylist())])
    rows = [_row(_loads(r[2])) for r in results if r[0] == "row"]
    error = results[-1][1:4] if results and results[-1][0] == "error" else None
    return pa.RecordBatch.from_pylist(rows, schema=schema()), len(rows), error


def _samples(table, numbers: list[int], setting: str, framing: str) -> list[TeacherSample] | None:
    """The chunk's TeacherSamples straight from Arrow, or None when a row needs the reference path.

    Accepts exactly what `run.parse_record` accepts without complaint, and builds the same values:
    probabilities `exp(logprob)` (math.exp, as there), tokens spelling `text`.
    """
    import math

    import pyarrow.compute as pc

    table = table.combine_chunks()
    col = table.column
    if framing != "none" or pc.any(pc.equal(col("framing"), "authors")).as_py():
        return None
    tokens, words, logprobs = (col(name).chunk(0) if col(name).num_chunks else None
                               for name in ("tokens", "top_tokens", "top_logprobs"))
    if tokens is None:
        return []
    steps_w, steps_lp = words.flatten(), logprobs.flatten()
    if (any(col(name).null_count for name in ("question_id", "sample_index", "text", "tokens", "top_tokens", "top_logprobs"))
            or tokens.flatten().null_count or steps_w.null_count or steps_lp.null_count
            or steps_w.flatten().null_count or steps_lp.flatten().null_count):
        return None
    n_tokens = pc.list_value_length(tokens).to_numpy()
    n_steps = pc.list_value_length(words).to_numpy()
    step_len = pc.list_value_length(steps_w).to_numpy()
    if not (np.array_equal(n_tokens, n_steps) and np.array_equal(n_steps, pc.list_value_length(logprobs).to_numpy())
            and np.array_equal(step_len, pc.list_value_length(steps_lp).to_numpy())):
        return None
    values = steps_lp.flatten().to_numpy().astype(np.float64)
    if not (np.isfinite(values).all() and (values <= 1e-6).all()):
        return None
    probs = map(math.exp, np.minimum(values, 0.0).tolist())  # = `exp(lp) if lp < 0 else 1.0`, as parse_record does
    pairs = list(zip(steps_w.flatten().to_pylist(), probs))
    step_bounds = np.concatenate([[0], np.cumsum(step_len)]).tolist()
    steps = [pairs[a:b] for a, b in zip(step_bounds, step_bounds[1:])]  # one (token, prob) list per teacher step
    row_bounds = np.concatenate([[0], np.cumsum(n_tokens)]).tolist()
    flat_tokens = tokens.flatten().to_pylist()
    samples = []
    for r, (qid, index, text) in enumerate(zip(*(col(name).to_pylist() for name in ("question_id", "sample_index", "text")))):
        a, b = row_bounds[r], row_bounds[r + 1]
        row_tokens = flat_tokens[a:b]
        if "".join(row_tokens) != text:
            return None
        samples.append(TeacherSample(f"{qid}#{index}", text, student_text(text, setting), row_tokens, steps[a:b], numbers[r]))
    return samples


class _Rows:
    """Aligned rows of one chunk, column by column: the `schema()` columns with `_row`'s values."""

    def __init__(self, config: AlignConfig, pad: int):
        self.config, self.pad = config, pad
        self.columns: dict[str, list] = {name: [] for name in ("id", "question_id", "sample_index", "status", "reason", "k", *STAT_COLUMNS)}
        self.lengths: list[int | None] = []  # positions per row; None: a rejection (null lists)
        self.tail_lengths: list[int | None] = []
        self.student: list[int] = []
        self.entries: list = []  # every position's target, all rows
        self.tail: list[float] = []
        self.count = 0

    def _key(self, sample_id: str, status: str, reason: str | None, k: int | None) -> None:
        question_id, _, index = sample_id.rpartition("#")
        for name, value in (("id", sample_id), ("question_id", question_id), ("sample_index", int(index)),
                            ("status", status), ("reason", reason), ("k", k)):
            self.columns[name].append(value)
        self.count += 1

    def add(self, sample_id: str, seq: AlignedSequence) -> None:
        self._key(sample_id, "ok", None, self.config.k)
        self.lengths.append(len(seq))
        self.student.extend(seq.student_ids)
        self.entries.extend(seq.entries)
        self.tail_lengths.append(None if seq.tail is None else len(seq.tail))
        if seq.tail is not None:
            self.tail.extend(seq.tail)
        for name, value in sequence_stats(seq).items():
            self.columns[name].append(value)

    def reject(self, sample_id: str, reason: str) -> None:
        self._key(sample_id, "rejected", reason, None)
        self.lengths.append(None)
        self.tail_lengths.append(None)
        for name in STAT_COLUMNS:
            self.columns[name].append(None)

    def batch(self):
        import pyarrow as pa

        types = {f.name: f.type for f in schema()}
        arrays = {name: pa.array(values, types[name]) for name, values in self.columns.items()}
        arrays["mode"] = pa.array([self.config.mode] * self.count, pa.string())
        arrays["student_ids"] = _lists(self.lengths, pa.array(self.student, pa.int32()))
        k = self.config.k
        ids, probs, mask = stored_k(self.entries, k, self.pad)
        per_position = [k] * len(self.entries)
        for name, values in (("topk_ids", ids), ("topk_probs", probs.astype(np.float32)), ("topk_mask", mask)):
            arrays[name] = _lists(self.lengths, _lists(per_position, pa.array(values.ravel())))
        arrays["tail_mass"] = _lists(self.tail_lengths, pa.array(round6(self.tail).astype(np.float32)))
        return pa.RecordBatch.from_arrays([arrays[name] for name in types], schema=schema())


def _lists(lengths: list[int | None], values):
    """A list array of `values` cut into `lengths` (None: a null list)."""
    import pyarrow as pa

    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum([n or 0 for n in lengths], out=offsets[1:])
    mask = pa.array([n is None for n in lengths], pa.bool_()) if None in lengths else None
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=mask)


# ----------------------------------------------------------------------------- driver side


def _done_ids(out: Path) -> set[str]:
    import pyarrow.parquet as pq

    done: set[str] = set()
    for shard in sorted((out / DATA_DIR).glob("part-*.parquet")):
        done.update(pq.ParquetFile(shard).read(columns=["id"]).column("id").to_pylist())
    return done


def _row(result: dict[str, Any]) -> dict[str, Any]:
    question_id, _, index = result["id"].rpartition("#")
    stats = result.get("stats") or {}
    return {
        "id": result["id"], "question_id": question_id, "sample_index": int(index), "mode": result["mode"],
        "status": result["status"], "reason": result.get("reason"), "k": result.get("k"),
        "student_ids": result.get("student_ids"), "topk_ids": result.get("topk_ids"), "topk_probs": result.get("topk_probs"),
        "topk_mask": result.get("topk_mask"), "tail_mass": result.get("tail_mass"),
        **{name: stats.get(name) for name in STAT_COLUMNS},
    }


def run_store_alignment(
    store: str | os.PathLike,
    output: str | os.PathLike,
    config: AlignConfig,
    *,
    setting: str = "corrected",
    select: str = "correct",
    workers: int = 1,
    chunk_size: int = 64,
    shard_rows: int = 4096,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Align the selected samples of a teacher store not yet in `output`; resumable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    store, output = Path(store), Path(output)
    check_choice("--setting", setting, SETTINGS)
    check_choice("--select", select, SELECT)
    check_positive("--workers", workers)
    check_positive("--chunk-size", chunk_size)
    check_positive("shard_rows", shard_rows)
    if not is_teacher_store(store):
        raise DataError(f"{store}: not a teacher store (expected settings.json and data/part-*.parquet; see docs/teacher-store.md)")
    teacher_settings = json.loads((store / "settings.json").read_text(encoding="utf-8")).get("settings", {})
    output.mkdir(parents=True, exist_ok=True)
    claim(output, JOB, {"store": str(store.resolve()), "config": _config_dict(config), "setting": setting, "select": select}, folder=True)
    (output / DATA_DIR).mkdir(exist_ok=True)
    for leftover in (output / DATA_DIR).glob(".part-*.tmp"):
        leftover.unlink()
    done = _done_ids(output)
    shard_no = len(list((output / DATA_DIR).glob("part-*.parquet")))
    buffer: list[Any] = []  # aligned Arrow batches not yet in a shard
    buffered = written = 0

    def flush() -> None:
        nonlocal shard_no, written, buffered
        if not buffered:
            return
        table = pa.Table.from_batches(buffer, schema=schema()).combine_chunks()
        path = output / DATA_DIR / SHARD.format(shard_no)
        with atomic_write(path, "wb") as handle:  # temp file + rename: no partial shard after a crash
            pq.write_table(table, handle, compression="zstd")
        shard_no += 1
        written += buffered
        buffer.clear()
        buffered = 0

    def write(result: tuple[Any, int, tuple | None]) -> None:
        nonlocal buffered
        batch, advanced, error = result
        if batch.num_rows:
            buffer.append(batch)
            buffered += batch.num_rows
        if error is not None:
            flush()
            raise RecordError(store, *error)
        if buffered >= shard_rows:
            flush()
        if progress:
            progress(advanced)

    jobs = ((table, numbers, setting) for table, numbers in _chunks(store, select, done, chunk_size))
    try:
        if workers <= 1:
            _init_worker(config, str(store))
            for job in jobs:
                write(_align_chunk(job))
        else:
            _run_pool(jobs, config, workers, str(store), frozenset(), write, work=_align_chunk)
    finally:
        flush()  # everything aligned so far is kept (a rerun skips it)
    stats = aligned_stats(output)
    stats.update({"written_now": written, "teacher": teacher_settings.get("teacher"), "setting": setting, "select": select})
    with atomic_write(output / "stats.json") as handle:
        json.dump(stats, handle, indent=1, sort_keys=True)
    return stats


def aligned_stats(output: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    stats = AlignmentStats()
    for shard in sorted((output / DATA_DIR).glob("part-*.parquet")):
        for row in pq.ParquetFile(shard).read(columns=["status", *STAT_COLUMNS]).to_pylist():
            if row["status"] != "ok":
                stats.rejected += 1
                continue
            stats.merge(AlignmentStats(1, 0, row["positions"], row["soft"], row["multi_entry"], row["derived"], row["captured_mass"], {}))
    return stats.summary()


def count_selected(store: Path, select: str) -> int:
    import pyarrow.parquet as pq

    total = 0
    for shard in sorted((store / DATA_DIR).glob("part-*.parquet")):
        if select == "all":
            total += pq.ParquetFile(shard).metadata.num_rows
        else:
            total += sum(pq.ParquetFile(shard).read(columns=[select]).column(select).to_pylist())
    return total
