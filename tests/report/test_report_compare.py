"""Delta and tolerance arithmetic, verdicts and protocol differences, worked by hand."""

from __future__ import annotations

import math

import pytest
from conftest import make_cell, results_dict

from harness.report.compare import FAIL, NO_PAPER_VALUE, NOT_RUN, PASS, QUOTED, Tolerance, binomial_se, compare, compare_cell
from harness.report.paper import load_paper
from harness.report.results import parse_results


@pytest.fixture(scope="module")
def paper():
    return load_paper()


def _cell(table, row, column, value, n=None, **protocol):
    return parse_results({"schema": 1, "table": table, "profile": "paper",
                          "cells": [make_cell(table, row, column, value, n, **protocol)]}).cells[0]


def test_binomial_se_in_points():
    assert binomial_se(50.0, 100) == pytest.approx(5.0)
    assert binomial_se(22.4, 1319) == pytest.approx(100 * math.sqrt(0.224 * 0.776 / 1319))
    # 0 % is clamped to half an item, so the band is never zero wide
    assert binomial_se(0.0, 6511) == pytest.approx(100 * math.sqrt((1 / 13022) * (1 - 1 / 13022) / 6511))
    assert binomial_se(100.0, 10) == pytest.approx(binomial_se(0.0, 10)) and binomial_se(0.0, 10) > 0


@pytest.mark.parametrize("p, n, expected", [
    (22.4, 1319, 1.96 * 100 * math.sqrt(0.224 * 0.776 / 1319) + 0.05),  # GSM8K test: ±2.30
    (16.1, 5, 1.96 * 100 * math.sqrt(0.161 * 0.839 / 5) + 0.05),  # a 5-item CPU slice: ±32.3
    (0.73, 200, 1.96 * 100 * math.sqrt(0.0073 * 0.9927 / 200) + 0.005),  # two printed decimals: r = 0.005
])
def test_tolerance_formula(p, n, expected):
    assert Tolerance().points(p, n) == pytest.approx(expected)


def test_documented_examples():
    assert round(Tolerance().points(22.4, 1319), 2) == 2.30
    assert round(Tolerance().points(56.6, 5720), 2) == 1.33
    assert round(Tolerance().points(16.1, 5), 1) == 32.3


def test_floor_and_z():
    assert Tolerance(z=1.96, floor=3.0).points(22.4, 1319) == pytest.approx(3.05)  # floor wins over 2.25
    assert Tolerance(z=0.0).points(22.4, 1319) == pytest.approx(0.05)  # only the paper's rounding


def test_pass_fail_at_the_band_edge(paper):
    band = Tolerance().points(22.4, 1319)
    inside = compare_cell(paper.cell("table1", "flan-t5-xl specialized", "gsm8k"), _cell("table1", "flan-t5-xl specialized", "gsm8k", 22.4 + band - 1e-6), Tolerance())
    outside = compare_cell(paper.cell("table1", "flan-t5-xl specialized", "gsm8k"), _cell("table1", "flan-t5-xl specialized", "gsm8k", 22.4 - band - 1e-3), Tolerance())
    assert inside.verdict == PASS and inside.delta == pytest.approx(band - 1e-6) and inside.tolerance == pytest.approx(band)
    assert outside.verdict == FAIL and outside.delta < 0


def test_mean_cells_use_effective_n(paper):
    cell = _cell("table3", "flan-t5-xl mas-dev", "out_of_dist", 35.0, n=[200, 300, 300])
    comp = compare_cell(paper.cell("table3", "flan-t5-xl mas-dev", "out_of_dist"), cell, Tolerance())
    n_eff = 9 / (1 / 200 + 2 / 300)
    assert comp.tolerance == pytest.approx(1.96 * 100 * math.sqrt(0.35 * 0.65 / n_eff) + 0.05)


def test_zero_cells_are_strict(paper):
    # Table 1 prints 0.0 for specialized BBH CoT: 0.3 % over 6,511 items is outside the band.
    cell = _cell("table1", "flan-t5-xl specialized", "bbh_cot", 0.3, n=[250] * 27)
    comp = compare_cell(paper.cell("table1", "flan-t5-xl specialized", "bbh_cot"), cell, Tolerance())
    assert comp.verdict == FAIL and comp.tolerance < 0.1


def test_protocol_differences_are_named(paper):
    cell = _cell("table1", "flan-t5-xl specialized", "gsm8k", 22.0, task="gsm8k_cot_spec_zeroshot", rule="corrected", limit=5)
    comp = compare_cell(paper.cell("table1", "flan-t5-xl specialized", "gsm8k"), cell, Tolerance())
    assert comp.verdict == PASS  # still compared ...
    text = " ".join(comp.protocol_differences)  # ... but flagged
    assert "task: ours 'gsm8k_cot_spec_zeroshot', the paper's protocol 'gsm8k_cot_spec'" in text
    assert "rule: ours 'corrected'" in text and "limit: only 5 items" in text


def test_compare_covers_every_cell_with_the_right_verdicts(paper):
    data = results_dict("table1", shift=0.5)
    data["cells"] = [c for c in data["cells"] if c["row"] != "flan-t5-base"]  # leave one row out
    results = parse_results(data)
    comps = {c.key: c for c in compare(paper, results, "table1")}
    assert len(comps) == 15 * 6
    assert comps["table1/flan-t5-xl/gsm8k"].verdict == PASS and comps["table1/flan-t5-xl/gsm8k"].delta == pytest.approx(0.5)
    assert comps["table1/flan-t5-base/gsm8k"].verdict == NOT_RUN
    assert comps["table1/lamda-137b/gsm8k"].verdict == QUOTED
    assert comps["table1/lamda-137b/bbh_ao"].verdict == NO_PAPER_VALUE
    assert comps["table1/code-davinci-002/bbh_ao"].verdict == NOT_RUN  # the teacher row is added by the renderer


def test_results_tolerance_override(paper):
    data = results_dict("table2", shift=2.0)
    data["tolerance"] = {"floor": 10.0}  # above z x SE for every Table 2 cell at n = 200
    comps = compare(paper, parse_results(data), "table2")
    assert all(c.verdict == PASS for c in comps)
    assert {round(c.tolerance, 3) for c in comps} == {10.05, 10.005}
