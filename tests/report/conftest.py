"""Results files for the report tests: built from the paper's own protocols, values shifted."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness.report.paper import TABLE_COLUMNS, TABLE_ROWS, load_paper

N = {"gsm8k": 1319, "multiarith": 400, "asdiv": 2305, "svamp": 1000, "bbh_ao": [250] * 27, "bbh_cot": [250] * 27,
     "before": 200, "after": 200, "in_dist": 200, "out_of_dist": [200, 300, 300]}


def make_cell(table: str, row: str, column: str, value: float, n=None, **protocol) -> dict:
    """A results cell measured with exactly the paper cell's protocol (overridable)."""
    p = load_paper().cell(table, row, column).protocol
    spec = {"task": p.task, "split": p.split, "prompt": p.prompt, "rule": p.rule or "faithful", "aggregate": p.aggregate,
            "selection": p.selection}
    spec.update(protocol)
    return {"table": table, "row": row, "column": column, "value": value, "n": n if n is not None else N[column],
            "protocol": spec, "run": f"runs/eval/{row.replace(' ', '-')}/{column}"}


def results_dict(table: str = "table1", profile: str = "paper", shift: float = 0.5, n=None, with_figures: bool = True) -> dict:
    """Every reproducible cell of `table` at the paper's value + shift, plus Fig. 3/4 data."""
    paper = load_paper()
    cells = []
    for row in TABLE_ROWS.get(table, ()):
        for column in TABLE_COLUMNS[table]:
            c = paper.cell(table, row, column)
            if c.value is None or c.protocol.quoted or c.protocol.task is None:
                continue
            cells.append(make_cell(table, row, column, round(min(100.0, c.value + shift), 4), n))
    curves, fig4 = [], []
    if with_figures:
        for matching in ("distribution", "sample"):
            for examples, values in ((0, (13.5, 20.8, 39.9, 35.8)), (10000, (16.0, 22.0, 10.0, 0.0)), (20000, (20.0, 30.0, 8.0, 0.0))):
                for task, value in zip(("gsm8k", "mas", "bbh_ao", "bbh_cot"), values):
                    curves.append({"run": f"runs/train/xl-{matching}", "model": "flan-t5-xl", "matching": matching,
                                   "examples": examples, "task": task, "value": value, "n": 200 if task != "bbh_cot" else 6511})
        for train in ("in_context", "zero_shot"):
            for test in ("in_context", "zero_shot"):
                for examples, value in ((10000, 10.0), (20000, 20.0), (30000, 5.0 if (train, test) == ("zero_shot", "in_context") else 30.0)):
                    fig4.append({"run": f"runs/train/xl-{train}", "model": "flan-t5-xl", "train_format": train,
                                 "test_format": test, "examples": examples, "value": value, "n": 200})
    return {"schema": 1, "table": table, "profile": profile, "cells": cells, "curves": curves, "fig4": fig4,
            "provenance": {"git_commit": "0123abc", "device": "test device", "python": "3.11",
                           "packages": {"lm-eval": "0.4.13"}, "data_sha256": {"gsm8k/test.jsonl": "ab" * 32},
                           "tasks": {"gsm8k_cot_spec": {"version": 1.1, "yaml": "gsm8k_cot_spec.yaml", "sha256": "cd" * 32}},
                           "container": {"image_digest": "sha256:" + "ef" * 32, "in_container": True}},
            "seeds": {"train": 0}}


@pytest.fixture
def write_results(tmp_path: Path):
    """write_results(dict) -> path of a results file holding it."""
    def write(data: dict, name: str = "results.json") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(data), encoding="utf-8")
        return path

    return write


AUTHORS = {"kind": "authors-pickles", "model": "code-davinci-002", "tokenizer": "t5 pieces", "sampling": None,
           "stats": {"records": {"in_context_cot": 120, "zero_shot_cot": 120}}, "content": "0123456789abcdef",
           "files": {"in_context_chain_of_thought.pkl": {"sha256": "a1" * 32, "bytes": 1000, "records": 120},
                     "zero_shot_chain_of_thought.pkl": {"sha256": "b2" * 32, "bytes": 900, "records": 120}},
           "setting": "faithful"}
STORE = {"kind": "teacher-store", "model": "Qwen/Qwen2.5-7B-Instruct", "tokenizer": "hf:Qwen/Qwen2.5-7B-Instruct",
         "sampling": {"n": 40, "temperature": 0.5, "max_tokens": 256, "top_k": 5, "backend": "openai"},
         "stats": {"questions": 7473, "first_sample_accuracy": {"corrected": 0.81, "faithful": 0.8}}, "content": "fedcba9876543210",
         "files": None, "setting": "corrected"}


def schema2(data: dict, precision: str = "bf16", launcher: str = "accelerate launch: 8 processes, fsdp") -> dict:
    """A schema-1 results dict grown to schema 2: every specialized cell selected on M-A-S dev
    among 13 checkpoints, trained on the authors' pickles; ASDiv/SVAMP cells with a clean value;
    losses for the two Fig. 3 runs; one Table 1 row not run."""
    data = {**copy.deepcopy(data), "schema": 2}
    data["provenance"] = {**data.get("provenance", {}), "teacher_data": copy.deepcopy({"authors": AUTHORS, "qwen": STORE})}
    for cell in data["cells"]:
        specialized = cell["table"] == "table1" and cell["row"].endswith(" specialized")
        cell["precision"], cell["launcher"] = (precision, launcher) if specialized else ("fp32", "python, 1 process")
        if specialized:
            cell["selection"] = {"rule": "mas-dev", "checkpoint": "runs/train/x/checkpoints/iter_60000", "candidates": 13}
            cell["teacher"] = "authors"
        if cell["table"] == "table1" and cell["column"] in ("asdiv", "svamp"):
            cell["clean"] = {"value": round(cell["value"] - 1.0, 4), "n": [cell["n"] - 300]}
    data["losses"] = [{"run": f"runs/train/xl-{m}", "model": "flan-t5-xl", "matching": m, "examples": 32 * step, "step": step,
                       "loss": (1.0 if m == "distribution" else 2.0) / (1 + step / 10)} for m in ("distribution", "sample") for step in range(0, 50, 5)]
    data["not_run"] = []
    return data
