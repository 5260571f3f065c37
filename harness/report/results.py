"""The results file the renderer takes: what the orchestrator measured, and how (docs/reports.md).

One JSON object per report: the table it reproduces, the profile, one entry per measured cell
(value in percent, the number of items behind it, the protocol, the run folder), optional
training curves (Fig. 3) and format runs (Fig. 4), provenance and seeds. Everything is checked
on load; an error names the file and the field, e.g. `results.json: cells[3].row: …`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import DataError
from harness.report.fields import Where, choice, get, get_percent, only_keys, require_list, require_object
from harness.report.paper import AGGREGATES, RULES, SELECTIONS, TABLE_COLUMNS, TABLE_ROWS, TABLES, cell_key

SCHEMA = 1
PROFILES = ("cpu", "paper")
REPORT_TABLES = (*TABLES, "figures")  # "figures": a report with the figures and their claims only
CURVE_TASKS = ("gsm8k", "mas", "bbh_ao", "bbh_cot")  # Fig. 3's four panels
MATCHING = ("distribution", "sample")
FORMATS = ("in_context", "zero_shot")
TOP_KEYS = ("schema", "table", "profile", "title", "cells", "curves", "fig4", "provenance", "seeds", "tolerance", "notes")
CELL_KEYS = ("table", "row", "column", "value", "n", "protocol", "run", "model", "source")
PROTOCOL_KEYS = ("task", "split", "prompt", "rule", "aggregate", "selection", "split_mode", "limit", "subtasks")
CURVE_KEYS = ("run", "model", "matching", "examples", "task", "value", "n")
FIG4_KEYS = ("run", "model", "train_format", "test_format", "examples", "value", "n")


@dataclass(frozen=True)
class MeasuredProtocol:
    """How our number was measured; compared field by field with the paper cell's protocol."""

    task: str | None
    split: str
    prompt: str
    rule: str
    aggregate: str | None = None
    selection: str | None = None
    split_mode: str | None = None
    limit: int | None = None  # items per task when the run was cut short (CPU profile)
    subtasks: int | None = None  # BBH subtasks behind a BBH mean, when fewer than all 27


@dataclass(frozen=True)
class Cell:
    table: str
    row: str
    column: str
    value: float  # percent
    n: tuple[int, ...]  # items; several = the members of an unweighted mean (M-A-S, BBH groups)
    protocol: MeasuredProtocol
    run: str
    model: str | None = None
    source: str = "results"  # or "recorded generations" (the teacher row)

    @property
    def key(self) -> str:
        return cell_key(self.table, self.row, self.column)

    @property
    def n_effective(self) -> float:
        return effective_n(self.n)


@dataclass(frozen=True)
class CurvePoint:
    """One checkpoint of one training run on one Fig. 3 task."""

    run: str
    model: str
    matching: str
    examples: int  # training examples seen; 0 = the model before specialization
    task: str
    value: float
    n: tuple[int, ...]


@dataclass(frozen=True)
class Fig4Point:
    """GSM8K dev accuracy of a run trained on one data format, tested in-context or zero-shot."""

    run: str
    model: str
    train_format: str
    test_format: str
    examples: int
    value: float
    n: tuple[int, ...]


@dataclass
class Results:
    path: Path
    table: str
    profile: str
    cells: list[Cell]
    curves: list[CurvePoint] = field(default_factory=list)
    fig4: list[Fig4Point] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    seeds: dict = field(default_factory=dict)
    tolerance: dict | None = None
    notes: list[str] = field(default_factory=list)
    title: str | None = None

    def cell(self, key: str) -> Cell | None:
        return next((c for c in self.cells if c.key == key), None)


def effective_n(n: tuple[int, ...]) -> float:
    """Items behind an unweighted mean of k parts of sizes n_i: k^2 / sum(1/n_i).

    The binomial variance of that mean is p(1-p)/n_eff when the parts share one accuracy p; a
    single part gives n itself.
    """
    return len(n) ** 2 / sum(1 / x for x in n)


def load_results(path: str | Path) -> Results:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such results file") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 (byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
    return parse_results(raw, path)


