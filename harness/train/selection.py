"""Model selection (the paper's Table 3): which checkpoint of a run a table uses, by a named rule.

Rules (`harness reproduce --select`): `last` (the run's final checkpoint: no selection), `gsm8k-dev`
and `mas-dev` (the best by that dev task; M-A-S dev is the paper's recommendation, §4.3). A dev
rule reads the eval rows of the run's metrics.jsonl and takes the highest dev score; ties go to
the earliest checkpoint (fewest training examples, the cheaper model to have trained). Every
choice names its `rule` and its `candidates`: how many checkpoints it chose among (those scored on
its dev task; 1 for `last`). The best of many candidates on a 200-item dev set is optimistic, so
the count travels with the choice. Each choice carries its in-distribution score (GSM8K) and
out-of-distribution score (M-A-S: the mean of MultiArith, ASDiv, SVAMP), from the test tasks when
the checkpoint was evaluated on them, else from the dev tasks, and says which.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import DataError, check_choice
from harness.records import atomic_write
from harness.train import checkpoints as ck
from harness.train.metrics import METRICS, read_metrics

CRITERIA = {"gsm8k-dev": "gsm8k_cot_spec_dev", "mas-dev": "mas_cot_spec_dev"}
RULES = ("last", *CRITERIA)
DEFAULT_RULE = "mas-dev"
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
        else:
            best_cp, best = max(scored, key=lambda item: (item[1][task], -item[1]["examples"]))
            choices[name] = {"checkpoint": best_cp, "examples": best["examples"], "dev_task": task, "dev": best[task],
                             **_scores(best)}
    return {"choices": choices, "checkpoints": table, "rule": "highest dev score; ties go to the earliest checkpoint"}


def _scores(entry: dict) -> dict[str, Any]:
    ind, ind_task = _score(entry, IN_DIST)
    ood, ood_task = _score(entry, OUT_OF_DIST)
    return {"in_dist": ind, "in_dist_task": ind_task, "out_of_dist": ood, "out_of_dist_task": ood_task}


def _last(run: Path, table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The run's newest checkpoint (its end, once the run is finished), with whatever it was scored on."""
    found = ck.list_checkpoints(run)
    if not found:
        return {"checkpoint": None, "dev_task": None, "dev": None, "in_dist": None, "out_of_dist": None, "rule": "last",
                "candidates": 0, "note": f"{run} has no checkpoint"}
    last = found[-1]
    entry = table.get(last.name, {})
    return {"checkpoint": last.name, "examples": ck.read_position(last).examples, "dev_task": None, "dev": None, **_scores(entry),
            "rule": "last", "candidates": 1, "complete": (run / ck.DONE_FILE).is_file()}


def select_checkpoints(run: Path) -> dict[str, Any]:
    """Every rule's choice for `run` (`choices`: gsm8k-dev, mas-dev, last), the eval table, the run."""
    run = Path(run)
    if not (run / METRICS).is_file():
        raise DataError(f"{run}: no metrics.jsonl; evaluate the checkpoints first (`harness train evaluate {run}`)")
    result = select_from_rows(read_metrics(run))
    table = result["checkpoints"]
    for name, task in CRITERIA.items():
        result["choices"][name].update(rule=name, candidates=sum(1 for e in table.values() if e.get(task) is not None))
    result["choices"]["last"] = _last(run, table)
    result["run"] = str(run)
    return result


def select(run: Path, rule: str = DEFAULT_RULE) -> dict[str, Any]:
    """The checkpoint `rule` picks in `run`: {"checkpoint" (name or None), "examples", "rule",
    "candidates", "dev_task", "dev", "in_dist", "out_of_dist", … , "path" (None when no choice),
    "has_weights"}."""
    check_choice("--select", rule, RULES)
    run = Path(run)
    choice = dict(select_checkpoints(run)["choices"][rule])
    folder = run / choice["checkpoint"] if choice["checkpoint"] else None
    choice["path"] = str(folder) if folder else None
    choice["has_weights"] = bool(folder and ck.has_weights(folder))
    return choice


def write_selection(result: dict, path: Path) -> Path:
    with atomic_write(path) as f:
        json.dump(result, f, indent=1)
    return path
