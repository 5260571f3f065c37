"""Align a teacher store into aligned targets: the pipeline's alignment, Parquet in, Parquet out.

    python -m harness align run runs/teacher/default runs/aligned/default --setting corrected

Input: a sealed teacher store (contract `harness.schemas.TEACHER_STORE`, read as files: this stage
imports no other stage). Selected samples (by default the correct ones, as the authors aligned only
those) go to the worker processes as Arrow chunks; workers build the aligner's inputs from the
Arrow lists and return Arrow columns, with no JSON in between. A chunk holding anything unusual
(nulls, ragged top-k, the authors' framing, tokens not spelling the text) is aligned row by row
through `samples.parse_record` instead, so such rows are validated and named exactly.

Output folder (contract `harness.schemas.ALIGNED`): `data/part-NNNNN.parquet` shards, `settings.json`
(resume refuses other settings), `stats.json`, and `manifest.json` sealed last with the content of
the teacher store it came from. One row per selected sample:
    id ("<question_id>#<sample_index>"), question_id, sample_index, mode, status ("ok"|"rejected"),
    reason, k, student_ids [T], topk_ids [T][K], topk_probs [T][K], topk_mask [T][K], tail_mass [T]
    (with --tail), positions, soft, multi_entry, derived, captured_mass.
`student_ids` are the student tokenizer's ids (T5 by default; `AlignConfig.student`) of the text
the formats will train on: `--setting faithful` aligns onto the authors' `": "`-deleted text,
`corrected` onto the text as sampled (`rules.clean_text`). `mode` is the config's mode, or
"identity" for a row built by the identity path (the teacher's tokenizer is the student's:
`identity.py`). settings.json and stats.json record the student tokenizer's fingerprint
(`harness.tokenizers.fingerprint`: name, size, vocab_sha256) and the top-k width k.
"""

from __future__ import annotations

import gc
import json
import math
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from harness import handoff
from harness.errors import DataError, HarnessError, ResumeError, UsageError, check_choice, check_positive
from harness.records import RecordError, atomic_write
from harness.rules import clean_text
from harness.schemas import ALIGNED, ALIGNED_STAT_COLUMNS, TEACHER_STORE

from harness.align import pool
from harness.align.api import DEFAULT_K, AlignConfig, student_fingerprint, teacher_fingerprint
from harness.align.errors import AlignmentError, FramingError
from harness.align.rows import AlignedRows
from harness.align.samples import TeacherSample, parse_record, store_row_sample
from harness.align.targets import AlignmentStats

JOB = "align.store"
SELECT = ("correct", "correct_faithful", "all")
SETTINGS = ("faithful", "corrected")
STORE_COLUMNS = ["question_id", "sample_index", "text", "tokens", "top_tokens", "top_logprobs", "framing", "teacher_tokenizer"]
# + select, token_logprobs (authors' rows), token_ids and top_ids (the identity path)
ID_COLUMNS = ["token_ids", "top_ids"]
IDENTITY_MODE = "identity"  # the `mode` of a row built by the identity path


def is_teacher_store(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "settings.json").is_file() and (path / TEACHER_STORE.shard_dir).is_dir()


def schema():
    return ALIGNED.schema


def student_text(text: str, setting: str) -> str:
    """The text the training formats put in the decoder for this setting."""
    return clean_text(text, setting)


