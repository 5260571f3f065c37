"""harness.teacher.http_bench's protocol plumbing at a tiny size: interleaved runs, per-run load, the
refusal. A fake load meter decides quiet or loaded; nothing asserts on a rate."""

from __future__ import annotations

import json

import pytest

from harness.benchmarking import LoadMeter, rotations
from harness.teacher import http_bench

TINY = ["--delay", "0.005", "--concurrency", "4", "--requests", "20", "--max-tokens", "2"]


def fake_machine(monkeypatch, other_per_read: float):
    ticks = iter(range(10**6))
    state = {"other": 0.0}

    def busy():
        state["other"] += other_per_read
        return state["other"]

    monkeypatch.setattr(http_bench, "LoadMeter", lambda: LoadMeter(busy=busy, own=lambda: 0.0, clock=lambda: float(next(ticks)), cores=2))


def test_runs_interleave_and_a_quiet_run_is_written(tmp_path, monkeypatch, capsys):
    fake_machine(monkeypatch, 0.0)
    order = []
    real = http_bench.run_once
    monkeypatch.setattr(http_bench, "run_once", lambda *a, **kw: order.append((a[3], a[5], a[6])) or real(*a, **kw))
    assert http_bench.main(TINY + ["--repeats", "2", "--out", str(tmp_path)]) == 0
    names = [name for name, *_ in http_bench.PLAN]
    settings = {name: tuple(rest) for name, *rest in http_bench.PLAN}
    assert order == [settings[name] for o in rotations(names, 2) for name in o]  # rotated, not one run after another
    record = json.loads((tmp_path / "http_client.json").read_text())
    assert list(record["runs"]) == names and all(len(reps) == 2 for reps in record["runs"].values())
    assert all(rep["load"]["other_cpu_s"] == 0.0 for reps in record["runs"].values() for rep in reps)
    assert record["verdict"]["result"] is True
    assert record["manifest"]["command"].startswith("python -m harness.teacher.http_bench --delay 0.005 --concurrency 4 --requests 20")
    assert record["manifest"]["packages"]["aiohttp"] != "not installed"
    page = (tmp_path / "http_client.md").read_text()
    assert "Result: measured on a quiet machine" in page and "| clean |" in page and record["manifest"]["command"] in page


def test_a_rerun_is_checked_against_the_previous_report(tmp_path, monkeypatch, capsys):
    fake_machine(monkeypatch, 0.0)
    args = TINY + ["--repeats", "1", "--out", str(tmp_path)]
    assert http_bench.main(args) == 0
    first = json.loads((tmp_path / "http_client.json").read_text())
    assert first["rerun_check"] is None and first["history"] == []
    after_d = "10% 429/500, answered after d"
    assert set(first["rerun_figures"]) == {*first["runs"], after_d + http_bench.ATTEMPTS}
    assert first["rerun_figures"]["clean"]["median"] == first["runs"]["clean"][0]["sustained_fraction_of_ideal"]
    assert http_bench.main(TINY + ["--repeats", "2", "--out", str(tmp_path)]) == 0  # the repeats may differ
    second = json.loads((tmp_path / "http_client.json").read_text())
    check = second["rerun_check"]
    assert check["previous_commit"] == first["manifest"]["git_commit"] and check["previous_was_result"] is True
    assert set(check["figures"]) == set(first["rerun_figures"])
    for key, c in check["figures"].items():
        assert c["previous"] == {k: first["rerun_figures"][key][k] for k in ("median", "min", "max")}
        assert c["within_previous_spread"] == (c["previous"]["min"] <= c["now"] <= c["previous"]["max"])
    assert [h["commit"] for h in second["history"]] == [first["manifest"]["git_commit"]]
    page = (tmp_path / "http_client.md").read_text()
    assert "Rerun check against the previous report" in page and "bare aiohttp" in page and "Earlier quiet runs" in page
    assert "rerun check clean:" in capsys.readouterr().out
    other = ["--delay", "0.005", "--concurrency", "2", "--requests", "20", "--max-tokens", "2", "--repeats", "1"]
    assert http_bench.main(other + ["--out", str(tmp_path)]) == 0  # another concurrency: not compared
    third = json.loads((tmp_path / "http_client.json").read_text())
    assert third["rerun_check"] is None and third["history"] == []
    assert "Rerun check" not in (tmp_path / "http_client.md").read_text()


def test_a_loaded_run_is_printed_not_written(tmp_path, monkeypatch, capsys):
    fake_machine(monkeypatch, 1.0)
    assert http_bench.main(TINY + ["--repeats", "1", "--out", str(tmp_path / "r")]) == 3
    out, err = capsys.readouterr()
    assert "| clean |" in out and "not kept as a result" in err and "--allow-load" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, option", [(["--repeats", "0"], "--repeats"), (["--requests", "5"], "--requests"),
                                          (["--max-load", "3"], "--max-load")])
def test_bad_options(tmp_path, capsys, args, option):
    assert http_bench.main(TINY + args + ["--out", str(tmp_path / "r")]) == 2
    assert option in capsys.readouterr().err and not (tmp_path / "r").exists()
