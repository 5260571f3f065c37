"""Turn a GPU check's output folder into reports/ pages and the kernel-speed baseline.

    python3 -m scripts.gpu_check promote RUN_DIR [--reports reports] [--force]

Writes reports/kernels/ (sparse_kl.md with the issue-11 targets met or missed, sparse_kl_latest.json,
baseline.json for `kernels.bench --compare`, gpu-check.md with the run's summary and test results),
reports/train/ (bench-<device>.json pages through `harness.train.bench.write_reports`) and
reports/eval/generation-gpu.{json,md}. Refused: dry runs (plumbing), runs made from other sources
(their fingerprint differs from this checkout's) and kernel results whose machine was not quiet --
the last two unless --force, which the pages then state.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from .run import atomic_write, source_fingerprint, summary_markdown


class PromoteError(Exception):
    pass


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PromoteError(f"{path}: not readable ({e})") from None


def _part_dir(run: Path, summary: dict, key: str) -> tuple[Path | None, dict | None]:
    for p in summary["parts"]:
        if p["key"] == key:
            return run / f"{p['key']}-{p['name']}", p
    return None, None


def merge_kernel_results(run: Path, summary: dict, force: bool) -> tuple[dict | None, list[str]]:
    """One result from parts b (loss), c (fused linear) and d (tune); notes on what was partial."""
    merged, notes = None, []
    for key, section in (("b", "loss"), ("c", "fused_linear"), ("d", "tune")):
        folder, rec = _part_dir(run, summary, key)
        if folder is None:
            notes.append(f"part ({key}) was not run")
            continue
        latest = folder / "sparse_kl_latest.json"
        if latest.exists():
            data = _load(latest)
            rows = data.get(section, [])
            meta = data["meta"]
            if not meta.get("load_ok", False) and not force:
                raise PromoteError(f"part ({key}): {meta.get('load_reason', 'load not recorded')}; not promoted (pass --force to keep it, marked)")
        elif (folder / "salvaged_rows.json").exists():
            rows = [r for r in _load(folder / "salvaged_rows.json") if r.get("kind") == section]
            meta = None
            notes.append(f"part ({key}) hit its limit ({rec['status']}): {len(rows)} rows salvaged from its log")
        else:
            notes.append(f"part ({key}): {rec['status']}, no results")
            continue
        if merged is None:
            base = meta or {"gpu": summary["env"].get("device", "unknown"), "versions": {}, "git_commit": summary["git_commit"],
                            "timestamp": summary["started"], "copy_bandwidth_bytes_per_s": None}
            merged = {"meta": dict(base), "loss": [], "fused_linear": []}
        merged[section] = rows
        if meta and not meta.get("load_ok", False):
            merged["meta"]["forced"] = True
            merged["meta"]["load_reason"] = meta.get("load_reason")
    if merged is not None:
        merged["meta"]["gpu_check"] = {"run": str(run), "notes": notes, "source_fingerprint": summary["source_fingerprint"]}
    return merged, notes


def promote(run: Path, reports: Path, force: bool = False) -> list[Path]:
    summary_path = run / "summary.json"
    if not summary_path.exists():
        raise PromoteError(f"{run}: no summary.json; expected the folder `bash scripts/gpu_check.sh` wrote")
    summary = _load(summary_path)
    if summary.get("dry_run"):
        raise PromoteError(f"{run}: a --dry-run (plumbing on CPU), never promoted")
    here = source_fingerprint()
    if summary["source_fingerprint"] != here and not force:
        raise PromoteError(f"{run}: made from other sources (fingerprint {summary['source_fingerprint'][:16]}, this checkout "
                           f"{here[:16]}); rerun the GPU check on this commit, or pass --force")
    written: list[Path] = []
    kernels_dir = reports / "kernels"
    kernels_dir.mkdir(parents=True, exist_ok=True)

    from kernels.bench_compare import promote as promote_baseline
    from kernels.bench_report import render_markdown

    result, notes = merge_kernel_results(run, summary, force)
    if result is not None:
        stamp = result["meta"].get("timestamp", summary["started"]).replace(":", "").replace("-", "")
        text = json.dumps(result, indent=1) + "\n"
        for name in (f"sparse_kl_{stamp}.json", "sparse_kl_latest.json"):
            atomic_write(kernels_dir / name, text)
            written.append(kernels_dir / name)
        page = render_markdown(result)
        if notes:
            page += "\n## Notes from the GPU check\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
        atomic_write(kernels_dir / "sparse_kl.md", page)
        written.append(kernels_dir / "sparse_kl.md")
        if any("median_ms" in r for r in result["loss"] + result["fused_linear"]):
            print(promote_baseline(kernels_dir / "sparse_kl_latest.json", kernels_dir / "baseline.json"))
            written.append(kernels_dir / "baseline.json")

    check_page = summary_markdown(summary)
    folder, rec = _part_dir(run, summary, "a")
    if rec is not None and isinstance(rec.get("tests"), dict):
        t = rec["tests"]
        check_page += (f"\n## GPU kernel tests\n\n{t['tests']} run, {t['failures']} failed, {t['errors']} errors, "
                       f"{t['skipped']} skipped.\n" + "".join(f"- FAILED `{n}`\n" for n in rec.get("failed_tests", [])))
    if summary["source_fingerprint"] != here:
        check_page += f"\n**Promoted with --force from other sources** (run {summary['source_fingerprint'][:16]}, checkout {here[:16]}).\n"
    atomic_write(kernels_dir / "gpu-check.md", check_page)
    written.append(kernels_dir / "gpu-check.md")

    for key, suffix in (("e1", ""), ("e2", "-flan-t5-large")):  # XL is the train bench's GPU case
        folder, rec = _part_dir(run, summary, key)
        files = sorted(folder.glob("bench-*.json")) if folder and folder.is_dir() else []
        if not files:
            continue
        from harness.train.bench import write_reports

        report = _load(files[0])
        report["device_slug"] = report["device_slug"] + suffix
        written.append(write_reports(report, reports / "train"))

    folder, rec = _part_dir(run, summary, "f")
    if folder and (folder / "generation.json").exists():
        (reports / "eval").mkdir(parents=True, exist_ok=True)
        for src, dst in (("generation.json", "generation-gpu.json"), ("generation.md", "generation-gpu.md")):
            shutil.copyfile(folder / src, reports / "eval" / dst)
            written.append(reports / "eval" / dst)
    return written


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m scripts.gpu_check promote", description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="the GPU check's output folder")
    ap.add_argument("--reports", type=Path, default=Path("reports"), help="reports root (default reports/)")
    ap.add_argument("--force", action="store_true", help="promote despite a load above threshold or other sources (stated on the pages)")
    a = ap.parse_args(argv)
    try:
        written = promote(a.run, a.reports, a.force)
    except PromoteError as e:
        print(f"gpu_check promote: {e}", file=sys.stderr)
        return 2
    for p in written:
        print(f"gpu_check promote: wrote {p}")
    return 0
