"""The results file the renderer takes: what the orchestrator measured, and how (docs/reports.md).

One JSON object per report: the table it reproduces, the profile, one entry per measured cell
(value in percent, the number of items behind it, the protocol, the run folder), optional
training curves (Fig. 3) and format runs (Fig. 4), provenance and seeds. Schema 2 adds, per
cell, how the checkpoint was selected, the precision, the launcher, the teacher data and (ASDiv,
SVAMP) the value on test minus dev; at the top, the rows that did not run and the training losses;
in the provenance, the teacher data. Schema 1 files still load (without those fields).
Everything is checked on load; an error names the file and the field, e.g.
`results.json: cells[3].row: …`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import DataError
from harness.report.fields import Where, choice, get, get_percent, only_keys, require_list, require_object
from harness.report.paper import AGGREGATES, RULES, SELECTIONS, TABLE_COLUMNS, TABLE_ROWS, TABLES, cell_key

SCHEMA = 2  # the newest; every schema in SCHEMAS is read
SCHEMAS = (1, 2)
PROFILES = ("cpu", "rehearsal", "paper")
REPORT_TABLES = (*TABLES, "figures")  # "figures": a report with the figures and their claims only
CURVE_TASKS = ("gsm8k", "mas", "bbh_ao", "bbh_cot")  # Fig. 3's accuracy lines
MATCHING = ("distribution", "sample")
FORMATS = ("in_context", "zero_shot")
TOP_KEYS = ("schema", "table", "profile", "title", "cells", "curves", "fig4", "provenance", "seeds", "tolerance", "notes")
CELL_KEYS = ("table", "row", "column", "value", "n", "protocol", "run", "model", "source")
PROTOCOL_KEYS = ("task", "split", "prompt", "rule", "aggregate", "selection", "split_mode", "limit", "subtasks")
CURVE_KEYS = ("run", "model", "matching", "examples", "task", "value", "n")
FIG4_KEYS = ("run", "model", "train_format", "test_format", "examples", "value", "n")
# Schema 2
TOP_KEYS_2 = (*TOP_KEYS, "not_run", "losses")
CELL_KEYS_2 = (*CELL_KEYS, "selection", "precision", "launcher", "teacher", "clean")
SELECTION_KEYS = ("rule", "checkpoint", "candidates")
SELECTION_RULES = ("last", "gsm8k-dev", "mas-dev")  # `reproduce --select`
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
CLEAN_CELLS = (("table1", "asdiv"), ("table1", "svamp"))  # test sets with a dev split inside them (harness/data/splits.py)
NOT_RUN_KEYS = ("table", "row", "stage", "reason")
NOT_RUN_STAGES = ("plan", "models", "teacher", "align", "formats", "train", "select", "eval")
FIGURE_TABLES = ("fig3", "fig4")  # not_run rows of a figure: a model or run whose curves are missing, and why
LOSS_KEYS = ("run", "model", "matching", "examples", "step", "loss")
TEACHER_KEYS = ("kind", "model", "tokenizer", "sampling", "stats", "content", "files", "setting")
TEACHER_KINDS = ("authors-pickles", "teacher-store", "pipeline-check")
TEACHER_SETTINGS = ("faithful", "corrected")
FILE_KEYS = ("sha256", "bytes", "records")


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
class Selection:
    """How a specialized cell's checkpoint was chosen: the rule, the checkpoint, among how many."""

    rule: str | None  # last | gsm8k-dev | mas-dev
    checkpoint: str | None = None
    candidates: int | None = None  # evaluated checkpoints the rule chose from


@dataclass(frozen=True)
class CleanValue:
    """The same cell scored on test minus dev (split_mode clean): no selection has seen these items."""

    value: float
    n: tuple[int, ...]


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
    # schema 2
    selection: Selection | None = None
    precision: str | None = None
    launcher: str | None = None
    teacher: str | None = None  # a key of Results.teacher_data
    clean: CleanValue | None = None

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


@dataclass(frozen=True)
class NotRun:
    """A row that failed or was refused (`table` fig3/fig4: a model whose curves are missing)."""

    table: str
    row: str
    stage: str
    reason: str


@dataclass(frozen=True)
class LossPoint:
    """One logged training loss (Fig. 3 B)."""

    run: str
    model: str
    matching: str
    examples: int
    step: int
    loss: float


