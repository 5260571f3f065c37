"""Row schemas passed between stages, and safe JSONL I/O.

Files are written to a temporary sibling and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from harness.errors import DataError


@dataclass(frozen=True)
class Example:
    """One evaluation or training item, the same shape for every data set.

    `answer` is the normalised gold: a canonical number string for math ("72", "0.5", "-3"),
    the target string for BBH ("(B)", "True"), or the raw text when a math gold has no number
    (ASDiv "Yes"). `number` is its float value, or None. `gold_raw` is the gold text exactly as
    the authors' scorer saw it (e.g. MultiArith "[8.0]", ASDiv "9 (apples)").
    """

    id: str
    source: str
    question: str
    answer: str
    number: float | None
    gold_raw: str
    rationale: str | None = None
    subset: str | None = None
    index: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class RecordError(DataError, ValueError):
    """A data record is malformed; the message names the file, the record and the field."""

    def __init__(self, path: str | os.PathLike, record: Any, field: str, problem: str):
        self.path, self.record, self.field = str(path), record, field
        super().__init__(f"{path}: record {record}: field {field!r}: {problem}")


def current_umask() -> int:
    """The process umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file next to `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; a plain open() respects the umask
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def loads_json(text: bytes | str) -> Any:
    """`json.loads` semantics at orjson speed: orjson first; the stdlib for what orjson refuses
    (NaN/Infinity literals, integers over 64 bits, lone surrogates) and for its error message.
    (orjson is imported here, not with this core module: the offline GPU machine has no orjson.)"""
    import orjson

    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return json.loads(text)


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows atomically; returns the number written."""
    count = 0
    with atomic_write(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, row); a line that is not a JSON object raises RecordError naming file and line."""
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise RecordError(path, f"line {lineno}", "<text>", f"not valid UTF-8 (byte {err.start}: {err.reason})") from None
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise RecordError(path, f"line {lineno}", "<json>", f"not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise RecordError(path, f"line {lineno}", "<json>", "expected a JSON object")
            yield lineno, row


def read_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yield the rows of a JSONL file (see iter_jsonl for the errors)."""
    for _, row in iter_jsonl(path):
        yield row


def append_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> None:
    """Append complete lines (used by resumable jobs: a torn last line is dropped on resume)."""
    with open(path, "a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
