"""Compile every shipped kernel configuration for an H100 (sm_90) on a machine without a GPU.

    python -m kernels.compile_report [--out reports/kernels] [--sweep]

The interpreter runs the kernels' Python, not the compiler: register pressure, spills and the
occupancy that decides how many rows are in flight per SM only show up in the compiled code.
Triton ships ptxas and cuobjdump, so each launch the host code would make (built by the same
`*_launch` helpers the launchers use, on small CPU tensors with the real V and strides) is
specialised the way Triton's JIT specialises it (i32 strides, 16-divisibility hints, None
pointers as constexprs), compiled ahead of time for GPUTarget("cuda", 90, 32), and measured:
registers per thread, local-memory stack (spills), shared memory, resident blocks per SM, the
eviction hints in the PTX and whether the K-gather precedes the loop over V (TTIR).
Writes `sm90_compile.{json,md}`; `--sweep` instead lists candidate tiles (the heuristic's data).
Must run without TRITON_INTERPRET=1. Needs Triton's NVIDIA backend tools (bundled with triton).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import triton

# sm_90 (H100) limits per SM: 64K 32-bit registers allocated per warp in units of 256, 64 warps,
# 32 blocks, 228 KB shared memory (1 KB of it reserved per block).
REGS_PER_SM, REG_UNIT, MAX_WARPS, MAX_BLOCKS, SMEM_PER_SM, SMEM_RESERVED = 65536, 256, 64, 32, 228 * 1024, 1024
TARGET_ARCH = 90
VS = (1000, 8000, 16384, 32128, 128256, 151936)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
OUT = Path("reports/kernels")


def tools_dir() -> Path:
    return Path(triton.__file__).parent / "backends" / "nvidia" / "bin"


def tools_present() -> bool:
    return (tools_dir() / "ptxas").exists() and (tools_dir() / "cuobjdump").exists()


def blocks_per_sm(regs: int, warps: int, smem: int) -> int:
    """Resident blocks of one kernel per SM (the CUDA occupancy rules for sm_90)."""
    per_warp = -(-regs * 32 // REG_UNIT) * REG_UNIT
    by_regs = REGS_PER_SM // (per_warp * warps) if regs else MAX_BLOCKS
    by_warps = MAX_WARPS // warps
    by_smem = SMEM_PER_SM // (smem + SMEM_RESERVED)
    return max(0, min(by_regs, by_warps, by_smem, MAX_BLOCKS))


def compile_launch(fn, args, meta):
    """Compile `fn[grid](*args, **meta)` for sm_90 as Triton's JIT would specialise it."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    target = GPUTarget("cuda", TARGET_ARCH, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, spec, options = binder(*args, **meta)
    options, signature, constexprs, attrs = fn._pack_args(backend, meta, bound, spec, options)
    src = ASTSource(fn, signature, constexprs, attrs)
    return triton.compile(src, target=target, options=options.__dict__), signature


