"""The Triton kernels compile for an H100 (sm_90) without a GPU, and without register spills.

The interpreter runs the kernels' Python, not the compiler: a construct the GPU compiler rejects,
or a tile that spills registers to local memory, would only show up on a GPU. Triton ships ptxas
and cuobjdump, so a subprocess without TRITON_INTERPRET compiles every configuration the tile
heuristic picks (ahead of time, for GPUTarget("cuda", 90, 32)) and reads each cubin's resource
usage. Skipped where Triton has no NVIDIA backend tools.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, os, subprocess, sys, tempfile
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from kernels.grad_scale import _scale_rows_kernel
from kernels.sparse_kl import _sparse_kl_bwd_kernel, _sparse_kl_fwd_kernel, _weight_sum_kernel, tile_config

CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
TARGET = GPUTarget("cuda", 90, 32)


def usage(fn, types, constexprs, num_warps):
    sig = {name: types.get(name, "constexpr") for name in fn.arg_names}
    kernel = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs), target=TARGET, options={"num_warps": num_warps})
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(kernel.asm["cubin"])
    out = subprocess.run([CUOBJDUMP, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    os.unlink(f.name)
    line = next(l for l in out.splitlines() if "REG:" in l)
    return {k: int(v) for k, v in (item.split(":") for item in line.split() if item.split(":")[0] in ("REG", "STACK"))}


rows = []
for dt in ("bf16", "fp32"):
    fwd = dict(logits_ptr="*" + dt, logits_stride="i64", grad_ptr="*" + dt, grad_stride="i64", ids_ptr="*i64",
               ids_stride="i64", probs_ptr="*fp32", probs_stride="i64", mask_ptr="*i8", rw_ptr="*fp32", denom_ptr="*fp32",
               loss_ptr="*fp32", lse_ptr="*fp32", csum_ptr="*fp32", coef_ptr="*fp32", coef_stride="i64", V="i32", K="i32",
               ignore_index="i32", inv_t="fp32")
    bwd = dict(logits_ptr="*" + dt, logits_stride="i64", grad_ptr="*" + dt, grad_stride="i64", ids_ptr="*i64",
               ids_stride="i64", coef_ptr="*fp32", coef_stride="i64", lse_ptr="*fp32", csum_ptr="*fp32", scale_ptr="*fp32",
               scale_stride="i32", V="i32", K="i32", ignore_index="i32", inv_t="fp32")
    for v in (1000, 8000, 16384, 32128):
        bv, nw = tile_config(v, interpreting=False)
        for name, variant, bk, write, stats in (("single-pass", 0, 8, True, False), ("stats", 1, 64, False, True)):
            c = dict(HAS_MASK=True, HAS_RW=True, HAS_DENOM=write, VARIANT=variant, WRITE_GRAD=write, STORE_STATS=stats,
                     ONE_TILE=v <= bv, BLOCK_V=bv, BLOCK_K=bk)
            rows.append((f"fwd {name} {dt} V={v}", usage(_sparse_kl_fwd_kernel, fwd, c, nw)))
        rows.append((f"bwd {dt} V={v}", usage(_sparse_kl_bwd_kernel, bwd, dict(BLOCK_V=bv, BLOCK_K=64), nw)))
    sc = dict(src_ptr="*" + dt, src_stride="i64", dst_ptr="*" + dt, dst_stride="i64", n_cols="i32", num_ptr="*fp32", den_ptr="*fp32")
    for always in (False, True):
        rows.append((f"scale {dt} always={always}", usage(_scale_rows_kernel, sc, dict(ALWAYS=always, BLOCK=4096), 8)))
ws = dict(ids_ptr="*i64", ids_stride="i64", probs_ptr="*fp32", probs_stride="i64", mask_ptr="*i8", rw_ptr="*fp32",
          part_ptr="*fp32", N="i32", K="i32", ignore_index="i32")
rows.append(("weight_sum", usage(_weight_sum_kernel, ws, dict(HAS_MASK=True, HAS_RW=True, BLOCK_N=128, BLOCK_K=8), 4)))
print(json.dumps(rows))
"""


def _tools_present() -> bool:
    try:
        import triton
    except ImportError:
        return False
    bin_dir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    return (bin_dir / "ptxas").exists() and (bin_dir / "cuobjdump").exists()


@pytest.mark.skipif(not _tools_present(), reason="this Triton install has no NVIDIA backend tools (ptxas, cuobjdump)")
def test_heuristic_configs_compile_for_sm90_without_spills():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(rows) == 2 * (4 * 3 + 2) + 1
    spilled = [(name, use) for name, use in rows if use["STACK"] != 0]
    assert not spilled, f"register spills (local-memory stack) in: {spilled}"
