"""`python -m harness formats build | import-authors`: options in, `formats.job.run` called, stats out.

The teacher store and the aligned targets are read as files through their contracts
(`harness.schemas`); this stage imports no other stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True, help="Build the paper's four training formats from teacher data.")


@app.command("build")
def build(
    store: Path = typer.Option(..., "--store", help="The teacher store folder."),
    output: Path = typer.Option(..., "--output", help="Where the format shards go (resumable; settings checked)."),
    aligned: Optional[Path] = typer.Option(None, "--aligned", help="Aligned targets of the store (`harness align run`); CoT records carry their top-k."),
    setting: str = typer.Option("corrected", help="faithful (the authors' strings) | corrected."),
    seed: int = typer.Option(0, help="Seed of the demo draws."),
    formats: str = typer.Option("in_context_answer_only,in_context_cot,zero_shot_answer_only,zero_shot_cot", help="Comma-separated formats."),
):
    """Write the in-context/zero-shot x answer-only/CoT records with exact strings, provenance and targets;
    stats.json gives record counts and the authors' implicit mix per model size."""
    from harness.formats.job import FormatsJob, run

    job = FormatsJob(store=store, output=output, aligned=aligned, setting=setting, seed=seed,
                     formats=tuple(f.strip() for f in formats.split(",") if f.strip()))
    print(json.dumps(run(job), indent=1, default=str))


@app.command("import-authors")
def import_authors(
    folder: Path = typer.Argument(..., help="Folder holding the authors' released format pickles (any of the four)."),
    output: Path = typer.Option(..., "--output", help="Where the format shards go (resumable; settings checked)."),
    shard_size: int = typer.Option(5000, help="Records per Parquet shard."),
    k: Optional[int] = typer.Option(None, "--k", help="Top-k width (default 6, the authors' maximum); smaller keeps each step's k most probable entries."),
    match_gsm8k: bool = typer.Option(True, "--match-gsm8k/--no-match-gsm8k", help="question_id = the GSM8K train id with the record's gold answer (else a content hash)."),
    drop_unknown: bool = typer.Option(False, "--drop-unknown", help="Drop (and count) top-k pieces missing from the T5 vocabulary instead of failing."),
):
    """Import zero_shot/in_context x answer_only/chain_of_thought .pkl (the authors' Google Drive files)
    into the formats output: same Parquet schema, setting "authors-released"; stats.json as for build."""
    from harness.formats.job import AuthorsImportJob, run

    job = AuthorsImportJob(folder=folder, output=output, shard_size=shard_size, k=k, match_gsm8k=match_gsm8k, drop_unknown=drop_unknown)
    print(json.dumps(run(job), indent=1, default=str))
