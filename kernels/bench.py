"""Microbenchmarks: `python -m kernels.bench` (or `nox -s kernel-bench`) -> reports/kernels/.

Forward+backward, forward-only and backward-only times (median, p20, p80) and the peak extra
memory of the sparse top-K KL against eager PyTorch (log_softmax + gather), torch.compile of the
same, the authors' dense-target formula and Liger-Kernel's cross-entropy at the same shape (the
speed-of-light reference: one read and one write of the logits, like ours), plus the fused-linear
variant against eager matmul + loss and eager matmul + our kernel. `--tune` adds a tile/warp sweep
of our kernel; `--compare ...` hands every argument to `kernels.bench_compare` (the regression gate).

Bandwidth is reported two ways against a device-to-device copy measured in the same run (one read
and one write per copied byte):
  floor:  `floor_bytes` = 2 * N * V * elem -- one read of the logits and one write of the gradient,
          the least any fused forward+backward can move; this is the figure the targets use.
  design: `bytes_moved` = the floor plus the small [N, K] and [N] arrays our kernels move (below).

Bytes of our single-pass design (reduction sum/mean): the logits are read once from HBM (the
gradient pass re-reads them from registers or L2) and the gradient is written once; the small
arrays are ids and probs (read by the `mean` divisor pre-pass and by the kernel), the K gathered
logits, and the per-row loss (written, then summed). `reduction="none"` keeps the two-kernel path
(an extra read of the logits); `triton_two_kernel` measures it.

Without a CUDA GPU this prints why, leaves measured results alone, and (re)writes a README marked
pending; it exits 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from .reference import authors_dense_kl, dense_target_from_topk, eager_sparse_kl

OUT = Path("reports/kernels")
NS = (4096, 16384, 65536)
VS = (32128, 131072)
KS = (5, 20, 64)
PASSES = ("fwd+bwd", "fwd", "bwd")
TUNE_VS = (32128, 50257, 128256, 151936)
TUNE_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
TUNE_BLOCKS = (4096, 8192, 16384, 32768)
TUNE_WARPS = (8, 16, 32)
COMMAND = "nox -s kernel-bench"
PENDING = f"pending — no GPU was available in the session that built this; run `{COMMAND}` on an H100/H200"
TARGETS = """## Targets (issue 11; checked on the GPU run, not by timed tests)

| target | shape | criterion |
|---|---|---|
| bandwidth | fwd+bwd, N=16K, V=32128, K=5, bf16 | `triton_inplace` >= 85% of the floor-based bandwidth (`% floor`) |
| speed | same | >= 3x faster than eager (log_softmax + gather) |
| speed of light | same | `triton_inplace` time within 10% of `liger_ce` |
| memory | same | extra peak memory with `inplace=True` <= 0.05x the logits |
| fused-linear memory | N=16K, d=2048, V=32128, bf16 | `fused_linear_triton` peak <= 20% of `eager_matmul` |
| fused-linear time | same | `fused_linear_triton` <= 1.1x `matmul_triton` (eager matmul + our kernel) |
"""


def floor_bytes(n: int, v: int, elem: int) -> int:
    """One read of the logits and one write of the gradient: the least forward+backward can move."""
    return 2 * n * v * elem


def bytes_moved(n: int, v: int, k: int, elem: int, id_elem: int = 8) -> int:
    """Bytes our single-pass forward+backward moves (see the module docstring)."""
    small = n * k * (2 * id_elem + 2 * 4 + elem) + 8 * n
    return floor_bytes(n, v, elem) + small


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _versions() -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version()}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    try:
        from importlib.metadata import version

        info["liger_kernel"] = version("liger-kernel")
    except Exception:  # noqa: BLE001  (not installed)
        info["liger_kernel"] = None
    return info


def _reason(e: Exception) -> str:
    if isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower():
        return "skipped: out of memory"
    return f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"


def _free_memory():
    gc.collect()
    torch.cuda.empty_cache()


def _quantiles(times: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else times * 9
    return statistics.median(times), q[1], q[7]  # median, p20, p80


def _time_and_peak(fn, grad_to_none):
    """(median, p20, p80) ms from do_bench and the peak memory of one extra call, in bytes."""
    from triton.testing import do_bench

    fn()  # warm-up / compile outside the measurement
    torch.cuda.synchronize()
    med, p20, p80 = do_bench(fn, quantiles=[0.5, 0.2, 0.8], grad_to_none=grad_to_none)
    for t in grad_to_none:
        t.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return med, p20, p80, torch.cuda.max_memory_allocated() - base


def _time_backward(forward, grad_to_none, reps: int = 50):
    """(median, p20, p80) ms of `loss.backward()` alone: each rep runs the forward untimed, flushes
    L2 (as do_bench does) and times the backward with CUDA events."""
    flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    times = []
    for _ in range(reps):
        for t in grad_to_none:
            t.grad = None
        loss = forward()
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        loss.backward()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
        del loss
    return _quantiles(times)


def measure_copy_bandwidth(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth in bytes/s (one read + one write per byte copied)."""
    from triton.testing import do_bench

    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), quantiles=[0.5, 0.2, 0.8])[0]
    del src, dst
    _free_memory()
    return 2 * nbytes / (ms * 1e-3)


