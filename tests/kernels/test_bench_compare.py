"""The kernel-speed regression gate (`python -m kernels.bench --compare`) on recorded result files.

RECORDED is a result as `python -m kernels.bench` writes it on an H100 (trimmed to two loss
shapes, forward and backward rows of one, and the fused-linear providers; rows skipped for lack of
memory and of liger-kernel, as the bench records them). Each test
writes it, or an edited copy, to a file and runs the command's `main` on the files.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kernels import bench_compare
from kernels.bench_compare import is_measurement, main, row_key

ROOT = Path(__file__).resolve().parents[2]

RECORDED = r"""
{
 "meta": {
  "gpu": "NVIDIA H100 80GB HBM3",
  "versions": {"torch": "2.13.0+cu130", "python": "3.11.18", "triton": "3.7.1", "liger_kernel": "0.6.4"},
  "git_commit": "045a13d6f0c1e2b7a9d85c3e4f7a1b2c3d4e5f60",
  "timestamp": "2026-11-20T09:14:03Z",
  "copy_bandwidth_bytes_per_s": 2987413508096.0
 },
 "loss": [
  {"kind": "loss", "N": 16384, "V": 32128, "K": 5, "dtype": "bfloat16", "provider": "triton_inplace", "median_ms": 1.0842, "p20_ms": 1.0811, "p80_ms": 1.0893, "peak_extra_bytes": 2097152, "peak_extra_over_logits": 0.002, "bytes_moved": 3161587712, "floor_bytes": 2105540608},
  {"kind": "loss", "N": 16384, "V": 32128, "K": 5, "dtype": "bfloat16", "provider": "triton", "median_ms": 1.1267, "p20_ms": 1.1224, "p80_ms": 1.1309, "peak_extra_bytes": 1054867456, "peak_extra_over_logits": 1.002, "bytes_moved": 3161587712, "floor_bytes": 2105540608},
  {"kind": "loss", "N": 16384, "V": 32128, "K": 5, "dtype": "bfloat16", "provider": "triton_inplace", "pass": "fwd", "median_ms": 0.7215, "p20_ms": 0.7190, "p80_ms": 0.7248},
  {"kind": "loss", "N": 16384, "V": 32128, "K": 5, "dtype": "bfloat16", "provider": "triton_inplace", "pass": "bwd", "median_ms": 0.0093, "p20_ms": 0.0091, "p80_ms": 0.0097},
  {"kind": "loss", "N": 16384, "V": 32128, "K": 5, "dtype": "bfloat16", "provider": "eager", "median_ms": 5.9731, "p20_ms": 5.9602, "p80_ms": 5.9870, "peak_extra_bytes": 4219469824, "peak_extra_over_logits": 4.007, "bytes_moved": 3161587712, "floor_bytes": 2105540608},
  {"kind": "loss", "N": 16384, "V": 32128, "K": 5, "dtype": "bfloat16", "provider": "torch_compile", "median_ms": 2.4415, "p20_ms": 2.4380, "p80_ms": 2.4462, "peak_extra_bytes": 2109734912, "peak_extra_over_logits": 2.004, "bytes_moved": 3161587712, "floor_bytes": 2105540608},
  {"kind": "loss", "N": 16384, "V": 32128, "K": 5, "dtype": "bfloat16", "provider": "dense_authors", "median_ms": 9.8204, "p20_ms": 9.8011, "p80_ms": 9.8422, "peak_extra_bytes": 8438939648, "peak_extra_over_logits": 8.014, "bytes_moved": 3161587712, "floor_bytes": 2105540608},
  {"kind": "loss", "N": 16384, "V": 32128, "K": 5, "dtype": "bfloat16", "provider": "liger_ce", "median_ms": 1.0127, "p20_ms": 1.0098, "p80_ms": 1.0163, "peak_extra_bytes": 1048576, "peak_extra_over_logits": 0.001, "bytes_moved": 3161587712, "floor_bytes": 2105540608},
  {"kind": "loss", "N": 65536, "V": 131072, "K": 20, "dtype": "bfloat16", "provider": "triton_inplace", "median_ms": 17.1934, "p20_ms": 17.1702, "p80_ms": 17.2218, "peak_extra_bytes": 8388608, "peak_extra_over_logits": 0.0005, "bytes_moved": 51565871104, "floor_bytes": 34359738368},
  {"kind": "loss", "N": 65536, "V": 131072, "K": 20, "dtype": "bfloat16", "provider": "triton", "median_ms": 17.6020, "p20_ms": 17.5800, "p80_ms": 17.6301, "peak_extra_bytes": 17188257792, "peak_extra_over_logits": 1.0005, "bytes_moved": 51565871104, "floor_bytes": 34359738368},
  {"kind": "loss", "N": 65536, "V": 131072, "K": 20, "dtype": "bfloat16", "provider": "eager", "skipped": "skipped: out of memory"},
  {"kind": "loss", "N": 65536, "V": 131072, "K": 20, "dtype": "bfloat16", "provider": "liger_ce", "skipped": "skipped: liger-kernel not installed (pip install liger-kernel in the GPU environment)"},
  {"kind": "loss", "N": 65536, "V": 131072, "K": 20, "dtype": "bfloat16", "provider": "dense_authors", "skipped": "skipped: out of memory"}
 ],
 "fused_linear": [
  {"kind": "fused_linear", "N": 16384, "d": 2048, "V": 32128, "K": 5, "dtype": "bfloat16", "provider": "fused_linear_triton", "median_ms": 6.8810, "p20_ms": 6.8702, "p80_ms": 6.8944, "peak_extra_bytes": 142606336},
  {"kind": "fused_linear", "N": 16384, "d": 2048, "V": 32128, "K": 5, "dtype": "bfloat16", "provider": "matmul_triton", "median_ms": 7.5127, "p20_ms": 7.5031, "p80_ms": 7.5240, "peak_extra_bytes": 1199570944},
  {"kind": "fused_linear", "N": 16384, "d": 2048, "V": 32128, "K": 5, "dtype": "bfloat16", "provider": "eager_matmul", "median_ms": 8.2215, "p20_ms": 8.2113, "p80_ms": 8.2340, "peak_extra_bytes": 3231711232}
 ]
}
"""


def recorded() -> dict:
    return json.loads(RECORDED)


def find(result: dict, provider: str, section: str = "loss", **shape) -> dict:
    """The one row of `provider` with these fields (`pass` absent unless given: the forward+backward row)."""
    shape.setdefault("pass", None)
    rows = [r for r in result[section] if r["provider"] == provider and all(r.get(k) == v for k, v in shape.items())]
    assert len(rows) == 1, (provider, shape)
    return rows[0]


@pytest.fixture
def run(tmp_path, capsys):
    """run(current, baseline=RECORDED, *extra) -> (exit code, stdout, stderr)."""

    def _run(current, baseline=None, *extra):
        paths = []
        for i, result in enumerate([baseline or recorded()] + (current if isinstance(current, list) else [current])):
            path = tmp_path / f"result{i}.json"
            path.write_text(json.dumps(result))
            paths.append(path)
        argv = ["--compare", str(paths[0])]
        for p in paths[1:]:
            argv += ["--current", str(p)]
        code = main(argv + ["--max-slowdown", "0.10", *extra])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def test_identical_results_pass(run):
    code, out, err = run(recorded())
    assert code == 0, err
    assert "OK: 7 tracked rows within 10% of the baseline" in out
    assert "| loss N=16384 V=32128 K=5 bfloat16 triton_inplace | 1.084 | 1.084 | +0.0% | ok |" in out


def test_a_tracked_slowdown_fails_with_one_line_per_row(run):
    cur = recorded()
    find(cur, "triton_inplace", N=16384)["median_ms"] *= 1.15
    find(cur, "fused_linear_triton", "fused_linear")["median_ms"] *= 1.30
    code, out, err = run(cur)
    assert code == 1
    assert "FAIL: 2 of 7 tracked rows regressed" in err
    assert "FAIL loss N=16384 V=32128 K=5 bfloat16 triton_inplace: 1.084 ms -> 1.247 ms (+15.0%, more than the allowed +10.0%)" in err
    assert "FAIL fused_linear N=16384 d=2048 V=32128 K=5 bfloat16 fused_linear_triton: 6.881 ms -> 8.945 ms (+30.0%" in err
    assert "| +15.0% | SLOWER |" in out


def test_the_threshold_is_strict_and_p20_p80_do_not_count(run):
    cur = recorded()
    row = find(cur, "triton", N=65536)
    row["median_ms"] *= 1.0999  # just inside the gate
    row["p80_ms"] *= 3  # a noisy tail alone is not a regression: the gate reads the median
    assert run(cur)[0] == 0


def test_speedups_pass_and_are_reported(run):
    cur = recorded()
    find(cur, "triton_inplace", N=16384)["median_ms"] *= 0.5
    code, out, _ = run(cur)
    assert code == 0
    assert "| +0.0% | ok |" in out and "| -50.0% | faster |" in out
    assert "(1 faster)" in out


def test_untracked_providers_are_shown_not_gated(run):
    cur = recorded()
    find(cur, "eager", N=16384)["median_ms"] *= 2  # eager PyTorch got slower: not our kernel
    find(cur, "liger_ce", N=16384)["median_ms"] *= 2
    code, out, _ = run(cur)
    assert code == 0
    assert "| loss N=16384 V=32128 K=5 bfloat16 eager | 5.973 | 11.946 | +100.0% | untracked |" in out


def test_a_missing_tracked_shape_fails(run):
    cur = recorded()
    cur["loss"] = [r for r in cur["loss"] if not (r["N"] == 65536 and r["provider"] == "triton")]
    cur["fused_linear"] = []
    code, out, err = run(cur)
    assert code == 1
    assert "FAIL loss N=65536 V=131072 K=20 bfloat16 triton: missing from the current results (baseline 17.602 ms)" in err
    assert "FAIL fused_linear N=16384 d=2048 V=32128 K=5 bfloat16 fused_linear_triton: missing" in err
    assert "| MISSING |" in out


def test_a_shape_is_identified_by_every_non_measurement_field(run):
    cur = recorded()
    find(cur, "triton_inplace", N=16384)["dtype"] = "float16"  # another shape, not the baseline's
    code, out, err = run(cur)
    assert code == 1
    assert "FAIL loss N=16384 V=32128 K=5 bfloat16 triton_inplace: missing" in err
    assert "| loss N=16384 V=32128 K=5 float16 triton_inplace | — | 1.084 | — | new |" in out


def test_a_missing_untracked_row_is_fine(run):
    cur = recorded()
    cur["loss"] = [r for r in cur["loss"] if r["provider"] != "liger_ce"]  # liger-kernel not installed here
    code, out, _ = run(cur)
    assert code == 0
    assert "| loss N=16384 V=32128 K=5 bfloat16 liger_ce | 1.013 | — | — | untracked |" in out


def test_different_gpu_models_are_refused(run):
    cur = recorded()
    cur["meta"]["gpu"] = "NVIDIA H200"
    code, out, err = run(cur)
    assert code == 2 and out == ""
    assert "refusing to compare across GPU models: the baseline ran on 'NVIDIA H100 80GB HBM3', the current results on 'NVIDIA H200'" in err


def test_repeated_runs_must_share_a_gpu_and_are_combined_by_median(run):
    runs = [recorded(), recorded(), recorded()]
    for factor, r in zip((1.30, 1.02, 1.04), runs):  # one slow outlier run out of three
        find(r, "triton_inplace", N=16384)["median_ms"] *= factor
    code, out, _ = run(runs)
    assert code == 0
    assert "| loss N=16384 V=32128 K=5 bfloat16 triton_inplace | 1.084 | 1.128 | +4.0% | ok |" in out
    runs[2]["meta"]["gpu"] = "NVIDIA A100-SXM4-80GB"
    code, _, err = run(runs)
    assert code == 2 and "the --current files come from different GPUs" in err


def test_skipped_rows(run):
    # Skipped in the baseline (out of memory) and still skipped: shown, nothing to compare.
    code, out, _ = run(recorded())
    assert code == 0
    assert "| loss N=65536 V=131072 K=20 bfloat16 eager | — | — | — | untracked |" in out
    # A tracked row skipped in the baseline is listed, not gated, whatever it does now.
    base = recorded()
    find(base, "triton", N=65536).update({"skipped": "skipped: out of memory"})
    for key in ("median_ms", "p20_ms", "p80_ms", "peak_extra_bytes", "peak_extra_over_logits", "bytes_moved"):
        find(base, "triton", N=65536).pop(key)
    code, out, _ = run(recorded(), base)
    assert code == 0 and "| loss N=65536 V=131072 K=20 bfloat16 triton | — | 17.602 | — | baseline skipped |" in out
    # A tracked row measured in the baseline but skipped now (an OOM or a failure) is a regression.
    cur = recorded()
    row = find(cur, "triton_inplace", N=65536)
    for key in list(row):
        if key.endswith(("_ms", "_bytes", "_over_logits")) or key == "bytes_moved":
            row.pop(key)
    row["skipped"] = "failed: RuntimeError: Triton Error [CUDA]: an illegal memory access was encountered"
    code, _, err = run(cur)
    assert code == 1
    assert ("FAIL loss N=65536 V=131072 K=20 bfloat16 triton_inplace: measured in the baseline (17.193 ms), "
            "now failed: RuntimeError: Triton Error [CUDA]: an illegal memory access was encountered") in err


def test_a_baseline_without_tracked_rows_is_refused(run):
    base = recorded()
    base["loss"] = [r for r in base["loss"] if not r["provider"].startswith("triton")]
    base["fused_linear"] = [r for r in base["fused_linear"] if r["provider"] != "fused_linear_triton"]
    code, _, err = run(recorded(), base)
    assert code == 2 and "no row from a tracked provider" in err and "TRACKED_PROVIDERS" in err


def test_unreadable_inputs_are_refused_with_the_file_named(tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text(RECORDED)
    assert main(["--compare", str(tmp_path / "baseline.json"), "--current", str(good)]) == 2
    assert "no baseline there; record one on the GPU with `nox -s kernel-baseline`" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"meta": {"gpu": "NVIDIA H100 80GB HBM3"}, "loss": [{"kind": "loss", "provider": "triton"}]}')
    assert main(["--compare", str(good), "--current", str(bad)]) == 2
    assert f"{bad}: loss[0] has neither median_ms nor skipped" in capsys.readouterr().err
    bad.write_text('{"loss": []}')
    assert main(["--compare", str(good), "--current", str(bad)]) == 2
    assert "no 'meta' object" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["--compare", str(good), "--current", str(good), "--max-slowdown", "-0.1"])
    assert exit_.value.code == 2


def test_measurement_fields_are_explicit():
    for name in ("median_ms", "p20_ms", "p80_ms", "fwd_ms", "peak_extra_bytes", "peak_extra_over_logits", "bytes_moved",
                 "skipped", "copy_bandwidth_bytes_per_s", "floor_bw_fraction"):
        assert is_measurement(name), name
    for name in ("kind", "N", "V", "K", "d", "dtype", "provider", "pass", "reduction", "temperature"):
        assert not is_measurement(name), name
    row = find(recorded(), "triton_inplace", N=16384)
    assert dict(row_key(row)) == {"K": "5", "N": "16384", "V": "32128", "dtype": '"bfloat16"', "kind": '"loss"', "provider": '"triton_inplace"'}
    assert bench_compare.TRACKED_PROVIDERS == {"triton", "triton_inplace", "triton_two_kernel", "fused_linear_triton"}


def test_pass_field_separates_forward_and_backward_rows(run):
    cur = recorded()
    find(cur, "triton_inplace", N=16384, **{"pass": "fwd"})["median_ms"] = 0.85  # forward only: +17.8%
    find(cur, "triton_inplace", N=16384, **{"pass": "bwd"})["median_ms"] = 0.0089
    code, out, err = run(cur)
    assert code == 1
    assert "FAIL: 1 of 7 tracked rows regressed" in err
    assert "FAIL loss N=16384 V=32128 K=5 bfloat16 triton_inplace pass=fwd: 0.722 ms -> 0.850 ms (+17.8%" in err
    assert "| loss N=16384 V=32128 K=5 bfloat16 triton_inplace | 1.084 | 1.084 | +0.0% | ok |" in out
    assert "| loss N=16384 V=32128 K=5 bfloat16 triton_inplace pass=bwd | 0.009 | 0.009 | -4.3% | faster |" in out


def test_promote_writes_the_baseline(tmp_path, capsys):
    result = tmp_path / "sparse_kl_20261120T091403Z.json"
    result.write_text(RECORDED)
    baseline = tmp_path / "reports" / "baseline.json"
    assert main(["--promote", str(result), "--baseline", str(baseline)]) == 0
    assert "now holds" in capsys.readouterr().out
    stored = json.loads(baseline.read_text())
    assert stored["meta"]["baseline"]["promoted_from"] == str(result)
    assert stored["loss"] == recorded()["loss"]
    assert main(["--compare", str(baseline), "--current", str(result)]) == 0


def test_the_command_line_entry_point(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(RECORDED)
    proc = subprocess.run([sys.executable, "-m", "kernels.bench_compare", "--compare", str(path), "--current", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "OK: 7 tracked rows" in proc.stdout


def test_kernels_bench_delegates_compare(tmp_path, capsys):
    from kernels import bench

    if "bench_compare" not in Path(bench.__file__).read_text():
        pytest.skip("kernels/bench.py does not delegate --compare to kernels.bench_compare yet")
    path = tmp_path / "r.json"
    path.write_text(RECORDED)
    assert bench.main(["--compare", str(path), "--current", str(path), "--max-slowdown", "0.10"]) == 0
    assert "OK: 7 tracked rows" in capsys.readouterr().out


def test_tune_sweep_rows_are_shown_not_gated(run):
    base = recorded()
    base["tune"] = [
        {"kind": "tune", "N": 16384, "V": 32128, "K": 5, "dtype": "bfloat16", "provider": "triton_inplace",
         "block_v": 4096, "num_warps": 8, "heuristic": True, "median_ms": 1.0842, "p20_ms": 1.0811, "p80_ms": 1.0893, "floor_bytes": 2105540608},
        {"kind": "tune", "N": 16384, "V": 32128, "K": 5, "dtype": "bfloat16", "provider": "triton_inplace",
         "block_v": 512, "num_warps": 2, "heuristic": False, "median_ms": 2.9175, "p20_ms": 2.9101, "p80_ms": 2.9266, "floor_bytes": 2105540608},
    ]
    cur = copy.deepcopy(base)
    cur["tune"][1]["median_ms"] *= 1.5  # a bad configuration got worse: not a regression of the kernel in use
    code, out, _ = run(cur, base)
    assert code == 0
    assert "| tune N=16384 V=32128 K=5 bfloat16 triton_inplace block_v=512 heuristic=False num_warps=2 | 2.917 | 4.376 | +50.0% | untracked |" in out
    cur["tune"] = []  # a run without --tune
    assert run(cur, base)[0] == 0
