"""`harness score`: score recorded generations with the same rules as the lm-eval tasks.

Input is JSONL, one generation per line: `task` (for BBH the subtask, e.g. `date_understanding`),
`prediction` (the model's continuation) and `target`. lm-eval `samples_*.jsonl` files are read
too: the prediction is the raw generation (`resps[0][0]`), gold fields come from `doc`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.answers import parse_gold_number, score_bbh, score_math
from harness.data.bbh import TASKS
from harness.eval.summary import bbh_means
from harness.records import RecordError, read_jsonl

MATH_SUITES = ("gsm8k", "multiarith", "asdiv", "svamp")
BBH_SUITES = {"bbh_cot": "cot", "bbh_ao": "ao"}
SUITES = (*BBH_SUITES, *MATH_SUITES)
RULES = ("faithful", "corrected")


@dataclass(frozen=True)
class Generation:
    task: str
    prediction: str
    target: str
    gold_raw: str
    number: float | None


def _subtask_from_name(path: Path) -> str | None:
    for task in sorted(TASKS, key=len, reverse=True):
        if f"_{task}_" in path.name or path.name.endswith(f"_{task}.jsonl"):
            return task
    return None


def read_generations(path: Path, suite: str) -> list[Generation]:
    rows = []
    for i, row in enumerate(read_jsonl(path), start=1):
        record = f"line {i}"
        if "resps" in row and "doc" in row:  # an lm-eval samples file
            doc = row["doc"] if isinstance(row["doc"], dict) else {}
            try:
                prediction = row["resps"][0][0]
            except (IndexError, TypeError, KeyError):
                raise RecordError(path, record, "resps", "expected [[generation]]") from None
            target = doc.get("target", row.get("target"))
            task = doc.get("subset") or _subtask_from_name(path) or suite
            gold_raw = doc.get("gold_raw", target)
            number = doc["number"] if "number" in doc else None
        else:
            for name in ("task", "prediction", "target"):
                if not isinstance(row.get(name), str):
                    raise RecordError(path, record, name, "missing or not a string")
            prediction, target, task = row["prediction"], row["target"], row["task"]
            gold_raw, number = target, None
        if not isinstance(prediction, str):
            raise RecordError(path, record, "prediction", "not a string")
        if not isinstance(target, str):
            raise RecordError(path, record, "target", "missing or not a string")
        if suite in BBH_SUITES and task not in TASKS:
            raise RecordError(path, record, "task", f"{task!r} is not a BBH subtask")
        if suite in MATH_SUITES:
            task = suite
            if number is None:
                number = parse_gold_number(target)
        rows.append(Generation(task, prediction, target, gold_raw, number))
    return rows


def score(rows: list[Generation], suite: str, rule: str = "faithful") -> dict:
    """Accuracy in percent per task under one rule; for BBH also the 27-subtask and 23-group means."""
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {', '.join(SUITES)}, not {suite!r}")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, not {rule!r}")
    key = f"acc_{rule}"
    hits: dict[str, list[float]] = {}
    for g in rows:
        if suite in BBH_SUITES:
            verdict = score_bbh(g.prediction, g.target, BBH_SUITES[suite])
        else:
            verdict = score_math(g.prediction, g.gold_raw, g.number, g.target)
        hits.setdefault(g.task, []).append(verdict[key])
    tasks = {t: {"accuracy": round(100 * sum(v) / len(v), 4), "n": len(v)} for t, v in sorted(hits.items())}
    out: dict = {"suite": suite, "rule": rule, "tasks": tasks}
    if suite in BBH_SUITES:
        means = bbh_means({t: (e["accuracy"], e["n"]) for t, e in tasks.items()})
        out.update({k: (round(v, 4) if v is not None else None) for k, v in means.items()})
        out["subtasks"] = len(tasks)
        if len(tasks) < len(TASKS):
            out["incomplete"] = f"{len(tasks)} of {len(TASKS)} subtasks present; means are over those"
    return out
