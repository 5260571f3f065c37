"""How each cell was produced beside how the paper's was: selection, precision, launcher, teacher data.

A reader of a reproduced number needs to know, at that number, every setting that could move it
away from the paper's. This module turns a cell's schema-2 fields into short phrases, naming the
paper's setting wherever ours differs. The paper's setup, as the authors' code ran it
(shared/reference/authors-code-protocol.md §5; the paper itself states neither):

- precision fp32 (no autocast);
- one `python` process per run (Flan-T5-XL/XXL spread over 2/6 GPUs by naive model parallelism
  inside that process, which changes placement, not arithmetic);
- teacher data from code-davinci-002, through the authors' pipeline (`faithful`);
- selection: Table 1 specialized rows by the M-A-S mean (Sec. 1: "model selection on the average
  performance of three held-out math reasoning data"; the authors' code used the test sets, ACP
  §8.4), Tables 2-3 by the dev set their protocol names; the authors evaluated 12-13 checkpoints
  per run (ACP §5: XL iter 10000…130000, Large 3000…36000).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from harness.report.paper import PaperCell
from harness.report.results import Cell, TeacherData

PAPER_PRECISION = "fp32"
PAPER_LAUNCHER = "python, 1 process"
PAPER_TEACHER = "code-davinci-002"
PAPER_SETTING = "faithful"
AUTHORS_CANDIDATES = 13  # checkpoints the authors evaluated per run (ACP §5)
RULE_TEXT = {"last": "the last checkpoint", "gsm8k-dev": "best on GSM8K dev", "mas-dev": "best on M-A-S dev"}


@dataclass(frozen=True)
class CellSetup:
    """Phrases for one cell: `parts` to show at the cell, `differences` from the paper's setup."""

    parts: tuple[str, ...]
    differences: tuple[str, ...]

    @property
    def text(self) -> str:
        return "; ".join(self.parts)


def trained(table: str, row: str, column: str) -> bool:
    """Whether the cell measures a specialized (trained) model, so a selection and teacher apply."""
    return row.endswith(" specialized") if table == "table1" else column == "after" if table == "table2" else table == "table3"


def paper_rule(paper: PaperCell) -> str | None:
    """The selection rule the paper used for this cell (None: no checkpoint was selected)."""
    if paper.protocol is not None and paper.protocol.selection:
        return paper.protocol.selection.replace("_", "-")
    if paper.table == "table1" and paper.row.endswith(" specialized"):
        return "mas-dev"
    return None


def selection_text(cell: Cell, paper: PaperCell) -> tuple[str | None, str | None]:
    """(phrase, difference) for the cell's checkpoint selection."""
    s = cell.selection
    if s is None:
        return None, None
    what = RULE_TEXT.get(s.rule, "selection rule not recorded") if s.rule else "selection rule not recorded"
    if s.rule == "last":
        count = f" of {s.candidates} saved" if s.candidates else ""
    else:
        count = f" of {s.candidates} evaluated checkpoints" if s.candidates else " (number of candidate checkpoints not recorded)"
    text = f"selected: {what}{count}" + (f" (`{PurePath(s.checkpoint).name}`)" if s.checkpoint else "")
    theirs = paper_rule(paper)
    difference = None
    if theirs and s.rule != theirs:
        difference = f"selection {s.rule or 'unrecorded'} (the paper: {theirs})"
        text += f" (the paper: {RULE_TEXT[theirs]})"
    if s.rule in ("gsm8k-dev", "mas-dev") and s.candidates and s.candidates > 2 * AUTHORS_CANDIDATES:
        text += f" (the authors chose among about {AUTHORS_CANDIDATES}: a best-of-{s.candidates} dev score is more optimistic)"
        difference = difference or f"best of {s.candidates} checkpoints (the authors: about {AUTHORS_CANDIDATES})"
    return text, difference


def teacher_text(data: TeacherData | None, key: str) -> tuple[str, list[str]]:
    """(phrase, differences) for the teacher data behind a trained cell."""
    if data is None:
        return f"teacher data `{key}`", []
    if data.kind == "authors-pickles":
        who = f"{data.model}, the authors' released pickles"
    elif data.kind == "pipeline-check":
        who = f"PIPELINE CHECK teacher {data.model} (random or barely trained weights; not a result)"
    else:
        who = data.model + (f" (tokenizer `{data.tokenizer}`)" if data.tokenizer else "")
    text, differences = f"teacher data `{key}`: {who}", []
    if data.model != PAPER_TEACHER:
        text += f" (the paper: {PAPER_TEACHER})"
        differences.append(f"teacher {data.model} (the paper: {PAPER_TEACHER})")
    if data.setting != PAPER_SETTING:
        text += f", {data.setting} pipeline (the paper: {PAPER_SETTING})"
        differences.append(f"{data.setting} pipeline (the paper: {PAPER_SETTING})")
    return text, differences


def cell_setup(cell: Cell, paper: PaperCell, teachers: dict[str, TeacherData]) -> CellSetup:
    """Selection (always, when recorded), then precision, launcher and teacher data where they differ
    from the paper's setup (the teacher data of a trained cell is always named)."""
    parts: list[str] = []
    differences: list[str] = []
    text, difference = selection_text(cell, paper)
    parts += [text] if text else []
    differences += [difference] if difference else []
    if cell.precision and cell.precision != PAPER_PRECISION:
        parts.append(f"{cell.precision} (the authors: {PAPER_PRECISION})")
        differences.append(f"precision {cell.precision} (the authors: {PAPER_PRECISION})")
    if cell.launcher and not cell.launcher.startswith(PAPER_LAUNCHER):
        parts.append(f"{cell.launcher} (the authors: {PAPER_LAUNCHER})")
        differences.append(f"launcher {cell.launcher} (the authors: {PAPER_LAUNCHER})")
    if cell.teacher:
        text, more = teacher_text(teachers.get(cell.teacher), cell.teacher)
        parts.append(text)
        differences += more
    return CellSetup(tuple(parts), tuple(differences))
