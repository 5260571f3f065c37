"""`harness score` on hand-made files; expected accuracies worked out by hand in the comments."""

import json
import subprocess
import sys

import pytest

from harness.scoring import read_generations, score
from harness.records import RecordError

BBH_ROWS = [
    # date_understanding: faithful 2/3 (row 2 says "The answer is": case-sensitive miss), exact 3/3
    {"task": "date_understanding", "prediction": "Today is x. So the answer is (B).", "target": "(B)"},
    {"task": "date_understanding", "prediction": "The answer is (A).", "target": "(A)"},
    {"task": "date_understanding", "prediction": "so the answer is (C)", "target": "(C)"},
    # logical_deduction_three_objects: faithful 1/2, exact 1/2
    {"task": "logical_deduction_three_objects", "prediction": "So the answer is (A).", "target": "(A)"},
    {"task": "logical_deduction_three_objects", "prediction": "So the answer is (B).", "target": "(C)"},
    # logical_deduction_five_objects: faithful 1/1 (lenient "16" contains "6"), exact 0/1
    {"task": "logical_deduction_five_objects", "prediction": "So the answer is 16.", "target": "6"},
]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bbh_cot_by_hand(tmp_path):
    rows = read_generations(_write(tmp_path / "g.jsonl", BBH_ROWS), "bbh_cot")
    faithful = score(rows, "bbh_cot", "faithful")
    assert faithful["tasks"] == {
        "date_understanding": {"accuracy": 66.6667, "n": 3},
        "logical_deduction_five_objects": {"accuracy": 100.0, "n": 1},
        "logical_deduction_three_objects": {"accuracy": 50.0, "n": 2},
    }
    # mean_27 over present subtasks: (66.6667 + 100 + 50) / 3 = 72.2222
    # mean_23: date 66.6667; logical_deduction pooled (1 + 1) / 3 items = 66.6667 -> 66.6667
    assert faithful["mean_27"] == pytest.approx(72.2222, abs=1e-3)
    assert faithful["mean_23"] == pytest.approx(66.6667, abs=1e-3)
    assert "incomplete" in faithful
    corrected = score(rows, "bbh_cot", "corrected")
    assert [corrected["tasks"][t]["accuracy"] for t in sorted(corrected["tasks"])] == [100.0, 0.0, 50.0]


def test_math_by_hand(tmp_path):
    rows = [
        {"task": "gsm8k", "prediction": "The answer is 1,000", "target": "1000"},  # faithful no (000), corrected yes
        {"task": "gsm8k", "prediction": "The answer is -5", "target": "5"},  # faithful yes (no sign), corrected no
        {"task": "gsm8k", "prediction": "The answer is 7. Q: 9 dogs", "target": "#### 7"},  # faithful no (last is 9), corrected yes
        {"task": "gsm8k", "prediction": "So 3 + 4 = 7. The answer is 7", "target": "7"},  # both yes
    ]
    generations = read_generations(_write(tmp_path / "m.jsonl", rows), "gsm8k")
    assert score(generations, "gsm8k", "faithful")["tasks"] == {"gsm8k": {"accuracy": 50.0, "n": 4}}
    assert score(generations, "gsm8k", "corrected")["tasks"] == {"gsm8k": {"accuracy": 75.0, "n": 4}}


def test_lm_eval_samples_file(tmp_path):
    sample = {
        "doc_id": 0,
        "doc": {"id": "bbh/snarks/0", "subset": "snarks", "prompt": "…", "target": "(A)"},
        "target": "(A)",
        "resps": [["So the answer is (A)."]],
        "filtered_resps": ["So the answer is (A)."],
    }
    path = _write(tmp_path / "samples_bbh_cot_spec_snarks_2026-01-01T00-00-00.jsonl", [sample])
    result = score(read_generations(path, "bbh_cot"), "bbh_cot")
    assert result["tasks"] == {"snarks": {"accuracy": 100.0, "n": 1}}


@pytest.mark.parametrize(
    "row, field",
    [({"prediction": "x", "target": "(A)"}, "task"), ({"task": "snarks", "target": "(A)"}, "prediction"), ({"task": "nope", "prediction": "x", "target": "y"}, "task")],
)
def test_bad_rows_name_the_line_and_field(tmp_path, row, field):
    path = _write(tmp_path / "bad.jsonl", [BBH_ROWS[0], row])
    with pytest.raises(RecordError) as err:
        read_generations(path, "bbh_cot")
    assert err.value.field == field and err.value.record == "line 2"


def test_cli_json_and_errors(tmp_path):
    path = _write(tmp_path / "g.jsonl", BBH_ROWS)
    run = subprocess.run([sys.executable, "-m", "harness", "score", "--suite", "bbh_cot", str(path), "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["tasks"]["date_understanding"] == {"accuracy": 66.6667, "n": 3} and set(out) >= {"tasks", "mean_27", "mean_23"}
    bad = _write(tmp_path / "bad.jsonl", [{"task": "snarks"}])
    run = subprocess.run([sys.executable, "-m", "harness", "score", "--suite", "bbh_cot", str(bad)], capture_output=True, text=True)
    assert run.returncode == 1 and "line 1" in run.stderr and "prediction" in run.stderr
