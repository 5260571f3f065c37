"""scripts/bench_pipeline.py's plumbing at a tiny size: repeats, summary, the load verdict, the refusal.
A fake load meter decides quiet or loaded; no assertion depends on how fast anything ran."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from harness import benchmarking

ROOT = Path(__file__).resolve().parent.parent
REAL_METER = benchmarking.LoadMeter


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("bench_pipeline_under_test", ROOT / "scripts" / "bench_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def fake_machine(monkeypatch, other_per_read: float):
    """Each reading of the meter 1 s after the last; others took `other_per_read` CPU s of 2 cores meanwhile."""
    ticks = iter(range(10**6))
    state = {"other": 0.0}

    def busy():
        state["other"] += other_per_read
        return state["other"]

    monkeypatch.setattr(benchmarking, "LoadMeter", lambda: REAL_METER(busy=busy, own=lambda: 0.0, clock=lambda: float(next(ticks)), cores=2))


def no_store(monkeypatch, script):
    """Tests that replace the timed stages need no real store either."""
    monkeypatch.setattr(script, "build_store_in_child", lambda root, samples: {
        "samples": samples, "tokens": 1000, "bytes_on_disk": 21000, "bytes_per_token": 21.0, "build_seconds_untimed_stage": 0.0})


def test_the_real_stages_write_a_result_on_a_quiet_machine(script, data_dir, tmp_path, monkeypatch, capsys):
    fake_machine(monkeypatch, 0.0)
    assert script.main(["--samples", "24", "--workers", "1", "--repeats", "1", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "pipeline.json").read_text())
    assert result["store"]["samples"] == 24 and len(result["runs"]) == 1
    run = result["runs"][0]
    assert run["reference_seconds"] > 0 and run["total_per_reference"] == round(run["total_seconds"] / run["reference_seconds"], 1)
    for stage in ("align", "formats"):
        assert result["summary"][stage]["seconds"]["n"] == 1 and result["runs"][0][stage]["seconds"] > 0
        assert result["summary"][stage]["cpu_seconds_other_processes"] == [0.0]
    assert result["verdict"]["result"] is True and result["aligned_bytes_per_token"] > 0
    assert result["manifest"]["command"] == f"python scripts/bench_pipeline.py --samples 24 --workers 1 --repeats 1 --max-load 0.05 --out {tmp_path}"
    page = (tmp_path / "pipeline.md").read_text()
    assert "Result: measured on a quiet machine" in page and result["manifest"]["command"] in page
    assert "wrote" in capsys.readouterr().out


def test_a_loaded_machine_is_printed_not_written(script, data_dir, tmp_path, monkeypatch, capsys):
    fake_machine(monkeypatch, 1.0)  # 50% of the machine
    canned = {"seconds": 1.0, "cpu_seconds_main_process": 0.5, "cpu_seconds_workers": 0.0, "peak_rss_gib_largest_process": 0.1,
              "cpu_seconds_other_processes": 1.0, "reference_seconds": 0.25}
    runs = [{"align": {**canned, "seconds": s}, "formats": canned, "total_seconds": s + 1.0, "reference_seconds": 0.25,
             "total_per_reference": (s + 1.0) / 0.25} for s in (3.0, 1.0, 2.0)]
    monkeypatch.setattr(script, "run_repeats", lambda store, tmp, workers, repeats, meter: (runs[:repeats], {"aligned_bytes": 10, "formats_bytes": 20}))
    no_store(monkeypatch, script)
    args = ["--samples", "12", "--workers", "1", "--repeats", "3", "--out", str(tmp_path / "r")]
    assert script.main(args) == 3
    out, err = capsys.readouterr()
    assert "| **total**" in out and "not a result" in out  # the numbers, shown
    assert "not kept as a result" in err and "50.0% of the machine" in err and "--allow-load" in err
    assert not (tmp_path / "r").exists()
    assert script.main(args + ["--allow-load"]) == 0
    assert "Measured under load, not a result" in (tmp_path / "r" / "pipeline.md").read_text()
    summary = json.loads((tmp_path / "r" / "pipeline.json").read_text())["summary"]
    assert summary["align"]["seconds"] == benchmarking.spread([3.0, 1.0, 2.0]).to_dict()
    assert summary["total_seconds"]["median"] == 3.0 and summary["align"]["cpu_seconds_other_processes"] == [1.0] * 3


@pytest.mark.parametrize("args, option", [(["--repeats", "0"], "--repeats"), (["--max-load", "-1"], "--max-load")])
def test_bad_options(script, tmp_path, capsys, args, option):
    assert script.main(args + ["--out", str(tmp_path / "r")]) == 2
    assert option in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_a_rerun_is_checked_against_the_report_it_replaces_and_earlier_runs_are_kept(script, tmp_path, monkeypatch, capsys):
    fake_machine(monkeypatch, 0.0)
    canned = {"seconds": 1.0, "cpu_seconds_main_process": 0.5, "cpu_seconds_workers": 0.0, "peak_rss_gib_largest_process": 0.1,
              "cpu_seconds_other_processes": 0.0, "reference_seconds": 0.5}
    totals = iter([(10.0, 12.0, 14.0), (13.0, 13.5, 15.0), (20.0, 21.0, 22.0)])

    def run_repeats(store, tmp, workers, repeats, meter):
        runs = [{"align": {**canned, "seconds": t - 1.0}, "formats": canned, "total_seconds": t, "reference_seconds": 0.5,
                 "total_per_reference": t / 0.5} for t in next(totals)]
        return runs, {"aligned_bytes": 10, "formats_bytes": 20}

    monkeypatch.setattr(script, "run_repeats", run_repeats)
    no_store(monkeypatch, script)
    out = tmp_path / "r"
    args = ["--samples", "12", "--workers", "1", "--repeats", "3", "--out", str(out)]
    assert script.main(args) == 0
    first = json.loads((out / "pipeline.json").read_text())
    assert first["rerun_check"] is None and first["history"] == []
    assert "Rerun check" not in (out / "pipeline.md").read_text()

    assert script.main(args) == 0  # median 13.5: inside the first run's total, 10.0–14.0
    second = json.loads((out / "pipeline.json").read_text())
    check = second["rerun_check"]["figures"]["total_seconds"]
    assert check == {"now": 13.5, "previous": {"median": 12.0, "min": 10.0, "max": 14.0}, "within_previous_spread": True}
    assert [run["figures"]["total_seconds"]["median"] for run in second["history"]] == [12.0]
    page = (out / "pipeline.md").read_text()
    assert "Rerun check against the previous report" in page and "total s 13.5 inside 10.0–14.0" in page
    assert "Across these 2 runs the median total ranged 12.0–13.5 s." in page

    capsys.readouterr()
    assert script.main(args) == 0  # median 21.0: outside 13.0–15.0, said on the page and on stderr
    third = json.loads((out / "pipeline.json").read_text())
    assert third["rerun_check"]["figures"]["total_seconds"]["within_previous_spread"] is False
    assert [run["figures"]["total_seconds"]["median"] for run in third["history"]] == [12.0, 13.5]
    page = (out / "pipeline.md").read_text()
    assert "total s 21.0 OUTSIDE 13.0–15.0" in page and "total / machine reference 42.0 OUTSIDE 26.0–30.0" in page
    # the same reference in every repeat: dividing by it cannot narrow the spread, and the page says so
    assert "the total in those units: 42 (40–44), a spread of 10% of its median against 10% for the seconds" in page
    assert "did not narrow the spread" in page
    assert "rerun check total_seconds: 21.0 OUTSIDE the previous 13.0–15.0" in capsys.readouterr().err


def test_a_rerun_with_other_samples_is_not_compared(script, tmp_path, monkeypatch):
    fake_machine(monkeypatch, 0.0)
    canned = {"seconds": 1.0, "cpu_seconds_main_process": 0.5, "cpu_seconds_workers": 0.0, "peak_rss_gib_largest_process": 0.1,
              "cpu_seconds_other_processes": 0.0, "reference_seconds": 0.5}
    monkeypatch.setattr(script, "run_repeats", lambda store, tmp, workers, repeats, meter: (
        [{"align": canned, "formats": canned, "total_seconds": 2.0, "reference_seconds": 0.5, "total_per_reference": 4.0}] * repeats, {"aligned_bytes": 10, "formats_bytes": 20}))
    no_store(monkeypatch, script)
    out = tmp_path / "r"
    assert script.main(["--samples", "12", "--workers", "1", "--repeats", "1", "--out", str(out)]) == 0
    assert script.main(["--samples", "13", "--workers", "1", "--repeats", "1", "--out", str(out)]) == 0
    result = json.loads((out / "pipeline.json").read_text())
    assert result["rerun_check"] is None and result["history"] == []
