"""The benchmark protocol (interleaving, spread, load record and refusal) and the CPU loss bench's plumbing."""

from __future__ import annotations

import json

import pytest

from kernels import bench, bench_cpu
from kernels.bench_protocol import LoadMeter, interleave, load_verdict, ratios, summary


def test_interleave_rotates_the_order_every_repeat():
    log = []
    provs = {name: (lambda name=name: log.append(name)) for name in "abc"}
    out = interleave(provs, 3, sample=lambda fn: fn() or 1.0, warmup=1)
    assert log[:3] == ["a", "b", "c"]  # the warm-up round
    assert log[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # each provider first once
    assert out == {"a": [1.0] * 3, "b": [1.0] * 3, "c": [1.0] * 3}


def test_summary_and_ratios():
    s = summary([1.0, 2.0, 3.0, 4.0, 10.0])
    assert s["median"] == 3.0 and s["min"] == 1.0 and s["max"] == 10.0 and s["repeats"] == 5
    assert s["spread_frac"] == pytest.approx(3.0) and s["p20"] <= s["median"] <= s["p80"]
    assert ratios([2.0, 3.0], [1.0, 2.0]) == [2.0, 1.5]


def test_load_verdict_keeps_only_quiet_runs():
    quiet = {"wall_s": 100.0, "own_cpu_s": 190.0, "other_cpu_s": 2.0, "cpus": 2, "other_fraction": 0.01}
    busy = dict(quiet, other_cpu_s=60.0, other_fraction=0.3)
    assert load_verdict(quiet)[0] is True
    keep, why = load_verdict(busy)
    assert keep is False and "60.0 CPU s" in why and "not quiet" in why
    assert load_verdict(dict(quiet, other_fraction=None))[0] is False  # unknown load is never kept
    with LoadMeter() as m:
        sum(range(10**5))
    rec = m.record()
    assert rec["wall_s"] >= 0 and rec["own_cpu_s"] >= 0 and rec["cpus"] >= 1
    assert rec["other_fraction"] is None or 0 <= rec["other_fraction"]


@pytest.fixture
def tiny_cpu_bench(monkeypatch):
    monkeypatch.setattr(bench_cpu, "V", 500)
    monkeypatch.setattr(bench_cpu, "SAMPLE_MS", 1.0)


def test_cpu_bench_refuses_a_loaded_run_and_forces_with_a_mark(tmp_path, capsys, tiny_cpu_bench):
    args = ["--device", "cpu", "--ns", "8", "--repeats", "2", "--out", str(tmp_path)]
    assert bench.main(args + ["--max-load", "-1"]) == 3  # every run is "loaded" at a negative threshold
    assert not list(tmp_path.iterdir())  # nothing written
    assert "NOT KEPT" in capsys.readouterr().err
    assert bench.main(args + ["--max-load", "-1", "--force"]) == 0
    md = (tmp_path / "cpu-loss.md").read_text()
    data = json.loads((tmp_path / "cpu-loss.json").read_text())
    assert md.startswith("# Sparse top-K KL on CPU") and "FORCED" in md
    assert data["meta"]["forced"] is True and data["meta"]["load_ok"] is False
    assert {r["provider"] for r in data["rows"]} == {"cross_entropy", "ours", "reference"}
    assert {(r["N"], r["K"]) for r in data["ratios"]} == {(8, 1), (8, 5)}
    assert all(r["repeats"] == 2 for r in data["rows"])


def test_cpu_bench_checks_a_rerun_against_the_previous_report(tmp_path, capsys, monkeypatch, tiny_cpu_bench):
    monkeypatch.setattr(bench_cpu, "load_verdict", lambda load, max_load: (True, "quiet (test)"))
    args = ["--device", "cpu", "--ns", "8", "--repeats", "2", "--no-reference", "--out", str(tmp_path)]
    assert bench.main(args) == 0
    first = json.loads((tmp_path / "cpu-loss.json").read_text())
    assert first["rerun_check"] is None and first["history"] == [] and set(first["rerun_figures"]) == {"N=8 K=1", "N=8 K=5"}
    assert "Rerun check" not in (tmp_path / "cpu-loss.md").read_text()
    assert bench.main(args + ["--repeats", "3"]) == 0  # the repeats may differ
    second = json.loads((tmp_path / "cpu-loss.json").read_text())
    check = second["rerun_check"]
    assert check["previous_commit"] == first["meta"]["git_commit"] and check["previous_was_result"] is True
    before = {f"N={r['N']} K={r['K']}": r for r in first["ratios"]}
    for key, c in check["figures"].items():
        assert c["previous"] == {"median": before[key]["ratio_median"], "min": before[key]["ratio_min"], "max": before[key]["ratio_max"]}
        assert c["within_previous_spread"] == (c["previous"]["min"] <= c["now"] <= c["previous"]["max"])
    assert set(check["figures"]) == {"N=8 K=1", "N=8 K=5"}
    assert [h["commit"] for h in second["history"]] == [first["meta"]["git_commit"]]
    md = (tmp_path / "cpu-loss.md").read_text()
    assert "Rerun check against the previous report" in md and "N=8 K=5" in md and "Earlier quiet runs" in md
    assert "rerun check N=8 K=1:" in capsys.readouterr().out
    assert bench.main(args + ["--ns", "16"]) == 0  # other shapes: not compared
    third = json.loads((tmp_path / "cpu-loss.json").read_text())
    assert third["rerun_check"] is None and third["history"] == []
    assert "Rerun check" not in (tmp_path / "cpu-loss.md").read_text()