def parse_results(raw: object, path: str | Path = "<results>") -> Results:
    top = Where(str(path))
    require_object(raw, top)
    only_keys(raw, TOP_KEYS, top)
    schema = get(raw, "schema", top, int)
    if schema != SCHEMA:
        raise (top / "schema").error(f"{schema} is not supported; this renderer reads schema {SCHEMA}")
    cells = [_cell(c, top / "cells" / i) for i, c in enumerate(require_list(raw.get("cells", []), top / "cells"))]
    seen: dict[str, int] = {}
    for i, cell in enumerate(cells):
        if cell.key in seen:
            raise (top / "cells" / i).error(f"{cell.key} is already given by cells[{seen[cell.key]}]; one value per cell")
        seen[cell.key] = i
    seeds = get(raw, "seeds", top, dict, optional=True, default={})
    for name, seed in seeds.items():
        if not (isinstance(seed, int) and not isinstance(seed, bool)) and not (isinstance(seed, list) and all(isinstance(s, int) for s in seed)):
            raise (top / "seeds" / name).error("expected an integer seed or a list of them")
    tolerance = get(raw, "tolerance", top, dict, optional=True)
    if tolerance is not None:
        only_keys(tolerance, ("z", "floor"), top / "tolerance")
        for key in tolerance:
            if get(tolerance, key, top / "tolerance", (int, float)) < 0:
                raise (top / "tolerance" / key).error("must be >= 0")
    notes = require_list(raw.get("notes", []), top / "notes")
    if not all(isinstance(n, str) for n in notes):
        raise (top / "notes").error("expected a list of strings")
    return Results(
        path=Path(path),
        table=choice(raw, "table", top, REPORT_TABLES),
        profile=choice(raw, "profile", top, PROFILES),
        cells=cells,
        curves=[_curve(c, top / "curves" / i) for i, c in enumerate(require_list(raw.get("curves", []), top / "curves"))],
        fig4=[_fig4(c, top / "fig4" / i) for i, c in enumerate(require_list(raw.get("fig4", []), top / "fig4"))],
        provenance=get(raw, "provenance", top, dict, optional=True, default={}),
        seeds=seeds,
        tolerance=tolerance,
        notes=notes,
        title=get(raw, "title", top, str, optional=True),
    )


def _cell(obj: object, where: Where) -> Cell:
    require_object(obj, where)
    only_keys(obj, CELL_KEYS, where)
    table = choice(obj, "table", where, TABLES)
    row = choice(obj, "row", where, TABLE_ROWS[table])
    column = choice(obj, "column", where, TABLE_COLUMNS[table])
    source = choice(obj, "source", where, ("results", "recorded generations"), optional=True) or "results"
    return Cell(table, row, column, get_percent(obj, "value", where), _n(obj, where), _protocol(obj, where),
                get(obj, "run", where, str), get(obj, "model", where, str, optional=True), source)


def _protocol(obj: dict, where: Where) -> MeasuredProtocol:
    spec = require_object(get(obj, "protocol", where, dict), where / "protocol")
    at = where / "protocol"
    only_keys(spec, PROTOCOL_KEYS, at)
    limit = get(spec, "limit", at, int, optional=True)
    if limit is not None and limit < 1:
        raise (at / "limit").error("must be >= 1 (leave it out for a full run)")
    subtasks = get(spec, "subtasks", at, int, optional=True)
    if subtasks is not None and not 1 <= subtasks <= 27:
        raise (at / "subtasks").error("must be from 1 to 27 (BBH has 27 subtasks)")
    return MeasuredProtocol(
        task=get(spec, "task", at, str, optional=True),
        split=get(spec, "split", at, str),
        prompt=get(spec, "prompt", at, str),
        rule=choice(spec, "rule", at, RULES),
        aggregate=choice(spec, "aggregate", at, AGGREGATES, optional=True),
        selection=choice(spec, "selection", at, SELECTIONS, optional=True),
        split_mode=choice(spec, "split_mode", at, ("faithful", "clean"), optional=True),
        limit=limit,
        subtasks=subtasks,
    )


def _n(obj: dict, where: Where) -> tuple[int, ...]:
    """`n`: an item count, or a list of counts for an unweighted mean of several parts."""
    value = get(obj, "n", where, (int, list))
    counts = value if isinstance(value, list) else [value]
    if not counts or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in counts):
        raise (where / "n").error(f"expected a positive item count or a non-empty list of them, got {value!r:.60}")
    return tuple(counts)


def _examples(obj: dict, where: Where) -> int:
    examples = get(obj, "examples", where, int)
    if examples < 0:
        raise (where / "examples").error("must be >= 0 (0 = before specialization)")
    return examples


def _curve(obj: object, where: Where) -> CurvePoint:
    require_object(obj, where)
    only_keys(obj, CURVE_KEYS, where)
    return CurvePoint(get(obj, "run", where, str), get(obj, "model", where, str), choice(obj, "matching", where, MATCHING),
                      _examples(obj, where), choice(obj, "task", where, CURVE_TASKS), get_percent(obj, "value", where),
                      _n(obj, where))


def _fig4(obj: object, where: Where) -> Fig4Point:
    require_object(obj, where)
    only_keys(obj, FIG4_KEYS, where)
    return Fig4Point(get(obj, "run", where, str), get(obj, "model", where, str), choice(obj, "train_format", where, FORMATS),
                     choice(obj, "test_format", where, FORMATS), _examples(obj, where), get_percent(obj, "value", where),
                     _n(obj, where))

