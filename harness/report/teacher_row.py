"""Table 1's code-davinci-002 BBH cells, recomputed from the BBH authors' recorded generations.

Fu et al. copied AO 56.6 / CoT 73.9 from the BBH paper (Suzgun et al. 2022). The BBH paper's
exact-match rule (`bbh`) reproduces them from `bbh/code-davinci-002-outputs/`; Fu et al.'s own
substring rule (`faithful`) scores the same generations higher. Both are computed here with the
replay scorer of `harness score` (harness.scoring), so the report and the CLI agree.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness.answers import score_bbh
from harness.config import data_dir
from harness.data.bbh import task_group
from harness.errors import DataError
from harness.scoring import Generation, read_generations, score
from harness.report.results import Cell, MeasuredProtocol

OUTPUTS = "bbh/code-davinci-002-outputs"
COLUMNS = {"bbh_ao": ("ao", "code-davinci-002-direct"), "bbh_cot": ("cot", "code-davinci-002-cot")}
ROW = "code-davinci-002"
RULES = ("bbh", "faithful")


@dataclass(frozen=True)
class Disagreement:
    """A BBH group where `faithful` credits generations that `bbh` marks wrong."""

    group: str
    faithful_only: int
    example_prediction: str  # the end of one such generation
    example_target: str


@dataclass(frozen=True)
class TeacherColumn:
    column: str  # bbh_ao or bbh_cot
    folder: Path
    items: int
    group_sizes: dict[str, int]  # the 23 groups (logical_deduction, tracking_shuffled_objects pooled)
    mean_23: dict[str, float]  # rule -> percent
    mean_27: dict[str, float]
    faithful_only: int  # items faithful credits and bbh does not
    bbh_only: int
    disagreements: tuple[Disagreement, ...]

    def cell(self) -> Cell:
        """The Table 1 cell under the `bbh` rule, as a results cell."""
        proto = MeasuredProtocol(task=None, split=f"all {self.items:,} BBH items: recorded generations, {OUTPUTS}/{self.folder.name}/",
                                 prompt="the BBH paper's", rule="bbh", aggregate="mean_23")
        return Cell("table1", ROW, self.column, self.mean_23["bbh"], tuple(self.group_sizes.values()), proto,
                    run=f"{OUTPUTS}/{self.folder.name}", model=ROW, source="recorded generations")


def teacher_column(column: str, root: Path | None = None) -> TeacherColumn:
    protocol, folder_name = COLUMNS[column]
    folder = (root or data_dir()) / OUTPUTS / folder_name
    if not folder.is_dir():
        raise DataError(f"{folder}: the BBH authors' recorded generations are missing; run `python -m harness data download`")
    rows = read_generations(folder, column)
    scored = {rule: score(rows, column, rule) for rule in RULES}
    sizes = Counter(task_group(g.task) for g in rows)
    faithful_only, bbh_only, examples = Counter(), 0, {}
    for g in rows:
        verdict = score_bbh(g.prediction, g.target, protocol)
        if verdict["acc_faithful"] and not verdict["acc_bbh"]:
            group = task_group(g.task)
            faithful_only[group] += 1
            examples.setdefault(group, g)
        elif verdict["acc_bbh"] and not verdict["acc_faithful"]:
            bbh_only += 1
    return TeacherColumn(
        column=column, folder=folder, items=len(rows), group_sizes=dict(sorted(sizes.items())),
        mean_23={r: s["mean_23"] for r, s in scored.items()}, mean_27={r: s["mean_27"] for r, s in scored.items()},
        faithful_only=sum(faithful_only.values()), bbh_only=bbh_only,
        disagreements=tuple(_disagreement(g, n, examples[g]) for g, n in faithful_only.most_common()),
    )


def _disagreement(group: str, count: int, example: Generation) -> Disagreement:
    tail = " ".join(example.prediction.split())[-70:]
    return Disagreement(group, count, tail, example.target)


def teacher_row(root: Path | None = None) -> list[TeacherColumn]:
    """Both BBH columns of the teacher row (about 1 s for the 13,022 generations)."""
    return [teacher_column(c, root) for c in COLUMNS]


WHY = ("`bbh` (Suzgun et al.) takes the text after the last \"the answer is \" (or the whole answer-only output) and "
       "requires it to equal the target; Fu et al.'s `faithful` rule only requires the target to be a substring of the "
       "text after the first lowercase \"the answer is\" (CoT) or of the whole output (AO), with `</s>` appended. "
       "A substring match credits \"invalid\" for the target \"valid\", \"(A) and (B)\" for \"(B)\", \"-19\" for \"-1\", "
       "and a longer closing sequence for a Dyck target, so it never scores lower and here scores higher.")
