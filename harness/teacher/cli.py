"""`python -m harness teacher …`: sample, gold, import-authors, stats. Heavy imports stay inside."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True, help="Teacher data: sample or score CoT with top-k log-probabilities into a store.")


@app.command("sample")
def sample(
    config: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON job config (sections teacher, sampling; example in README, section Teacher data)."),
    output: Optional[Path] = typer.Option(None, help="The store folder (overrides the config's `output`)."),
    teacher: Optional[str] = typer.Option(None, help="default | hf | openai (overrides teacher.kind)."),
    model: Optional[str] = typer.Option(None, help="Teacher model: hub id or folder (hf), served name (openai)."),
    mode: Optional[str] = typer.Option(None, help="sample | score (score: the teacher's top-k on GSM8K's gold rationales)."),
    limit: Optional[int] = typer.Option(None, help="First N questions only."),
    n: Optional[int] = typer.Option(None, help="Samples per question (authors: 40)."),
    usd_per_1m_prompt: float = typer.Option(0.0, help="Hosted teachers: price per 1M prompt tokens, for the estimate."),
    usd_per_1m_completion: float = typer.Option(0.0, help="Hosted teachers: price per 1M completion tokens."),
    estimate_only: bool = typer.Option(False, "--estimate-only", help="Print the request/token/cost estimate and stop."),
):
    """Sample (or score) chain-of-thought from a teacher into a resumable store; kill and rerun at will."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from harness.teacher.sample import load_config, load_questions, run_sampling

    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars: the job has its own progress
    except ImportError:  # pragma: no cover
        pass
    cfg = load_config(config, **{"output": output, "teacher.kind": teacher, "teacher.model": model, "sampling.mode": mode,
                                 "sampling.limit": limit, "sampling.n": n})
    console = Console(stderr=True)
    questions = load_questions(cfg.sampling)
    if cfg.teacher.kind == "openai" or estimate_only:
        console.print(_estimate(cfg, len(questions), usd_per_1m_prompt, usd_per_1m_completion), soft_wrap=True)
        if estimate_only:
            return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("retries {task.fields[retries]} · tokens {task.fields[tokens]:,}"))
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("questions", total=len(questions), rate="", retries=0, tokens=0)
        started = {"t": None}

        def progress(done: int, counters: dict) -> None:
            import time

            started["t"] = started["t"] or time.monotonic()
            bar.advance(task, done)
            elapsed = max(time.monotonic() - started["t"], 1e-9)
            bar.update(task, retries=counters.get("retries", 0), tokens=counters.get("tokens", 0),
                       rate=f"{counters.get('samples', 0) / elapsed:.1f} samples/s")

        bar.update(task, completed=0)
        try:
            result = run_sampling(cfg, progress=progress, note=lambda text: console.print(f"[bold yellow]{text}[/]", soft_wrap=True))
        except KeyboardInterrupt:
            from harness.errors import Interrupted

            raise Interrupted(f"interrupted: finished shards are kept in {cfg.output}; rerun the same command to resume") from None
    run = result["this_run"]
    if run["questions"]:
        console.print(f"{run['questions']:,} questions in {run['wall_s']:.1f} s: {run['seconds_per_1k_questions']:,.0f} s per 1K "
                      f"questions, {run['samples_per_s']:.2f} samples/s, {run['tokens_per_s']:,.0f} tokens/s "
                      f"(stats.json: last_run)", soft_wrap=True)
    print(json.dumps(result, indent=1))


def _estimate(cfg, questions: int, usd_prompt: float, usd_completion: float) -> str:
    """Requests, tokens, dollars and time before a run starts (prompt tokens counted with cl100k)."""
    from harness.data.prompts import authors_prompt
    from harness.templates import teacher_cot

    s = cfg.sampling
    try:
        import tiktoken

        from harness.config import setup_offline_tokenizers

        setup_offline_tokenizers()
        prompt_tokens = len(tiktoken.get_encoding("cl100k_base").encode(teacher_cot("x " * 40, authors_prompt(s.prompt))))
    except Exception:  # an estimate: fall back to characters / 4
        prompt_tokens = len(teacher_cot("x " * 40, authors_prompt(s.prompt))) // 4
    per_request = 1 if s.mode == "score" else math.ceil(s.n / 128)
    completion = (s.n * s.max_tokens) if s.mode == "sample" else 0
    if cfg.teacher.kind != "openai":
        return (f"estimate: {questions:,} questions x {s.n if s.mode == 'sample' else 1} samples: {questions * per_request:,} requests, "
                f"~{questions * prompt_tokens:,} prompt tokens (~{prompt_tokens:,} each), at most {questions * completion:,} "
                f"completion tokens (local teacher: no cost)")
    from harness.teacher.openai_backend import OpenAIConfig, estimate_cost
    from harness.teacher.sample import openai_options

    estimate = estimate_cost(OpenAIConfig.from_env(**openai_options(cfg.teacher)), questions * per_request, prompt_tokens,
                             completion // per_request, usd_per_1m_prompt=usd_prompt, usd_per_1m_completion=usd_completion)
    return f"estimate (completion tokens at their cap): {estimate.summary()}"


@app.command("gold")
def gold(
    output: Path = typer.Argument(..., help="The store folder."),
    tokenizer: str = typer.Option("t5", help="Tokenizer spec for the one-hot positions (t5, tiktoken:p50k_base, …)."),
    split: str = typer.Option("train"),
    split_mode: str = typer.Option("faithful", help="faithful | clean"),
    limit: Optional[int] = typer.Option(None, help="First N questions only."),
):
    """GSM8K's human rationales as one-hot teacher data (no model)."""
    from harness.errors import check_choice, check_positive
    from harness.teacher.gold import build_gold_store

    check_choice("--split-mode", split_mode, ("faithful", "clean"))
    check_positive("--limit", limit)
    print(json.dumps(build_gold_store(output, tokenizer, split=split, mode=split_mode, limit=limit), indent=1))


@app.command("import-authors")
def import_authors_command(
    folder: Path = typer.Argument(..., exists=True, file_okay=False, help="Folder with the authors' codex_*.pkl files."),
    output: Path = typer.Argument(..., help="The store folder to write."),
):
    """Import the authors' released code-davinci-002 pickles (see docs/teacher-store.md)."""
    from harness.teacher.authors_import import import_authors

    print(json.dumps(import_authors(folder, output), indent=1, default=str))


@app.command("stats")
def stats(store: Path = typer.Argument(..., exists=True, file_okay=False, help="A teacher store folder.")):
    """Teacher accuracy and store size: first-sample, majority vote, questions with a correct sample."""
    from harness.teacher.store import TeacherStore

    print(json.dumps(TeacherStore.load(store).stats(), indent=1))
