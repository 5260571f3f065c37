"""scripts/gpu_check: the --dry-run passes every part's plumbing on CPU with only the GPU machine's
packages importable, and `promote` turns an output folder into reports (on clearly synthetic data)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # scripts/ is not an installed package; run from anywhere

from scripts.gpu_check import guard  # noqa: E402
from scripts.gpu_check.parts import BUDGET_S, PARTS  # noqa: E402
from scripts.gpu_check.promote import PromoteError, promote  # noqa: E402
SYNTHETIC = "SYNTHETIC GPU (test data, not a measurement)"


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "OUT")}
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run", "--out", str(out)], cwd=ROOT,
                          env=dict(env, PYTHON=sys.executable), capture_output=True, text=True, timeout=1500)
    return proc, out


@pytest.mark.slow
def test_dry_run_passes_every_part(dry_run):
    proc, out = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True and summary["budget_s"] == BUDGET_S <= 480
    assert [p["key"] for p in summary["parts"]] == [p.key for p in PARTS]
    assert all(p["status"] == "ok" for p in summary["parts"]), [(p["key"], p["status"], p.get("error_tail")) for p in summary["parts"]]
    for part in PARTS:
        folder = out / f"{part.key}-{part.name}"
        assert (folder / "part.json").exists() and (folder / "part.md").exists()
        for name in part.outputs:
            assert (folder / name).exists(), (part.key, name)
        if part.check_args:  # the GPU run's own arguments were parsed by the part's parser
            assert "the real arguments parse" in (folder / "stdout.log").read_text()
    # liger-kernel is installed here but not on the GPU machine: the emulated machine says so
    assert "liger-kernel not installed" in (out / "b-kernel-bench" / "sparse_kl.md").read_text()
    assert "DRY RUN" in (out / "summary.md").read_text()


def test_the_emulated_machine_lacks_what_the_gpu_machine_lacks(tmp_path):
    view = guard.site_view(tmp_path / "view")
    probe = tmp_path / "probe.py"
    probe.write_text("import importlib.util as u, json\n"
                     "print(json.dumps({m: u.find_spec(m) is not None for m in ('torch', 'transformers', 'pytest', 'lm_eval', 'nox', 'liger_kernel')}))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *view]))
    out = subprocess.run([sys.executable, "-S", "-m", "scripts.gpu_check", "_part", "--", str(probe)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"torch": True, "transformers": True, "pytest": True, "lm_eval": False, "nox": False, "liger_kernel": False}


def test_parts_fit_the_budget_in_order_of_value():
    assert sum(p.limit_s for p in PARTS) == BUDGET_S <= 8 * 60 - 10
    assert [p.key for p in PARTS] == ["a", "b", "c", "d", "e1", "e2", "f"]


def synthetic_run(dry_out: Path, dest: Path) -> Path:
    """The dry run's folder relabelled as a GPU run: same shape, clearly synthetic numbers."""
    run = dest / "run"
    shutil.copytree(dry_out, run)
    summary = json.loads((run / "summary.json").read_text())
    summary.update(dry_run=False)
    summary["env"]["device"] = SYNTHETIC
    (run / "summary.json").write_text(json.dumps(summary))
    for key in ("b-kernel-bench", "c-fused-linear", "d-tile-sweep"):
        path = run / key / "sparse_kl_latest.json"
        data = json.loads(path.read_text())
        data["meta"].update(gpu=SYNTHETIC, plumbing=False, load_ok=True, forced=False)
        path.write_text(json.dumps(data))
    return run


@pytest.mark.slow
def test_promote_writes_pages_and_the_baseline(dry_run, tmp_path):
    proc, out = dry_run
    assert proc.returncode == 0
    run = synthetic_run(out, tmp_path)
    reports = tmp_path / "reports"
    written = promote(run, reports)
    k = reports / "kernels"
    for name in ("sparse_kl.md", "sparse_kl_latest.json", "baseline.json", "gpu-check.md"):
        assert (k / name) in written and (k / name).exists()
    page = (k / "sparse_kl.md").read_text()
    assert SYNTHETIC in page and "## Fused linear" in page and "## Tile sweep" in page and "Targets met or missed" in page
    from kernels.bench_compare import load

    base = load(k / "baseline.json")
    assert base.gpu == SYNTHETIC and base.rows
    assert (reports / "train" / "README.md").exists() and len(list((reports / "train").glob("bench-*.json"))) == 2
    assert (reports / "eval" / "generation-gpu.md").read_text().startswith("# Generation throughput")
    assert "GPU kernel tests" in (k / "gpu-check.md").read_text()


@pytest.mark.slow
def test_promote_refuses_dry_runs_other_sources_and_loaded_runs(dry_run, tmp_path):
    proc, out = dry_run
    with pytest.raises(PromoteError, match="dry-run"):
        promote(out, tmp_path / "r0")
    run = synthetic_run(out, tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps(dict(summary, source_fingerprint="0" * 64)))
    with pytest.raises(PromoteError, match="other sources"):
        promote(run, tmp_path / "r1")
    (run / "summary.json").write_text(json.dumps(summary))
    path = run / "b-kernel-bench" / "sparse_kl_latest.json"
    data = json.loads(path.read_text())
    data["meta"].update(load_ok=False, load_reason="other processes used 90.0 CPU s in 60.0 s (synthetic)")
    path.write_text(json.dumps(data))
    with pytest.raises(PromoteError, match="not promoted"):
        promote(run, tmp_path / "r2")
    promote(run, tmp_path / "r3", force=True)
    assert "FORCED" in (tmp_path / "r3" / "kernels" / "sparse_kl.md").read_text()
