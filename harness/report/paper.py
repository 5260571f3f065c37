"""The paper's published numbers (`reports/paper/fu2023.json`), loaded and checked.

Tables 1-3 of Fu et al. (ICML 2023) as data: `{"table1": {ROW: {COLUMN: value or null}}, …}`,
plus for every cell the protocol that measures it here (task, split, prompt, rule, evidence).
The row and column names are fixed below so a report, a results file and the paper file can
never disagree on what "flan-t5-xl specialized / gsm8k" means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from harness.config import REPO_ROOT
from harness.errors import DataError
from harness.report.fields import Where, choice, get, only_keys, percent, require_list, require_object

PAPER_PATH = REPO_ROOT / "reports" / "paper" / "fu2023.json"

FLAN = ("flan-t5-xxl", "flan-t5-xl", "flan-t5-large", "flan-t5-base")
BASELINES = ("code-davinci-002", "lamda-137b", "palm-60b", "ul2-20b", "magister22-t5-11b", "shridhar22-gpt-6b", "ho22-gpt-6b")
TABLE_ROWS = {
    "table1": BASELINES + tuple(r for m in FLAN for r in (m, f"{m} specialized")),
    "table2": ("flan-t5-xl", "t5-3b", "flan-t5-large", "t5-large", "flan-t5-base", "t5-base"),
    "table3": tuple(f"{m} {sel}" for m in FLAN[1:] for sel in ("gsm8k-dev", "mas-dev")),
}
TABLE_COLUMNS = {
    "table1": ("gsm8k", "multiarith", "asdiv", "svamp", "bbh_ao", "bbh_cot"),
    "table2": ("before", "after"),
    "table3": ("in_dist", "out_of_dist"),
}
TABLES = tuple(TABLE_ROWS)
RULES = ("faithful", "corrected", "bbh")  # harness/answers.py; the lm-eval metric is acc_<rule>
AGGREGATES = ("mean_27", "mean_23", "mas_mean")  # BBH: 27 subtasks / 23 groups; M-A-S: mean of 3 sets
SELECTIONS = ("gsm8k_dev", "mas_dev")  # which dev set picked the checkpoint (Tables 2-3)
TOP_KEYS = ("source", "unit", "captions", "sizes", *TABLES, "protocol_of", "protocols", "figures")
PROTOCOL_KEYS = ("task", "split", "prompt", "rule", "aggregate", "selection", "evidence", "notes")


@dataclass(frozen=True)
class Protocol:
    """How one cell is measured: the lm-eval task (None: no model is run), split, prompt, rule."""

    id: str
    task: str | None
    split: str
    prompt: str
    rule: str | None
    aggregate: str | None
    selection: str | None
    evidence: str
    notes: tuple[str, ...] = ()

    @property
    def quoted(self) -> bool:
        """Copied by the paper from other work: nothing here can reproduce it."""
        return self.task is None and self.rule is None


@dataclass(frozen=True)
class PaperCell:
    table: str
    row: str
    column: str
    value: float | None
    protocol: Protocol | None

    @property
    def key(self) -> str:
        return cell_key(self.table, self.row, self.column)


@dataclass(frozen=True)
class Paper:
    path: Path
    source: dict
    unit: str
    captions: dict[str, str]
    sizes: dict[str, str]
    cells: dict[str, PaperCell]
    figures: dict

    def cell(self, table: str, row: str, column: str) -> PaperCell:
        return self.cells[cell_key(table, row, column)]

    def value(self, table: str, row: str, column: str) -> float | None:
        return self.cell(table, row, column).value

    def table(self, table: str) -> list[PaperCell]:
        """The table's cells in the paper's row order, then column order."""
        return [self.cell(table, r, c) for r in TABLE_ROWS[table] for c in TABLE_COLUMNS[table]]

    def citation(self) -> str:
        s = self.source
        return f"{', '.join(s['authors'])}. {s['title']}. {s['venue']}. arXiv:{s['arxiv']}."


def cell_key(table: str, row: str, column: str) -> str:
    return f"{table}/{row}/{column}"


def published_halfwidth(value: float) -> float:
    """Half a unit of the last printed digit: 27.1 -> 0.05, 0.73 -> 0.005 (the paper's rounding)."""
    exponent = Decimal(repr(float(value))).as_tuple().exponent
    return 0.5 * 10.0 ** int(exponent)


def size_in_params(size: str) -> float:
    """'760M' -> 7.6e8, '3B' -> 3e9 (the sizes the paper prints)."""
    scale = {"M": 1e6, "B": 1e9}[size[-1]]
    return float(size[:-1]) * scale


def load_paper(path: str | Path = PAPER_PATH) -> Paper:
    """Read and check the paper-number file; a DataError names the file and the field."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: the paper-number file is missing (it ships in reports/paper/)") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
    top = Where(str(path))
    require_object(raw, top)
    only_keys(raw, TOP_KEYS, top)
    source = require_object(get(raw, "source", top, dict), top / "source")
    for key in ("title", "venue", "arxiv", "url"):
        get(source, key, top / "source", str)
    require_list(get(source, "authors", top / "source", list), top / "source" / "authors")
    protocols = _protocols(get(raw, "protocols", top, dict), top / "protocols")
    protocol_of = get(raw, "protocol_of", top, dict)
    cells: dict[str, PaperCell] = {}
    used: set[str] = set()
    for table in TABLES:
        values = _grid(get(raw, table, top, dict), table, top / table)
        ids = _grid(get(protocol_of, table, top / "protocol_of", dict), table, top / "protocol_of" / table)
        for (row, column), value in values.items():
            where = top / table / row / column
            value = None if value is None else _published(value, where)
            pid = ids[(row, column)]
            if pid is not None and pid not in protocols:
                raise (top / "protocol_of" / table / row / column).error(f"names protocol {pid!r}, which 'protocols' does not define")
            if value is not None and pid is None:
                raise (top / "protocol_of" / table / row / column).error("the paper prints a value here, so the cell needs a protocol")
            used.update([pid] if pid else [])
            cells[cell_key(table, row, column)] = PaperCell(table, row, column, value, protocols.get(pid))
    unused = sorted(set(protocols) - used)
    if unused:
        raise (top / "protocols").error(f"defined but used by no cell: {', '.join(unused)}")
    sizes = get(raw, "sizes", top, dict)
    for row in {*TABLE_ROWS["table1"], *TABLE_ROWS["table2"]}:
        model = row.removesuffix(" specialized")
        size = get(sizes, model, top / "sizes", str)
        if size[-1:] not in ("M", "B"):
            raise (top / "sizes" / model).error(f"{size!r}: write sizes as the paper does, e.g. '760M', '3B'")
    captions = get(raw, "captions", top, dict)
    for table in TABLES:
        get(captions, table, top / "captions", str)
    return Paper(path, source, get(raw, "unit", top, str), captions, sizes, cells, get(raw, "figures", top, dict))


def _grid(obj: dict, table: str, where: Where) -> dict[tuple[str, str], object]:
    """{ROW: {COLUMN: x}} with exactly the table's rows and columns."""
    rows, columns = TABLE_ROWS[table], TABLE_COLUMNS[table]
    missing = [r for r in rows if r not in obj]
    if missing or set(obj) - set(rows):
        extra = sorted(set(obj) - set(rows))
        raise where.error(f"rows must be exactly {', '.join(rows)}" + (f"; missing {missing}" if missing else "") + (f"; unknown {extra}" if extra else ""))
    out = {}
    for row in rows:
        cols = require_object(obj[row], where / row)
        if set(cols) != set(columns):
            raise (where / row).error(f"columns must be exactly {', '.join(columns)}; got {', '.join(cols)}")
        for column in columns:
            out[(row, column)] = cols[column]
    return out


def _published(value, where: Where) -> float:
    if isinstance(value, int) and not isinstance(value, bool):
        raise where.error(f"{value}: write the value as printed, with its decimals (e.g. {value}.0), so its rounding is known")
    return percent(value, where)


def _protocols(obj: dict, where: Where) -> dict[str, Protocol]:
    out = {}
    for pid, spec in obj.items():
        at = where / pid
        require_object(spec, at)
        only_keys(spec, PROTOCOL_KEYS, at)
        notes = require_list(get(spec, "notes", at, list), at / "notes")
        if not all(isinstance(n, str) for n in notes):
            raise (at / "notes").error("expected a list of strings")
        out[pid] = Protocol(
            id=pid,
            task=get(spec, "task", at, str, optional=True),
            split=get(spec, "split", at, str),
            prompt=get(spec, "prompt", at, str),
            rule=choice(spec, "rule", at, RULES, optional=True),
            aggregate=choice(spec, "aggregate", at, AGGREGATES, optional=True),
            selection=choice(spec, "selection", at, SELECTIONS, optional=True),
            evidence=get(spec, "evidence", at, str),
            notes=tuple(notes),
        )
    return out