def measure(kernel, num_warps: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(kernel.asm["cubin"])
    try:
        out = subprocess.run([str(tools_dir() / "cuobjdump"), "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    line = next(ln for ln in out.splitlines() if "REG:" in ln)
    use = {k: int(v) for k, v in re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", line)}
    smem = max(use.get("SHARED", 0), int(kernel.metadata.shared))
    ptx, ttir = kernel.asm["ptx"], kernel.asm["ttir"]
    return {
        "registers": use["REG"], "stack_bytes": use.get("STACK", 0), "local_bytes": use.get("LOCAL", 0), "shared_bytes": smem,
        "num_warps": num_warps, "blocks_per_sm": blocks_per_sm(use["REG"], num_warps, smem),
        "ptx_evict_last_loads": len(re.findall(r"ld\.global\.L1::evict_last", ptx)),
        "ptx_evict_first_loads": len(re.findall(r"ld\.global\.L1::evict_first", ptx)),
        "ptx_evict_first_stores": len(re.findall(r"st\.global\.L1::evict_first", ptx)),
        "l2_policies": sorted(set(re.findall(r"createpolicy\.fractional\.L2::(\w+)", ptx))),
        "loads_before_loop": ttir.split("scf.for")[0].count("tt.load") if "scf.for" in ttir else None,
    }


def _case(kind: str, dtype: torch.dtype, v: int, tile, *, k: int = 5, variant: str = "corrected", n: int = 2):
    """(kernel, args, meta) of one launch, built by the launchers' own helpers on CPU tensors."""
    from . import grad_scale, sparse_kl

    z = torch.zeros(n, v, dtype=dtype)
    ids = torch.zeros(n, k, dtype=torch.int64)
    probs = torch.zeros(n, k)
    mask, rw, den, loss = torch.ones(n, dtype=torch.int8), torch.ones(n), torch.ones(()), torch.zeros(n)
    if kind == "single-pass":  # sum/mean with row weights and a mask: the fullest specialisation
        _, args, meta = sparse_kl.fwd_launch(z, ids, probs, mask, rw, den, loss, z, None, ignore_index=-100, temperature=1.0,
                                             variant=variant, tile=tile)
        return sparse_kl._sparse_kl_fwd_kernel, args, meta
    if kind == "stats":  # the two-kernel forward (reduction none, fp16)
        stats = (torch.zeros(n), torch.zeros(n), torch.zeros(n, k))
        _, args, meta = sparse_kl.fwd_launch(z, ids, probs, mask, rw, None, loss, None, stats, ignore_index=-100, temperature=1.0,
                                             variant=variant, tile=tile)
        return sparse_kl._sparse_kl_fwd_kernel, args, meta
    if kind == "bwd":
        _, args, meta = sparse_kl.bwd_launch(z, z, ids, torch.zeros(n, k), torch.zeros(n), torch.zeros(n), torch.ones(n),
                                             ignore_index=-100, temperature=1.0, tile=tile)
        return sparse_kl._sparse_kl_bwd_kernel, args, meta
    if kind == "scale":
        _, args, meta = grad_scale.scale_launch(z, z, torch.ones(1), torch.ones(1), sms=132, always=False)
        return grad_scale._scale_rows_kernel, args, meta
    if kind == "weight_sum":
        _, args, meta = sparse_kl.weight_sum_launch(ids, probs, mask, rw, torch.zeros(1), ignore_index=-100)
        return sparse_kl._weight_sum_kernel, args, meta
    raise ValueError(kind)


def shipped_cases():
    """Every launch configuration the heuristic ships, deduplicated by what is compiled."""
    from .tiles import stream_tile, tile_config

    seen, cases = {}, []
    for dt_name, dtype in DTYPES.items():
        for v in VS:
            tile = tile_config(v, elem=dtype.itemsize, interpreting=False)
            stream = stream_tile(v, interpreting=False)
            # fp16 runs the two-kernel path only (its gradient is scaled before it is rounded).
            kinds = [("stats", tile), ("bwd", stream)] if dt_name == "fp16" else [("single-pass", tile), ("stats", tile), ("bwd", stream)]
            for kind, t in kinds:
                key = (kind, dt_name, t, v % 16 == 0)
                if key in seen:
                    seen[key].append(v)  # the same compiled kernel serves this V too
                else:
                    seen[key] = [v]
                    cases.append((kind, dt_name, seen[key], t))
        cases.append(("scale", dt_name, [32128], None))
    cases.append(("weight_sum", "fp32", [32128], None))
    return cases


def sweep_cases():
    """Candidate tiles at V = 32128 (re-read) and resident tiles at their own V (bf16, single pass)."""
    from .tiles import Tile

    cases = [("single-pass", "bf16", [32128], Tile(bv, w, False)) for bv in (2048, 4096, 8192, 16384) for w in (4, 8, 16, 32)]
    cases += [("single-pass", "bf16", [bv], Tile(bv, w, True)) for bv in (2048, 4096, 8192, 16384, 32768) for w in (4, 8, 16, 32)]
    return cases


def run(cases) -> list[dict]:
    rows = []
    for kind, dt_name, vs, tile in cases:
        fn, args, meta = _case(kind, DTYPES[dt_name], vs[0], tile)
        kernel, sig = compile_launch(fn, args, meta)
        row = {"kernel": kind, "dtype": dt_name, "V": vs, "block_v": meta.get("BLOCK_V", meta.get("BLOCK")),
               "resident": tile.resident if kind in ("single-pass", "stats") else None, "maxnreg": meta.get("maxnreg"),
               "stride_type": sig.get("logits_stride", sig.get("src_stride")), **measure(kernel, meta["num_warps"])}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def render(rows: list[dict], meta: dict) -> str:
    lines = [
        "# sm_90 (H100) compile report of the shipped kernel configurations",
        "",
        f"Generated by `python -m kernels.compile_report` (no GPU needed) · triton {meta['triton']} · commit `{meta['git_commit'][:12]}`.",
        "Each row is one specialisation the launchers make (same argument builders, i32 strides and",
        "16-divisibility hints as Triton's JIT derives them), compiled for sm_90 with Triton's bundled ptxas;",
        "registers / stack from `cuobjdump -res-usage`; blocks per SM from the sm_90 limits (64K registers",
        "in 256-register warp units, 64 warps, 228 KB shared memory). `stack` > 0 means register spills.",
        "Kernels: `single-pass` = loss + gradient (sum/mean, bf16/fp32); `stats` = the two-kernel forward",
        "(reduction none; fp16); `bwd` = its backward; `scale` = the persistent grad_output rescale; `weight_sum` = the",
        "mean divisor. `programs in flight` = blocks/SM x 132 SMs (rows for the loss kernels). `loads before loop`:",
        "TTIR loads ahead of the first loop over V -- with a mask, row weights and the mean divisor, 6 = ids, the",
        "K-gather of the teacher logits, probs, mask, weight, divisor (5 without the gather: it would follow the loop);",
        "`stats` is compiled without the divisor (5); `bwd`: lse, C, scale, ids, c and the K-gather (6).",
        "PTX columns count `ld/st.global.L1::evict_*` (each with an `L2::cache_hint` policy of the same kind).",
        "",
        "| kernel | dtype | V | block_v | warps | maxnreg | resident | stride | registers | stack B | shared B | blocks/SM | programs in flight | evict_last ld | evict_first ld/st | loads before loop |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        res = "" if r["resident"] is None else ("yes" if r["resident"] else "re-read")
        vs = ", ".join(str(v) for v in r["V"])
        lines.append(
            f"| {r['kernel']} | {r['dtype']} | {vs} | {r['block_v']} | {r['num_warps']} | {r['maxnreg'] or ''} | {res} | {r['stride_type']} | {r['registers']} | "
            f"{r['stack_bytes']} | {r['shared_bytes']} | {r['blocks_per_sm']} | {132 * r['blocks_per_sm']} | {r['ptx_evict_last_loads']} | "
            f"{r['ptx_evict_first_loads']}/{r['ptx_evict_first_stores']} | {r['loads_before_loop'] if r['loads_before_loop'] is not None else '—'} |"
        )
    return "\n".join(lines) + "\n"


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kernels.compile_report", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--sweep", action="store_true", help="candidate tiles instead of the shipped ones; prints JSON, writes nothing")
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("kernels.compile_report: unset TRITON_INTERPRET (it compiles, not interprets)", file=sys.stderr)
        return 2
    if not tools_present():
        print(f"kernels.compile_report: no ptxas/cuobjdump under {tools_dir()}", file=sys.stderr)
        return 2
    rows = run(sweep_cases() if args.sweep else shipped_cases())
    if args.sweep:
        return 0
    meta = {"triton": triton.__version__, "torch": torch.__version__, "git_commit": _git_commit(), "target": f"sm_{TARGET_ARCH}"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sm90_compile.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    (args.out / "sm90_compile.md").write_text(render(rows, meta))
    print(f"kernels.compile_report: wrote {args.out / 'sm90_compile.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
