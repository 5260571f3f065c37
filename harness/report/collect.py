"""Results-file entries from `harness eval` summaries, so an orchestrator only picks cells.

`cell_from_summary(summary, "table1", "flan-t5-xl specialized", "gsm8k")` reads the number the
paper cell's protocol names (task, rule, aggregate) out of a run's `summary.json`, with the item
counts behind it, and returns the results-file cell (with the schema-2 fields when given:
selection, precision, launcher, teacher, and for ASDiv/SVAMP the test-minus-dev value read by
`clean_from_summary` from a `--split-mode clean` run); `write_results` checks a whole file
against the schema before writing it.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from harness.data.bbh import TASKS as BBH_TASKS, task_group
from harness.errors import DataError, UsageError
from harness.records import atomic_write
from harness.report.paper import Paper, load_paper
from harness.report.results import CELL_KEYS, CLEAN_CELLS, SCHEMA, TOP_KEYS, parse_results

BBH_PROTOCOLS = ("bbh_cot_spec", "bbh_ao_spec_faithful", "bbh_ao_spec")
MAS_SETS = ("multiarith", "asdiv", "svamp")


def _summary(summary: dict | str | Path) -> tuple[dict, str]:
    if isinstance(summary, dict):
        return summary, "<summary>"
    path = Path(summary)
    try:
        return json.loads(path.read_text(encoding="utf-8")), str(path)
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read the eval summary ({err})") from None


def value_from_summary(summary: dict | str | Path, task: str, rule: str, aggregate: str | None = None) -> tuple[float, list[int], int | None]:
    """(accuracy in percent, item counts, BBH subtasks) of one task or group of a `harness eval` run.

    Counts are one entry for a single task, the members' counts for M-A-S (an unweighted mean),
    the subtask counts for a BBH `mean_27` and the 23 group counts for `mean_23`.
    """
    data, where = _summary(summary)
    tasks, metric = data.get("tasks", {}), f"acc_{rule}"
    if task in BBH_PROTOCOLS:
        if aggregate not in ("mean_27", "mean_23"):
            raise UsageError(f"{task} is a BBH group: name its aggregate, mean_27 or mean_23")
        counts = {sub: tasks[f"{task}_{sub}"]["n"] for sub in BBH_TASKS if f"{task}_{sub}" in tasks}
        try:
            value = data["bbh"][task][metric][aggregate]
        except KeyError:
            raise DataError(f"{where}: no BBH {aggregate} for {task} under {metric}") from None
        if aggregate == "mean_23":
            grouped: Counter[str] = Counter()
            for sub, n in counts.items():
                grouped[task_group(sub)] += n
            return value, list(grouped.values()), len(counts)
        return value, list(counts.values()), len(counts)
    if task not in tasks or metric not in tasks[task]:
        raise DataError(f"{where}: no {metric} for task {task!r} (tasks: {', '.join(sorted(tasks)) or 'none'})")
    value = tasks[task][metric]
    if task.startswith("mas_"):
        members = [task.replace("mas", s, 1) for s in MAS_SETS]
        missing = [m for m in members if m not in tasks]
        if missing:
            raise DataError(f"{where}: group {task} lacks its member(s) {', '.join(missing)}")
        return value, [tasks[m]["n"] for m in members], None
    return value, [tasks[task]["n"]], None


def cell_from_summary(summary: dict | str | Path, table: str, row: str, column: str, paper: Paper | None = None,
                      selection: str | None = None, *, chosen: dict | None = None, precision: str | None = None,
                      launcher: str | None = None, teacher: str | None = None,
                      clean_summary: dict | str | Path | None = None) -> dict:
    """The results-file cell for one paper cell, measured with that cell's protocol.

    `selection`: the dev set that chose the checkpoint as the protocol names it (gsm8k_dev, mas_dev);
    `chosen`: the schema-2 record of that choice, {"rule", "checkpoint", "candidates"};
    `clean_summary`: the summary of the same model run with `--split-mode clean` (ASDiv, SVAMP).
    Schema-2 fields left as None are not written."""
    paper = paper or load_paper()
    data, _ = _summary(summary)
    protocol = paper.cell(table, row, column).protocol
    if protocol is None or protocol.task is None:
        raise UsageError(f"{table}/{row}/{column}: no lm-eval task measures this cell (its protocol: "
                         f"{protocol.id if protocol else 'none'})")
    value, n, subtasks = value_from_summary(data, protocol.task, protocol.rule, protocol.aggregate)
    config = (data.get("manifest") or {}).get("config") or {}
    spec = {"task": protocol.task, "split": protocol.split, "prompt": protocol.prompt, "rule": protocol.rule,
            "aggregate": protocol.aggregate, "selection": selection or protocol.selection,
            "split_mode": config.get("split_mode"), "limit": None}
    limit = config.get("limit")
    if limit:  # lm-eval's --limit: a count, or a fraction of each task (then record the largest count run)
        spec["limit"] = int(limit) if limit >= 1 else max(n)
    if subtasks is not None and subtasks < len(BBH_TASKS):
        spec["subtasks"] = subtasks
    cell = {"table": table, "row": row, "column": column, "value": value, "n": n[0] if len(n) == 1 else n,
            "protocol": spec, "run": str(data.get("output_dir", "")), "model": data.get("model")}
    extra = {"selection": chosen, "precision": precision, "launcher": launcher, "teacher": teacher,
             "clean": None if clean_summary is None else clean_from_summary(clean_summary, table, column, paper)}
    cell.update({k: v for k, v in extra.items() if v is not None})
    return cell


def clean_from_summary(summary: dict | str | Path, table: str, column: str, paper: Paper | None = None) -> dict:
    """{"value", "n"} of an ASDiv/SVAMP test cell from a run made with `--split-mode clean`: the test
    set minus its 300-item dev split (and minus questions also in GSM8K train or a prompt)."""
    if (table, column) not in CLEAN_CELLS:
        raise UsageError(f"{table}/{column}: only {', '.join(f'{t}/{c}' for t, c in CLEAN_CELLS)} have a test-minus-dev value")
    paper = paper or load_paper()
    data, where = _summary(summary)
    mode = ((data.get("manifest") or {}).get("config") or {}).get("split_mode")
    if mode != "clean":
        raise DataError(f"{where}: split_mode is {mode!r}; the test-minus-dev value comes from a run with --split-mode clean")
    protocol = next(c.protocol for c in paper.table(table) if c.column == column and c.protocol and c.protocol.task)
    value, n, _ = value_from_summary(data, protocol.task, protocol.rule, protocol.aggregate)
    return {"value": value, "n": n}


def write_results(path: str | Path, table: str, profile: str, cells: list[dict], **rest) -> Path:
    """Check and write a results file (`rest`: curves, fig4, provenance, seeds, tolerance, notes, title,
    not_run, losses). The file says the oldest schema that holds its content (1 unless a schema-2
    field is used), so renderers that read only schema 1 still read what they can."""
    newer = set(rest) - set(TOP_KEYS) or any(set(c) - set(CELL_KEYS) for c in cells) or "teacher_data" in (rest.get("provenance") or {})
    data = {"schema": SCHEMA if newer else 1, "table": table, "profile": profile, "cells": cells, **rest}
    parse_results(data, path)  # the same checks the renderer makes, before anything is written
    with atomic_write(path) as handle:
        json.dump(data, handle, indent=1)
    return Path(path)
