"""Cells from `harness eval` summaries: the right number, the right counts, the paper's protocol."""

from __future__ import annotations

import json

import pytest

from harness.data.bbh import TASKS
from harness.errors import DataError, UsageError
from harness.report.collect import cell_from_summary, clean_from_summary, value_from_summary, write_results
from harness.report.results import load_results


def summary(limit=None) -> dict:
    tasks = {"gsm8k_cot_spec": {"acc_faithful": 22.44, "acc_corrected": 23.0, "n": 1319},
             "multiarith_cot_spec_dev": {"acc_faithful": 40.0, "n": 200}, "asdiv_cot_spec_dev": {"acc_faithful": 30.0, "n": 300},
             "svamp_cot_spec_dev": {"acc_faithful": 20.0, "n": 300}, "mas_cot_spec_dev": {"acc_faithful": 30.0, "n": 800}}
    for sub in TASKS:
        tasks[f"bbh_cot_spec_{sub}"] = {"acc_faithful": 0.0, "n": 250}
    bbh = {"bbh_cot_spec": {"acc_faithful": {"mean_27": 0.1, "mean_23": 0.2, "subtasks": 27}}}
    return {"tasks": tasks, "bbh": bbh, "model": "ckpt/xl", "output_dir": "runs/eval/xl/1",
            "manifest": {"config": {"limit": limit, "split_mode": "clean"}}}


def test_single_task_cell():
    cell = cell_from_summary(summary(), "table1", "flan-t5-xl specialized", "gsm8k")
    assert (cell["value"], cell["n"], cell["run"], cell["model"]) == (22.44, 1319, "runs/eval/xl/1", "ckpt/xl")
    assert cell["protocol"]["task"] == "gsm8k_cot_spec" and cell["protocol"]["rule"] == "faithful"
    assert cell["protocol"]["split_mode"] == "clean" and cell["protocol"]["limit"] is None


def test_group_cells_carry_member_counts():
    mas = cell_from_summary(summary(), "table3", "flan-t5-xl mas-dev", "out_of_dist")
    assert mas["value"] == 30.0 and mas["n"] == [200, 300, 300] and mas["protocol"]["selection"] == "mas_dev"
    bbh = cell_from_summary(summary(), "table1", "flan-t5-xl specialized", "bbh_cot")
    assert bbh["value"] == 0.1 and bbh["n"] == [250] * 27 and "subtasks" not in bbh["protocol"]
    value, counts, subtasks = value_from_summary(summary(), "bbh_cot_spec", "faithful", "mean_23")
    assert value == 0.2 and len(counts) == 23 and sum(counts) == 27 * 250 and max(counts) == 750 and subtasks == 27


def test_partial_bbh_and_limit_are_recorded():
    data = summary(limit=5)
    for sub in TASKS[1:]:
        del data["tasks"][f"bbh_cot_spec_{sub}"]
    cell = cell_from_summary(data, "table1", "flan-t5-xl specialized", "bbh_cot")
    assert cell["protocol"]["subtasks"] == 1 and cell["protocol"]["limit"] == 5 and cell["n"] == 250


def test_errors():
    with pytest.raises(UsageError, match="no lm-eval task measures this cell"):
        cell_from_summary(summary(), "table1", "code-davinci-002", "bbh_cot")
    with pytest.raises(DataError, match="no acc_faithful for task 'asdiv_cot_spec'"):
        cell_from_summary(summary(), "table1", "flan-t5-xl specialized", "asdiv")


def test_write_results_checks_before_writing(tmp_path):
    cells = [cell_from_summary(summary(), "table1", "flan-t5-xl specialized", c) for c in ("gsm8k", "bbh_cot")]
    path = write_results(tmp_path / "results.json", "table1", "paper", cells, seeds={"train": 0})
    assert len(load_results(path).cells) == 2
    with pytest.raises(DataError, match="profile: 'gpu' is not allowed"):
        write_results(tmp_path / "bad.json", "table1", "gpu", cells)
    assert not (tmp_path / "bad.json").exists()
    assert json.loads(path.read_text())["schema"] == 1


def clean_summary(mode="clean") -> dict:
    return {"tasks": {"asdiv_cot_spec": {"acc_faithful": 27.5, "n": 1990}, "svamp_cot_spec": {"acc_faithful": 22.0, "n": 690}},
            "model": "ckpt/xl", "output_dir": "runs/eval/xl/clean", "manifest": {"config": {"limit": None, "split_mode": mode}}}


def test_schema2_cell_fields():
    data = summary()
    data["tasks"]["asdiv_cot_spec"] = {"acc_faithful": 28.0, "n": 2305}
    chosen = {"rule": "mas-dev", "checkpoint": "ckpt/xl", "candidates": 13}
    cell = cell_from_summary(data, "table1", "flan-t5-xl specialized", "asdiv", chosen=chosen, precision="bf16",
                             launcher="accelerate launch: 2 processes, ddp", teacher="authors", clean_summary=clean_summary())
    assert cell["selection"] == chosen and (cell["precision"], cell["teacher"]) == ("bf16", "authors")
    assert cell["clean"] == {"value": 27.5, "n": [1990]} and cell["value"] == 28.0 and cell["n"] == 2305
    plain = cell_from_summary(summary(), "table1", "flan-t5-xl specialized", "gsm8k")
    assert not {"selection", "precision", "launcher", "teacher", "clean"} & set(plain)  # unset: not written


def test_clean_from_summary_checks_the_split_mode_and_the_column():
    assert clean_from_summary(clean_summary(), "table1", "svamp") == {"value": 22.0, "n": [690]}
    with pytest.raises(DataError, match="split_mode is 'faithful'; the test-minus-dev value comes from a run with --split-mode clean"):
        clean_from_summary(clean_summary("faithful"), "table1", "asdiv")
    with pytest.raises(UsageError, match="only table1/asdiv, table1/svamp have a test-minus-dev value"):
        clean_from_summary(clean_summary(), "table1", "gsm8k")


def test_write_results_says_the_oldest_schema_that_holds_the_content(tmp_path):
    old = write_results(tmp_path / "old.json", "table1", "paper", [cell_from_summary(summary(), "table1", "flan-t5-xl specialized", "gsm8k")])
    assert json.loads(old.read_text())["schema"] == 1
    cell = cell_from_summary(summary(), "table1", "flan-t5-xl specialized", "gsm8k", precision="fp32")
    new = write_results(tmp_path / "new.json", "table1", "paper", [cell])
    assert json.loads(new.read_text())["schema"] == 2 and load_results(new).cells[0].precision == "fp32"
    stopped = write_results(tmp_path / "stopped.json", "table1", "paper", [], not_run=[
        {"table": "table1", "row": "flan-t5-xxl specialized", "stage": "train", "reason": "CUDA out of memory"}])
    assert load_results(stopped).schema == 2 and load_results(stopped).not_run[0].stage == "train"
    with pytest.raises(DataError, match="not_run\\[0\\].stage: 'oom' is not allowed"):
        write_results(tmp_path / "bad.json", "table1", "paper", [], not_run=[
            {"table": "table1", "row": "flan-t5-xxl specialized", "stage": "oom", "reason": "x"}])
    assert not (tmp_path / "bad.json").exists()
