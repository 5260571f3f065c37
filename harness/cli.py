"""`python -m harness …`: one command per stage. Parses options and calls the stage; no logic here.

Errors: a user or data error (harness.errors.HarnessError) prints one to three lines and exits
non-zero (2 for a bad option); `--debug` anywhere on the command line shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help=__doc__)
data_app = typer.Typer(no_args_is_help=True, help="Fetch and verify the data sets.")
app.add_typer(data_app, name="data")
console = Console(stderr=True)
out = Console()


def version_string() -> str:
    import importlib.metadata

    from harness.manifest import git_commit

    try:
        version = importlib.metadata.version("spec-harness")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"spec-harness {version} (git {git_commit()})"


def _show_version(value: bool) -> None:
    if value:
        print(version_string())
        raise typer.Exit()


def evaluate_checkpoint_model(*args, **kwargs) -> dict:
    """The trainer's evaluator (harness.eval.training), imported when a checkpoint is evaluated."""
    from harness.eval.training import evaluate_for_training

    return evaluate_for_training(*args, **kwargs)


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_show_version, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error (also: SPEC_DEBUG=1)."),
):
    """Reference harness for specializing small language models towards multi-step reasoning."""
    # What one stage's command needs from another stage reaches it here, never by an import.
    ctx.obj = {"evaluator": evaluate_checkpoint_model}


def _error(message: str) -> None:
    lines = str(message).strip().splitlines() or ["(no message)"]
    print(f"error: {lines[0]}", file=sys.stderr)
    for line in lines[1:]:
        print(f"  {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the typer app and turn user errors into short messages and exit codes."""
    from typer import exceptions as typer_exceptions
    from typer._click import exceptions as click  # typer vendors click; its exceptions live here

    from harness.errors import HarnessError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("SPEC_DEBUG") == "1"
    if "--debug" in args:  # accepted anywhere on the line, handled by the root callback
        args = ["--debug"] + [a for a in args if a != "--debug"]
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="python -m harness", standalone_mode=False)
    except HarnessError as err:
        if debug:
            traceback.print_exc()
            sys.exit(err.exit_code)
        _error(str(err))
        sys.exit(err.exit_code)
    except click.NoArgsIsHelpError as err:
        err.show()
        sys.exit(0)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except (typer_exceptions.Abort, KeyboardInterrupt):
        if debug:
            raise
        _error("interrupted")
        sys.exit(130)
    except OSError as err:  # a file the user named cannot be read or written
        if debug or err.filename is None:
            raise
        _error(f"{err.filename}: {err.strerror or err}")
        sys.exit(1)
    if code == 130:  # typer turns a Ctrl-C it catches into exit code 130
        _error("interrupted")
    sys.exit(code if isinstance(code, int) else 0)

# Stage sub-apps register here (one line each).
from harness.align.cli import app as align_app  # noqa: E402
from harness.formats.cli import app as formats_app  # noqa: E402
from harness.teacher.cli import app as teacher_app  # noqa: E402
from harness.report.cli import app as report_app  # noqa: E402
from harness.train import cli as train_cli  # noqa: E402

app.add_typer(teacher_app, name="teacher")
app.add_typer(align_app, name="align")
app.add_typer(formats_app, name="formats")
app.add_typer(train_cli.app, name="train")
app.add_typer(report_app, name="report")


