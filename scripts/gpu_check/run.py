"""Run the parts: each in a process group of its own with a hard limit, the whole within the budget.

Writes, under the output folder: env.json (device, driver, CUDA, versions, commit, source
fingerprint), one folder per part (part.json, part.md, stdout.log, stderr.log and the part's own
outputs), and summary.json / summary.md, rewritten after every part, so a run cut short still
leaves a consistent record. A part that cannot run says why and the rest goes on; a kernel-bench
part that hits its limit keeps the rows it had printed (`salvaged_rows`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from .guard import site_view
from .parts import BUDGET_S, Part

ROOT = Path(__file__).resolve().parents[2]
FINGERPRINTED = ("kernels", "harness/train", "scripts/gpu_check", "scripts/gpu_generation_bench.py", "tests/kernels")
LOG_TAIL = 200_000  # bytes of each log kept (the device tool returns files under limits)

ENV_PROBE = r"""
import json, os, platform, subprocess, sys
info = {"python": platform.python_version(), "executable": sys.executable}
try:
    import torch
    info.update(torch=torch.__version__, cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(device=torch.cuda.get_device_name(0), device_count=torch.cuda.device_count(), sms=p.multi_processor_count,
                    memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}")
except Exception as e:
    info["torch_error"] = f"{type(e).__name__}: {e}"
from importlib.metadata import PackageNotFoundError, version
for name in ("triton", "transformers", "accelerate", "pytest", "hypothesis", "pytest-benchmark", "numpy", "liger-kernel", "nox", "lm-eval"):
    try:
        info.setdefault("packages", {})[name] = version(name)
    except PackageNotFoundError:
        info.setdefault("packages", {})[name] = None
try:
    out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=20)
    info["nvidia_smi"] = out.stdout.strip() or out.stderr.strip()
except (OSError, subprocess.TimeoutExpired) as e:
    info["nvidia_smi"] = f"unavailable: {e}"
print(json.dumps(info))
"""


def utc() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def git_commit() -> str:
    if os.environ.get("GPU_CHECK_COMMIT"):
        return os.environ["GPU_CHECK_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no .git here; pass GPU_CHECK_COMMIT=<sha>)"


def source_fingerprint() -> str:
    """sha256 over the sources the GPU numbers depend on, so promote can tell a stale run."""
    h = hashlib.sha256()
    for entry in FINGERPRINTED:
        path = ROOT / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            if "__pycache__" in f.parts:
                continue
            h.update(str(f.relative_to(ROOT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def unpack_wheels(site: Path) -> list[str]:
    """Pure-Python wheels carried in .whl/ (liger-kernel), unzipped onto the parts' PYTHONPATH."""
    wheels = sorted((ROOT / ".whl").glob("*.whl")) if (ROOT / ".whl").is_dir() else []
    for w in wheels:
        with zipfile.ZipFile(w) as z:
            z.extractall(site)
    return [w.name for w in wheels]


def run_part(part: Part, out: Path, limit: int, dry_run: bool, env: dict) -> dict:
    """Run one part; returns its record (also written to part.json / part.md)."""
    out.mkdir(parents=True, exist_ok=True)
    real = part.command(out, dry_run=False)
    cmd = [sys.executable] + (["-S"] if dry_run else []) + ["-m", "scripts.gpu_check", "_part"]
    if dry_run:
        cmd += ["--check-args", part.check_args] if part.check_args else []
        cmd += ["--"] + part.command(out, dry_run=True) + (["--real"] + real if part.check_args else [])
    else:
        cmd += ["--"] + real
    rec = {"key": part.key, "name": part.name, "title": part.title, "command": "python3 " + " ".join(real),
           "limit_s": limit, "expected": part.expected, "dry_run": dry_run, "started": utc()}
    t0 = time.monotonic()
    with open(out / "stdout.log", "wb") as so, open(out / "stderr.log", "wb") as se:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=so, stderr=se, start_new_session=True)
        try:
            rc = proc.wait(timeout=limit)
            rec.update(rc=rc, status="ok" if rc == 0 else f"failed (exit {rc})")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the part and everything it started (compile workers)
            proc.wait()
            rec.update(rc=None, status=f"timeout after {limit} s (hard limit)")
    rec["seconds"] = round(time.monotonic() - t0, 1)
    for name in ("stdout.log", "stderr.log"):
        _trim(out / name)
    rec.update(details(part, out, rec))
    atomic_write(out / "part.json", json.dumps(rec, indent=1) + "\n")
    atomic_write(out / "part.md", part_markdown(rec, out))
    return rec


def _trim(path: Path) -> None:
    data = path.read_bytes()
    if len(data) > LOG_TAIL:
        path.write_bytes(b"[... trimmed ...]\n" + data[-LOG_TAIL:])


def details(part: Part, out: Path, rec: dict) -> dict:
    """Part-specific facts: test counts, salvaged rows, the outputs present, the error's last line."""
    info: dict = {"outputs": sorted(p.name for p in out.iterdir() if p.name not in ("part.json", "part.md"))}
    if rec["status"] != "ok":
        tail = [ln for ln in (out / "stderr.log").read_text(errors="replace").splitlines() if ln.strip()]
        info["error_tail"] = tail[-12:]
    if part.kind == "pytest" and (out / "junit.xml").exists():
        try:
            suite = ET.parse(out / "junit.xml").getroot()
            suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
            info["tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
            info["failed_tests"] = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                                    if c.find("failure") is not None or c.find("error") is not None]
        except (ET.ParseError, AttributeError) as e:
            info["tests"] = f"unreadable junit.xml: {e}"
    if part.kind == "kernel-bench" and rec["rc"] is None:
        rows = []
        for line in (out / "stdout.log").read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and row.get("kind") in ("loss", "fused_linear", "tune"):
                    rows.append(row)
        info["salvaged_rows"] = len(rows)
        atomic_write(out / "salvaged_rows.json", json.dumps(rows, indent=1) + "\n")
    return info


