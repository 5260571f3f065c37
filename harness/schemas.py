"""The files stages hand to each other: Arrow schemas, versions and shard layouts, in one place.

    teacher store   teacher -> align, formats   STORE/data/part-NNNNN.parquet      TEACHER_STORE
    aligned         align -> formats            ALIGNED/data/part-NNNNN.parquet    ALIGNED
    formats         formats -> train            FORMATS/{format}-NNNNN.parquet     FORMATS

Every output folder also holds `settings.json` (what made it, `harness.resume`), `manifest.json`
(its shards with sizes and sha256, written last: `harness.handoff`) and `stats.json`.
Changing a schema is one edit here plus a version bump: every reader checks the version stored in
each shard's metadata and refuses another one with a line naming the file and both versions.
Column-by-column documentation: docs/teacher-store.md, docs/alignment.md, docs/formats.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from harness.errors import DataError

SCHEMA_KEY = b"harness.schema"
VERSION_KEY = b"harness.schema_version"


@dataclass(frozen=True)
class Contract:
    """One hand-off file type: its name, version, columns and where its shards live."""

    name: str  # "teacher-store", "aligned", "formats"
    version: int
    fields: tuple  # pa.Field, in column order
    shard_dir: str  # "data" (under the output folder) or "" (the folder itself)
    shard_prefix: str  # "part" or the format name
    produced_by: str  # the command that writes it, for messages

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(list(self.fields), metadata={SCHEMA_KEY: self.name.encode(), VERSION_KEY: str(self.version).encode()})

    @property
    def label(self) -> str:
        return self.name.replace("-", " ")

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def shard_name(self, number: int, prefix: str | None = None) -> str:
        return f"{prefix or self.shard_prefix}-{number:05d}.parquet"

    def shard_folder(self, root: str | Path) -> Path:
        return Path(root) / self.shard_dir if self.shard_dir else Path(root)

    def shard_pattern(self, prefix: str | None = None) -> re.Pattern:
        return re.compile(re.escape(prefix or self.shard_prefix) + r"-(\d{5,})\.parquet")

    def check(self, path: str | Path, schema: pa.Schema) -> None:
        """Refuse a shard written under another contract or version, or with other columns."""
        meta = schema.metadata or {}
        name, version = meta.get(SCHEMA_KEY, b"").decode(), meta.get(VERSION_KEY, b"").decode()
        if not version:
            raise DataError(f"{path}: no {self.name} schema version in the file; it was not written by this harness "
                            f"(v{self.version}); rebuild it with `{self.produced_by}`")
        if name != self.name:
            raise DataError(f"{path}: a {name or 'unknown'} file, not {self.name}; give the output of `{self.produced_by}`")
        if version != str(self.version):
            raise DataError(f"{path}: {self.name} schema v{version}, this harness reads v{self.version}; "
                            f"rebuild it with `{self.produced_by}`")
        if not schema.remove_metadata().equals(self.schema.remove_metadata()):
            raise DataError(f"{path}: schema differs from the {self.label} schema v{self.version}: {'; '.join(self.differences(schema)[:4])}")

    def differences(self, schema: pa.Schema) -> list[str]:
        """What differs between a file's columns and the contract's, column by column."""
        ours = {f.name: f for f in self.fields}
        theirs = {f.name: f for f in schema}
        out = [f"column {name!r} missing" for name in ours if name not in theirs]
        out += [f"column {name!r} not in the schema" for name in theirs if name not in ours]
        for name in ours.keys() & theirs.keys():
            a, b = ours[name], theirs[name]
            if not a.type.equals(b.type):
                out.append(f"{name}: {b.type} (expected {a.type})")
            elif a.nullable != b.nullable:
                out.append(f"{name}: {'nullable' if b.nullable else 'not nullable'} (expected {'nullable' if a.nullable else 'not nullable'})")
        if not out and schema.names != list(ours):
            out.append(f"column order {schema.names} (expected {list(ours)})")
        return out


def _fields(spec, nullable=()) -> tuple:
    return tuple(pa.field(name, type_, nullable=name in nullable) for name, type_ in spec)


def _nested(t):
    return pa.list_(pa.list_(t))  # [T][K]


# --- teacher store: one row per teacher sample (docs/teacher-store.md) ------------------------------

TEACHER_STORE = Contract(
    name="teacher-store",
    version=2,
    fields=_fields([
        ("question_id", pa.string()),
        ("sample_index", pa.int32()),
        ("prompt_id", pa.string()),
        ("question", pa.string()),
        ("gold", pa.string()),
        ("text", pa.string()),
        ("raw_text", pa.string()),
        ("teacher_model", pa.string()),
        ("teacher_tokenizer", pa.string()),
        ("targets", pa.string()),
        ("framing", pa.string()),
        ("tokens", pa.list_(pa.string())),
        ("token_ids", pa.list_(pa.int32())),
        ("token_logprobs", pa.list_(pa.float32())),
        ("top_tokens", _nested(pa.string())),
        ("top_ids", _nested(pa.int32())),
        ("top_logprobs", _nested(pa.float32())),
        ("finish_reason", pa.string()),
        ("answer", pa.string()),
        ("correct", pa.bool_()),
        ("correct_faithful", pa.bool_()),
        ("top_has_token", pa.bool_()),  # every top list holds its position's own token (null: not said)
    ], nullable={"raw_text", "token_ids", "top_ids", "finish_reason", "answer", "top_has_token"}),
    shard_dir="data",
    shard_prefix="part",
    produced_by="harness teacher sample",
)
TEACHER_TARGETS = ("topk", "sampled", "onehot")
TEACHER_FRAMINGS = ("none", "authors")

# --- aligned targets: one row per selected teacher sample (docs/alignment.md) ----------------------

ALIGNED = Contract(
    name="aligned",
    version=2,
    fields=_fields([
        ("id", pa.string()), ("question_id", pa.string()), ("sample_index", pa.int32()), ("mode", pa.string()),
        ("status", pa.string()), ("reason", pa.string()), ("k", pa.int32()),
        ("student_ids", pa.list_(pa.int32())), ("topk_ids", _nested(pa.int32())),
        ("topk_probs", _nested(pa.float32())), ("topk_mask", _nested(pa.int8())),
        ("tail_mass", pa.list_(pa.float32())),
        ("positions", pa.int32()), ("soft", pa.int32()), ("multi_entry", pa.int32()), ("derived", pa.int32()),
        ("captured_mass", pa.float64()),
    ], nullable={"id", "question_id", "sample_index", "mode", "status", "reason", "k", "student_ids", "topk_ids", "topk_probs",
                 "topk_mask", "tail_mass", "positions", "soft", "multi_entry", "derived", "captured_mass"}),
    shard_dir="data",
    shard_prefix="part",
    produced_by="harness align run",
)
ALIGNED_STAT_COLUMNS = ("positions", "soft", "multi_entry", "derived", "captured_mass")
TARGET_COLUMNS = ("student_ids", "topk_ids", "topk_probs", "topk_mask")  # aligned -> formats -> train

# --- training formats: one row per training record (docs/formats.md) ------------------------------

FORMATS = Contract(
    name="formats",
    version=2,
    fields=_fields([
        ("format", pa.string()),
        ("setting", pa.string()),
        ("question_id", pa.string()),
        ("sample_index", pa.int32()),
        ("encoder_input", pa.string()),
        ("decoder_target", pa.string()),
        ("gold_answer", pa.string()),
        ("demo_ids", pa.list_(pa.string())),
        ("student_ids", pa.list_(pa.int32())),  # null for answer-only records
        ("topk_ids", _nested(pa.int32())),
        ("topk_probs", _nested(pa.float32())),
        ("topk_mask", _nested(pa.int8())),
        ("teacher_model", pa.string()),
        ("seed", pa.int64()),
    ], nullable={"format", "setting", "question_id", "sample_index", "encoder_input", "decoder_target", "gold_answer", "demo_ids",
                 "student_ids", "topk_ids", "topk_probs", "topk_mask", "teacher_model", "seed"}),
    shard_dir="",
    shard_prefix="",  # one series of shards per format: {format}-NNNNN.parquet
    produced_by="harness formats build",
)

CONTRACTS = {c.name: c for c in (TEACHER_STORE, ALIGNED, FORMATS)}
