"""The Triton kernels compile for an H100 (sm_90) without a GPU: no spills, the intended rows per
SM, the eviction hints and the K-gather ahead of the loop -- for the specialisations that run.

The interpreter runs the kernels' Python, not the compiler: a construct the GPU compiler rejects,
a tile that spills registers or an occupancy other than the one the heuristic was chosen for only
show up in compiled code. `python -m kernels.compile_report` compiles every shipped configuration
ahead of time (built by the launchers' own argument helpers and specialised as Triton's JIT
specialises a real launch: i32 strides, divisibility hints, None pointers) with Triton's bundled
ptxas, and writes reports/kernels/sm90_compile.{json,md}; this test runs it in a subprocess
(without TRITON_INTERPRET) and checks the table, and that the committed report is current.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="the sm_90 compiles need Triton (with its NVIDIA backend tools)")

from kernels.compile_report import tools_present  # noqa: E402
from kernels.tiles import RESIDENT_MAX, rows_per_sm  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ELEM = {"bf16": 2, "fp16": 2, "fp32": 4}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if not tools_present():
        pytest.skip("this Triton install has no NVIDIA backend tools (ptxas, cuobjdump)")
    out = tmp_path_factory.mktemp("sm90")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "kernels.compile_report", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "sm90_compile.json").read_text())


def loss_rows(report, kind):
    return [r for r in report["rows"] if r["kernel"] == kind]


def test_no_spills_and_i32_strides(report):
    rows = report["rows"]
    assert {r["kernel"] for r in rows} == {"single-pass", "stats", "bwd", "scale", "weight_sum"}
    spilled = [r for r in rows if r["stack_bytes"] or r["local_bytes"]]
    assert not spilled, f"register spills (local-memory stack) in: {spilled}"
    assert all(r["stride_type"] == "i32" for r in rows if r["kernel"] != "weight_sum")  # what a real launch passes


def test_single_tile_and_reread_paths_are_both_compiled_at_their_occupancy(report):
    for r in loss_rows(report, "single-pass"):
        v = max(r["V"])
        if r["resident"]:
            assert v <= RESIDENT_MAX and r["blocks_per_sm"] >= 2, r
        else:
            assert r["blocks_per_sm"] == rows_per_sm(v, ELEM[r["dtype"]]), r  # 2-3 rows per SM where L2 holds them
    for dtype in ("bf16", "fp32"):
        kinds = {r["resident"] for r in loss_rows(report, "single-pass") if r["dtype"] == dtype}
        assert kinds == {True, False}, dtype
    assert {r["resident"] for r in loss_rows(report, "stats") if r["dtype"] == "fp16"} == {True, False}
    assert not loss_rows(report, "single-pass") or all(r["dtype"] != "fp16" for r in loss_rows(report, "single-pass"))


def test_eviction_hints_and_the_gather_ahead_of_the_loop(report):
    for r in loss_rows(report, "single-pass"):
        assert r["ptx_evict_first_stores"] >= 1, r  # gradient stores stream
        if not r["resident"]:
            assert r["ptx_evict_last_loads"] >= 1 and r["ptx_evict_first_loads"] >= 1, r  # pass 1 kept in L2, pass 2 last use
            assert "evict_last" in r["l2_policies"], r
            assert r["loads_before_loop"] == 6, r  # ids, K-gather, probs, mask, weight, divisor
    for r in loss_rows(report, "stats"):
        assert r["ptx_evict_last_loads"] == 0, r  # nothing is re-read after the stats forward
        if not r["resident"]:
            assert r["loads_before_loop"] == 5, r  # ids, K-gather, probs, mask, weight
    for r in loss_rows(report, "bwd"):
        assert r["ptx_evict_first_stores"] >= 1 and r["loads_before_loop"] == 6, r  # lse, csum, scale, ids, coef, gather


def test_persistent_scale_kernel_is_small(report):
    for r in loss_rows(report, "scale"):
        assert r["blocks_per_sm"] >= 2, r  # the persistent grid (2 programs per SM) is resident at once


def test_committed_report_is_current(report):
    committed = ROOT / "reports" / "kernels" / "sm90_compile.json"
    data = json.loads(committed.read_text())
    if data["meta"]["triton"] != report["meta"]["triton"]:
        pytest.skip(f"committed report from triton {data['meta']['triton']}, this is {report['meta']['triton']}")
    keys = ("kernel", "dtype", "V", "block_v", "num_warps", "maxnreg", "resident", "registers", "stack_bytes", "blocks_per_sm")
    fresh = [{k: r[k] for k in keys} for r in report["rows"]]
    old = [{k: r[k] for k in keys} for r in data["rows"]]
    assert fresh == old, "kernels changed: rerun `python -m kernels.compile_report` and commit reports/kernels/sm90_compile.*"
