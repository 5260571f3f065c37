"""The benchmark: fast faithful on real pairs (pytest-benchmark) and the bench command's contract."""

from __future__ import annotations

import json


def test_bench_result_has_the_promised_fields_and_oracle_equality(data_dir):
    from harness.align.bench import run_bench

    result = run_bench(n=8, with_authors_style=True, repeats=1)
    for key in ("pairs", "oracle_pairs_per_s", "faithful_pairs_per_s", "exact_pairs_per_s", "speedup_faithful_vs_oracle",
                "soft_fraction_faithful", "soft_fraction_exact", "identical_to_oracle"):
        assert key in result
    assert result["identical_to_oracle"] is True
    assert result["soft_fraction_exact"] > result["soft_fraction_faithful"]
    assert result["projection"]["samples"] == 207_135 and result["projection"]["cores"] == 2


def quiet_or_loaded(monkeypatch, other_per_read: float):
    """align.bench's load meter on a fake 2-core machine: 1 s per reading, others `other_per_read` CPU s."""
    from harness.align import bench
    from harness.benchmarking import LoadMeter

    ticks = iter(range(10**6))
    state = {"other": 0.0}

    def busy():
        state["other"] += other_per_read
        return state["other"]

    monkeypatch.setattr(bench, "LoadMeter", lambda: LoadMeter(busy=busy, own=lambda: 0.0, clock=lambda: float(next(ticks)), cores=2))


def test_bench_interleaves_repeats_and_reports_spreads(data_dir):
    from harness.align.bench import ORACLE_PAIRS, run_bench

    result = run_bench(n=6, oracle_n=3, repeats=3)
    assert result["repeats"] == 3 and len(result["load_per_repeat"]) == 3
    assert set(result["pairs_per_s"]) == {"oracle", "fast faithful (oracle's pairs)", "fast faithful", "exact",
                                          "end-to-end faithful", "end-to-end exact", "authors-style"}
    assert set(ORACLE_PAIRS) < set(result["pairs_per_s"])
    for s in result["pairs_per_s"].values():
        assert s["n"] == 3 and 0 < s["min"] <= s["median"] <= s["max"]
    assert result["oracle_pairs_per_s"] == round(result["pairs_per_s"]["oracle"]["median"], 2)
    assert result["speedups"]["faithful_vs_oracle"]["n"] == 3 and result["identical_to_oracle"] is True


def test_report_written_on_a_quiet_machine(data_dir, tmp_path, monkeypatch, capsys):
    from harness.align.bench import report

    quiet_or_loaded(monkeypatch, 0.0)
    json_path, md_path = report(n=6, oracle_n=3, runner_samples=0, repeats=2, out_dir=tmp_path)
    result = json.loads(json_path.read_text())
    assert result["verdict"]["result"] is True and result["load"]["other_cpu_s"] == 0.0
    prov = result["provenance"]
    assert prov["command"] == ("python -m harness align report --n 6 --seed 0 --oracle-n 3 --runner-samples 0 --repeats 2 "
                               f"--runner-repeats 4 --max-load 0.05 --out-dir {tmp_path}")
    assert prov["git_commit"] and prov["packages"]["numba"] and prov["inputs_sha256"]
    md = md_path.read_text()
    assert "Result: measured on a quiet machine" in md and prov["command"] in md and "| oracle | 3 |" in md
    assert "pairs_per_s" in capsys.readouterr().out