LIGER_MISSING = "skipped: liger-kernel not installed (it comes with the `kernels` extra: pip install -e .[kernels])"


def _providers():
    """name -> fn(x, ids, p) returning a scalar loss, or a 'skipped: ...' string."""
    from .functional import sparse_topk_kl

    # x.view_as(x): a fresh view per call, since inplace=True refuses logits it already overwrote.
    def ours(x, ids, p):
        return sparse_topk_kl(x.view_as(x), ids, p, inplace=True, validate=False)

    def ours_copy(x, ids, p):
        return sparse_topk_kl(x, ids, p, inplace=False, validate=False)

    def ours_two_kernel(x, ids, p):
        return sparse_topk_kl(x, ids, p, reduction="none", inplace=True, validate=False).sum()

    def dense(x, ids, p):
        return authors_dense_kl(x, dense_target_from_topk(ids, p, x.shape[-1]))

    provs = {
        "triton_inplace": ours,
        "triton": ours_copy,
        "triton_two_kernel": ours_two_kernel,
        "eager": eager_sparse_kl,
        "torch_compile": torch.compile(eager_sparse_kl, dynamic=False),
        "dense_authors": dense,
    }
    try:
        from liger_kernel.transformers import LigerCrossEntropyLoss

        ce = LigerCrossEntropyLoss()
        provs["liger_ce"] = lambda x, ids, p: ce(x, ids[:, 0])
    except ImportError:
        provs["liger_ce"] = LIGER_MISSING
    except Exception as e:  # noqa: BLE001  (installed but incompatible)
        provs["liger_ce"] = _reason(e)
    return provs


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def bench_loss(ns, vs, ks, dtype=torch.bfloat16, passes=PASSES) -> list[dict]:
    rows = []
    elem = torch.finfo(dtype).bits // 8
    for n in ns:
        for v in vs:
            for k in ks:
                torch._dynamo.reset()  # a fresh compile per shape, clear of dynamo's recompile limit
                for name, fn in _providers().items():
                    for pass_ in passes:
                        rows.append(_bench_loss_row(name, fn, pass_, n, v, k, dtype, elem))
                        print(json.dumps(rows[-1]), flush=True)
    return rows