@app.command("reproduce")
def reproduce_command(
    table: str = typer.Argument(..., help="table1 | table2 | table3 | figures"),
    profile: str = typer.Option("auto", help="auto (paper with a GPU, else cpu) | cpu | rehearsal | paper"),
    work: Path = typer.Option(Path("runs/reproduce"), help="working folder (resumable); PROFILE/ is added"),
    reports: Path = typer.Option(Path("reports"), help="reports go to REPORTS/<table>/<profile>/"),
    authors_formats: Optional[Path] = typer.Option(None, help="teacher data: the authors' released format pickles (folder; docs/reproduce.md)"),
    teacher_config: Optional[Path] = typer.Option(None, help="teacher data: a teacher job config (README, section Teacher data)"),
    setting: str = typer.Option("faithful", help="faithful (the authors' pipeline) | corrected: the align/formats setting"),
    select: Optional[str] = typer.Option(None, help="Table 1's specialized checkpoint: mas-dev (the paper's advice) | gsm8k-dev | last"),
    sets: list[str] = typer.Option([], "--set", help="training override key=value for every run (as `harness train --set`), repeatable"),
    gpus: Optional[int] = typer.Option(None, help="paper profile: GPUs to use (default: every visible one)"),
    checkpoint: list[str] = typer.Option([], help="ROW=PATH: evaluate this specialized model for ROW instead of training (repeatable)"),
    data_dir: Optional[Path] = typer.Option(None, help="data directory (default $SPEC_DATA_DIR)"),
    plan: bool = typer.Option(False, "--plan", help="print every step with its estimated cost and stop"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the steps (done ones marked) and stop"),
) -> None:
    """Rerun one of the paper's tables end to end and write its comparison report."""
    from harness.config import data_dir as resolve_data_dir
    from harness.config_files import parse_override
    from harness.errors import UsageError
    from harness.reproduce import Reproduction, pick_profile, profile as make_profile

    name = pick_profile(profile)
    given = {}
    for item in checkpoint:
        row, sep, path = item.partition("=")
        if not sep:
            raise UsageError(f"--checkpoint: expected ROW=PATH, got {item!r}")
        given[row.strip()] = Path(path)
    if gpus is not None and gpus < 1:
        raise UsageError(f"--gpus: {gpus} is not allowed; give a positive number of GPUs")
    job = Reproduction(table, make_profile(name, gpus), work / name, reports, resolve_data_dir(data_dir), authors_formats=authors_formats,
                       teacher_config=teacher_config, setting=setting, checkpoints=given, select=select,
                       overrides=dict(parse_override(s) for s in sets))
    if plan or dry_run:
        job.check(models=False)
        for line in job.plan_lines(costs=plan):
            typer.echo(line)
        from harness import hub

        absent = hub.missing(job.models(), check_hub=not job.p.hub_offline and not hub.hub_off())
        if absent:
            typer.echo(f"not here yet: {', '.join(absent)}: python -m harness models download --profile {name} --table {table}")
        return
    written = job.run()
    for path in written:
        typer.echo(f"reproduce: wrote {path}")
    if job.not_run:
        _error(f"{len(job.not_run)} row(s) not run: {', '.join(job.not_run)} (reasons above and in the report)")
        raise typer.Exit(1)


@app.command("specialize")
def specialize_command(
    student: str = typer.Option(..., "--student", help="the model to specialize: hub id, local folder, tiny (a random T5) or tiny-gpt2"),
    teacher_config: Path = typer.Option(..., "--teacher-config", help="the teacher job config (README 'Teacher data')"),
    profile: str = typer.Option("auto", help="auto (gpu when one is visible) | cpu (small slices, a pipeline check) | gpu"),
    preset: Optional[str] = typer.Option(None, help="training preset (default: the student's: cpu-tiny-gpt2, corrected, …)"),
    setting: str = typer.Option("corrected", help="the align/formats pipeline: corrected | faithful"),
    select: Optional[str] = typer.Option(None, help="the checkpoint kept: mas-dev (default) | gsm8k-dev | last"),
    sets: list[str] = typer.Option([], "--set", help="training override key=value (as `harness train --set`), repeatable"),
    gpus: Optional[int] = typer.Option(None, help="gpu profile: GPUs to use (default: every visible one)"),
    work: Path = typer.Option(Path("runs/specialize"), help="working folder (resumable); the student's name is added"),
    reports: Path = typer.Option(Path("reports/specialize"), help="the trade-off report goes to REPORTS/<student>/"),
    data_dir: Optional[Path] = typer.Option(None, help="data directory (default $SPEC_DATA_DIR)"),
    plan: bool = typer.Option(False, "--plan", help="print every step and stop"),
) -> None:
    """Specialize your own model: teacher data, alignment onto its tokenizer, distribution matching, and
    the trade-off report (math gained, generic ability paid) before and after."""
    from harness.config_files import parse_override
    from harness.specialize import make

    job = make(student, teacher_config, profile, preset, gpus, work, reports, data_dir, setting=setting, select=select,
               overrides=dict(parse_override(s) for s in sets))
    if plan:
        job.check(models=False)
        for line in job.plan_lines():
            typer.echo(line)
        return
    for path in job.run():
        typer.echo(f"specialize: wrote {path}")
    if job.not_run:
        _error(f"not finished: {'; '.join(info['reason'] for info in job.not_run.values())}")
        raise typer.Exit(1)


models_app = typer.Typer(no_args_is_help=True, help="Models by hub id: download them, or build the rehearsal's stand-ins.")
app.add_typer(models_app, name="models")


@models_app.command("download")
def models_download(
    profile: str = typer.Option("paper", help="paper: every model of the plan"),
    table: str = typer.Option("table1", help="table1 | table2 | table3 | figures | all"),
):
    """Fetch config, weights and tokenizer of every model a reproduction needs into the Hugging Face cache."""
    from harness import hub
    from harness.errors import check_choice
    from harness.reproduce.profiles import TABLES, profile as make_profile

    check_choice("--profile", profile, ("paper",))
    check_choice("--table", table, (*TABLES, "all"))
    prof = make_profile(profile, 1)
    rows = [r for r in prof.rows if table in ("all", "table2", "figures") or r.startswith("flan-t5")]
    fetched = hub.download([prof.models[r] for r in rows], progress=lambda model: console.print(f"downloading {model} …"))
    for model, folder in fetched.items():
        print(f"{model}\t{folder}")


@models_app.command("rehearsal-cache")
def models_rehearsal_cache(
    cache: Optional[Path] = typer.Option(None, help="Hugging Face hub cache folder (default: $HF_HUB_CACHE, i.e. the one transformers reads)"),
):
    """Tiny random T5s (real T5 tokenizer) under the paper profile's hub ids, for `reproduce --profile rehearsal`.
    Do not point this at a cache holding the real models: the stand-ins would take their place."""
    from harness import hub
    from harness.reproduce.profiles import HUB_IDS

    root = cache or hub.cache_root()
    built = hub.build_rehearsal_cache(root, HUB_IDS.values())
    console.print(f"{len(built)} stand-in models in {root} (pipeline check: random weights under real ids)", soft_wrap=True)


@data_app.command("download")
def data_download(
    data_dir: Optional[Path] = typer.Option(None, help="Target folder (default: $SPEC_DATA_DIR or the cache)."),
    only: Optional[str] = typer.Option(None, help="Only files under this prefix, e.g. 'bbh/'."),
):
    """Download every data file from its public source, verified by sha256 against the manifest."""
    from harness.config import data_dir as resolve
    from harness.data.download import download, manifest
    from harness.errors import UsageError

    root = resolve(data_dir, must_exist=False)
    entries = [e for e in manifest() if not only or e.file.startswith(only)]
    if not entries:
        prefixes = sorted({e.file.split("/", 1)[0] + "/" for e in manifest()})
        raise UsageError(f"--only {only!r}: no manifest file starts with it; prefixes: {', '.join(prefixes)}")
    root.mkdir(parents=True, exist_ok=True)
    with Progress(console=console, transient=True) as progress:
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

    console.print(f"spec tasks linked into {install()}; `lm_eval --tasks gsm8k_cot_spec …` now finds them", soft_wrap=True)


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
    model: Optional[str] = typer.Option(None, help="HF hub id or local path; `tiny` = a random T5 built locally (pipeline check)."),
    tasks: str = typer.Option("gsm8k_cot_spec", help="Comma-separated task or group names (see `harness tasks list`)."),
    limit: Optional[float] = typer.Option(None, help="Items per task (an int) or a fraction (<1); > 0."),
    batch_size: Optional[str] = typer.Option(None, help="N (> 0), auto (lm-eval finds the largest that fits) or auto:N; default 8 on hf, auto on vllm."),
    max_batch_size: Optional[int] = typer.Option(None, help="Where the auto probe starts (lm-eval's default 64); with vllm, the most sequences at once."),
    backend: str = typer.Option("hf", help="hf | vllm (decoder-only models; needs vLLM and a GPU) | auto (vllm when all hold, else hf)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:N or mps (default: cuda if visible, else cpu)."),
    max_length: Optional[int] = typer.Option(None, help="Context length; default 4096 for T5-style models (lm-eval's 512 would left-truncate spec prompts)."),
    max_gen_toks: Optional[int] = typer.Option(None, help="Override the tasks' 256 new tokens."),
    split_mode: Optional[str] = typer.Option(None, help="faithful | clean (default: each task's own)."),
    base_prompt: Optional[str] = typer.Option(None, help="cot_base tasks: original | complex | simple | random | direct."),
    output_dir: Path = typer.Option(Path("runs/eval"), help="Each run writes OUTPUT_DIR/<model>/<UTC time>/."),
    seed: int = typer.Option(0),
    strict_data: bool = typer.Option(False, "--strict-data", help="Stop if a data file's sha256 differs from the manifest (default: warn)."),
    config: Optional[Path] = typer.Option(None, "--config", help="A JSON/YAML eval config (EvalConfig fields) instead of the options above."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Evaluate a model on spec tasks with lm-eval; writes lm-eval's results and samples files."""
    from harness.errors import UsageError, check_batch_size
    from harness.eval.job import EvalConfig, load_configs, run

    if config is not None:
        if model is not None:
            raise UsageError("--config: give the model in the config file, not with --model as well")
        configs = load_configs(config)
        if len(configs) > 1:  # a worker's share of a reproduction: each run into its own folder, finished ones skipped
            _eval_many(configs)
            return
        cfg = configs[0]
    else:
        if model is None:
            raise UsageError("--model: required (a hub id, a local model folder, or `tiny`), or give --config FILE")
        if limit is not None and limit >= 1:
            if limit != int(limit):
                raise UsageError(f"--limit: {limit:g} is not allowed; give a whole number of items, or a fraction below 1")
            limit = int(limit)
        cfg = EvalConfig(
            model=model, tasks=[t.strip() for t in tasks.split(",") if t.strip()], limit=limit,
            batch_size=check_batch_size("--batch-size", batch_size), max_batch_size=max_batch_size, backend=backend,
            device=device, max_length=max_length, max_gen_toks=max_gen_toks,
            split_mode=split_mode, base_prompt=base_prompt, output_dir=output_dir, seed=seed, strict_data=strict_data,
        )
    summary = run(cfg, warn=lambda message: console.print(f"[bold yellow]{message}[/]", soft_wrap=True))
    if as_json:
        print(json.dumps({k: v for k, v in summary.items() if k != "manifest"}, indent=1))
        return
    _print_eval_table(summary)
    if summary.get("pipeline_check"):
        console.print(f"[bold yellow]{summary['note']}[/]", soft_wrap=True)
    console.print(f"files written to {summary['output_dir']}", soft_wrap=True)


def _eval_many(configs) -> None:
    """Run several eval configs in one process; every failure is reported, the others still run."""
    from harness.errors import HarnessError
    from harness.eval.job import is_complete, run

    failed = []
    for cfg in configs:
        if cfg.run_dir is not None and is_complete(cfg.run_dir):
            console.print(f"eval: {cfg.model} on {','.join(cfg.tasks)}: done earlier ({cfg.run_dir})", soft_wrap=True)
            continue
        try:
            summary = run(cfg, warn=lambda message: console.print(f"[bold yellow]{message}[/]", soft_wrap=True))
        except HarnessError as err:
            _error(f"{cfg.model} on {','.join(cfg.tasks)}: {err}")
            failed.append(cfg)
            continue
        _print_eval_table(summary)
        console.print(f"files written to {summary['output_dir']}", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _pct(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _print_eval_table(summary: dict) -> None:
    rules = [r for r in ("acc_faithful", "acc_corrected", "acc_bbh") if any(r in e for e in summary["tasks"].values())]
    table = Table("task", "n", *(r.removeprefix("acc_") + " %" for r in rules), title=summary.get("model"))
    for name, entry in summary["tasks"].items():
        table.add_row(name, "-" if entry.get("n") is None else str(entry["n"]), *(_pct(entry.get(r)) for r in rules))
    out.print(table)
    for protocol, per_rule in summary["bbh"].items():
        means = ", ".join(f"{rule.removeprefix('acc_')} {_pct(m['mean_27'])} / {_pct(m['mean_23'])}" for rule, m in per_rule.items())
        subtasks = next(iter(per_rule.values()))["subtasks"]
        out.print(f"{protocol} mean over 27 subtasks / 23 groups ({subtasks} of 27 run): {means}", soft_wrap=True)


@app.command("score")
def score_command(
    suite: str = typer.Option(..., help="bbh_cot | bbh_ao | gsm8k | multiarith | asdiv | svamp"),
    file: Path = typer.Argument(..., help="JSONL of {task, prediction, target}, an lm-eval samples_*.jsonl, or BBH recorded outputs (a file or folder)"),
    rule: str = typer.Option("faithful", help="faithful (the authors' scorer) | corrected (ours) | bbh (the BBH paper's exact match; BBH suites)"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Score recorded generations with the tasks' rules (no model needed)."""
    from harness.scoring import RULES, SUITES, read_generations, score
    from harness.errors import DataError, UsageError, check_choice

    check_choice("--suite", suite, SUITES)
    check_choice("--rule", rule, RULES)
    if rule == "bbh" and not suite.startswith("bbh_"):
        raise UsageError(f"--rule bbh is the BBH paper's rule and applies to bbh_cot and bbh_ao only, not {suite!r}")
    if not file.exists():
        raise DataError(f"{file}: no such file or folder")
    result = score(read_generations(file, suite), suite, rule)
    if as_json:
        print(json.dumps(result, indent=1))
        return
    table = Table("task", "n", "accuracy %", title=f"{suite} ({rule} rule): {file.name}")
    for name, entry in result["tasks"].items():
        table.add_row(name, str(entry["n"]), f"{entry['accuracy']:.2f}")
    out.print(table)
    if "mean_27" in result:
        out.print(f"mean over 27 subtasks: {result['mean_27']:.2f} | over 23 groups: {result['mean_23']:.2f}", soft_wrap=True)
        if "incomplete" in result:
            console.print(f"[yellow]{result['incomplete']}[/]", soft_wrap=True)
