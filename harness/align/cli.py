"""`python -m harness align …`: run, bench, report, synth. Heavy imports stay inside the commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from harness.align.bench import REPEATS, RUNNER_REPEATS
from harness.benchmarking import ALLOW_LOAD_HELP, DEFAULT_MAX_LOAD, MAX_LOAD_HELP

app = typer.Typer(no_args_is_help=True, help="Align teacher top-k distributions onto student tokens.")


@app.command("run")
def run(
    input_path: Path = typer.Argument(..., help="A teacher store folder (docs/teacher-store.md) or a teacher JSONL (docs/alignment.md)."),
    output_path: Path = typer.Argument(..., help="Output: a Parquet folder for a store, a JSONL file for JSONL; resumed if it exists."),
    setting: str = typer.Option("corrected", help="Store input: the text the formats train on: faithful (the authors' ': '-deleted) | corrected."),
    select: str = typer.Option("correct", help="Store input: which samples: correct | correct_faithful | all."),
    mode: str = typer.Option("exact", help="exact (offset spans, ours; any student) or faithful (the authors' DTW; T5 students only)."),
    framing: str = typer.Option("none", help="authors: apply their ' step'/'\\n' frame checks; none: no frame."),
    k: Optional[int] = typer.Option(None, help="Width of the fixed-K output arrays. Default: 5, or for a store whose steps keep their "
                                               "own token (top_has_token) its sampling.top_k + 1."),
    student: str = typer.Option("t5", help="Student tokenizer: t5 | spm:<model file> | hf-gpt2 (the data dir's GPT-2) | "
                                           "hf:<folder or hub id> (any Hugging Face fast tokenizer)."),
    identity: str = typer.Option("auto", help="Store input, exact mode: auto (teacher tokenizer = student's by vocabulary hash: "
                                              "copy the teacher's ids, no alignment) | require (refuse a store whose tokenizer differs) | off."),
    renormalize: bool = typer.Option(False, help="exact mode: scale kept teacher mass to 1."),
    tail: bool = typer.Option(False, help="exact mode: write tail_mass = 1 - kept mass per position."),
    max_mismatch: float = typer.Option(0.2, help="exact mode: share of differing characters tolerated between texts."),
    workers: int = typer.Option(0, help="Processes (0 = all cores)."),
    chunk_size: int = typer.Option(64, help="Samples per work unit sent to a worker process."),
    shard_rows: int = typer.Option(4096, help="Store input: aligned rows per output shard (a killed run keeps every finished shard)."),
):
    """Align a teacher store or JSONL onto the student's tokens (T5 unless --student), with a progress bar; safe to rerun after a crash.

    The output remembers its settings: a rerun with the same ones resumes, other ones are refused."""
    import os

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from harness.align.api import AlignConfig
    from harness.align.exact import ExactConfig
    from harness.align.jsonl import count_lines, run_alignment
    from harness.align.job import AlignJob, run as run_job
    from harness.align.store import count_selected, is_teacher_store
    from harness.errors import DataError, check_positive

    check_positive("--workers", workers, allow_zero=True)
    check_positive("--chunk-size", chunk_size)
    check_positive("--shard-rows", shard_rows)
    if not input_path.is_file() and not input_path.is_dir():
        raise DataError(f"{input_path}: no such file or folder (a teacher store or a teacher JSONL)")
    config = AlignConfig(mode=mode, framing=framing, k=k, student=student, identity=identity,
                         exact=ExactConfig(renormalize=renormalize, tail=tail, max_mismatch_fraction=max_mismatch))
    console = Console(stderr=True)
    store = input_path.is_dir()
    if store:
        if not is_teacher_store(input_path):
            raise DataError(f"{input_path}: a folder but not a teacher store (no settings.json and data/); see docs/teacher-store.md")
        job = AlignJob(store=input_path, output=output_path, config=config, setting=setting, select=select, workers=workers,
                       chunk_size=chunk_size, shard_rows=shard_rows)
        job.check()  # before counting: options, the output writable
        total = count_selected(input_path, select)
    else:
        total = count_lines(input_path)
    try:
        with Progress(TextColumn("aligning"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console, transient=True) as bar:
            task = bar.add_task("align", total=total)
            if store:
                summary = run_job(job, progress=lambda n: bar.advance(task, n))
            else:
                summary = run_alignment(input_path, output_path, config, workers=workers or os.cpu_count() or 1,
                                    chunk_size=chunk_size, progress=lambda n: bar.advance(task, n))
    except KeyboardInterrupt:
        from harness.errors import Interrupted

        raise Interrupted(f"interrupted: the rows written so far are kept in {output_path}; rerun the same command to resume") from None
    print(json.dumps(summary, indent=1))


@app.command("bench")
def bench(
    n: int = typer.Option(200, help="GSM8K train rationales to align."),
    seed: int = typer.Option(0, help="Seed of the synthetic top-k."),
    as_json: bool = typer.Option(False, "--json", help="Print only the JSON result."),
    full: bool = typer.Option(False, help="Include per-mode statistics and the projection details."),
):
    """Time the pure-Python oracle, the fast faithful implementation and exact mode on the same pairs."""
    from harness.align.bench import run_bench

    result = run_bench(n=n, seed=seed)
    keys = ["pairs", "oracle_pairs_per_s", "faithful_pairs_per_s", "exact_pairs_per_s", "speedup_faithful_vs_oracle",
            "soft_fraction_faithful", "soft_fraction_exact", "identical_to_oracle"]
    short = {key: result[key] for key in keys}
    short["projected_s_207135_samples_2_cores"] = {
        "faithful_align_only": result["projection"]["faithful_align_only_s"],
        "faithful_end_to_end": result["projection"]["faithful_end_to_end_s"],
        "exact_end_to_end": result["projection"]["exact_end_to_end_s"],
    }
    print(json.dumps(result if full else short, indent=None if as_json else 1))
    if not result["identical_to_oracle"]:
        raise typer.Exit(1)


@app.command("report")
def report(
    n: int = typer.Option(7473, help="GSM8K train rationales (7,473 = all)."),
    seed: int = typer.Option(0, help="Seed of the synthetic top-k."),
    out_dir: Path = typer.Option(Path("reports/align"), help="Where to write alignment_stats.{json,md}."),
    oracle_n: Optional[int] = typer.Option(200, help="Pairs on which the slow oracle runs (all if unset)."),
    runner_samples: int = typer.Option(6000, help="Samples for the measured `align run` on 2 processes (0: skip)."),
    repeats: int = typer.Option(REPEATS, help="Repeats of every implementation, order rotated each repeat."),
    runner_repeats: int = typer.Option(RUNNER_REPEATS, help="Repeats of the measured `align run`, modes alternating."),
    max_load: float = typer.Option(DEFAULT_MAX_LOAD, help=MAX_LOAD_HELP),
    allow_load: bool = typer.Option(False, "--allow-load", help=ALLOW_LOAD_HELP),
):
    """Soft-target statistics and speed of faithful vs exact on real rationales, with provenance, to reports/align/."""
    from harness.align.bench import report as write

    json_path, md_path = write(n=n, seed=seed, oracle_n=oracle_n, runner_samples=runner_samples, repeats=repeats,
                               runner_repeats=runner_repeats, max_load=max_load, allow_load=allow_load, out_dir=out_dir)
    print(json.dumps({"json": str(json_path), "markdown": str(md_path)}))


@app.command("synth")
def synth(
    output_path: Path = typer.Argument(..., help="Where to write a synthetic teacher JSONL."),
    n: int = typer.Option(100, help="GSM8K train rationales."),
    seed: int = typer.Option(0, help="Seed of the synthetic top-k."),
):
    """Write a teacher JSONL (p50k tokens of GSM8K gold rationales + synthetic top-5) to try `run` on."""
    import math

    from harness.align.synthetic import gsm8k_rationales, synthesize
    from harness.tokenizers import TiktokenTokenizer
    from harness.records import write_jsonl

    teacher = TiktokenTokenizer("p50k_base")
    rows = []
    for sample_id, text in gsm8k_rationales(n):
        syn = synthesize(teacher, text, sample_id, seed=seed)
        topk = [[[tok, math.log(p) if p > 0 else -1e4] for tok, p in step] for step in syn.topk]
        rows.append({"id": sample_id, "text": text, "tokens": syn.tokens, "topk": topk})
    write_jsonl(output_path, rows)
    print(json.dumps({"written": len(rows), "output": str(output_path)}))
