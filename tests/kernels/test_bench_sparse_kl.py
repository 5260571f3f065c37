"""pytest-benchmark microbenchmarks (run once, untimed, under the default --benchmark-disable).

CPU: the sparse reference vs the authors' dense-target formula at a small shape (they must also
agree, so the benchmark cannot pass on wrong numbers). GPU: the Triton kernel vs eager.
`python -m kernels.bench` is the full sweep; its no-GPU path and its report rendering are tested here.
"""

from __future__ import annotations

import pytest
import torch
from kl_testutil import make_inputs

from kernels import authors_dense_kl, dense_target_from_topk, sparse_topk_kl, sparse_topk_kl_reference
from kernels import bench
from kernels.reference import eager_sparse_kl

N, V, K = 256, 4096, 5


def _fwd_bwd(loss_fn, logits):
    def run():
        z = logits.detach().requires_grad_(True)
        loss = loss_fn(z)
        loss.backward()
        return loss.detach(), z.grad

    return run


@pytest.fixture
def cpu_inputs():
    logits, ids, probs, mask = make_inputs(N, V, K, pad_frac=0.0, dup=False, mask_frac=0.0, empty_row=False)
    return logits, ids, probs


def test_bench_cpu_sparse_reference(benchmark, cpu_inputs):
    logits, ids, probs = cpu_inputs
    loss, grad = benchmark(_fwd_bwd(lambda z: sparse_topk_kl_reference(z, ids, probs, variant="faithful"), logits))
    want = authors_dense_kl(logits, dense_target_from_topk(ids, probs, V))
    torch.testing.assert_close(loss, want, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(grad).all()


def test_bench_cpu_dense_authors(benchmark, cpu_inputs):
    logits, ids, probs = cpu_inputs
    loss, grad = benchmark(_fwd_bwd(lambda z: authors_dense_kl(z, dense_target_from_topk(ids, probs, V)), logits))
    want = sparse_topk_kl_reference(logits, ids, probs, variant="faithful")
    torch.testing.assert_close(loss, want, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(grad).all()


def test_bench_cpu_eager(benchmark, cpu_inputs):
    logits, ids, probs = cpu_inputs
    loss, _ = benchmark(_fwd_bwd(lambda z: eager_sparse_kl(z, ids, probs), logits))
    torch.testing.assert_close(loss, sparse_topk_kl_reference(logits, ids, probs), atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("provider", ["triton_inplace", "eager"])
def test_bench_gpu(benchmark, provider):
    logits, ids, probs, _ = make_inputs(16384, 32128, 5, dtype=torch.bfloat16, device="cuda", pad_frac=0.0, dup=False, mask_frac=0.0, empty_row=False)
    if provider == "triton_inplace":
        def fn(z):
            return sparse_topk_kl(z.view_as(z), ids, probs, inplace=True, validate=False)  # a fresh view: z holds a gradient
    else:
        def fn(z):
            return eager_sparse_kl(z, ids, probs)
    z = logits.requires_grad_(True)

    def run():
        z.grad = None
        fn(z).backward()
        torch.cuda.synchronize()

    benchmark(run)
    assert torch.isfinite(z.grad).all()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_bench_script_without_gpu_writes_pending_page(tmp_path, capsys):
    assert bench.main(["--out", str(tmp_path)]) == 0
    text = (tmp_path / bench.PAGE).read_text()
    assert "pending" in text and "scripts/gpu_check.sh" in text and "Targets" in text and "issue 11" in text
    assert "no CUDA GPU" in capsys.readouterr().err
    (tmp_path / bench.PAGE).write_text("# measured results\n")
    bench.main(["--out", str(tmp_path)])
    assert (tmp_path / bench.PAGE).read_text() == "# measured results\n", "measured results must not be overwritten"


def test_floor_and_design_bytes():
    # The floor is one read and one write of the logits; the single-pass design adds only the small arrays.
    n, v, k = 16384, 32128, 5
    assert bench.floor_bytes(n, v, elem=2) == 2 * n * v * 2
    got = bench.bytes_moved(n, v, k, elem=2, id_elem=8)
    assert got == 2 * n * v * 2 + n * k * (16 + 8 + 2) + 8 * n
    assert got < 1.01 * bench.floor_bytes(n, v, elem=2)


def synthetic_result():
    """Clearly synthetic numbers shaped like a result (never written as one)."""
    row = dict(kind="loss", N=16384, V=32128, K=5, dtype="bfloat16", median_ms=1.0, p20_ms=0.9, p80_ms=1.1, min_ms=0.85,
               max_ms=1.15, spread_frac=0.3, repeats=5, peak_extra_bytes=10, peak_extra_over_logits=0.01,
               bytes_moved=bench.bytes_moved(16384, 32128, 5, 2), floor_bytes=bench.floor_bytes(16384, 32128, 2))
    split = dict(kind="loss", N=16384, V=32128, K=5, dtype="bfloat16", median_ms=0.75, p20_ms=0.7, p80_ms=0.8, spread_frac=0.1)
    return {
        "meta": {"gpu": "SYNTHETIC", "versions": {"torch": "t", "triton": "tr", "liger_kernel": None}, "git_commit": "abc",
                 "timestamp": "now", "copy_bandwidth_bytes_per_s": 3.0e12, "protocol": {"repeats": 5, "sample": "s"},
                 "load_reason": "other processes used 0.1 CPU s"},
        "loss": [dict(row, provider="eager", median_ms=4.0), dict(row, provider="triton_inplace"),
                 dict(split, provider="triton_inplace", **{"pass": "fwd"}),
                 dict(split, provider="triton_inplace", median_ms=0.01, **{"pass": "bwd"}),
                 {"kind": "loss", "N": 16384, "V": 32128, "K": 5, "dtype": "bfloat16", "provider": "liger_ce", "skipped": bench.LIGER_MISSING},
                 {"kind": "loss", "N": 65536, "V": 131072, "K": 5, "provider": "eager", "skipped": "skipped: out of memory"}],
        "fused_linear": [{"kind": "fused_linear", "N": 1, "d": 2, "V": 3, "K": 5, "dtype": "bfloat16", "provider": "eager_matmul",
                          "median_ms": 1.0, "p20_ms": 1.0, "p80_ms": 1.0, "spread_frac": 0.0, "peak_extra_bytes": 2**20}],
        "tune": [{"kind": "tune", "N": 16384, "V": 32128, "K": 5, "dtype": "bfloat16", "provider": "triton_inplace", "block_v": 8192,
                  "num_warps": 16, "maxnreg": 40, "resident": False, "heuristic": True, "median_ms": 0.5, "p20_ms": 0.5, "p80_ms": 0.5,
                  "spread_frac": 0.02, "floor_bytes": bench.floor_bytes(16384, 32128, 2)}],
    }


def test_render_markdown_from_synthetic_result():
    result = synthetic_result()
    md = bench.render_markdown(result)
    row = result["loss"][1]
    design = 100 * row["bytes_moved"] / 1e-3 / 3.0e12
    floor = 100 * row["floor_bytes"] / 1e-3 / 3.0e12
    assert f"| 16384 | 32128 | 5 | bfloat16 | triton_inplace | 1.000 | 0.900 | 1.100 | 30% | 0.01 | 4.00x | {design:.0f} | {floor:.0f} |" in md
    assert "| 16384 | 32128 | 5 | bfloat16 | triton_inplace | fwd | 0.750 |" in md
    assert "| 16384 | 32128 | 5 | bfloat16 | triton_inplace | bwd | 0.010 |" in md
    assert "liger-kernel not installed" in md and "out of memory" in md and "Targets" in md
    assert "interleaved" in md and "Load: other processes" in md
    assert f"| 32128 | bfloat16 | 8192 | 16 | 40 | re-read | yes | 0.500 | 2% | {100 * row['floor_bytes'] / 0.5e-3 / 3.0e12:.0f} |" in md


def test_interleaved_rows_keep_the_earlier_keys_and_record_failures():
    # The regression gate keys rows on their non-measurement fields: forward+backward rows keep the
    # earlier key fields exactly (no `pass`); a provider that fails while warming up is a skipped row.
    clock = bench.CpuClock()

    def broken():
        raise RuntimeError("boom")

    units = {"liger_ce": bench.LIGER_MISSING, "ok": (lambda: 1.0, lambda: None), "bad": (lambda: 1.0, broken)}
    base = {"kind": "loss", "N": 16, "V": 64, "K": 5, "dtype": "bfloat16"}
    rows = {r["provider"]: r for r in bench.interleaved_rows(clock, units, 3, base)}
    assert set(rows["liger_ce"]) == {"kind", "N", "V", "K", "dtype", "provider", "skipped"}
    assert rows["bad"]["skipped"] == "failed: RuntimeError: boom"
    assert rows["ok"]["median_ms"] == 1.0 and rows["ok"]["repeats"] == 3 and rows["ok"]["spread_frac"] == 0.0
    from kernels.bench_compare import row_key

    assert row_key(rows["ok"]) == row_key({**base, "provider": "ok", "median_ms": 2.0})


def test_liger_missing_and_broken_are_told_apart(monkeypatch):
    import sys

    monkeypatch.setattr(bench.importlib.util, "find_spec", lambda name: None)
    assert bench.liger_ce() == bench.LIGER_MISSING
    monkeypatch.setattr(bench.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", None)  # importing it raises ImportError
    got = bench.liger_ce()
    assert isinstance(got, str) and got.startswith("failed: liger-kernel is installed but importing it raised ModuleNotFoundError")


def test_tune_reaches_resident_and_reread_tiles_without_spilling_configs():
    from kernels.tiles import tile_config

    small = bench.tune_configs(16000, around=True)
    assert small[0] == tuple(tile_config(16000, interpreting=False)[i] for i in (0, 1, 3, 2))  # the heuristic first
    assert any(c[3] for c in small) and any(not c[3] for c in small)  # register-resident and re-read both reached
    wide = bench.tune_configs(32128, around=False)
    assert all(not c[3] for c in wide)  # no resident 32K tile (one row per SM, 127-255 registers, spills at 4 warps)
    assert all(c[0] <= 16384 for c in wide)


def test_targets_verdict_on_synthetic_headline_rows():
    # Clearly synthetic figures at the headline shape: each issue-11 target is met or missed by the numbers.
    from kernels.bench_report import targets_verdict

    shape = dict(kind="loss", N=16384, V=32128, K=5, dtype="bfloat16", floor_bytes=bench.floor_bytes(16384, 32128, 2))
    bw = 3.0e12
    floor_ms = shape["floor_bytes"] / bw * 1e3
    result = {"meta": {"copy_bandwidth_bytes_per_s": bw},
              "loss": [dict(shape, provider="triton_inplace", median_ms=floor_ms / 0.9, peak_extra_over_logits=0.01),
                       dict(shape, provider="eager", median_ms=floor_ms / 0.9 * 2.5),
                       dict(shape, provider="liger_ce", skipped=bench.LIGER_MISSING)],
              "fused_linear": [dict(kind="fused_linear", N=16384, d=2048, V=32128, dtype="bfloat16", provider=p, median_ms=ms, peak_extra_bytes=b)
                               for p, ms, b in (("fused_linear_triton", 10.5, 100), ("matmul_triton", 10.0, 900), ("eager_matmul", 30.0, 1000))]}
    got = {name: (figure, verdict) for name, _, figure, verdict in targets_verdict(result)}
    assert got["bandwidth"] == ("90.0", "met")
    assert got["speed"] == ("2.50", "MISSED")
    assert got["speed of light"] == ("—", "not measured")
    assert got["memory"] == ("0.010", "met")
    assert got["fused-linear memory"] == ("10.0", "met")
    assert got["fused-linear time"] == ("1.050", "met")
