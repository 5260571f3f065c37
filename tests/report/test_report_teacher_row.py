"""Table 1's teacher row from the recorded code-davinci-002 generations: `bbh` reproduces it,
`faithful` does not, and the report says why."""

from __future__ import annotations

import pytest

from harness.errors import DataError
from harness.report.compare import PASS, Tolerance, compare_cell
from harness.report.paper import load_paper
from harness.report.teacher_row import teacher_column, teacher_row


@pytest.fixture(scope="module")
def columns(data_dir):
    return {c.column: c for c in teacher_row(data_dir)}


def test_bbh_rule_gives_the_published_teacher_row(columns):
    assert round(columns["bbh_ao"].mean_23["bbh"], 1) == 56.6
    assert round(columns["bbh_cot"].mean_23["bbh"], 1) == 73.9
    assert {c.items for c in columns.values()} == {6511}
    assert all(len(c.group_sizes) == 23 and sum(c.group_sizes.values()) == 6511 for c in columns.values())


def test_faithful_rule_scores_the_same_generations_higher(columns):
    assert round(columns["bbh_ao"].mean_23["faithful"], 2) == 58.20
    assert round(columns["bbh_cot"].mean_23["faithful"], 2) == 76.61
    # substring matching only ever adds credit
    assert (columns["bbh_ao"].faithful_only, columns["bbh_ao"].bbh_only) == (91, 0)
    assert (columns["bbh_cot"].faithful_only, columns["bbh_cot"].bbh_only) == (150, 0)
    top = columns["bbh_cot"].disagreements[0]
    assert top.group == "hyperbaton" and top.example_target in top.example_prediction


def test_teacher_cells_pass_against_table1(columns):
    paper = load_paper()
    for column, c in columns.items():
        cell = c.cell()
        assert (cell.row, cell.protocol.rule, cell.protocol.aggregate, cell.source) == ("code-davinci-002", "bbh", "mean_23", "recorded generations")
        comp = compare_cell(paper.cell("table1", "code-davinci-002", column), cell, Tolerance())
        assert comp.verdict == PASS and abs(comp.delta) < 0.05 and comp.protocol_differences == ()


def test_missing_generations_are_a_data_error(tmp_path):
    with pytest.raises(DataError, match="recorded generations are missing; run `python -m harness data download`"):
        teacher_column("bbh_ao", tmp_path)