def _chunks(store: Path, manifest: handoff.Manifest, select: str, done: set[str], chunk_size: int,
            extra: list[str] = ()) -> Iterator[tuple[Any, list[int]]]:
    """(Arrow table of `chunk_size` selected samples not yet done, their 1-based store row numbers),
    in store order. The driver only filters and slices columns; workers convert and align."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = sorted(manifest.shards)
    if not names:
        raise DataError(f"{store}: the teacher store holds no shards yet (data/part-*.parquet)")

    def read(name: str, columns: list[str]):
        return handoff.read_table(store / name, columns, contract=TEACHER_STORE, expect=manifest.shards[name])

    done_ids = pa.array(sorted(done), pa.string()) if done else None
    columns = STORE_COLUMNS + list(extra) + ([select] if select != "all" else [])
    if any(pc.any(pc.equal(read(name, ["framing"]).column("framing"), "authors")).as_py() for name in names):
        columns.append("token_logprobs")  # the authors' import: their sampled token's logprob goes first
    parts: list[tuple[Any, Any, Any]] = []  # (batch, positions in it, row numbers) making the next chunk
    count = number = 0
    for name in names:
        for batch in read(name, columns).to_batches(max_chunksize=8192):
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


def _align_sample(aligner, sample: TeacherSample, same: frozenset[str]):
    """(targets, row mode): the identity path for a row whose teacher tokenizer is the student's
    (`same`: those specs) when its tokens are the student's tokenization, else the config's mode."""
    if same and sample.teacher_tokenizer in same:
        student = aligner.student_tokenizer.encode(sample.student_text)
        seq = aligner.align_same_tokenizer(sample, student)
        if seq is not None:
            return seq, IDENTITY_MODE
        return aligner.align(sample.tokens, sample.topk, student), aligner.config.mode
    return aligner.align(sample.tokens, sample.topk, sample.student_text), aligner.config.mode


def _align_chunk(job: tuple[Any, list[int], str, frozenset[str]]) -> tuple[Any, int, tuple | None]:
    """Align one chunk in a worker: (aligned rows as an Arrow batch, rows done, error or None).

    Usual rows take the columnar path (`_samples`): Arrow lists to Python once per chunk, Arrow
    arrays out. A chunk holding anything unusual goes row by row through `_align_rows`.
    `same`: the teacher tokenizer specs whose rows may take the identity path.
    """
    table, numbers, setting, same = job
    aligner = pool.aligner()
    collecting = gc.isenabled()
    gc.disable()  # a chunk makes ~10^5 small objects and no cycles: collections would only cost time
    try:
        samples = _samples(table, numbers, setting, aligner.config.framing, same)
        if samples is None:
            return _align_rows(table, numbers, setting, same)
        rows = AlignedRows(aligner.config, aligner.student_tokenizer.pad_id)
        for sample in samples:
            try:
                seq, mode = _align_sample(aligner, sample, same)
            except FramingError as err:
                rows.reject(sample.id, str(err))
                continue
            except AlignmentError as err:
                return rows.batch(), rows.count, (f"line {sample.line} (id {sample.id!r})", getattr(err, "field", "tokens/text"), str(err))
            rows.add(sample.id, seq, mode)
        return rows.batch(), rows.count, None
    finally:
        if collecting:
            gc.enable()


def _with_ids(sample: TeacherSample, row: dict[str, Any], path, number: int) -> TeacherSample:
    """The sample with the store row's teacher ids and tokenizer spec, their shapes checked."""
    token_ids, top_ids = row.get("token_ids"), row.get("top_ids")
    record = f"line {number} (id {sample.id!r})"
    if token_ids is not None and len(token_ids) != len(sample.tokens):
        raise RecordError(path, record, "token_ids", f"has {len(token_ids)} ids but there are {len(sample.tokens)} tokens")
    if top_ids is not None and (len(top_ids) != len(sample.topk) or any(len(a) != len(b) for a, b in zip(top_ids, sample.topk))):
        raise RecordError(path, record, "top_ids", "does not have the shape of top_tokens")
    return replace(sample, token_ids=token_ids, top_ids=top_ids, teacher_tokenizer=row.get("teacher_tokenizer"))


def _align_rows(table, numbers: list[int], setting: str, same: frozenset[str] = frozenset()) -> tuple[Any, int, tuple | None]:
    """The same chunk row by row: each store row validated by `parse_record` (every problem named:
    file, row, field), then aligned. What the columnar path must equal
    (tests/align/test_align_store_columnar.py)."""
    aligner = pool.aligner()
    path = pool.context()
    rows = AlignedRows(aligner.config, aligner.student_tokenizer.pad_id)
    for number, row in zip(numbers, table.to_pylist()):
        try:
            sample = parse_record(store_row_sample(row, setting), path, number, aligner.config.framing)
            if same and row.get("framing") != "authors":
                sample = _with_ids(sample, row, path, number)
        except RecordError as err:
            return rows.batch(), rows.count, (err.record, err.field, str(err).split(f"field {err.field!r}: ", 1)[-1])
        try:
            seq, mode = _align_sample(aligner, sample, same)
        except FramingError as err:
            rows.reject(sample.id, str(err))
            continue
        except AlignmentError as err:
            return rows.batch(), rows.count, (f"line {number} (id {sample.id!r})", getattr(err, "field", "tokens/text"), str(err))
        rows.add(sample.id, seq, mode)
    return rows.batch(), rows.count, None