def _bench_loss_row(name, fn, pass_, n, v, k, dtype, elem) -> dict:
    row = {"kind": "loss", "N": n, "V": v, "K": k, "dtype": _dtype_name(dtype), "provider": name}
    if pass_ != "fwd+bwd":
        row["pass"] = pass_  # absent on forward+backward rows, so their keys match earlier results
    if isinstance(fn, str):
        row["skipped"] = fn
        return row
    x = ids = p = None
    try:
        x = torch.randn(n, v, device="cuda", dtype=dtype).requires_grad_(True)
        ids = torch.randint(0, v, (n, k), device="cuda")
        p = torch.softmax(torch.randn(n, k, device="cuda"), -1) * 0.9
        if pass_ == "fwd+bwd":
            med, p20, p80, peak = _time_and_peak(lambda: fn(x, ids, p).backward(), [x])
            row.update(median_ms=med, p20_ms=p20, p80_ms=p80, peak_extra_bytes=peak,
                       peak_extra_over_logits=peak / (n * v * elem),
                       bytes_moved=bytes_moved(n, v, k, elem), floor_bytes=floor_bytes(n, v, elem))
        elif pass_ == "fwd":  # a training forward: the graph is built (ours writes the gradient here)
            from triton.testing import do_bench

            fn(x, ids, p)
            med, p20, p80 = do_bench(lambda: fn(x, ids, p), quantiles=[0.5, 0.2, 0.8])
            row.update(median_ms=med, p20_ms=p20, p80_ms=p80)
        else:
            fn(x, ids, p).backward()  # warm-up / compile
            med, p20, p80 = _time_backward(lambda: fn(x, ids, p), [x])
            row.update(median_ms=med, p20_ms=p20, p80_ms=p80)
    except Exception as e:  # noqa: BLE001  (OOM or a provider failing: record it, go on)
        row["skipped"] = _reason(e)
    finally:
        x = ids = p = None
        _free_memory()
    return row


