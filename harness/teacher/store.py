"""The teacher store: one folder of Parquet shards, one row per teacher sample, resumable.

    with TeacherStore.open("runs/teacher/codex", job="teacher-sample", settings={"teacher": ..., "sampling": ...}) as store:
        todo = [q for q in questions if (q.id, 0) not in store.done_keys()]
        store.write_shard([record_from_completion(c, example, k, ...) for k, c in enumerate(completions)])
        store.write_stats()                           # stats.json: accuracies, token counts, bytes/token
    # leaving the block without an error seals the store (manifest.json complete)
    table = TeacherStore.load("runs/teacher/codex").read(["question_id", "text", "correct"])

Layout (the contract `harness.schemas.TEACHER_STORE`; docs/teacher-store.md has every column):
    <root>/settings.json            resume.claim: the job and settings that made the store
    <root>/data/part-00000.parquet  complete shards, written whole (temp name, fsync, rename)
    <root>/manifest.json            every shard's size and sha256; `complete` once a run finished
    <root>/stats.json               written by write_stats()
    <root>/.lock                    held by the one writer (flock)

Rows are keyed by (question_id, sample_index); a key is never written twice. A crash leaves at
most a hidden temp file, which the next writer removes; every visible shard is complete, and a
damaged one is named when the store is reopened or read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from harness import handoff
from harness.errors import DataError, UsageError
from harness.records import atomic_write
from harness.schemas import TEACHER_STORE

from harness.teacher.record import COLUMNS, TeacherRecord
from harness.teacher.stats import compute_stats

DATA_DIR = TEACHER_STORE.shard_dir
STATS_NAME = "stats.json"

# Measured on a realistic top-5 store (docs/teacher-store.md, "Size"): zstd with dictionary
# encoding is the smallest of the options tried at about the speed of snappy; byte-stream-split
# floats and higher zstd levels saved little and cost write time.
WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": ["question_id", "sample_index"],
}


class DuplicateKeyError(DataError):
    """A (question_id, sample_index) key is already in the store (or twice in one shard)."""


def _records_table(records: Sequence[TeacherRecord]) -> pa.Table:
    schema = TEACHER_STORE.schema
    columns = {name: [getattr(r, name) for r in records] for name in COLUMNS}
    return pa.Table.from_arrays([pa.array(columns[f.name], type=f.type) for f in schema], schema=schema)


class TeacherStore:
    """A store folder. `open()` for the job that writes it, `load()` to read a finished one."""

    def __init__(self, root: str | os.PathLike, settings: dict[str, Any] | None, output: handoff.OutputFolder | None = None,
                 manifest: handoff.Manifest | None = None):
        self.root = Path(root)
        self.data = self.root / DATA_DIR
        self.settings = settings
        self.output = output
        self.manifest = manifest if output is None else output.manifest
        self._keys: dict[str, list[tuple[str, int]]] = {}
        self._done: dict[tuple[str, int], str] | None = None

    @property
    def writable(self) -> bool:
        return self.output is not None

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, root: str | os.PathLike, job: str, settings: dict[str, Any]) -> "TeacherStore":
        """Create or resume a store for writing: the writer lock is taken, `resume.claim` checks
        `settings`, temp files a crashed writer left are removed, and every stored shard is checked
        against the manifest (a damaged shard is named, not read as data)."""
        missing = [key for key in ("teacher", "sampling") if key not in settings]
        if missing:
            raise UsageError(f"teacher store settings must include {', '.join(missing)} (the teacher and sampling settings that made the data)")
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise UsageError(f"teacher store {root}: exists and is not a folder")
        output = handoff.OutputFolder(root, TEACHER_STORE)
        try:
            output.open(job, settings)
            output.keep_shards()
        except BaseException:
            output.close()
            raise
        return cls(root, settings, output)

    @classmethod
    def load(cls, root: str | os.PathLike, *, hashes: bool = False, complete: bool = False) -> "TeacherStore":
        """Open a store read-only (no lock, nothing removed): every shard it lists must be there with
        its size; `complete=True` also requires a finished run (what the downstream stages require)."""
        root = Path(root)
        path = root / "settings.json"
        if not path.is_file():
            raise DataError(f"{root}: not a teacher store (no settings.json)")
        try:
            settings = json.loads(path.read_text(encoding="utf-8")).get("settings")
        except ValueError as err:
            raise DataError(f"{path}: not valid JSON ({err})") from None
        manifest = handoff.verify(root, TEACHER_STORE, hashes=hashes, what="teacher store", complete=complete)
        return cls(root, settings, manifest=manifest)

    def close(self) -> None:
        if self.output is not None:
            self.output.close()

    def seal(self) -> None:
        """Mark the store finished (readers accept it from now on)."""
        self._require_writer()
        self.output.seal()

    def __enter__(self) -> "TeacherStore":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if exc_type is None and self.output is not None and self.output._lock_fd is not None:
                self.output.seal()  # the writer finished without an error: the store is complete
        finally:
            self.close()

    def _require_writer(self) -> None:
        if self.output is None or self.output._lock_fd is None:
            raise UsageError(f"teacher store {self.root} was not opened for writing (use TeacherStore.open)")

    # --- shards -----------------------------------------------------------------------------

    def shards(self) -> list[Path]:
        """Complete shards, in write order."""
        return [self.root / name for name in sorted(self.manifest.shards)] if self.manifest else []

    def _table(self, name: str, columns: Sequence[str] | None) -> pa.Table:
        entry = self.manifest.shards[name]
        return handoff.read_table(self.root / name, columns, contract=TEACHER_STORE, expect=entry)

    def _shard_keys(self, name: str) -> list[tuple[str, int]]:
        keys = self._keys.get(name)
        if keys is None:
            table = self._table(name, ["question_id", "sample_index"])
            keys = list(zip(table.column(0).to_pylist(), table.column(1).to_pylist()))
            self._keys[name] = keys
        return keys

    def _done_map(self) -> dict[tuple[str, int], str]:
        if self._done is None:
            done: dict[tuple[str, int], str] = {}
            for name in sorted(self.manifest.shards):
                for key in self._shard_keys(name):
                    if key in done:
                        raise DuplicateKeyError(f"{self.root}: key {key} is in both {Path(done[key]).name} and {Path(name).name}; remove one of the shards")
                    done[key] = name
            self._done = done
        return self._done

    def done_keys(self) -> set[tuple[str, int]]:
        """(question_id, sample_index) of every row in a complete shard."""
        return set(self._done_map())

    def write_shard(self, records: Iterable[TeacherRecord]) -> Path | None:
        """Write `records` as the next shard, all or nothing; returns its path (None if empty).

        Raises DataError for an invalid record and DuplicateKeyError for a key already stored
        (or repeated in `records`); nothing is written then.
        """
        self._require_writer()
        records = list(records)
        if not records:
            return None
        done = self._done_map()
        seen: set[tuple[str, int]] = set()
        for record in records:
            problem = record.problem() if isinstance(record, TeacherRecord) else ("<record>", f"not a TeacherRecord: {type(record).__name__}")
            where = f"record {getattr(record, 'key', '?')}"
            if problem:
                raise DataError(f"teacher store {self.root}: {where}: field {problem[0]!r}: {problem[1]}")
            if record.key in done:
                raise DuplicateKeyError(f"teacher store {self.root}: {where} is already stored (in {Path(done[record.key]).name}); keys are never written twice")
            if record.key in seen:
                raise DuplicateKeyError(f"teacher store {self.root}: {where} appears twice in one shard")
            seen.add(record.key)
        path = self.output.write_shard(_records_table(records), **WRITE_OPTIONS)
        name = str(path.relative_to(self.root))
        keys = [r.key for r in records]
        self._keys[name] = keys
        for key in keys:
            done[key] = name
        return path

    # --- reading ----------------------------------------------------------------------------

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """All complete shards as one table (in write order), optionally only some columns."""
        if columns is not None:
            unknown = [c for c in columns if c not in COLUMNS]
            if unknown:
                raise UsageError(f"unknown teacher store column(s) {', '.join(unknown)}; columns: {', '.join(COLUMNS)}")
        tables = [self._table(name, columns) for name in sorted(self.manifest.shards)] if self.manifest else []
        if not tables:
            schema = TEACHER_STORE.schema
            schema = schema if columns is None else pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)
            return schema.empty_table()
        return pa.concat_tables(tables)

    def iter_records(self, batch_size: int = 1024) -> Iterator[TeacherRecord]:
        for name in sorted(self.manifest.shards):
            for batch in self._table(name, None).to_batches(max_chunksize=batch_size):
                for row in batch.to_pylist():
                    yield TeacherRecord(**row)

    def __len__(self) -> int:
        return self.manifest.rows if self.manifest else 0

    def bytes_on_disk(self) -> int:
        return sum(s["bytes"] for s in self.manifest.shards.values()) if self.manifest else 0

    # --- statistics -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Teacher accuracy and size, under both answer rules (see `compute_stats`)."""
        table = self.read(["question_id", "sample_index", "text", "answer", "correct", "correct_faithful", "token_logprobs"])
        tokens = int(pc.sum(pc.list_value_length(table.column("token_logprobs"))).as_py() or 0) if len(table) else 0
        table = table.drop_columns(["token_logprobs"])
        out = compute_stats(table.to_pylist())
        size = self.bytes_on_disk()
        out.update({"tokens": tokens, "tokens_per_sample": round(tokens / max(1, out["samples"]["total"]), 2),
                    "shards": len(self.shards()), "bytes_on_disk": size,
                    "bytes_per_token": round(size / tokens, 3) if tokens else None})
        return out

    def write_stats(self) -> Path:
        stats = self.stats()
        path = self.root / STATS_NAME
        with atomic_write(path) as handle:
            json.dump(stats, handle, indent=1, sort_keys=True)
            handle.write("\n")
        return path
