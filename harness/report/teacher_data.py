"""The report's "Teacher data" section: where each training run's data came from.

For every `provenance.teacher_data` entry of a results file: the teacher (model, tokenizer,
sampling settings, `stats.json` figures, the store's content checksum) or the authors' released
pickles (file names, sha256, record counts), and which cells used it. The paper's data is
code-davinci-002 samples through the authors' own pipeline; anything else is named as such.
"""

from __future__ import annotations

from harness.report.cell_setup import trained
from harness.report.compare import CellComparison
from harness.report.document import Block, Heading, Para, Table
from harness.report.results import Results


def _percentish(key: str, value) -> str:
    if isinstance(value, float) and "accuracy" in key and 0 <= value <= 1:
        return f"{100 * value:.2f} %"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _flat_text(obj: dict) -> str:
    """A settings or stats object as one line: `a: x; b: c y, d z`."""
    parts = []
    for key, value in obj.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k} {_percentish(key, v)}" for k, v in value.items() if not isinstance(v, (dict, list)))
            parts.append(f"{key}: {inner}")
        elif isinstance(value, list):
            parts.append(f"{key}: {len(value)} entries")
        else:
            parts.append(f"{key}: {_percentish(key, value)}")
    return "; ".join(parts)


KIND_TEXT = {"authors-pickles": "the authors' released training pickles (code-davinci-002 samples, aligned by the authors)",
             "teacher-store": "a teacher store sampled by this harness", "pipeline-check": "PIPELINE CHECK: a teacher with random or "
             "barely trained weights; models trained on it say nothing about the paper"}


def teacher_data_section(results: Results, comps: list[CellComparison]) -> list[Block]:
    """Where each training run's data came from: the teacher (model, tokenizer, sampling, stats,
    store checksum) or the authors' pickles (files, sha256, record counts)."""
    used = {c.ours.teacher for c in comps if c.ours is not None and c.ours.teacher}
    needs = [c for c in comps if c.ours is not None and trained(c.table, c.row, c.column)]
    if not results.teacher_data:
        if not needs:
            return []
        why = ("this schema-1 results file does not record it" if results.schema < 2
               else "the results file names no teacher data (provenance.teacher_data)")
        return [Heading("Teacher data"), Para(f"Not recorded: {why}. Which teacher made the training data of the specialized "
                                              "cells cannot be checked.", "warning")]
    blocks: list[Block] = [Heading("Teacher data"),
                           Para("The training data behind the specialized cells (the paper: code-davinci-002 samples through the "
                                "authors' pipeline). Each cell's setup names its entry.")]
    for key, data in results.teacher_data.items():
        rows = [["kind", f"`{data.kind}`: {KIND_TEXT[data.kind]}"], ["model", data.model], ["tokenizer", data.tokenizer or "not recorded"],
                ["pipeline setting", f"`{data.setting}`"], ["content checksum (its manifest)", f"`{data.content}`" if data.content else "not recorded"],
                ["sampling", _flat_text(data.sampling) if data.sampling else "not recorded"],
                ["stats", _flat_text(data.stats) if data.stats else "not recorded"],
                ["used by", f"{sum(1 for c in comps if c.ours is not None and c.ours.teacher == key)} cells" if key in used else "no cell of this table"]]
        blocks += [Heading(f"`{key}`", 3)]
        if data.kind == "pipeline-check":
            blocks.append(Para(f"`{key}` is a pipeline-check teacher: cells trained on it are not results.", "warning"))
        blocks.append(Table(["field", "value"], rows))
        if data.files:
            blocks.append(Table(["file", "bytes", "sha256", "records"],
                                [[name, f"{f['bytes']:,}", f"`{f['sha256']}`", "" if f.get("records") is None else f"{f['records']:,}"]
                                 for name, f in sorted(data.files.items())]))
    return blocks
