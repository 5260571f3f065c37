"""`python -m harness train …`: run a training config; `train evaluate`, `train select`, `train prune`.

The evaluator (lm-eval through the eval stage) is handed in by harness/cli.py in the command
context (`ctx.obj["evaluator"]`), so this stage never imports the eval stage.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional

import typer

from harness.errors import UsageError

app = typer.Typer(help="Specialize a student on a formats output (sample or distribution matching).", invoke_without_command=True)


def _evaluator(ctx: typer.Context):
    return (ctx.find_root().obj or {}).get("evaluator")


def _config(config: Optional[str], output: Optional[Path], formats: Optional[Path], sets: List[str]):
    from harness.train.config import load_config, parse_override, preset_names

    if not config:
        raise UsageError(f"--config: required (a YAML file or a preset: {', '.join(preset_names())})")
    overrides = dict(parse_override(s) for s in sets)
    if output:
        overrides["output_dir"] = str(output)
    if formats:
        overrides["formats_dir"] = str(formats)
    return load_config(config, overrides)


@app.callback()
def train(
    ctx: typer.Context,
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML/JSON config or preset name (e.g. faithful-base, corrected-xl, cpu-tiny)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="run folder (overrides output_dir)"),
    formats: Optional[Path] = typer.Option(None, "--formats", help="formats output folder (overrides formats_dir)"),
    sets: List[str] = typer.Option([], "--set", help="override one setting: key=value (YAML value), repeatable"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest checkpoint in the run folder"),
    no_eval: bool = typer.Option(False, "--no-eval", help="do not evaluate checkpoints while training"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Train with CONFIG; writes checkpoints, metrics.jsonl and TensorBoard logs to the run folder."""
    if ctx.invoked_subcommand is not None:
        return
    from harness.train.job import run as run_training

    cfg = _config(config, output, formats, sets)
    result = run_training(cfg, resume=resume, evaluator=None if no_eval else _evaluator(ctx), progress=not quiet)
    p = result.position
    if result.already_complete:
        typer.echo(f"train: {result.run_dir} is already complete ({p.global_step} steps, {p.examples} examples); nothing to do")
        return
    typer.echo(f"train: {p.global_step} steps, {p.examples} examples, {len(result.checkpoints)} checkpoint(s) -> {result.run_dir}")


@app.command("evaluate")
def evaluate(
    ctx: typer.Context,
    run: Path = typer.Argument(..., help="a training run folder"),
    tasks: Optional[str] = typer.Option(None, help="comma-separated tasks (default: the run's eval_tasks)"),
    limit: Optional[float] = typer.Option(None, help="--limit for every task (default: the run's)"),
) -> None:
    """Evaluate every checkpoint of RUN not yet scored on the tasks (resumable; metrics.jsonl)."""
    from harness.train import checkpoints as ck
    from harness.train.config import load_config
    from harness.train.metrics import read_metrics
    from harness.train.trainer import evaluate_checkpoint

    evaluator = _evaluator(ctx)
    if evaluator is None:
        raise UsageError("no evaluator available")
    if not (run / "config.json").is_file():
        raise UsageError(f"{run}: not a training run folder (no config.json)")
    cfg = load_config(run / "config.json")
    if tasks:
        cfg = dataclasses.replace(cfg, eval_tasks=[t.strip() for t in tasks.split(",") if t.strip()])
    if limit is not None:
        cfg = dataclasses.replace(cfg, eval_limit=limit, eval_limits={})
    done = {(r["checkpoint"], r["task"]) for r in read_metrics(run) if r["kind"] == "eval"}
    for folder in ck.list_checkpoints(run):
        todo = [t for t in cfg.eval_tasks if (folder.name, t) not in done]
        if todo and not ck.has_weights(folder):
            typer.echo(f"evaluate: {folder.name}: weights pruned, skipped ({', '.join(todo)} not scored)")
        elif todo:
            cfg_one = dataclasses.replace(cfg, eval_tasks=todo)
            evaluate_checkpoint(folder, cfg_one, evaluator)
            typer.echo(f"evaluate: {folder.name}: {', '.join(todo)}")


@app.command("select")
def select(
    run: Path = typer.Argument(..., help="a training run folder with evaluated checkpoints"),
    output: Optional[Path] = typer.Option(None, help="where to write selection.json (default RUN/selection.json)"),
) -> None:
    """Model selection by every rule: the best checkpoint by GSM8K dev and by M-A-S dev, and the last."""
    from harness.train.selection import select_checkpoints, write_selection

    result = select_checkpoints(run)
    path = write_selection(result, output or run / "selection.json")
    for name, choice in result["choices"].items():
        typer.echo(f"select: {name}: {choice['checkpoint']} of {choice['candidates']} candidate(s) "
                   f"(in-dist {choice['in_dist']}, out-of-dist {choice['out_of_dist']})")
    typer.echo(f"select: wrote {path}")


@app.command("prune")
def prune(
    run: Path = typer.Argument(..., help="a training run folder"),
    keep: List[str] = typer.Option([], "--keep", help="a checkpoint whose weights stay (name or path), repeatable"),
    drop_resumable: bool = typer.Option(False, "--drop-resumable", help="also delete the newest resumable checkpoint's weights"),
) -> None:
    """Delete the weights (model/, state/) of RUN's checkpoints not kept; their eval summaries,
    trainer_state.json and metrics rows stay. The newest resumable checkpoint stays unless told."""
    from harness.train.checkpoints import prune_weights

    result = prune_weights(run, keep, keep_resumable=not drop_resumable)
    typer.echo(f"prune: kept the weights of {', '.join(result['kept']) or 'no checkpoint'}; removed those of "
               f"{len(result['removed'])} checkpoint(s), {result['freed_bytes'] / 1e9:.2f} GB freed")
