"""Table 3's model selection over recorded eval rows."""

from __future__ import annotations

import json

import pytest

from harness.errors import DataError
from harness.train.selection import select_checkpoints, select_from_rows


def _rows(table):
    out = []
    for cp, (examples, scores) in table.items():
        out += [{"kind": "eval", "checkpoint": cp, "examples": examples, "task": t, "value": v} for t, v in scores.items()]
    return out


def test_best_by_each_dev_set_with_test_scores():
    rows = _rows({
        "c1": (10_000, {"gsm8k_cot_spec_dev": 20.0, "mas_cot_spec_dev": 30.0, "gsm8k_cot_spec": 19.0, "mas_cot_spec": 31.0}),
        "c2": (20_000, {"gsm8k_cot_spec_dev": 24.0, "mas_cot_spec_dev": 28.0, "gsm8k_cot_spec": 23.8, "mas_cot_spec": 33.2}),
        "c3": (30_000, {"gsm8k_cot_spec_dev": 22.0, "mas_cot_spec_dev": 35.0, "gsm8k_cot_spec": 21.2, "mas_cot_spec": 35.0}),
    })
    rows.append({"kind": "train", "step": 1, "examples": 5, "loss": 1.0})
    out = select_from_rows(rows)["choices"]
    assert out["gsm8k-dev"] == {"checkpoint": "c2", "examples": 20_000, "dev_task": "gsm8k_cot_spec_dev", "dev": 24.0,
                                "in_dist": 23.8, "in_dist_task": "gsm8k_cot_spec", "out_of_dist": 33.2, "out_of_dist_task": "mas_cot_spec"}
    assert out["mas-dev"]["checkpoint"] == "c3" and out["mas-dev"]["in_dist"] == 21.2


def test_ties_go_to_the_earliest_and_dev_scores_stand_in_for_missing_test_scores():
    rows = _rows({"late": (20, {"gsm8k_cot_spec_dev": 10.0, "mas_cot_spec_dev": 1.0}),
                  "early": (10, {"gsm8k_cot_spec_dev": 10.0, "mas_cot_spec_dev": 2.0})})
    out = select_from_rows(rows)["choices"]["gsm8k-dev"]
    assert out["checkpoint"] == "early" and out["in_dist_task"] == "gsm8k_cot_spec_dev" and out["out_of_dist"] == 2.0


def test_no_evaluations_gives_an_explicit_null_choice():
    out = select_from_rows([])["choices"]
    assert out["gsm8k-dev"]["checkpoint"] is None and "no checkpoint" in out["gsm8k-dev"]["note"]


def test_unreadable_metrics_name_the_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"kind": "train"}) + "\n{oops\n")
    with pytest.raises(DataError, match="metrics.jsonl: line 2"):
        select_checkpoints(tmp_path)


def _run_folder(tmp_path, table, last_examples):
    from harness.train import checkpoints as ck

    run = tmp_path / "run"
    for examples in sorted({e for e, _ in table.values()} | {last_examples}):
        folder = run / ck.name_for(examples)
        (folder / "model").mkdir(parents=True)
        (folder / ck.STATE_FILE).write_text(json.dumps(ck.Position(examples=examples).to_dict()))
    renamed = {ck.name_for(e): (e, scores) for e, scores in table.values()}
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(renamed)))
    return run


def test_select_by_rule_reports_the_rule_and_its_candidates(tmp_path):
    from harness.train import checkpoints as ck
    from harness.train.selection import select

    run = _run_folder(tmp_path, {
        "a": (10, {"gsm8k_cot_spec_dev": 20.0, "mas_cot_spec_dev": 30.0}),
        "b": (20, {"gsm8k_cot_spec_dev": 24.0, "mas_cot_spec_dev": 28.0}),
        "c": (30, {"mas_cot_spec_dev": 35.0}),  # scored on M-A-S dev only
    }, last_examples=40)
    by_mas = select(run, "mas-dev")
    assert (by_mas["checkpoint"], by_mas["rule"], by_mas["candidates"]) == (ck.name_for(30), "mas-dev", 3)
    assert by_mas["examples"] == 30 and by_mas["dev"] == 35.0 and by_mas["has_weights"] and by_mas["path"].endswith(ck.name_for(30))
    by_gsm = select(run, "gsm8k-dev")
    assert (by_gsm["checkpoint"], by_gsm["candidates"]) == (ck.name_for(20), 2)
    last = select(run, "last")
    assert (last["checkpoint"], last["rule"], last["candidates"], last["examples"]) == (ck.name_for(40), "last", 1, 40)
    assert last["dev"] is None and last["complete"] is False
    assert select(run)["rule"] == "mas-dev"  # the paper's recommendation is the default
    choices = select_checkpoints(run)["choices"]
    assert set(choices) == {"gsm8k-dev", "mas-dev", "last"} and all("candidates" in c and "rule" in c for c in choices.values())


def test_select_rejects_an_unknown_rule(tmp_path):
    from harness.errors import UsageError
    from harness.train.selection import select

    with pytest.raises(UsageError, match="--select: 'best' is not allowed; choose one of: last, gsm8k-dev, mas-dev"):
        select(tmp_path, "best")
