"""Each cell's setup: its selection always, and every setting that differs from the paper's."""

from __future__ import annotations

from conftest import make_cell, results_dict, schema2

from harness.report.cell_setup import cell_setup, paper_rule, trained
from harness.report.paper import load_paper
from harness.report.results import parse_results


def setup_of(cell: dict, teacher_data: dict | None = None):
    data = {"schema": 2, "table": "table1", "profile": "paper", "cells": [cell], "provenance": {"teacher_data": teacher_data or {}}}
    loaded = parse_results(data, "r.json")
    c = loaded.cells[0]
    return cell_setup(c, load_paper().cell(c.table, c.row, c.column), loaded.teacher_data)


def spec(row="flan-t5-xl specialized", column="gsm8k", **fields) -> dict:
    return {**make_cell("table1", row, column, 22.0), **fields}


def test_selection_is_always_shown_with_its_candidates():
    s = setup_of(spec(selection={"rule": "mas-dev", "checkpoint": "runs/train/x/checkpoints/iter_60000", "candidates": 13},
                      precision="fp32", launcher="python, 1 process"))
    assert s.parts == ("selected: best on M-A-S dev of 13 evaluated checkpoints (`iter_60000`)",) and s.differences == ()
    last = setup_of(spec(selection={"rule": "last", "checkpoint": None, "candidates": 428}))
    assert last.parts[0] == "selected: the last checkpoint of 428 saved (the paper: best on M-A-S dev)"
    assert last.differences == ("selection last (the paper: mas-dev)",)
    unknown = setup_of(spec(selection={"rule": "gsm8k-dev", "checkpoint": None, "candidates": None}))
    assert "number of candidate checkpoints not recorded" in unknown.text and "(the paper: best on M-A-S dev)" in unknown.text


def test_a_best_of_many_selection_is_flagged():
    s = setup_of(spec(selection={"rule": "mas-dev", "checkpoint": None, "candidates": 428}))
    assert "the authors chose among about 13: a best-of-428 dev score is more optimistic" in s.text
    assert s.differences == ("best of 428 checkpoints (the authors: about 13)",)


def test_precision_launcher_and_teacher_only_where_they_differ():
    teachers = schema2(results_dict())["provenance"]["teacher_data"]
    same = setup_of(spec(precision="fp32", launcher="python, 1 process (model parallel over 2 GPUs)", teacher="authors"), teachers)
    assert same.parts == ("teacher data `authors`: code-davinci-002, the authors' released pickles",) and same.differences == ()
    other = setup_of(spec(precision="tf32", launcher="accelerate launch: 8 processes, fsdp", teacher="qwen"), teachers)
    assert other.parts[:2] == ("tf32 (the authors: fp32)", "accelerate launch: 8 processes, fsdp (the authors: python, 1 process)")
    assert other.parts[2] == ("teacher data `qwen`: Qwen/Qwen2.5-7B-Instruct (tokenizer `hf:Qwen/Qwen2.5-7B-Instruct`) "
                              "(the paper: code-davinci-002), corrected pipeline (the paper: faithful)")
    assert other.differences == ("precision tf32 (the authors: fp32)", "launcher accelerate launch: 8 processes, fsdp (the authors: python, 1 process)",
                                 "teacher Qwen/Qwen2.5-7B-Instruct (the paper: code-davinci-002)", "corrected pipeline (the paper: faithful)")
    check = {"kind": "pipeline-check", "model": "default-gpt2", "tokenizer": None, "setting": "faithful"}
    assert "PIPELINE CHECK teacher default-gpt2" in setup_of(spec(teacher="t"), {"t": check}).text
    assert setup_of(make_cell("table1", "flan-t5-xl", "gsm8k", 14.0)).parts == ()  # a base cell, nothing recorded


def test_trained_cells_and_the_papers_rules():
    assert trained("table1", "flan-t5-xl specialized", "gsm8k") and not trained("table1", "flan-t5-xl", "gsm8k")
    assert trained("table2", "t5-base", "after") and not trained("table2", "t5-base", "before") and trained("table3", "flan-t5-xl mas-dev", "in_dist")
    paper = load_paper()
    assert paper_rule(paper.cell("table1", "flan-t5-xl specialized", "svamp")) == "mas-dev"
    assert paper_rule(paper.cell("table2", "t5-base", "after")) == "gsm8k-dev"
    assert paper_rule(paper.cell("table3", "flan-t5-large mas-dev", "in_dist")) == "mas-dev"
    assert paper_rule(paper.cell("table1", "flan-t5-xl", "gsm8k")) is None