def _samples(table, numbers: list[int], setting: str, framing: str, same: frozenset[str] = frozenset()) -> list[TeacherSample] | None:
    """The chunk's TeacherSamples straight from Arrow, or None when a row needs the row-by-row path.

    Accepts exactly what `parse_record` accepts without complaint, and builds the same values:
    probabilities `rules.probability(logprob)`, tokens spelling `text`; with `same`, the teacher's
    ids too (a row whose id lists do not have the shape of its tokens goes row by row).
    """
    import pyarrow.compute as pc

    from harness.rules import first_bad_logprob

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
    if first_bad_logprob(values) is not None:
        return None
    probs = map(math.exp, np.minimum(values, 0.0).tolist())  # = rules.probability, vectorised
    pairs = list(zip(steps_w.flatten().to_pylist(), probs))
    step_bounds = np.concatenate([[0], np.cumsum(step_len)]).tolist()
    steps = [pairs[a:b] for a, b in zip(step_bounds, step_bounds[1:])]  # one (token, prob) list per teacher step
    row_bounds = np.concatenate([[0], np.cumsum(n_tokens)]).tolist()
    flat_tokens = tokens.flatten().to_pylist()
    specs = col("teacher_tokenizer").to_pylist() if "teacher_tokenizer" in table.column_names else [None] * table.num_rows
    token_ids = top_ids = None
    if same and "top_ids" in table.column_names:
        token_ids, top_ids = col("token_ids").to_pylist(), col("top_ids").to_pylist()
    samples = []
    for r, (qid, index, text) in enumerate(zip(*(col(name).to_pylist() for name in ("question_id", "sample_index", "text")))):
        a, b = row_bounds[r], row_bounds[r + 1]
        row_tokens = flat_tokens[a:b]
        if "".join(row_tokens) != text:
            return None
        row_steps = steps[a:b]
        ids = top = None
        if token_ids is not None:
            ids, top = token_ids[r], top_ids[r]
            if ((ids is not None and len(ids) != len(row_tokens))
                    or (top is not None and (len(top) != len(row_steps) or any(len(x) != len(y) for x, y in zip(top, row_steps))))):
                return None
        samples.append(TeacherSample(f"{qid}#{index}", text, student_text(text, setting), row_tokens, row_steps, numbers[r],
                                     ids, top, specs[r]))
    return samples


# ----------------------------------------------------------------------------- driver side


def _done_ids(output: handoff.OutputFolder) -> set[str]:
    done: set[str] = set()
    for name in output.shard_names:
        table = handoff.read_table(output.root / name, ["id"], contract=ALIGNED, expect=output.manifest.shards[name])
        done.update(table.column("id").to_pylist())
    return done


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

    store, output = Path(store), Path(output)
    check_choice("--setting", setting, SETTINGS)
    check_choice("--select", select, SELECT)
    check_positive("--workers", workers)
    check_positive("--chunk-size", chunk_size)
    check_positive("shard_rows", shard_rows)
    if not is_teacher_store(store):
        raise DataError(f"{store}: not a teacher store (expected settings.json and data/part-*.parquet; see docs/teacher-store.md)")
    manifest = handoff.verify(store, TEACHER_STORE, what="teacher store")
    source = handoff.inputs_of(store, manifest)
    teacher_settings = json.loads((store / "settings.json").read_text(encoding="utf-8")).get("settings", {})
    if config.k is None:
        config = config.with_k(default_k(store, manifest))
    student = student_fingerprint(config.student)
    same, teachers = same_tokenizer(store, manifest, config, student)
    with handoff.OutputFolder(output, ALIGNED, option="output") as out:
        out.open(JOB, {"store": str(store.resolve()), "config": asdict(config), "setting": setting, "select": select,
                       "student": student})
        out.keep_shards()
        recorded = out.manifest.inputs.get("teacher-store")
        if out.shard_names and recorded and not handoff.grown_from(recorded, source):
            raise ResumeError(f"{output}: started from other teacher data than {store} holds now (a shard it aligned was replaced); "
                              f"delete {output} or align into another folder")
        done = _done_ids(out)
        out.manifest.inputs = {"teacher-store": source}
        buffer: list[Any] = []  # aligned Arrow batches not yet in a shard
        buffered = written = 0

        def flush() -> None:
            nonlocal written, buffered
            if not buffered:
                return
            out.write_shard(pa.Table.from_batches(buffer, schema=ALIGNED.schema).combine_chunks())
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

        extra = ID_COLUMNS if same else []
        jobs = ((table, numbers, setting, same) for table, numbers in _chunks(store, manifest, select, done, chunk_size, extra))
        try:
            pool.run_pool(jobs, config, workers, write, _align_chunk, context=str(store))
        finally:
            flush()  # everything aligned so far is kept (a rerun skips it)
        stats = aligned_stats(out)
        stats.update({"written_now": written, "teacher": teacher_settings.get("teacher"), "setting": setting, "select": select,
                      "student": student, "k": config.k, "teacher_tokenizers": teachers})
        with atomic_write(output / "stats.json") as handle:
            json.dump(stats, handle, indent=1, sort_keys=True)
        out.seal()
    return stats


def aligned_stats(out: handoff.OutputFolder) -> dict[str, Any]:
    stats = AlignmentStats()
    modes: dict[str, int] = {}
    for name in out.shard_names:
        table = handoff.read_table(out.root / name, ["status", "mode", *ALIGNED_STAT_COLUMNS], contract=ALIGNED, expect=out.manifest.shards[name])
        for row in table.to_pylist():
            if row["status"] != "ok":
                stats.rejected += 1
                continue
            modes[row["mode"]] = modes.get(row["mode"], 0) + 1
            stats.merge(AlignmentStats(1, 0, row["positions"], row["soft"], row["multi_entry"], row["derived"], row["captured_mass"], {}))
    return {**stats.summary(), "rows_by_mode": dict(sorted(modes.items()))}


