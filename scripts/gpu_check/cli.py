"""Command line: `bash scripts/gpu_check.sh [--dry-run] [--out DIR] [--parts a,b,...]` and
`python3 -m scripts.gpu_check promote RUN_DIR [--force]` (reports/kernels/README.md, "Docs")."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from .parts import BUDGET_S, PARTS, by_key


def default_out() -> Path:
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"])
    return Path("runs/gpu_check") / dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bash scripts/gpu_check.sh", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="output folder (default: $OUT if set, else runs/gpu_check/<UTC time>)")
    ap.add_argument("--parts", help=f"comma-separated subset of {','.join(p.key for p in PARTS)} (default: all, in that order)")
    ap.add_argument("--dry-run", action="store_true",
                    help="every part's plumbing on CPU at tiny sizes, imports limited to the GPU machine's packages")
    ap.add_argument("--budget-s", type=int, default=BUDGET_S, help=f"seconds for all parts together (default {BUDGET_S})")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["_part"]:
        from .guard import main as part_main

        return part_main(args[1:])
    if args[:1] == ["promote"]:
        from .promote import main as promote_main

        return promote_main(args[1:])
    ap = parser()
    a = ap.parse_args(args)
    try:
        parts = by_key(a.parts)
    except ValueError as e:
        ap.error(str(e))
    if a.budget_s < 10:
        ap.error("--budget-s must be >= 10")
    out = a.out or default_out()
    if out.exists() and any(out.iterdir()) and (out / "summary.json").exists():
        ap.error(f"--out {out} already holds a GPU check (summary.json); choose an empty folder")
    from .run import run

    return run(parts, out.resolve(), a.dry_run, a.budget_s)
