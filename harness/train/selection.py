"""Model selection (the paper's Table 3): the best checkpoint by GSM8K dev and by M-A-S dev.

Reads the eval rows of a run's metrics.jsonl. For each criterion the chosen checkpoint is the
one with the highest dev score; ties go to the earliest checkpoint (fewest training examples,
the cheaper model to have trained). Each choice carries its in-distribution score (GSM8K) and
out-of-distribution score (M-A-S: the mean of MultiArith, ASDiv, SVAMP), from the test tasks when
the checkpoint was evaluated on them, else from the dev tasks, and says which.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.records import atomic_write
from harness.train.metrics import METRICS, read_metrics

CRITERIA = {"gsm8k-dev": "gsm8k_cot_spec_dev", "mas-dev": "mas_cot_spec_dev"}
IN_DIST = ("gsm8k_cot_spec", "gsm8k_cot_spec_dev")  # preferred first
OUT_OF_DIST = ("mas_cot_spec", "mas_cot_spec_dev")


def eval_table(rows: list[dict]) -> dict[str, dict[str, Any]]:
    """{checkpoint: {"examples": n, task: value, ...}} from metrics rows (later rows win)."""
    table: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("kind") == "eval":
            entry = table.setdefault(r["checkpoint"], {"examples": r["examples"]})
            entry[r["task"]] = r["value"]
    return table


def _score(entry: dict, tasks: tuple[str, ...]) -> tuple[float | None, str | None]:
    for t in tasks:
        if entry.get(t) is not None:
            return entry[t], t
    return None, None


def select_from_rows(rows: list[dict]) -> dict[str, Any]:
    table = eval_table(rows)
    choices = {}
    for name, task in CRITERIA.items():
        scored = [(cp, e) for cp, e in table.items() if e.get(task) is not None]
        if not scored:
            choices[name] = {"checkpoint": None, "dev_task": task, "dev": None, "in_dist": None, "out_of_dist": None,
                             "note": f"no checkpoint was evaluated on {task}"}
            continue
        best_cp, best = max(scored, key=lambda item: (item[1][task], -item[1]["examples"]))
        ind, ind_task = _score(best, IN_DIST)
        ood, ood_task = _score(best, OUT_OF_DIST)
        choices[name] = {"checkpoint": best_cp, "examples": best["examples"], "dev_task": task, "dev": best[task],
                         "in_dist": ind, "in_dist_task": ind_task, "out_of_dist": ood, "out_of_dist_task": ood_task}
    return {"choices": choices, "checkpoints": table, "rule": "highest dev score; ties go to the earliest checkpoint"}


def select_checkpoints(run: Path) -> dict[str, Any]:
    if not (run / METRICS).is_file():
        raise DataError(f"{run}: no metrics.jsonl; evaluate the checkpoints first (`harness train evaluate {run}`)")
    result = select_from_rows(read_metrics(run))
    result["run"] = str(run)
    return result


def write_selection(result: dict, path: Path) -> Path:
    with atomic_write(path) as f:
        json.dump(result, f, indent=1)
    return path