# ----------------------------------------------------------------------------- store facts


def default_k(store: str | os.PathLike, manifest: handoff.Manifest | None = None) -> int:
    """The top-k width `align run` uses without `--k`: the store's `sampling.top_k + 1` when every
    row keeps its position's own token as an extra entry (`top_has_token`, the server teacher),
    so that token survives alignment; else 5."""
    store = Path(store)
    manifest = manifest or handoff.verify(store, TEACHER_STORE, what="teacher store")
    flags: set = set()
    for name in sorted(manifest.shards):
        column = handoff.read_table(store / name, ["top_has_token"], contract=TEACHER_STORE, expect=manifest.shards[name]).column("top_has_token")
        flags.update(column.unique().to_pylist())
    if flags != {True}:
        return DEFAULT_K
    sampling = _settings(store).get("sampling") or {}
    top_k = sampling.get("top_k")
    if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k > 0:
        return top_k + 1
    widths = [max(handoff.read_table(store / name, ["top_tokens"], contract=TEACHER_STORE, expect=manifest.shards[name])
                  .column("top_tokens").combine_chunks().value_lengths().to_numpy(zero_copy_only=False), default=0)
              for name in sorted(manifest.shards)]
    return max([*widths, DEFAULT_K])  # no sampling.top_k recorded: the widest step kept


def _settings(store: Path) -> dict[str, Any]:
    try:
        return json.loads((store / "settings.json").read_text(encoding="utf-8")).get("settings", {}) or {}
    except (OSError, ValueError) as err:
        raise DataError(f"{store / 'settings.json'}: not readable JSON ({err})") from None


def check_student(store: str | os.PathLike, config: AlignConfig) -> None:
    """The cheap checks of the student before any work: its tokenizer loads, and with
    `identity="require"` the store's teacher tokenizer is the same (one line otherwise)."""
    student = student_fingerprint(config.student)
    if config.identity == "require":
        store = Path(store)
        same_tokenizer(store, handoff.verify(store, TEACHER_STORE, what="teacher store"), config, student)


def same_tokenizer(store: Path, manifest: handoff.Manifest, config: AlignConfig, student: dict[str, Any]) -> tuple[frozenset[str], dict[str, Any]]:
    """(the store's teacher tokenizer specs whose rows take the identity path, what was found per
    spec). Only in exact mode with `identity` auto/require; `require` refuses a spec that differs."""
    specs: set[str] = set()
    for name in sorted(manifest.shards):
        column = handoff.read_table(store / name, ["teacher_tokenizer"], contract=TEACHER_STORE, expect=manifest.shards[name]).column("teacher_tokenizer")
        specs.update(s for s in column.unique().to_pylist() if s is not None)
    found: dict[str, Any] = {}
    if config.mode != "exact" or config.identity == "off":
        return frozenset(), {spec: {"checked": False} for spec in sorted(specs)}
    for spec in sorted(specs):
        try:
            theirs = teacher_fingerprint(spec)
        except (HarnessError, OSError, ImportError) as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            found[spec] = {"checked": False, "reason": reason}
            if config.identity == "require":
                raise UsageError(f"--identity require: the teacher tokenizer {spec!r} of {store} cannot be loaded to compare "
                                 f"it with the student's ({reason})") from None
            continue
        found[spec] = {"checked": True, "vocab_sha256": theirs["vocab_sha256"], "size": theirs["size"],
                       "same_as_student": theirs["vocab_sha256"] == student["vocab_sha256"]}
        if config.identity == "require" and not found[spec]["same_as_student"]:
            raise UsageError(f"--identity require: the teacher tokenizer {spec} of {store} (vocabulary sha256 {theirs['vocab_sha256'][:12]}, "
                             f"{theirs['size']} ids) is not the student's {student['name']} ({student['vocab_sha256'][:12]}, "
                             f"{student['size']} ids); use --identity auto to align by text")
    if config.identity == "require" and not specs:
        raise UsageError(f"--identity require: {store} holds no rows to compare tokenizers on")
    return frozenset(s for s, f in found.items() if f.get("same_as_student")), found



def count_selected(store: Path, select: str) -> int:
    manifest = handoff.verify(store, TEACHER_STORE, what="teacher store")
    if select == "all":
        return manifest.rows
    return sum(sum(handoff.read_table(store / name, [select], contract=TEACHER_STORE, expect=manifest.shards[name])
                   .column(select).to_pylist())
               for name in sorted(manifest.shards))
