"""The teacher store: one folder of Parquet shards, one row per teacher sample, resumable.

    store = TeacherStore.open("runs/teacher/codex", job="teacher-sample", settings={"teacher": ..., "sampling": ...})
    todo = [q for q in questions if (q.id, 0) not in store.done_keys()]
    store.write_shard([record_from_completion(c, example, k, ...) for k, c in enumerate(completions)])
    store.write_stats()                               # stats.json: accuracies, token counts, bytes/token
    table = TeacherStore.load("runs/teacher/codex").read(["question_id", "text", "correct"])

Layout (docs/teacher-store.md has the column-by-column schema):
    <root>/settings.json            resume.claim: the job and settings that made the store
    <root>/data/part-00000.parquet  complete shards, written whole (temp name, fsync, rename)
    <root>/stats.json               written by write_stats()
    <root>/.lock                    held by the one writer (flock)

Rows are keyed by (question_id, sample_index); a key is never written twice. A crash leaves at
most a hidden temp file, which the next writer removes; every visible shard is complete.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness import answers
from harness.errors import DataError, UsageError
from harness.records import Example, atomic_write, current_umask
from harness.resume import claim

from harness.teacher.base import Completion

SCHEMA_VERSION = "2"  # 2: `top_has_token`
TARGETS = ("topk", "sampled", "onehot")
FRAMINGS = ("none", "authors")
DATA_DIR = "data"
STATS_NAME = "stats.json"
LOCK_NAME = ".lock"
SHARD_PREFIX = "part-"
SHARD_SUFFIX = ".parquet"
_SHARD_NAME = re.compile(re.escape(SHARD_PREFIX) + r"(\d+)" + re.escape(SHARD_SUFFIX))
# Log-probability stored for a probability the source rounded to 0.0 (the authors' 4-decimal
# pickles): exp(-1e4) == 0.0 exactly in float32 and float64, so the 0.0 comes back unchanged.
ZERO_PROB_LOGPROB = -1e4

_NULLABLE = {"raw_text", "token_ids", "top_ids", "finish_reason", "answer", "top_has_token"}
SCHEMA = pa.schema(
    [
        pa.field(name, type_, nullable=name in _NULLABLE)
        for name, type_ in [
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
            ("top_tokens", pa.list_(pa.list_(pa.string()))),
            ("top_ids", pa.list_(pa.list_(pa.int32()))),
            ("top_logprobs", pa.list_(pa.list_(pa.float32()))),
            ("finish_reason", pa.string()),
            ("answer", pa.string()),
            ("correct", pa.bool_()),
            ("correct_faithful", pa.bool_()),
            ("top_has_token", pa.bool_()),
        ]
    ],
    metadata={"harness.teacher_store.schema_version": SCHEMA_VERSION},
)

# Measured on a realistic top-5 store (docs/teacher-store.md, "Size"): zstd with dictionary
# encoding is the smallest of the options tried at about the speed of snappy; byte-stream-split
# floats and higher zstd levels saved little and cost write time.
WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": ["question_id", "sample_index"],
}


@dataclass(frozen=True)
class TeacherRecord:
    """One row of the store (field order = column order; see SCHEMA and docs/teacher-store.md)."""

    question_id: str
    sample_index: int
    prompt_id: str
    question: str
    gold: str
    text: str
    raw_text: str | None
    teacher_model: str
    teacher_tokenizer: str
    targets: str
    framing: str
    tokens: list[str]
    token_ids: list[int] | None
    token_logprobs: list[float]
    top_tokens: list[list[str]]
    top_ids: list[list[int]] | None
    top_logprobs: list[list[float]]
    finish_reason: str | None
    answer: str | None
    correct: bool
    correct_faithful: bool
    top_has_token: bool | None = None  # every top list holds its position's own token (None: not said)

    @property
    def key(self) -> tuple[str, int]:
        return (self.question_id, self.sample_index)

    def problem(self) -> tuple[str, str] | None:
        """(field, what is wrong), or None for a valid record."""
        for name in ("question_id", "prompt_id", "question", "gold", "text", "teacher_model", "teacher_tokenizer"):
            if not isinstance(getattr(self, name), str):
                return name, "missing or not a string"
        if self.question_id == "":
            return "question_id", "empty"
        if isinstance(self.sample_index, bool) or not isinstance(self.sample_index, int) or not 0 <= self.sample_index < 2**31:
            return "sample_index", f"{self.sample_index!r} is not an integer in [0, 2^31)"
        if self.top_has_token is not None and not isinstance(self.top_has_token, bool):
            return "top_has_token", f"{self.top_has_token!r} is not true, false or null"
        if self.targets not in TARGETS:
            return "targets", f"{self.targets!r} is not one of {', '.join(TARGETS)}"
        if self.framing not in FRAMINGS:
            return "framing", f"{self.framing!r} is not one of {', '.join(FRAMINGS)}"
        n = len(self.tokens)
        for name in ("token_logprobs", "top_tokens", "top_logprobs"):
            if len(getattr(self, name)) != n:
                return name, f"has {len(getattr(self, name))} positions but there are {n} tokens"
        if self.framing == "none" and "".join(self.tokens) != self.text:
            return "tokens", "do not spell `text` (framing 'none' requires \"\".join(tokens) == text)"
        if self.token_ids is not None and len(self.token_ids) != n:
            return "token_ids", f"has {len(self.token_ids)} ids but there are {n} tokens"
        if self.top_ids is not None and (len(self.top_ids) != n or any(len(a) != len(b) for a, b in zip(self.top_ids, self.top_tokens))):
            return "top_ids", "does not have the shape of top_tokens"
        if list(map(len, self.top_tokens)) != list(map(len, self.top_logprobs)):
            i = next(i for i, (a, b) in enumerate(zip(self.top_tokens, self.top_logprobs)) if len(a) != len(b))
            return "top_logprobs", f"position {i}: {len(self.top_tokens[i])} top tokens but {len(self.top_logprobs[i])} logprobs"
        if not _all_logprobs(self.token_logprobs):
            bad = _first_bad_logprob(self.token_logprobs)
            if bad is not None:
                return "token_logprobs", f"position {bad}: {self.token_logprobs[bad]!r} is not a finite log-probability <= 0"
        if not _all_logprobs([x for row in self.top_logprobs for x in row]):
            for i, lps in enumerate(self.top_logprobs):
                bad = _first_bad_logprob(lps)
                if bad is not None:
                    return "top_logprobs", f"position {i} entry {bad}: {lps[bad]!r} is not a finite log-probability <= 0"
        return None


def _all_logprobs(values: list[float]) -> bool:
    """Every value a finite number <= 0 (checked at C speed over the whole list)."""
    return (set(map(type, values)) <= {float, int} and all(map(math.isfinite, values))
            and (not values or max(values) <= 1e-6))


def _first_bad_logprob(values: Sequence[float]) -> int | None:
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v > 1e-6:
            return i
    return None


COLUMNS = tuple(f.name for f in fields(TeacherRecord))
assert COLUMNS == tuple(SCHEMA.names), "TeacherRecord fields and SCHEMA columns must match"


def grade(text: str, example: Example) -> tuple[str | None, bool, bool]:
    """(extracted answer, corrected-rule verdict, authors'-rule verdict) of one completion.

    The answer is the corrected extraction (`answers.extract_number`) as a canonical number
    string; for a gold that is not a number, the extracted text answer.
    """
    if example.number is not None or answers.parse_gold_number(example.gold_raw) is not None:
        value = answers.extract_number(text)
        answer = None if value is None else answers.canonical_number(value)
    else:
        answer = answers.extract_text_answer(text) or None
    correct = answers.corrected_math_correct(text, example.number, example.answer)
    return answer, correct, answers.authors_math_correct(text, example.gold_raw)


def record_from_completion(
    completion: Completion,
    example: Example,
    sample_index: int,
    *,
    prompt_id: str,
    teacher_model: str,
    teacher_tokenizer: str,
    keep_tokens: int | None = None,
) -> TeacherRecord:
    """The store row for one completion of `example`'s question.

    `keep_tokens` cuts the sample to its first n tokens (e.g. at the end of the answer line):
    `text` is then what they spell and `raw_text` the full completion. Answer and both
    correctness labels are computed on the kept text.
    """
    n = len(completion.tokens) if keep_tokens is None else max(0, min(keep_tokens, len(completion.tokens)))
    tokens = list(completion.tokens[:n])
    text = "".join(tokens)
    cut = n < len(completion.tokens) or text != completion.text
    answer, correct, faithful = grade(text, example)
    return TeacherRecord(
        question_id=example.id,
        sample_index=sample_index,
        prompt_id=prompt_id,
        question=example.question,
        gold=example.answer,
        text=text,
        raw_text=completion.text if cut else None,
        teacher_model=teacher_model,
        teacher_tokenizer=teacher_tokenizer,
        targets=completion.targets,
        framing="none",
        tokens=tokens,
        token_ids=None if completion.token_ids is None else list(completion.token_ids[:n]),
        token_logprobs=list(completion.token_logprobs[:n]),
        top_tokens=[list(t) for t in completion.top_tokens[:n]],
        top_ids=None if completion.top_ids is None else [list(t) for t in completion.top_ids[:n]],
        top_logprobs=[list(t) for t in completion.top_logprobs[:n]],
        finish_reason=completion.finish_reason,
        answer=answer,
        correct=correct,
        correct_faithful=faithful,
        top_has_token=completion.top_has_token,
    )


def alignment_row(record: TeacherRecord, student_text: str | None = None) -> dict[str, Any]:
    """The JSONL row `harness.align.run` reads, for one stored sample.

    `student_text` is what the student is trained on (default: `record.text`; the faithful
    formats pass the authors' `": "`-deleted text). For `framing == "authors"` rows, `text` is
    what the content steps spell (`tokens[2:-2]`, the frame dropped), so `parse_record`'s
    framing check holds whenever the frame is there; unframed rows are rejected by the aligner.
    """
    text = record.text
    if record.framing == "authors" and len(record.tokens) >= 4 and record.tokens[0] == " step" and record.tokens[1] == "\n":
        text = "".join(record.tokens[2:-2]).strip()
    return {
        "id": f"{record.question_id}#{record.sample_index}",
        "text": text,
        "student_text": record.text if student_text is None else student_text,
        "tokens": list(record.tokens),
        "token_logprobs": [float(v) for v in record.token_logprobs],
        "topk": [[[w, float(lp)] for w, lp in zip(words, lps)] for words, lps in zip(record.top_tokens, record.top_logprobs)],
    }


# ------------------------------------------------------------------------------------ the store


class DuplicateKeyError(DataError):
    """A (question_id, sample_index) key is already in the store (or twice in one shard)."""


def _records_table(records: Sequence[TeacherRecord]) -> pa.Table:
    columns = {name: [getattr(r, name) for r in records] for name in COLUMNS}
    arrays = [pa.array(columns[f.name], type=f.type) for f in SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class TeacherStore:
    """A store folder. `open()` for the job that writes it, `load()` to read one."""

    def __init__(self, root: str | os.PathLike, settings: dict[str, Any] | None, writable: bool):
        self.root = Path(root)
        self.data = self.root / DATA_DIR
        self.settings = settings
        self.writable = writable
        self._lock_fd: int | None = None
        self._keys: dict[Path, list[tuple[str, int]]] = {}
        self._done: dict[tuple[str, int], Path] | None = None

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, root: str | os.PathLike, job: str, settings: dict[str, Any]) -> "TeacherStore":
        """Create or resume a store for writing: `resume.claim` checks `settings`, the writer lock
        is taken, and temp files a crashed writer left behind are removed."""
        missing = [key for key in ("teacher", "sampling") if key not in settings]
        if missing:
            raise UsageError(f"teacher store settings must include {', '.join(missing)} (the teacher and sampling settings that made the data)")
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise UsageError(f"teacher store {root}: exists and is not a folder")
        root.mkdir(parents=True, exist_ok=True)
        claim(root, job, settings, folder=True)
        store = cls(root, settings, writable=True)
        store.data.mkdir(exist_ok=True)
        store._take_lock()
        for leftover in store.data.glob(f".{SHARD_PREFIX}*.tmp"):
            leftover.unlink()
        store._check_shards()
        return store

    @classmethod
    def load(cls, root: str | os.PathLike) -> "TeacherStore":
        """Open an existing store read-only (no settings check, no lock, nothing removed)."""
        root = Path(root)
        path = root / "settings.json"
        if not path.is_file():
            raise DataError(f"{root}: not a teacher store (no settings.json)")
        try:
            settings = json.loads(path.read_text(encoding="utf-8")).get("settings")
        except ValueError as err:
            raise DataError(f"{path}: not valid JSON ({err})") from None
        return cls(root, settings, writable=False)

    def _take_lock(self) -> None:
        import fcntl

        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise UsageError(f"teacher store {self.root} is being written by another process ({self.root / LOCK_NAME} is locked)") from None
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def __enter__(self) -> "TeacherStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - interpreter shutdown order varies
        with contextlib.suppress(Exception):
            self.close()

    # --- shards -----------------------------------------------------------------------------

    def shards(self) -> list[Path]:
        """Complete shards, in write order."""
        if not self.data.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.data.iterdir() if (m := _SHARD_NAME.fullmatch(p.name))]
        return [p for _, p in sorted(found)]

    def _check_shards(self) -> None:
        for path in self.shards():
            try:
                schema = pq.read_schema(path)
            except (pa.ArrowException, OSError) as err:
                raise DataError(f"{path}: not a readable Parquet shard ({err})") from None
            if not schema.equals(SCHEMA, check_metadata=False):
                diff = sorted(set(map(str, schema)) ^ set(map(str, SCHEMA)))
                raise DataError(f"{path}: schema differs from the teacher store schema v{SCHEMA_VERSION}: {'; '.join(diff[:4])}")

    def _shard_keys(self, path: Path) -> list[tuple[str, int]]:
        keys = self._keys.get(path)
        if keys is None:
            table = pq.read_table(path, columns=["question_id", "sample_index"])
            keys = list(zip(table.column(0).to_pylist(), table.column(1).to_pylist()))
            self._keys[path] = keys
        return keys

    def _done_map(self) -> dict[tuple[str, int], Path]:
        if self._done is None:
            done: dict[tuple[str, int], Path] = {}
            for path in self.shards():
                for key in self._shard_keys(path):
                    if key in done:
                        raise DuplicateKeyError(f"{self.root}: key {key} is in both {done[key].name} and {path.name}; remove one of the shards")
                    done[key] = path
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
        if not self.writable or self._lock_fd is None:
            raise UsageError(f"teacher store {self.root} was not opened for writing (use TeacherStore.open)")
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
                raise DuplicateKeyError(f"teacher store {self.root}: {where} is already stored (in {done[record.key].name}); keys are never written twice")
            if record.key in seen:
                raise DuplicateKeyError(f"teacher store {self.root}: {where} appears twice in one shard")
            seen.add(record.key)
        table = _records_table(records)
        shards = self.shards()
        seq = int(_SHARD_NAME.fullmatch(shards[-1].name).group(1)) + 1 if shards else 0
        path = self.data / f"{SHARD_PREFIX}{seq:05d}{SHARD_SUFFIX}"
        with atomic_write(path, "wb") as handle:  # `.part-NNNNN.parquet.*.tmp` until renamed
            pq.write_table(table, handle, **WRITE_OPTIONS)
        _fsync_dir(self.data)
        keys = [r.key for r in records]
        self._keys[path] = keys
        for key in keys:
            done[key] = path
        return path

    # --- reading ----------------------------------------------------------------------------

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """All complete shards as one table (in write order), optionally only some columns."""
        if columns is not None:
            unknown = [c for c in columns if c not in COLUMNS]
            if unknown:
                raise UsageError(f"unknown teacher store column(s) {', '.join(unknown)}; columns: {', '.join(COLUMNS)}")
        tables = [pq.read_table(path, columns=list(columns) if columns is not None else None) for path in self.shards()]
        if not tables:
            schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(c) for c in columns], metadata=SCHEMA.metadata)
            return schema.empty_table()
        return pa.concat_tables(tables)

    def iter_records(self, batch_size: int = 1024) -> Iterator[TeacherRecord]:
        for path in self.shards():
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
                for row in batch.to_pylist():
                    yield TeacherRecord(**row)

    def __len__(self) -> int:
        return sum(pq.ParquetFile(path).metadata.num_rows for path in self.shards())

    def bytes_on_disk(self) -> int:
        return sum(path.stat().st_size for path in self.shards())

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


def compute_stats(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Per-question accuracies from rows holding question_id, sample_index, text, answer, correct
    and correct_faithful.

    - first sample: the sample with the lowest sample_index of each question;
    - majority vote: the most frequent extracted answer of each question (ties: the answer seen
      first in sample order; samples with no answer do not vote), right if the samples giving it
      are right under that rule. The corrected vote is over the `answer` column, the faithful
      vote over the authors' last number of `text`;
    - any correct: questions with at least one correct sample.
    """
    by_question: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for row in rows:
        by_question[row["question_id"]].append(row)
    total = sum(len(v) for v in by_question.values())
    counts = collections.Counter()
    for samples in by_question.values():
        samples.sort(key=lambda r: r["sample_index"])
        counts["first"] += samples[0]["correct"]
        counts["first_faithful"] += samples[0]["correct_faithful"]
        counts["any"] += any(r["correct"] for r in samples)
        counts["any_faithful"] += any(r["correct_faithful"] for r in samples)
        counts["correct"] += sum(r["correct"] for r in samples)
        counts["correct_faithful"] += sum(r["correct_faithful"] for r in samples)
        counts["majority"] += _vote_is_correct(samples, [r["answer"] for r in samples], "correct")
        last = [answers.authors_last_number(r["text"]) for r in samples]
        counts["majority_faithful"] += _vote_is_correct(samples, last, "correct_faithful")
    n = len(by_question)

    def rate(key: str, denominator: int) -> float | None:
        return round(counts[key] / denominator, 6) if denominator else None

    return {
        "questions": n,
        "samples": {"total": total, "correct": counts["correct"], "correct_faithful": counts["correct_faithful"],
                    "per_question": round(total / n, 3) if n else None},
        "first_sample_accuracy": {"corrected": rate("first", n), "faithful": rate("first_faithful", n)},
        "majority_vote_accuracy": {"corrected": rate("majority", n), "faithful": rate("majority_faithful", n)},
        "questions_with_correct_sample": {"corrected": counts["any"], "faithful": counts["any_faithful"]},
        "sample_accuracy": {"corrected": rate("correct", total), "faithful": rate("correct_faithful", total)},
    }


def _vote_is_correct(samples: list[dict[str, Any]], votes: list[Any], verdict: str) -> bool:
    """Majority over `votes` (None abstains; a tie goes to the answer seen first in sample order),
    judged by the `verdict` column of a sample that gave the winning answer: every sample with the
    same extracted answer gets the same verdict under that rule."""
    counts: dict[Any, int] = {}
    for v in votes:
        if v is not None:
            counts[v] = counts.get(v, 0) + 1
    if not counts:
        return False
    best = max(counts.values())
    winner = next(v for v, c in counts.items() if c == best)  # dicts keep first-seen order
    return bool(next(r[verdict] for r, v in zip(samples, votes) if v == winner))
