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
