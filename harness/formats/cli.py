"""`python -m harness formats build`: teacher store (+ aligned targets) -> the four training formats.

The teacher store and the aligned targets are read as files through their documented Parquet
schemas (docs/teacher-store.md, harness/align/store.py); this stage imports no other stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

import typer

app = typer.Typer(no_args_is_help=True, help="Build the paper's four training formats from teacher data.")


class AlignedLookup(Mapping):
    """(question_id, sample_index) -> aligned row, backed by the Arrow table: rows stay columnar in
    memory and are turned into Python lists a block at a time (the build reads them in store
    order, so each block is converted once). Rejected rows are absent."""

    FIELDS = ("student_ids", "topk_ids", "topk_probs", "topk_mask")
    BLOCK = 2048

    def __init__(self, folder: Path):
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        shards = sorted((folder / "data").glob("part-*.parquet"))
        if not shards:
            from harness.errors import DataError

            raise DataError(f"{folder}: no aligned targets (data/part-*.parquet); run `harness align run STORE {folder}` first")
        ok = []  # filtered shard by shard: only one unfiltered shard is in memory at a time
        for shard in shards:
            part = pq.read_table(shard, columns=["question_id", "sample_index", "status", *self.FIELDS])
            ok.append(part.filter(pc.equal(part.column("status"), "ok")))
        table = pa.concat_tables(ok)
        self.index = {key: i for i, key in enumerate(zip(table.column("question_id").to_pylist(),
                                                         table.column("sample_index").to_pylist()))}
        self.table = table.select(list(self.FIELDS))  # chunked: slices cross shard boundaries as they are
        self._block: tuple[int, dict[str, list]] | None = None

    def __getitem__(self, key):
        i = self.index[key]
        start = i - i % self.BLOCK
        if self._block is None or self._block[0] != start:
            part = self.table.slice(start, self.BLOCK)
            self._block = (start, {name: part.column(name).to_pylist() for name in self.FIELDS})
        columns = self._block[1]
        return {**{name: columns[name][i - start] for name in self.FIELDS}, "status": "ok"}

    def __iter__(self):
        return iter(self.index)

    def __len__(self):
        return len(self.index)


def read_store(store: Path, setting: str) -> tuple[list[Any], dict[str, Any]]:
    """CotSamples (grouped by question, in sample order) and the store's settings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from harness.data import load
    from harness.errors import DataError
    from harness.formats.build import CotSample

    settings_path = store / "settings.json"
    shards = sorted((store / "data").glob("part-*.parquet"))
    if not settings_path.is_file() or not shards:
        raise DataError(f"{store}: not a teacher store with data (settings.json, data/part-*.parquet); see docs/teacher-store.md")
    settings = json.loads(settings_path.read_text(encoding="utf-8"))
    flag = "correct_faithful" if setting == "faithful" else "correct"
    table = pa.concat_tables(pq.read_table(s, columns=["question_id", "sample_index", "text", flag, "teacher_model"]) for s in shards)
    examples = {e.id: e for e in load("gsm8k", "train", mode="faithful")}
    groups: dict[str, list[tuple[int, str, bool]]] = {}
    for qid, index, text, correct in zip(*(table.column(c).to_pylist() for c in ("question_id", "sample_index", "text", flag))):
        groups.setdefault(qid, []).append((index, text, bool(correct)))
    samples = []
    for qid, rows in groups.items():
        if qid not in examples:
            raise DataError(f"{store}: question_id {qid!r} is not a GSM8K train question")
        for index, text, correct in sorted(rows):
            samples.append(CotSample(qid, index, examples[qid], text, correct))
    teacher_model = table.column("teacher_model")[0].as_py() if len(table) else ""
    return samples, {"settings": settings.get("settings"), "teacher_model": teacher_model}


@app.command("build")
def build(
    store: Path = typer.Option(..., "--store", exists=True, file_okay=False, help="The teacher store folder."),
    output: Path = typer.Option(..., "--output", help="Where the format shards go (resumable; settings checked)."),
    aligned: Optional[Path] = typer.Option(None, "--aligned", exists=True, file_okay=False, help="Aligned targets of the store (`harness align run`); CoT records carry their top-k."),
    setting: str = typer.Option("corrected", help="faithful (the authors' strings) | corrected."),
    seed: int = typer.Option(0, help="Seed of the demo draws."),
    formats: str = typer.Option("in_context_answer_only,in_context_cot,zero_shot_answer_only,zero_shot_cot", help="Comma-separated formats."),
):
    """Write the in-context/zero-shot x answer-only/CoT records with exact strings, provenance and targets;
    stats.json gives record counts and the authors' implicit mix per model size."""
    from harness.errors import UsageError, check_choice
    from harness.formats.build import build_formats
    from harness.formats.render import SETTINGS

    check_choice("--setting", setting, SETTINGS)
    lookup = None
    if aligned is not None:
        aligned_settings = json.loads((aligned / "settings.json").read_text(encoding="utf-8")).get("settings", {}) if (aligned / "settings.json").is_file() else {}
        if aligned_settings.get("setting") not in (None, setting):
            raise UsageError(f"--aligned {aligned} was aligned for --setting {aligned_settings['setting']}, not {setting}: "
                             f"rerun `harness align run {store} OUT --setting {setting}`")
        lookup = AlignedLookup(aligned)
    samples, source = read_store(store, setting)
    stats = build_formats(samples, output, setting=setting, teacher_model=source["teacher_model"] or "unknown", seed=seed, aligned=lookup,
                          formats=[f.strip() for f in formats.split(",") if f.strip()],
                          source={"store": str(store.resolve()), "aligned": str(aligned.resolve()) if aligned else None,
                                  "teacher": (source["settings"] or {}).get("teacher")})
    print(json.dumps(stats, indent=1, default=str))


@app.command("import-authors")
def import_authors(
    folder: Path = typer.Argument(..., exists=True, file_okay=False, help="Folder holding the authors' released format pickles (any of the four)."),
    output: Path = typer.Option(..., "--output", help="Where the format shards go (resumable; settings checked)."),
    shard_size: int = typer.Option(5000, help="Records per Parquet shard."),
    k: Optional[int] = typer.Option(None, "--k", help="Top-k width (default 6, the authors' maximum); smaller keeps each step's k most probable entries."),
    match_gsm8k: bool = typer.Option(True, "--match-gsm8k/--no-match-gsm8k", help="question_id = the GSM8K train id with the record's gold answer (else a content hash)."),
    drop_unknown: bool = typer.Option(False, "--drop-unknown", help="Drop (and count) top-k pieces missing from the T5 vocabulary instead of failing."),
):
    """Import zero_shot/in_context x answer_only/chain_of_thought .pkl (the authors' Google Drive files)
    into the formats output: same Parquet schema, setting "authors-released"; stats.json as for build."""
    from harness.formats.authors_import import import_authors_formats

    stats = import_authors_formats(folder, output, shard_size=shard_size, k=k, match_gsm8k=match_gsm8k, drop_unknown=drop_unknown)
    print(json.dumps(stats, indent=1, default=str))
