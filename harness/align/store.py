"""Align a teacher store (Parquet, docs/teacher-store.md) into aligned targets (Parquet).

    python -m harness align run runs/teacher/default runs/aligned/default --setting corrected

Input: the teacher store folder the teacher stage writes (read here as files, through the
documented schema: this stage imports no other stage). Selected samples (by default the correct
ones, as the authors aligned only those) go through the same parse/align workers as JSONL input.

Output folder: `data/part-NNNNN.parquet` shards (temp name, then renamed), `settings.json`
(resume refuses other settings) and `stats.json`. One row per selected sample:
    id ("<question_id>#<sample_index>"), question_id, sample_index, mode, status ("ok"|"rejected"),
    reason, k, student_ids [T], topk_ids [T][K], topk_probs [T][K], topk_mask [T][K], tail_mass [T]
    (with --tail), positions, soft, multi_entry, derived, captured_mass.
`student_ids` are the T5 ids of the text the formats will train on: `--setting faithful` aligns
onto the authors' `": "`-deleted text, `corrected` onto the text as sampled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.align.api import AlignConfig
from harness.align.run import _config_dict, _init_worker, _loads, _run_pool, _work
from harness.align.targets import AlignmentStats
from harness.errors import DataError, check_choice, check_positive
from harness.records import RecordError, atomic_write
from harness.resume import claim
from harness.templates import strip_colons

JOB = "align.store"
DATA_DIR = "data"
SHARD = "part-{:05d}.parquet"
SELECT = ("correct", "correct_faithful", "all")
SETTINGS = ("faithful", "corrected")
STORE_COLUMNS = ["question_id", "sample_index", "text", "tokens", "token_logprobs", "top_tokens", "top_logprobs", "framing",
                 "correct", "correct_faithful"]
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


def store_lines(store: Path, setting: str, select: str, done: set[str]) -> Iterator[tuple[int, bytes]]:
    """(row number, JSONL line as `align.run` reads it) for every selected sample not yet done."""
    import pyarrow.parquet as pq

    shards = sorted((store / DATA_DIR).glob("part-*.parquet"))
    if not shards:
        raise DataError(f"{store}: the teacher store holds no shards yet (data/part-*.parquet)")
    number = 0
    for shard in shards:
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=512, columns=STORE_COLUMNS):
            for row in batch.to_pylist():
                number += 1
                if select != "all" and not row[select]:
                    continue
                sample_id = f"{row['question_id']}#{row['sample_index']}"
                if sample_id in done:
                    continue
                text = row["text"]
                tokens = row["tokens"]
                line = {"id": sample_id, "text": text, "student_text": student_text(text, setting), "tokens": tokens,
                        "topk": [[[w, lp] for w, lp in zip(words, lps)] for words, lps in zip(row["top_tokens"], row["top_logprobs"])]}
                if row.get("framing") == "authors":
                    # The authors' 6-entry layout: the sampled token first, then the API's top-5;
                    # `text` is what the content steps spell (the ' step' / '\n' frame dropped).
                    line["token_logprobs"] = row["token_logprobs"]
                    if len(tokens) >= 4 and tokens[0] == " step" and tokens[1] == "\n":
                        line["text"] = "".join(tokens[2:-2]).strip()
                yield number, _dumps(line)


def _done_ids(out: Path) -> set[str]:
    import pyarrow.parquet as pq

    done: set[str] = set()
    for shard in sorted((out / DATA_DIR).glob("part-*.parquet")):
        done.update(pq.read_table(shard, columns=["id"]).column("id").to_pylist())
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
    buffer: list[dict[str, Any]] = []
    written = 0

    def flush() -> None:
        nonlocal shard_no, written
        if not buffer:
            return
        table = pa.Table.from_pylist(buffer, schema=schema())
        path = output / DATA_DIR / SHARD.format(shard_no)
        with atomic_write(path, "wb") as handle:  # temp file + rename: no partial shard after a crash
            pq.write_table(table, handle, compression="zstd")
        shard_no += 1
        written += len(buffer)
        buffer.clear()

    def write(results: list[tuple]) -> None:
        advanced = 0
        for result in results:
            if result[0] == "error":
                flush()
                raise RecordError(store, result[1], result[2], result[3])
            advanced += 1
            if result[0] == "row":
                buffer.append(_row(_loads(result[2])))
        if len(buffer) >= shard_rows:
            flush()
        if progress:
            progress(advanced)

    def chunks() -> Iterator[list[tuple[int, bytes]]]:
        chunk: list[tuple[int, bytes]] = []
        for item in store_lines(store, setting, select, done):
            chunk.append(item)
            if len(chunk) >= chunk_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    try:
        if workers <= 1:
            _init_worker(config, str(store))
            for chunk in chunks():
                write(_work(chunk))
        else:
            _run_pool(chunks(), config, workers, str(store), frozenset(), write)
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
        for row in pq.read_table(shard, columns=["status", *STAT_COLUMNS]).to_pylist():
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
            total += sum(pq.read_table(shard, columns=[select]).column(select).to_pylist())
    return total
