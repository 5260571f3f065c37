"""`python -m harness report …`: render, validate, teacher-row. Heavy imports stay inside."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True, help="Comparison reports: our numbers beside the paper's, in Markdown and HTML.")


@app.command("render")
def render(
    results: Path = typer.Argument(..., help="Results JSON written by the orchestrator (docs/reports.md)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: reports/<table>/<profile>/)."),
    paper: Optional[Path] = typer.Option(None, "--paper", help="Paper-number file (default: reports/paper/fu2023.json)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Data directory for the teacher row (default: $SPEC_DATA_DIR)."),
    teacher: bool = typer.Option(True, "--teacher-row/--no-teacher-row", help="Table 1: recompute code-davinci-002's BBH cells."),
):
    """Write <table>.md, <table>.html (self-contained), <table>.comparison.json and the figure PNGs."""
    from harness.config import REPO_ROOT, data_dir as resolve_data_dir
    from harness.report.paper import PAPER_PATH
    from harness.report.render import render_report
    from harness.report.results import load_results

    loaded = load_results(results)
    target = out or REPO_ROOT / "reports" / loaded.table / loaded.profile
    root = resolve_data_dir(data_dir) if data_dir is not None else None
    for path in render_report(results, target, paper or PAPER_PATH, data_root=root, teacher=teacher):
        print(path)


@app.command("validate")
def validate(results: Path = typer.Argument(..., help="Results JSON to check against the schema.")):
    """Check a results file; prints what it holds, or one line naming the bad field."""
    from harness.report.results import load_results

    loaded = load_results(results)
    extra = (f"; schema 2: {len(loaded.losses)} loss points, {len(loaded.not_run)} rows not run, "
             f"{len(loaded.teacher_data)} teacher data entries" if loaded.schema >= 2 else "; schema 1")
    print(f"{results}: {loaded.table}, {loaded.profile} profile: {len(loaded.cells)} cells, "
          f"{len(loaded.curves)} curve points, {len(loaded.fig4)} Fig. 4 points{extra}")


@app.command("teacher-row")
def teacher_row(
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Data directory (default: $SPEC_DATA_DIR)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    check: bool = typer.Option(False, "--check", help="Exit 1 unless the `bbh` rule reproduces Table 1 (to one decimal)."),
):
    """Table 1's code-davinci-002 BBH cells from the recorded generations: `bbh` rule beside `faithful`."""
    from harness.config import data_dir as resolve_data_dir
    from harness.report.paper import load_paper
    from harness.report.teacher_row import ROW, teacher_row as compute

    columns = compute(resolve_data_dir(data_dir))
    paper = load_paper()
    rows = [{"column": c.column, "items": c.items, "paper": paper.value("table1", ROW, c.column),
             "bbh_mean_23": c.mean_23["bbh"], "faithful_mean_23": c.mean_23["faithful"],
             "bbh_mean_27": c.mean_27["bbh"], "faithful_mean_27": c.mean_27["faithful"],
             "faithful_only": c.faithful_only, "bbh_only": c.bbh_only} for c in columns]
    if as_json:
        print(json.dumps({"row": ROW, "columns": rows}, indent=1))
    else:
        print(f"{'column':8} {'items':>6} {'paper':>6} {'bbh':>7} {'faithful':>9}   (mean over 23 groups; mean_27 bbh/faithful)")
        for r in rows:
            print(f"{r['column']:8} {r['items']:>6} {r['paper']:>6} {r['bbh_mean_23']:>7.2f} {r['faithful_mean_23']:>9.2f}"
                  f"   ({r['bbh_mean_27']:.2f} / {r['faithful_mean_27']:.2f})")
    if check and any(round(r["bbh_mean_23"], 1) != r["paper"] for r in rows):
        raise typer.Exit(1)