def part_markdown(rec: dict, out: Path) -> str:
    lines = [f"# Part ({rec['key']}) {rec['title']}", "",
             f"Status: **{rec['status']}** in {rec['seconds']} s (limit {rec['limit_s']} s; expected {rec['expected']}, an estimate).",
             f"Command: `{rec['command']}`" + (" (dry run: the same plumbing at tiny sizes on CPU)" if rec["dry_run"] else ""), ""]
    if isinstance(rec.get("tests"), dict):
        t = rec["tests"]
        lines.append(f"Tests: {t['tests']} run, {t['failures']} failed, {t['errors']} errors, {t['skipped']} skipped.")
        lines += [f"- FAILED {name}" for name in rec.get("failed_tests", [])]
    if "salvaged_rows" in rec:
        lines.append(f"Salvaged {rec['salvaged_rows']} result rows printed before the limit (salvaged_rows.json).")
    if rec.get("error_tail"):
        lines += ["", "Last lines of stderr:", "", "```", *rec["error_tail"], "```"]
    lines += ["", "Files: " + ", ".join(f"`{n}`" for n in rec["outputs"])]
    return "\n".join(lines) + "\n"


def summary_markdown(summary: dict) -> str:
    e = summary["env"]
    lines = ["# GPU check", ""]
    if summary["dry_run"]:
        lines += ["**DRY RUN (`--dry-run`): plumbing on CPU at tiny sizes, imports limited to the GPU machine's packages. "
                  "Not a measurement.**", ""]
    lines += [
        f"Device: {e.get('device', 'no CUDA device')} (capability {e.get('capability')}, {e.get('sms')} SMs, {e.get('memory_gib')} GiB) · "
        f"nvidia-smi: {e.get('nvidia_smi')}",
        f"Python {e.get('python')} · torch {e.get('torch')} (CUDA {e.get('cuda')}) · packages: "
        + ", ".join(f"{k} {v}" for k, v in (e.get("packages") or {}).items()),
        f"Commit `{summary['git_commit']}` · source fingerprint `{summary['source_fingerprint'][:16]}` · carried wheels: "
        f"{', '.join(summary['wheels']) or 'none'}",
        f"Started {summary['started']}, budget {summary['budget_s']} s, used {summary['elapsed_s']} s.", "",
        "| part | title | status | seconds | limit | expected (estimate) |", "|---|---|---|---|---|---|",
    ]
    for p in summary["parts"]:
        lines.append(f"| {p['key']} | {p['title']} | {p['status']} | {p.get('seconds', '')} | {p.get('limit_s', '')} | {p.get('expected', '')} |")
    return "\n".join(lines) + "\n"


def probe_env(env: dict) -> dict:
    try:
        out = subprocess.run([sys.executable, "-c", ENV_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
        return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {"error": out.stderr[-2000:]}
    except (subprocess.TimeoutExpired, ValueError, IndexError) as e:
        return {"error": f"environment probe failed: {e}"}


def run(parts: list[Part], out: Path, dry_run: bool, budget_s: int = BUDGET_S) -> int:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               PYTHONUNBUFFERED="1", GPU_CHECK_COMMIT=git_commit(), TORCHINDUCTOR_COMPILE_THREADS="1")
    view = None
    if dry_run:
        env["TRITON_INTERPRET"] = "1"  # the kernels run in the interpreter there
        view = tempfile.mkdtemp(prefix="gpu_check_site_")
        env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], *site_view(Path(view))])
    site = Path(tempfile.mkdtemp(prefix="gpu_check_wheels_"))  # not under `out`: only results go back
    wheels = unpack_wheels(site)
    if wheels:
        env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    t0 = time.monotonic()
    summary = {"started": utc(), "dry_run": dry_run, "budget_s": budget_s, "git_commit": env["GPU_CHECK_COMMIT"],
               "source_fingerprint": source_fingerprint(), "wheels": wheels, "env": probe_env(env), "parts": [], "elapsed_s": 0}
    atomic_write(out / "env.json", json.dumps(summary["env"], indent=1) + "\n")
    has_cuda = bool(summary["env"].get("cuda_available"))
    for part in parts:
        remaining = budget_s - (time.monotonic() - t0)
        limit = int(min(part.limit_s, remaining))
        if part.needs_cuda and not has_cuda and not dry_run:
            rec = {"key": part.key, "name": part.name, "title": part.title, "status": "skipped: no CUDA device is visible "
                   "(torch.cuda.is_available() is False)", "expected": part.expected}
        elif limit < 10:
            rec = {"key": part.key, "name": part.name, "title": part.title, "status": f"skipped: the {budget_s} s budget is spent",
                   "expected": part.expected}
        else:
            print(f"gpu_check: part ({part.key}) {part.title} (limit {limit} s) ...", flush=True)
            rec = run_part(part, out / f"{part.key}-{part.name}", limit, dry_run, env)
        print(f"gpu_check: part ({part.key}): {rec['status']}" + (f" in {rec['seconds']} s" if "seconds" in rec else ""), flush=True)
        summary["parts"].append(rec)
        summary["elapsed_s"] = round(time.monotonic() - t0, 1)
        atomic_write(out / "summary.json", json.dumps(summary, indent=1) + "\n")
        atomic_write(out / "summary.md", summary_markdown(summary))
    for tmp in (view, site):
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"gpu_check: wrote {out / 'summary.md'}", flush=True)
    bad = [p for p in summary["parts"] if p["status"] != "ok" and not (dry_run and p["status"].startswith("skipped"))]
    return 1 if bad else 0
