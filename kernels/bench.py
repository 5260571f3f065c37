"""Microbenchmarks: `python -m kernels.bench` (or `nox -s kernel-bench`) -> reports/kernels/.

Forward+backward time (median, p20, p80 via triton.testing.do_bench) and peak extra memory of the
sparse top-K KL against eager PyTorch (log_softmax + gather), torch.compile of the same, the
authors' dense-target formula, and Liger's cross-entropy (speed-of-light proxy, if installed), plus
the fused-linear variant against eager matmul + loss. The achieved bandwidth is reported as a
fraction of a device-to-device copy measured in the same run.

Bytes that must move for forward+backward (`bytes_moved`): the forward reads the logits once, the
backward reads them once and writes the gradient once -> 3 * N * V * elem; plus the small arrays:
ids read twice, probs read once, coef [N, K] fp32 written and read, 2 K-gathers of logits, and
five fp32 per-row values (loss, lse, csum, valid written; lse/csum read back). Liger's CE moves
the same 3 * N * V * elem, so it is the speed-of-light proxy.

Without a CUDA GPU this prints why, leaves measured results alone, and (re)writes a README marked
pending; it exits 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

from .reference import authors_dense_kl, dense_target_from_topk, eager_sparse_kl

OUT = Path("reports/kernels")
NS = (4096, 16384, 65536)
VS = (32128, 131072)
KS = (5, 20, 64)
PENDING = "pending — no GPU was available in the session that built this; run `nox -s kernel-bench` (or `python -m kernels.bench`) on an H100/H200"
TARGETS = """## Targets (issue 4; checked on the GPU run, not by timed tests)

| target | shape | criterion |
|---|---|---|
| bandwidth | fwd+bwd, N=16K, V=32128, K=5, bf16 | >= 80% of the measured D2D copy bandwidth for `bytes_moved` |
| speed | same | >= 3x faster than eager (log_softmax + gather) |
| memory | same | extra peak memory <= 1.1x the logits (`inplace=True`: gradient written into the logits) |
| fused-linear memory | N=16K, d=2048, V=32128, bf16 | peak <= 20% of eager matmul + loss |
"""


def bytes_moved(n: int, v: int, k: int, elem: int, id_elem: int = 8) -> int:
    """Bytes the fused forward+backward must move (see the module docstring)."""
    dense = 3 * n * v * elem
    small = n * k * (2 * id_elem + 4 + 2 * 4 + 2 * elem) + n * 4 * 6
    return dense + small


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


def measure_copy_bandwidth(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth in bytes/s (one read + one write per byte copied)."""
    from triton.testing import do_bench

    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), quantiles=[0.5, 0.2, 0.8])[0]
    del src, dst
    _free_memory()
    return 2 * nbytes / (ms * 1e-3)


def _providers():
    from .functional import sparse_topk_kl

    def ours(x, ids, p):
        return sparse_topk_kl(x, ids, p, inplace=True, validate=False)

    def ours_copy(x, ids, p):
        return sparse_topk_kl(x, ids, p, inplace=False, validate=False)

    def dense(x, ids, p):
        return authors_dense_kl(x, dense_target_from_topk(ids, p, x.shape[-1]))

    provs = {
        "triton_inplace": ours,
        "triton": ours_copy,
        "eager": eager_sparse_kl,
        "torch_compile": torch.compile(eager_sparse_kl, dynamic=False),
        "dense_authors": dense,
    }
    try:
        from liger_kernel.transformers import LigerCrossEntropyLoss

        ce = LigerCrossEntropyLoss()
        provs["liger_ce"] = lambda x, ids, p: ce(x, ids[:, 0])
    except Exception:  # noqa: BLE001  (not installed or incompatible)
        pass
    return provs


def bench_loss(ns, vs, ks, dtype=torch.bfloat16) -> list[dict]:
    rows = []
    elem = torch.finfo(dtype).bits // 8
    for n in ns:
        for v in vs:
            for k in ks:
                torch._dynamo.reset()  # a fresh compile per shape, clear of dynamo's recompile limit
                for name, fn in _providers().items():
                    row = {"kind": "loss", "N": n, "V": v, "K": k, "dtype": str(dtype).removeprefix("torch."), "provider": name}
                    try:
                        x = torch.randn(n, v, device="cuda", dtype=dtype).requires_grad_(True)
                        ids = torch.randint(0, v, (n, k), device="cuda")
                        p = torch.softmax(torch.randn(n, k, device="cuda"), -1) * 0.9
                        med, p20, p80, peak = _time_and_peak(lambda: fn(x, ids, p).backward(), [x])
                        logits_bytes = n * v * elem
                        row.update(median_ms=med, p20_ms=p20, p80_ms=p80, peak_extra_bytes=peak,
                                   peak_extra_over_logits=peak / logits_bytes, bytes_moved=bytes_moved(n, v, k, elem))
                    except Exception as e:  # noqa: BLE001  (OOM or a provider failing: record it, go on)
                        row["skipped"] = _reason(e)
                    finally:
                        x = ids = p = None
                        _free_memory()
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def bench_fused_linear(n=16384, d=2048, v=32128, k=5, dtype=torch.bfloat16) -> list[dict]:
    from .fused_linear_sparse_kl import fused_linear_sparse_topk_kl

    provs = {
        "fused_linear_triton": lambda h, w, ids, p: fused_linear_sparse_topk_kl(h, w, ids, p, validate=False),
        "eager_matmul": lambda h, w, ids, p: eager_sparse_kl(h @ w.t(), ids, p),
    }
    rows = []
    for name, fn in provs.items():
        row = {"kind": "fused_linear", "N": n, "d": d, "V": v, "K": k, "dtype": str(dtype).removeprefix("torch."), "provider": name}
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