def bench_fused_linear(n=16384, d=2048, v=32128, k=5, dtype=torch.bfloat16) -> list[dict]:
    from .functional import sparse_topk_kl
    from .fused_linear_sparse_kl import fused_linear_sparse_topk_kl

    provs = {
        "fused_linear_triton": lambda h, w, ids, p: fused_linear_sparse_topk_kl(h, w, ids, p, validate=False),
        "matmul_triton": lambda h, w, ids, p: sparse_topk_kl(h @ w.t(), ids, p, inplace=True, validate=False),
        "eager_matmul": lambda h, w, ids, p: eager_sparse_kl(h @ w.t(), ids, p),
    }
    rows = []
    for name, fn in provs.items():
        row = {"kind": "fused_linear", "N": n, "d": d, "V": v, "K": k, "dtype": _dtype_name(dtype), "provider": name}
        h = w = ids = p = None
        try:
            h = torch.randn(n, d, device="cuda", dtype=dtype).requires_grad_(True)
            w = (torch.randn(v, d, device="cuda", dtype=dtype) / d**0.5).requires_grad_(True)
            ids = torch.randint(0, v, (n, k), device="cuda")
            p = torch.softmax(torch.randn(n, k, device="cuda"), -1)
            med, p20, p80, peak = _time_and_peak(lambda: fn(h, w, ids, p).backward(), [h, w])
            row.update(median_ms=med, p20_ms=p20, p80_ms=p80, peak_extra_bytes=peak)
        except Exception as e:  # noqa: BLE001
            row["skipped"] = _reason(e)
        finally:
            h = w = ids = p = None
            _free_memory()
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def bench_tune(n=16384, k=5, vs=TUNE_VS, dtypes=TUNE_DTYPES, blocks=TUNE_BLOCKS, warps=TUNE_WARPS) -> list[dict]:
    """Forward+backward time of `triton_inplace` per (block_v, num_warps): the data for the tile heuristic."""
    from .functional import sparse_topk_kl
    from .sparse_kl import tile_config

    rows = []
    for dtype in dtypes:
        for v in vs:
            x = torch.randn(n, v, device="cuda", dtype=dtype).requires_grad_(True)
            ids = torch.randint(0, v, (n, k), device="cuda")
            p = torch.softmax(torch.randn(n, k, device="cuda"), -1)
            configs = [(None, None)] + [(b, w) for b in blocks for w in warps]
            for block_v, num_warps in configs:
                bv, nw = tile_config(v, block_v, num_warps, interpreting=False)
                row = {"kind": "tune", "N": n, "V": v, "K": k, "dtype": _dtype_name(dtype), "provider": "triton_inplace",
                       "block_v": bv, "num_warps": nw, "heuristic": block_v is None}
                try:
                    def fn():
                        sparse_topk_kl(x.view_as(x), ids, p, inplace=True, validate=False, block_v=bv, num_warps=nw).backward()
                    med, p20, p80, _ = _time_and_peak(fn, [x])
                    row.update(median_ms=med, p20_ms=p20, p80_ms=p80, floor_bytes=floor_bytes(n, v, torch.finfo(dtype).bits // 8))
                except Exception as e:  # noqa: BLE001  (e.g. out of registers / shared memory)
                    row["skipped"] = _reason(e)
                rows.append(row)
                print(json.dumps(row), flush=True)
            x = ids = p = None
            _free_memory()
    return rows


def _fmt(x, spec=".2f"):
    return "—" if x is None else format(x, spec)


def _pct(nbytes, ms, bw):
    return None if not ms else 100 * nbytes / (ms * 1e-3) / bw


def render_markdown(result: dict) -> str:
    """The README tables: fwd+bwd per (shape, provider) with speedup vs eager, % of copy bandwidth
    for the design's bytes and for the floor; the fwd/bwd split; fused linear; the tile sweep."""
    meta = result["meta"]
    bw = meta["copy_bandwidth_bytes_per_s"]
    lines = [
        "# Sparse top-K KL kernel benchmarks",
        "",
        f"GPU: {meta['gpu']} · torch {meta['versions']['torch']} · triton {meta['versions']['triton']} · "
        f"liger-kernel {meta['versions']['liger_kernel']} · commit `{meta['git_commit'][:12]}` · {meta['timestamp']}",
        f"Measured D2D copy bandwidth: {bw / 1e9:.0f} GB/s. Peak = extra memory over the inputs.",
        "Generated by `python -m kernels.bench`; raw numbers in the JSON next to this file.",
        "`% floor` = 2·N·V·elem / time / copy bandwidth (the target's figure); `% copy BW` counts `bytes_moved`.",
        "",
        "## Forward + backward",
        "",
        "| N | V | K | dtype | provider | median ms | p20 | p80 | peak extra (x logits) | vs eager | % copy BW | % floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    loss = [r for r in result["loss"] if r.get("pass", "fwd+bwd") == "fwd+bwd"]
    eager = {(r["N"], r["V"], r["K"], r.get("dtype")): r.get("median_ms") for r in loss if r["provider"] == "eager"}
    for r in loss:
        head = f"| {r['N']} | {r['V']} | {r['K']} | {r.get('dtype', '')} | {r['provider']} |"
        if "skipped" in r:
            lines.append(f"{head} {r['skipped']} | | | | | | |")
            continue
        e = eager.get((r["N"], r["V"], r["K"], r.get("dtype")))
        speed = None if not e else e / r["median_ms"]
        ours = r["provider"].startswith(("triton", "liger"))
        design = _pct(r["bytes_moved"], r["median_ms"], bw) if ours and "bytes_moved" in r else None
        floor = _pct(r["floor_bytes"], r["median_ms"], bw) if "floor_bytes" in r else None
        lines.append(
            f"{head} {r['median_ms']:.3f} | {r['p20_ms']:.3f} | {r['p80_ms']:.3f} | "
            f"{r['peak_extra_over_logits']:.2f} | {_fmt(speed)}x | {_fmt(design, '.0f')} | {_fmt(floor, '.0f')} |"
        )
    split = [r for r in result["loss"] if r.get("pass") in ("fwd", "bwd")]
    if split:
        lines += ["", "## Forward and backward separately", "",
                  "| N | V | K | dtype | provider | pass | median ms | p20 | p80 |", "|---|---|---|---|---|---|---|---|---|"]
        for r in split:
            head = f"| {r['N']} | {r['V']} | {r['K']} | {r.get('dtype', '')} | {r['provider']} | {r['pass']} |"
            lines.append(f"{head} {r['skipped']} | | |" if "skipped" in r else f"{head} {r['median_ms']:.3f} | {r['p20_ms']:.3f} | {r['p80_ms']:.3f} |")
    lines += ["", "## Fused linear", "", "| N | d | V | provider | median ms | p20 | p80 | peak extra MiB |", "|---|---|---|---|---|---|---|---|"]
    for r in result["fused_linear"]:
        if "skipped" in r:
            lines.append(f"| {r['N']} | {r['d']} | {r['V']} | {r['provider']} | {r['skipped']} | | | |")
        else:
            lines.append(f"| {r['N']} | {r['d']} | {r['V']} | {r['provider']} | {r['median_ms']:.2f} | {r['p20_ms']:.2f} | {r['p80_ms']:.2f} | {r['peak_extra_bytes'] / 2**20:.0f} |")
    if result.get("tune"):
        lines += ["", "## Tile sweep (`--tune`, triton_inplace fwd+bwd)", "",
                  "| V | dtype | block_v | num_warps | heuristic | median ms | % floor |", "|---|---|---|---|---|---|---|"]
        for r in result["tune"]:
            head = f"| {r['V']} | {r['dtype']} | {r['block_v']} | {r['num_warps']} | {'yes' if r['heuristic'] else ''} |"
            lines.append(f"{head} {r['skipped']} | |" if "skipped" in r else f"{head} {r['median_ms']:.3f} | {_fmt(_pct(r['floor_bytes'], r['median_ms'], bw), '.0f')} |")
    return "\n".join(lines) + "\n\n" + TARGETS + "\n" + BYTES_NOTE


BYTES_NOTE = """## Bytes counted

`floor_bytes = 2*N*V*elem`: one read of the logits and one write of the gradient, the least a
fused forward+backward can move; `% floor` uses it. `bytes_moved = floor_bytes + N*K*(2*id_bytes
+ 8 + elem) + 8*N`: our single-pass design (the gradient pass re-reads each row from registers or
L2, not HBM), plus ids and probs read twice (the `mean` divisor pre-pass, the kernel), the K
gathered logits and the per-row loss. The copy bandwidth counts one read + one write per copied
byte. `reduction="none"` (row `triton_two_kernel`) reads the logits once more.
"""


def pending_markdown() -> str:
    return (
        "# Sparse top-K KL kernel benchmarks\n\n"
        f"**Status: {PENDING}.** It writes the JSON results next to this page and replaces it.\n\n"
        "| N | V | K | provider | pass | median ms | p20 | p80 | peak extra (x logits) | vs eager | % copy BW | % floor |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        "| 4K, 16K, 64K | 32128, 128K | 5, 20, 64 | triton_inplace, triton, triton_two_kernel, eager, torch_compile, "
        "dense_authors, liger_ce | fwd+bwd, fwd, bwd | pending | | | | | | |\n"
        "\n## Fused linear\n\nN=16K, d=2048, V=32128, bf16: fused_linear_triton vs matmul_triton and eager_matmul — pending.\n\n"
        + TARGETS + "\n" + BYTES_NOTE
    )


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    if "--compare" in args_list:
        from .bench_compare import main as compare_main

        return compare_main(argv)
    ap = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="output folder (default reports/kernels)")
    ap.add_argument("--quick", action="store_true", help="one shape (N=16K, V=32128, K=5) instead of the grid")
    ap.add_argument("--tune", action="store_true", help="also sweep block_v x num_warps for V in 32128, 50257, 128256, 151936")
    args = ap.parse_args(args_list)
    args.out.mkdir(parents=True, exist_ok=True)
    readme = args.out / "README.md"
    if not torch.cuda.is_available():
        print(f"kernels.bench: no CUDA GPU is visible, so nothing was timed. Run `{COMMAND}` "
              "(or `python -m kernels.bench`) on an H100/H200.", file=sys.stderr)
        if not readme.exists() or "pending" in readme.read_text()[:400]:
            readme.write_text(pending_markdown())
            print(f"kernels.bench: wrote {readme} (marked pending).", file=sys.stderr)
        return 0
    ns, vs, ks = ((16384,), (32128,), (5,)) if args.quick else (NS, VS, KS)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = {
        "gpu": torch.cuda.get_device_name(), "versions": _versions(), "git_commit": _git_commit(), "timestamp": stamp,
        "copy_bandwidth_bytes_per_s": measure_copy_bandwidth(),
    }
    result = {"meta": meta, "loss": bench_loss(ns, vs, ks), "fused_linear": bench_fused_linear()}
    if args.tune:
        result["tune"] = bench_tune()
    name = f"sparse_kl_{stamp.replace(':', '').replace('-', '')}.json"
    (args.out / name).write_text(json.dumps(result, indent=1))
    (args.out / "sparse_kl_latest.json").write_text(json.dumps(result, indent=1))
    readme.write_text(render_markdown(result))
    print(f"kernels.bench: wrote {args.out / name} and {readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