def test_report_rerun_is_checked_against_the_previous_report(data_dir, tmp_path, monkeypatch, capsys):
    from harness.align.bench import report

    quiet_or_loaded(monkeypatch, 0.0)
    small = dict(n=6, oracle_n=3, runner_samples=0, out_dir=tmp_path)
    first = json.loads(report(repeats=1, **small)[0].read_text())
    assert first["rerun_check"] is None and first["history"] == [] and first["rerun_figures"] == first["speedups"]
    json_path, md_path = report(repeats=2, **small)  # the repeats may differ
    second = json.loads(json_path.read_text())
    check = second["rerun_check"]
    assert check["previous_commit"] == first["provenance"]["git_commit"] and check["previous_was_result"] is True
    assert set(check["figures"]) == {"faithful_vs_oracle", "faithful_vs_authors_style"}
    for key, c in check["figures"].items():
        assert c["previous"] == {k: first["speedups"][key][k] for k in ("median", "min", "max")}
        assert c["within_previous_spread"] == (c["previous"]["min"] <= c["now"] <= c["previous"]["max"])
    assert [h["commit"] for h in second["history"]] == [first["provenance"]["git_commit"]]
    md = md_path.read_text()
    assert "Rerun check against the previous report" in md and "fast faithful vs authors-style" in md and "Earlier quiet runs" in md
    assert "rerun check faithful_vs_oracle:" in capsys.readouterr().out
    third = json.loads(report(repeats=1, seed=1, **small)[0].read_text())  # another seed: not compared
    assert third["rerun_check"] is None and third["history"] == []
    assert "Rerun check" not in md_path.read_text()


def test_report_refused_on_a_loaded_machine_unless_allowed(data_dir, tmp_path, monkeypatch, capsys):
    import pytest
    from typer.testing import CliRunner

    from harness.align.bench import report
    from harness.benchmarking import NotKept
    from harness.cli import app

    quiet_or_loaded(monkeypatch, 1.0)  # 50% of the machine
    with pytest.raises(NotKept, match="50.0% of the machine"):
        report(n=6, oracle_n=3, runner_samples=0, repeats=1, out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()
    assert "speedups" in capsys.readouterr().out  # the numbers were printed
    args = ["align", "report", "--n", "6", "--oracle-n", "3", "--runner-samples", "0", "--repeats", "1", "--out-dir", str(tmp_path)]
    result = CliRunner().invoke(app, args + ["--allow-load"])
    assert result.exit_code == 0, result.output
    assert "Measured under load, not a result" in (tmp_path / "alignment_stats.md").read_text()


def test_measured_runner_alternates_modes(data_dir):
    from harness.align.bench import measure_runner

    out = measure_runner(n=12, workers=1, repeats=2)
    assert out["repeats"] == 2
    for mode in ("faithful", "exact"):
        assert len(out[mode]["seconds"]) == 2 and out[mode]["samples_per_s"]["n"] == 2
        assert out[mode]["projected_s_207135"] > 0


def test_cli_bench_json(data_dir):
    from typer.testing import CliRunner

    from harness.cli import app

    result = CliRunner().invoke(app, ["align", "bench", "--n", "4", "--json"])
    assert result.exit_code == 0, result.output
    parsed = json.loads(result.output.strip().splitlines()[-1])
    assert parsed["pairs"] == 4 and parsed["identical_to_oracle"] is True
    assert "faithful_end_to_end" in parsed["projected_s_207135_samples_2_cores"]


def test_benchmark_fast_faithful(benchmark, data_dir):
    """pytest --benchmark-enable tests/align/test_bench.py times this on 50 real pairs."""
    from harness.align.bench import prepare_pairs
    from harness.align.faithful_fast import align_faithful_fast

    pairs, _, student = prepare_pairs(50)
    vocab = student.vocab()

    def align_all():
        return [align_faithful_fast(p.teacher_tokens, p.topk, p.student.tokens, vocab) for p in pairs]

    out = benchmark(align_all)
    assert len(out) == 50 and all(len(o) == len(p.student) for o, p in zip(out, pairs))


def test_benchmark_exact(benchmark, data_dir):
    from harness.align.api import AlignConfig, Aligner
    from harness.align.bench import prepare_pairs

    pairs, _, student = prepare_pairs(50)
    aligner = Aligner(AlignConfig(mode="exact"), student)
    out = benchmark(lambda: [aligner.align(p.teacher_tokens, p.topk, p.student) for p in pairs])
    assert len(out) == 50
