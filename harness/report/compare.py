"""Our number beside the paper's, per cell: delta, tolerance, verdict, protocol differences.

Tolerance (absolute, in accuracy points), for a cell the paper prints as p with our value over
n items (n_eff for an unweighted mean of several sets, see `results.effective_n`):

    tolerance = max(z * SE, floor) + r
    SE        = 100 * sqrt(q * (1 - q) / n_eff),   q = p / 100 clamped to [1/(2 n_eff), 1 - 1/(2 n_eff)]
    r         = half a unit of the paper's last printed digit (27.1 -> 0.05, 0.73 -> 0.005)

SE is the binomial standard error of an accuracy measured on n items if the model's true
accuracy were the paper's; z = 1.96 makes the band a two-sided 95 % interval. The clamp keeps a
0.0 % cell from getting a zero-width band (half an item). `floor` (default 0) lets a profile add
a fixed allowance, e.g. for seed-to-seed training variance, which the paper does not report.
A results file may set both (`"tolerance": {"z": …, "floor": …}`). The band covers sampling
noise of our evaluation only: it says "consistent with the paper", not "the same model".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.report.paper import Paper, PaperCell, TABLE_COLUMNS, TABLE_ROWS, published_halfwidth
from harness.report.results import Cell, Results

PASS, FAIL = "pass", "fail"
NOT_RUN, NO_PAPER_VALUE, QUOTED = "not run", "no paper value", "quoted, not reproducible"


@dataclass(frozen=True)
class Tolerance:
    z: float = 1.96
    floor: float = 0.0

    def points(self, paper_value: float, n_eff: float) -> float:
        return max(self.z * binomial_se(paper_value, n_eff), self.floor) + published_halfwidth(paper_value)


def binomial_se(value: float, n_eff: float) -> float:
    """Standard error, in points, of an accuracy of `value` percent measured on n_eff items."""
    q = min(max(value / 100, 1 / (2 * n_eff)), 1 - 1 / (2 * n_eff))
    return 100 * math.sqrt(q * (1 - q) / n_eff)


@dataclass(frozen=True)
class CellComparison:
    key: str
    table: str
    row: str
    column: str
    paper: PaperCell
    ours: Cell | None
    delta: float | None  # ours - paper, points
    tolerance: float | None
    verdict: str
    protocol_differences: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.verdict == PASS


def compare_cell(paper: PaperCell, ours: Cell | None, tolerance: Tolerance) -> CellComparison:
    if ours is None:
        verdict = QUOTED if paper.protocol is not None and paper.protocol.quoted else NO_PAPER_VALUE if paper.value is None else NOT_RUN
        return CellComparison(paper.key, paper.table, paper.row, paper.column, paper, None, None, None, verdict)
    differences = protocol_differences(paper, ours)
    if paper.value is None:
        return CellComparison(paper.key, paper.table, paper.row, paper.column, paper, ours, None, None, NO_PAPER_VALUE, differences)
    delta = ours.value - paper.value
    band = tolerance.points(paper.value, ours.n_effective)
    verdict = PASS if abs(delta) <= band + 1e-9 else FAIL
    return CellComparison(paper.key, paper.table, paper.row, paper.column, paper, ours, delta, band, verdict, differences)


def protocol_differences(paper: PaperCell, ours: Cell) -> tuple[str, ...]:
    """Where our protocol is not the one the paper cell maps to (task, rule, aggregate, selection)."""
    if paper.protocol is None:
        return ()
    out = []
    for name in ("task", "rule", "aggregate", "selection"):
        theirs, mine = getattr(paper.protocol, name), getattr(ours.protocol, name)
        if theirs is not None and mine != theirs:
            out.append(f"{name}: ours {mine!r}, the paper's protocol {theirs!r}")
    if ours.protocol.limit is not None:
        out.append(f"limit: only {ours.protocol.limit} items per task were evaluated")
    if ours.protocol.subtasks is not None and ours.protocol.subtasks < 27:
        out.append(f"subtasks: only {ours.protocol.subtasks} of the 27 BBH subtasks were evaluated")
    return tuple(out)


def compare(paper: Paper, results: Results, table: str, tolerance: Tolerance | None = None) -> list[CellComparison]:
    """Every cell of the paper's table, in the paper's order, with our value where we have one."""
    tolerance = tolerance or tolerance_for(results)
    ours = {c.key: c for c in results.cells if c.table == table}
    return [compare_cell(paper.cell(table, r, c), ours.get(paper.cell(table, r, c).key), tolerance)
            for r in TABLE_ROWS[table] for c in TABLE_COLUMNS[table]]


def tolerance_for(results: Results) -> Tolerance:
    return Tolerance(**results.tolerance) if results.tolerance else Tolerance()
