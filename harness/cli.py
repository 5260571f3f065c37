"""`python -m harness …`: one command per stage. Parses options and calls the stage; no logic here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False, help=__doc__)
data_app = typer.Typer(no_args_is_help=True, help="Fetch and verify the data sets.")
app.add_typer(data_app, name="data")
console = Console(stderr=True)

# Stage sub-apps register here (one line each).
from harness.align.cli import app as align_app  # noqa: E402

app.add_typer(align_app, name="align")


@data_app.command("download")
def data_download(
    data_dir: Optional[Path] = typer.Option(None, help="Target folder (default: $SPEC_DATA_DIR or the cache)."),
    only: Optional[str] = typer.Option(None, help="Only files under this prefix, e.g. 'bbh/'."),
):
    """Download every data file from its public source, verified by sha256 against the manifest."""
    from harness.config import ENV_DATA_DIR, default_cache_dir
    from harness.data.download import download, manifest
    import os

    root = Path(data_dir or os.environ.get(ENV_DATA_DIR) or default_cache_dir())
    root.mkdir(parents=True, exist_ok=True)
    entries = [e for e in manifest() if not only or e.file.startswith(only)]
    with Progress(console=console) as progress:
        bar = progress.add_task("downloading", total=len(entries))
        fetched = download(root, only, progress=lambda entry: progress.advance(bar))
    console.print(f"{len(fetched)} fetched, {len(entries) - len(fetched)} already present in {root}")


@data_app.command("verify")
def data_verify(
    data_dir: Optional[Path] = typer.Option(None, help="Folder to check (default: $SPEC_DATA_DIR)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object instead of a table."),
):
    """Check every data file's sha256 against the pinned manifest."""
    from harness.config import data_dir as resolve
    from harness.data.download import verify

    status = verify(resolve(data_dir))
    if as_json:
        print(json.dumps(status, indent=1))
    else:
        table = Table("file", "status")
        for name, state in status.items():
            table.add_row(name, state)
        Console().print(table)
    if any(state != "ok" for state in status.values()):
        raise typer.Exit(1)


# --- evaluation ------------------------------------------------------------------------------

tasks_app = typer.Typer(no_args_is_help=True, help="Make the spec tasks visible to the plain `lm_eval` command.")
app.add_typer(tasks_app, name="tasks")


@tasks_app.command("install")
def tasks_install():
    """Link this repo's tasks/ into lm_eval/tasks/spec_harness/ (reversible: `tasks uninstall`)."""
    from harness.eval.registration import install

    console.print(f"spec tasks linked into {install()}; `lm_eval --tasks gsm8k_cot_spec …` now finds them")


@tasks_app.command("uninstall")
def tasks_uninstall():
    """Remove lm_eval/tasks/spec_harness/ (only if this tool created it)."""
    from harness.eval.registration import installed_dir, uninstall

    console.print(f"removed {installed_dir()}" if uninstall() else "nothing to remove: spec tasks were not installed")


@tasks_app.command("status")
def tasks_status():
    """Say whether the plain `lm_eval` command sees the spec tasks."""
    from harness.eval.registration import status

    print(json.dumps(status(), indent=1))


@tasks_app.command("list")
def tasks_list():
    """List the spec task and group names (from tasks/*.yaml)."""
    from harness.config import TASKS_DIR

    for path in sorted(TASKS_DIR.glob("*.yaml")):
        for line in path.read_text().splitlines():
            if line.startswith(("task: ", "group: ")):
                kind, name = line.split(": ", 1)
                print(f"{name}\t{kind}")


@app.command("eval")
def eval_command(
    model: str = typer.Option(..., help="HF hub id or local path; `tiny` = a random T5 built locally (pipeline check)."),
    tasks: str = typer.Option("gsm8k_cot_spec", help="Comma-separated task or group names (see `harness tasks list`)."),
    limit: Optional[float] = typer.Option(None, help="Items per task (an int) or a fraction (<1)."),
    batch_size: int = typer.Option(8),
    device: Optional[str] = typer.Option(None, help="e.g. cuda:0, cpu (default: lm-eval's choice)."),
    max_length: Optional[int] = typer.Option(None, help="Context length; default 4096 for T5-style models (lm-eval's 512 would left-truncate spec prompts)."),
    max_gen_toks: Optional[int] = typer.Option(None, help="Override the tasks' 256 new tokens."),
    split_mode: Optional[str] = typer.Option(None, help="faithful | clean (default: each task's own)."),
    base_prompt: Optional[str] = typer.Option(None, help="cot_base tasks: complex | original | simple | random | direct."),
    output_dir: Path = typer.Option(Path("runs/eval"), help="lm-eval result and sample files go under OUTPUT_DIR/<model>/."),
    seed: int = typer.Option(0),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Evaluate a model on spec tasks with lm-eval; writes lm-eval's results and samples files."""
    from harness.eval.run import EvalConfig, run

    if limit is not None and limit >= 1:
        limit = int(limit)
    cfg = EvalConfig(
        model=model, tasks=[t.strip() for t in tasks.split(",") if t.strip()], limit=limit,
        batch_size=batch_size, device=device, max_length=max_length, max_gen_toks=max_gen_toks,
        split_mode=split_mode, base_prompt=base_prompt, output_dir=output_dir, seed=seed,
    )
    summary = run(cfg)
    if as_json:
        print(json.dumps({k: v for k, v in summary.items() if k != "manifest"}, indent=1))
        return
    table = Table("task", "n", "acc_faithful %", "acc_corrected %", title=f"{model}")
    for name, entry in summary["tasks"].items():
        table.add_row(name, str(entry.get("n")), f"{entry.get('acc_faithful', float('nan')):.2f}", f"{entry.get('acc_corrected', float('nan')):.2f}")
    Console().print(table)
    for protocol, rules in summary["bbh"].items():
        for rule, means in rules.items():
            Console().print(f"{protocol} {rule}: mean over 27 subtasks {means['mean_27']:.2f} | over 23 groups {means['mean_23']:.2f} ({means['subtasks']} subtasks run)")
    if summary.get("pipeline_check"):
        console.print(f"[bold yellow]{summary['note']}[/]")
    console.print(f"files written to {summary['output_dir']}")


@app.command("score")
def score_command(
    suite: str = typer.Option(..., help="bbh_cot | bbh_ao | gsm8k | multiarith | asdiv | svamp"),
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSONL of {task, prediction, target}, or an lm-eval samples_*.jsonl"),
    rule: str = typer.Option("faithful", help="faithful (the authors' scorer) | corrected (ours)"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Score recorded generations with the tasks' rules (no model needed)."""
    from harness.eval.replay import read_generations, score
    from harness.records import RecordError

    try:
        result = score(read_generations(file, suite), suite, rule)
    except (RecordError, ValueError) as err:
        console.print(f"[red]error:[/] {err}")
        raise typer.Exit(2)
    if as_json:
        print(json.dumps(result, indent=1))
        return
    table = Table("task", "n", "accuracy %", title=f"{suite} ({rule} rule): {file.name}")
    for name, entry in result["tasks"].items():
        table.add_row(name, str(entry["n"]), f"{entry['accuracy']:.2f}")
    Console().print(table)
    if "mean_27" in result:
        Console().print(f"mean over 27 subtasks: {result['mean_27']:.2f} | over 23 groups: {result['mean_23']:.2f}")
        if "incomplete" in result:
            console.print(f"[yellow]{result['incomplete']}[/]")
