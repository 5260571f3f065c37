"""Typed reads from parsed JSON, each failure a DataError naming the file and the field path.

The paper-number file and the results file are written by people and by the orchestrator; a
typo must stop the report with "results.json: cells[3].row: …", not with a KeyError.
"""

from __future__ import annotations

from typing import Any, Iterable

from harness.errors import DataError


class Where:
    """A position inside one JSON file, printed as `file: a.b[3].c`."""

    def __init__(self, file: str, path: str = ""):
        self.file, self.path = file, path

    def __truediv__(self, key: str | int) -> "Where":
        step = f"[{key}]" if isinstance(key, int) else (f".{key}" if self.path else str(key))
        return Where(self.file, self.path + step)

    def error(self, problem: str) -> DataError:
        return DataError(f"{self.file}: {self.path or '<top level>'}: {problem}")


def require_object(value: Any, where: Where) -> dict:
    if not isinstance(value, dict):
        raise where.error(f"expected an object, got {type(value).__name__}")
    return value


def require_list(value: Any, where: Where) -> list:
    if not isinstance(value, list):
        raise where.error(f"expected a list, got {type(value).__name__}")
    return value


def only_keys(obj: dict, allowed: Iterable[str], where: Where) -> None:
    """Unknown keys are errors: a misspelt optional field must not be silently ignored."""
    extra = sorted(set(obj) - set(allowed))
    if extra:
        raise where.error(f"unknown field(s) {', '.join(map(repr, extra))}; allowed: {', '.join(sorted(allowed))}")


def get(obj: dict, key: str, where: Where, kind: type | tuple[type, ...], *, optional: bool = False, default: Any = None) -> Any:
    """obj[key] checked against `kind` (bool is never accepted as a number)."""
    if key not in obj or (optional and obj[key] is None):
        if optional:
            return default
        raise (where / key).error("missing")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(dict.fromkeys(_kind_name(k, kinds) for k in kinds))
        raise (where / key).error(f"expected {names}, got {json_type(value)} {value!r:.60}")
    return value


def choice(obj: dict, key: str, where: Where, allowed: Iterable, *, optional: bool = False) -> Any:
    allowed = tuple(allowed)
    if optional and obj.get(key) is None:
        return None
    value = get(obj, key, where, (str, int, float, type(None)))
    if value not in allowed:
        shown = ", ".join("null" if a is None else str(a) for a in allowed)
        raise (where / key).error(f"{value!r} is not allowed; choose one of: {shown}")
    return value


def percent(value: Any, where: Where) -> float:
    """An accuracy in percent, 0 to 100."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise where.error(f"expected a percentage (a number from 0 to 100), got {json_type(value)} {value!r:.60}")
    if not 0 <= value <= 100:
        raise where.error(f"{value} is not a percentage: accuracies are in percent, 0 to 100")
    return float(value)


def get_percent(obj: dict, key: str, where: Where) -> float:
    if key not in obj:
        raise (where / key).error("missing")
    return percent(obj[key], where / key)


def _kind_name(kind: type, kinds: tuple[type, ...]) -> str:
    if kind in (int, float):
        return "number" if float in kinds else "integer"
    return {dict: "object", list: "list", str: "string", type(None): "null"}.get(kind, kind.__name__)


def json_type(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")