def _fmt(x, spec=".2f"):
    return "—" if x is None else format(x, spec)


def render_markdown(result: dict) -> str:
    """The README table: one row per (shape, provider), with speedup vs eager and % of copy bandwidth."""
    meta = result["meta"]
    bw = meta["copy_bandwidth_bytes_per_s"]
    lines = [
        "# Sparse top-K KL kernel benchmarks",
        "",
        f"GPU: {meta['gpu']} · torch {meta['versions']['torch']} · triton {meta['versions']['triton']} · "
        f"liger-kernel {meta['versions']['liger_kernel']} · commit `{meta['git_commit'][:12]}` · {meta['timestamp']}",
        f"Measured D2D copy bandwidth: {bw / 1e9:.0f} GB/s. Forward+backward, bf16; peak = extra memory over the inputs.",
        "Generated by `python -m kernels.bench`; raw numbers in the JSON next to this file.",
        "",
        "| N | V | K | provider | median ms | p20 | p80 | peak extra (x logits) | vs eager | % copy BW |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    eager = {(r["N"], r["V"], r["K"]): r.get("median_ms") for r in result["loss"] if r["provider"] == "eager"}
    for r in result["loss"]:
        if "skipped" in r:
            lines.append(f"| {r['N']} | {r['V']} | {r['K']} | {r['provider']} | {r['skipped']} | | | | | |")
            continue
        e = eager.get((r["N"], r["V"], r["K"]))
        speed = None if not e else e / r["median_ms"]
        frac = 100 * r["bytes_moved"] / (r["median_ms"] * 1e-3) / bw if r["provider"].startswith(("triton", "liger")) else None
        lines.append(
            f"| {r['N']} | {r['V']} | {r['K']} | {r['provider']} | {r['median_ms']:.3f} | {r['p20_ms']:.3f} | {r['p80_ms']:.3f} | "
            f"{r['peak_extra_over_logits']:.2f} | {_fmt(speed)}x | {_fmt(frac, '.0f')} |"
        )
    lines += ["", "## Fused linear", "", "| N | d | V | provider | median ms | p20 | p80 | peak extra MiB |", "|---|---|---|---|---|---|---|---|"]
    for r in result["fused_linear"]:
        if "skipped" in r:
            lines.append(f"| {r['N']} | {r['d']} | {r['V']} | {r['provider']} | {r['skipped']} | | | |")
        else:
            lines.append(f"| {r['N']} | {r['d']} | {r['V']} | {r['provider']} | {r['median_ms']:.2f} | {r['p20_ms']:.2f} | {r['p80_ms']:.2f} | {r['peak_extra_bytes'] / 2**20:.0f} |")
    return "\n".join(lines) + "\n\n" + TARGETS + "\n" + BYTES_NOTE


BYTES_NOTE = """## Bytes counted for "% copy BW"

`bytes_moved = 3*N*V*elem + N*K*(2*id_bytes + 4 + 8 + 2*elem) + 24*N`: the forward reads the logits
once (online softmax), the backward reads them once and writes the gradient once; the K arrays are
ids (read twice), probs (read once), the fp32 gradient weights (written, read), two K-gathers of
logits, and six fp32 per-row values. The copy bandwidth counts one read + one write per copied byte.
"""


def pending_markdown() -> str:
    return (
        "# Sparse top-K KL kernel benchmarks\n\n"
        f"**Status: {PENDING}.**\n\n"
        "| N | V | K | provider | median ms | p20 | p80 | peak extra (x logits) | vs eager | % copy BW |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
        "| 4K, 16K, 64K | 32128, 128K | 5, 20, 64 | triton_inplace, triton, eager, torch_compile, dense_authors, liger_ce | pending | | | | | |\n"
        "\n## Fused linear\n\nN=16K, d=2048, V=32128, bf16: fused_linear_triton vs eager_matmul — pending.\n\n"
        + TARGETS + "\n" + BYTES_NOTE
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="output folder (default reports/kernels)")
    ap.add_argument("--quick", action="store_true", help="one shape (N=16K, V=32128, K=5) instead of the grid")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    readme = args.out / "README.md"
    if not torch.cuda.is_available():
        print("kernels.bench: no CUDA GPU is visible, so nothing was timed. Run `nox -s kernel-bench` "
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
    name = f"sparse_kl_{stamp.replace(':', '').replace('-', '')}.json"
    (args.out / name).write_text(json.dumps(result, indent=1))
    (args.out / "sparse_kl_latest.json").write_text(json.dumps(result, indent=1))
    readme.write_text(render_markdown(result))
    print(f"kernels.bench: wrote {args.out / name} and {readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
