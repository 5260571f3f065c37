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