@dataclass(frozen=True)
class TeacherData:
    """Where a run's training data came from: a teacher store or the authors' released pickles."""

    key: str
    kind: str  # authors-pickles | teacher-store | pipeline-check
    model: str
    tokenizer: str | None
    setting: str  # faithful | corrected: the alignment/formats pipeline it went through
    sampling: dict | None = None
    stats: dict | None = None
    content: str | None = None  # the store's content checksum (manifest)
    files: dict[str, dict] | None = None  # name -> {sha256, bytes, records}


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
    schema: int = SCHEMA
    not_run: list[NotRun] = field(default_factory=list)
    losses: list[LossPoint] = field(default_factory=list)
    teacher_data: dict[str, TeacherData] = field(default_factory=dict)

    def cell(self, key: str) -> Cell | None:
        return next((c for c in self.cells if c.key == key), None)

    def not_run_of(self, table: str, row: str) -> list[NotRun]:
        return [r for r in self.not_run if r.table == table and r.row == row]


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
    schema = get(raw, "schema", top, int)
    if schema not in SCHEMAS:
        raise (top / "schema").error(f"{schema} is not supported; this renderer reads schema {' or '.join(map(str, SCHEMAS))}")
    _only_keys(raw, TOP_KEYS if schema == 1 else TOP_KEYS_2, TOP_KEYS_2, schema, top)
    provenance = get(raw, "provenance", top, dict, optional=True, default={})
    teacher_data = _teacher_data(provenance, top / "provenance") if schema >= 2 else {}
    cells = [_cell(c, top / "cells" / i, schema, teacher_data) for i, c in enumerate(require_list(raw.get("cells", []), top / "cells"))]
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
    curves = [_curve(c, top / "curves" / i) for i, c in enumerate(require_list(raw.get("curves", []), top / "curves"))]
    losses = [_loss(c, top / "losses" / i) for i, c in enumerate(require_list(raw.get("losses", []), top / "losses"))]
    not_run = [_not_run(c, top / "not_run" / i) for i, c in enumerate(require_list(raw.get("not_run", []), top / "not_run"))]
    if schema >= 2:
        _one_model_and_matching_per_run(curves, losses, top)
        _unique(losses, lambda p: (p.run, p.step), top / "losses", "step {1} of run {0!r}")
        _unique(not_run, lambda r: (r.table, r.row, r.stage), top / "not_run", "{0}/{1} at stage {2}")
    return Results(
        path=Path(path),
        table=choice(raw, "table", top, REPORT_TABLES),
        profile=choice(raw, "profile", top, PROFILES),
        cells=cells,
        curves=curves,
        fig4=[_fig4(c, top / "fig4" / i) for i, c in enumerate(require_list(raw.get("fig4", []), top / "fig4"))],
        provenance=provenance,
        seeds=seeds,
        tolerance=tolerance,
        notes=notes,
        title=get(raw, "title", top, str, optional=True),
        schema=schema,
        not_run=not_run,
        losses=losses,
        teacher_data=teacher_data,
    )


def _only_keys(obj: dict, allowed: tuple[str, ...], newest: tuple[str, ...], schema: int, where: Where) -> None:
    """Unknown keys are errors; a newer schema's key in an older file says which schema it needs."""
    newer = sorted(set(obj) - set(allowed) & set(newest))
    if newer:
        raise (where / newer[0]).error(f"a schema-{SCHEMA} field, but this file says schema {schema} (write \"schema\": {SCHEMA})")
    only_keys(obj, allowed, where)


def _unique(items: list, key, where: Where, label: str) -> None:
    seen: dict = {}
    for i, item in enumerate(items):
        k = key(item)
        if k in seen:
            raise (where / i).error(f"{label.format(*k)} is already given by [{seen[k]}]")
        seen[k] = i


def _one_model_and_matching_per_run(curves: list[CurvePoint], losses: list[LossPoint], top: Where) -> None:
    """A training run has one model and one matching: a curve is never borrowed from another run."""
    first: dict[str, tuple[str, str, Where]] = {}
    entries = [(p, top / "curves" / i) for i, p in enumerate(curves)] + [(p, top / "losses" / i) for i, p in enumerate(losses)]
    for point, where in entries:
        known = first.setdefault(point.run, (point.model, point.matching, where))
        for name, value, theirs in (("model", point.model, known[0]), ("matching", point.matching, known[1])):
            if value != theirs:
                raise (where / name).error(f"run {point.run!r} is {theirs!r} at {known[2].path}; one run has one model and one "
                                           "matching (a run's curve cannot stand in for another's)")


def _cell(obj: object, where: Where, schema: int = 1, teacher_data: dict | None = None) -> Cell:
    require_object(obj, where)
    _only_keys(obj, CELL_KEYS if schema == 1 else CELL_KEYS_2, CELL_KEYS_2, schema, where)
    table = choice(obj, "table", where, TABLES)
    row = choice(obj, "row", where, TABLE_ROWS[table])
    column = choice(obj, "column", where, TABLE_COLUMNS[table])
    source = choice(obj, "source", where, ("results", "recorded generations"), optional=True) or "results"
    protocol = _protocol(obj, where)
    teacher = get(obj, "teacher", where, str, optional=True)
    if teacher is not None and teacher not in (teacher_data or {}):
        known = ", ".join(sorted(teacher_data or {})) or "none"
        raise (where / "teacher").error(f"{teacher!r} is not a key of provenance.teacher_data (keys: {known})")
    clean = _clean(obj, where, table, column)
    selection = _selection(obj, where, protocol)
    return Cell(table, row, column, get_percent(obj, "value", where), _n(obj, where), protocol,
                get(obj, "run", where, str), get(obj, "model", where, str, optional=True), source,
                selection=selection, precision=choice(obj, "precision", where, PRECISIONS, optional=True),
                launcher=get(obj, "launcher", where, str, optional=True), teacher=teacher, clean=clean)


