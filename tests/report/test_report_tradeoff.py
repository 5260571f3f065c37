"""The trade-off report of `harness specialize`, rendered from hand-built results."""

from __future__ import annotations

import json

import pytest

from harness.errors import DataError
from harness.report.tradeoff import change_interval, render_tradeoff, wilson


def results(**changes):
    data = {
        "schema": "tradeoff-1", "student": "tiny-gpt2", "loss": "distribution", "setting": "corrected", "pipeline_check": True,
        "teacher": {"kind": "teacher-store", "model": "fake-teacher", "tokenizer": "tiktoken:p50k_base"},
        "metrics": [
            {"task": "gsm8k_cot_spec", "label": "GSM8K, in-context", "group": "math, in-distribution",
             "before": {"value": 10.0, "n": 200}, "after": {"value": 30.0, "n": 200}},
            {"task": "bbh_cot_spec", "label": "BBH CoT", "group": "generic (BBH)",
             "before": {"value": 40.0, "n": 500}, "after": {"value": 39.0, "n": 500}},
            {"task": "mas_cot_spec", "label": "M-A-S, in-context", "group": "math, out-of-distribution", "before": None, "after": None},
        ],
        "curves": [{"task": "gsm8k_cot_spec_dev", "examples": e, "value": v, "n": 200} for e, v in ((0, 10.0), (100, 20.0), (200, 28.0))],
        "losses": [{"examples": e, "loss": 2.0 - e / 200} for e in range(0, 200, 20)],
        "selection": {"rule": "mas-dev", "checkpoint": "checkpoint-000000200", "candidates": 2, "examples": 200, "dev": 28.0},
        "provenance": {"git_commit": "abc123"},
    }
    data.update(changes)
    return data


def test_intervals():
    low, high = wilson(50.0, 100)
    assert low == pytest.approx(40.38, abs=0.01) and high == pytest.approx(59.62, abs=0.01)
    diff, low, high = change_interval({"value": 10.0, "n": 200}, {"value": 30.0, "n": 200})
    assert diff == pytest.approx(20.0) and low > 0 and high < 40


def test_report_shows_gains_losses_the_choice_and_figures(tmp_path):
    path = tmp_path / "tradeoff.results.json"
    path.write_text(json.dumps(results()))
    written = render_tradeoff(path, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == ["curves.png", "loss.png", "tradeoff.html", "tradeoff.md", "tradeoff.png"]
    md = (tmp_path / "out" / "tradeoff.md").read_text()
    assert "PIPELINE CHECK" in md and "| GSM8K, in-context | 10.0 [" in md and "+20.0" in md and "| up |" in md
    assert "no clear change" in md and "not run" in md  # BBH CoT -1 point at n 500: not a clear loss
    assert "checkpoint-000000200" in md and "among 2 evaluated checkpoint(s)" in md
    html = (tmp_path / "out" / "tradeoff.html").read_text()
    assert html.count("data:image/png;base64,") == 3


def test_a_malformed_file_names_the_field(tmp_path):
    path = tmp_path / "bad.json"
    bad = results()
    bad["metrics"][0]["group"] = "vibes"
    path.write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"metrics\[0\].group: 'vibes'"):
        render_tradeoff(path, tmp_path / "out")
    path.write_text(json.dumps({"schema": "1"}))
    with pytest.raises(DataError, match="field 'schema'"):
        render_tradeoff(path, tmp_path / "out")