def _selection(obj: dict, where: Where, protocol: MeasuredProtocol) -> Selection | None:
    spec = get(obj, "selection", where, dict, optional=True)
    if spec is None:
        return None
    at = where / "selection"
    only_keys(spec, SELECTION_KEYS, at)
    rule = choice(spec, "rule", at, SELECTION_RULES, optional=True)
    candidates = get(spec, "candidates", at, int, optional=True)
    if candidates is not None and candidates < 1:
        raise (at / "candidates").error("must be >= 1 (the number of evaluated checkpoints the rule chose from)")
    if rule is not None and protocol.selection is not None and rule.replace("-", "_") != protocol.selection:
        raise (at / "rule").error(f"{rule!r} contradicts protocol.selection {protocol.selection!r} (the dev set that chose the checkpoint)")
    return Selection(rule, get(spec, "checkpoint", at, str, optional=True), candidates)


def _clean(obj: dict, where: Where, table: str, column: str) -> CleanValue | None:
    spec = get(obj, "clean", where, dict, optional=True)
    if spec is None:
        return None
    at = where / "clean"
    if (table, column) not in CLEAN_CELLS:
        allowed = ", ".join(f"{t}/{c}" for t, c in CLEAN_CELLS)
        raise at.error(f"only cells with a dev split inside their test set have a test-minus-dev value ({allowed})")
    only_keys(spec, ("value", "n"), at)
    return CleanValue(get_percent(spec, "value", at), _n(spec, at))


def _not_run(obj: object, where: Where) -> NotRun:
    require_object(obj, where)
    only_keys(obj, NOT_RUN_KEYS, where)
    table = choice(obj, "table", where, (*TABLES, *FIGURE_TABLES))
    if table in FIGURE_TABLES:
        row = get(obj, "row", where, str)
        if not row.strip():
            raise (where / "row").error("name the model or run whose curves are missing")
    else:
        row = choice(obj, "row", where, TABLE_ROWS[table])
    reason = get(obj, "reason", where, str)
    if not reason.strip():
        raise (where / "reason").error("say why the row did not run")
    return NotRun(table, row, choice(obj, "stage", where, NOT_RUN_STAGES), reason)


def _loss(obj: object, where: Where) -> LossPoint:
    require_object(obj, where)
    only_keys(obj, LOSS_KEYS, where)
    step = get(obj, "step", where, int)
    if step < 0:
        raise (where / "step").error("must be >= 0")
    loss = get(obj, "loss", where, (int, float))
    if not math.isfinite(loss) or loss < 0:
        raise (where / "loss").error(f"{loss} is not a training loss (a finite number >= 0)")
    return LossPoint(get(obj, "run", where, str), get(obj, "model", where, str), choice(obj, "matching", where, MATCHING),
                     _examples(obj, where), step, float(loss))


def _teacher_data(provenance: dict, where: Where) -> dict[str, TeacherData]:
    spec = get(provenance, "teacher_data", where, dict, optional=True)
    if spec is None:
        return {}
    out = {}
    for key, entry in spec.items():
        at = where / "teacher_data" / key
        require_object(entry, at)
        only_keys(entry, TEACHER_KEYS, at)
        files = get(entry, "files", at, dict, optional=True)
        for name, info in (files or {}).items():
            f = at / "files" / name
            require_object(info, f)
            only_keys(info, FILE_KEYS, f)
            digest = get(info, "sha256", f, str)
            if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
                raise (f / "sha256").error(f"{digest!r:.70} is not a sha256 (64 lowercase hex digits)")
            for count in ("bytes", "records"):
                value = get(info, count, f, int, optional=count == "records")
                if value is not None and value < 0:
                    raise (f / count).error("must be >= 0")
        out[key] = TeacherData(
            key=key, kind=choice(entry, "kind", at, TEACHER_KINDS), model=get(entry, "model", at, str),
            tokenizer=get(entry, "tokenizer", at, str, optional=True), setting=choice(entry, "setting", at, TEACHER_SETTINGS),
            sampling=get(entry, "sampling", at, dict, optional=True), stats=get(entry, "stats", at, dict, optional=True),
            content=get(entry, "content", at, str, optional=True), files=files,
        )
    return out


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

