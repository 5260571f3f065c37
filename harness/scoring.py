"""Scoring recorded generations with the tasks' answer rules (`harness score`, the report's teacher
row), and the BBH means every summary reports. Core: the rules are `harness.answers`; the eval
stage's live summaries and the report both use these.

Three inputs are read:
- JSONL, one generation per line: `task` (for BBH the subtask, e.g. `date_understanding`; for
  math the suite name), `prediction` (the model's continuation) and `target`;
- lm-eval `samples_*.jsonl` files: the prediction is the raw generation (`resps[0][0]`), gold
  fields come from `doc`;
- the BBH authors' recorded generations (`{"canary", "outputs": [{input, prediction, target}]}`
  per subtask, e.g. `bbh/code-davinci-002-outputs/code-davinci-002-cot/`), one file or a folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.answers import BBH_RULES, parse_gold_number, score_bbh, score_math
from harness.data.bbh import TASKS, task_group
from harness.errors import DataError, UsageError, check_choice
from harness.records import RecordError, iter_jsonl

def bbh_groups(per_task: dict[str, tuple[float, int]]) -> dict[str, float]:
    """Accuracy per BBH group (the BBH paper's 23 rows): the logical_deduction and
    tracking_shuffled_objects subtasks pooled by items, the others as they are."""
    groups: dict[str, list[tuple[float, int]]] = {}
    for task, (acc, n) in per_task.items():
        groups.setdefault(task_group(task), []).append((acc, n))
    return {g: sum(a * n for a, n in items) / max(sum(n for _, n in items), 1) for g, items in sorted(groups.items())}


def bbh_means(per_task: dict[str, tuple[float, int]]) -> dict[str, float | None]:
    """per_task: subtask -> (accuracy, n). mean_27 = plain mean over subtasks; mean_23 = mean over
    groups, where the logical_deduction and tracking_shuffled_objects subtasks are pooled (their
    items combined, i.e. weighted by n)."""
    if not per_task:
        return {"mean_27": None, "mean_23": None}
    pooled = list(bbh_groups(per_task).values())
    return {
        "mean_27": sum(a for a, _ in per_task.values()) / len(per_task),
        "mean_23": sum(pooled) / len(pooled),
    }



MATH_SUITES = ("gsm8k", "multiarith", "asdiv", "svamp")
BBH_SUITES = {"bbh_cot": "cot", "bbh_ao": "ao"}
SUITES = (*BBH_SUITES, *MATH_SUITES)
RULES = BBH_RULES  # faithful, corrected (every suite), bbh (BBH suites only)
RECORDED_SUFFIX = "_few_shot_template"


@dataclass(frozen=True)
class Generation:
    task: str
    prediction: str
    target: str
    gold_raw: str
    number: float | None


def _subtask_from_name(path: Path) -> str | None:
    name = path.name
    for task in sorted(TASKS, key=len, reverse=True):
        if name.startswith(task + RECORDED_SUFFIX) or name == f"{task}.json":
            return task
        if f"_{task}_" in name or name.endswith(f"_{task}.jsonl"):
            return task
    return None


def _is_recorded(path: Path) -> bool:
    """A BBH authors' output file: a JSON object with an `outputs` list (not JSONL)."""
    if path.suffix != ".json":
        return False
    with open(path, "rb") as handle:
        return handle.read(64).lstrip().startswith(b"{") and not path.name.endswith(".jsonl")


def _check_protocol_folder(path: Path, suite: str) -> None:
    """`code-davinci-002-direct` holds answer-only generations, `-cot` chain-of-thought ones."""
    names = {part for part in path.resolve().parts}
    if suite == "bbh_cot" and any(n.endswith("-direct") for n in names):
        raise UsageError(f"--suite bbh_cot, but {path} holds answer-only generations (a '-direct' folder); use --suite bbh_ao")
    if suite == "bbh_ao" and any(n.endswith("-cot") for n in names):
        raise UsageError(f"--suite bbh_ao, but {path} holds chain-of-thought generations (a '-cot' folder); use --suite bbh_cot")


def _read_recorded(path: Path, suite: str) -> list[Generation]:
    if suite not in BBH_SUITES:
        raise UsageError(f"{path} holds BBH generations; use --suite bbh_cot or bbh_ao, not {suite!r}")
    task = _subtask_from_name(path)
    if task is None:
        raise RecordError(path, "file name", "<name>", f"names no BBH subtask (expected '<subtask>{RECORDED_SUFFIX}….json')")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RecordError(path, "file", "<text>", f"not valid UTF-8 (byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise RecordError(path, f"line {err.lineno}", "<json>", f"not valid JSON ({err.msg})") from None
    outputs = data.get("outputs") if isinstance(data, dict) else None
    if not isinstance(outputs, list):
        raise RecordError(path, "file", "outputs", "missing or not a list")
    rows = []
    for i, item in enumerate(outputs):
        for name in ("prediction", "target"):
            if not isinstance(item, dict) or not isinstance(item.get(name), str):
                raise RecordError(path, f"outputs[{i}]", name, "missing or not a string")
        rows.append(Generation(task, item["prediction"], item["target"], item["target"], None))
    return rows


def _math_task_ok(task: str, suite: str) -> bool:
    return task == suite or task.startswith(suite + "_")


def _read_jsonl(path: Path, suite: str) -> list[Generation]:
    rows = []
    for lineno, row in iter_jsonl(path):
        record = f"line {lineno}"
        if "resps" in row and "doc" in row:  # an lm-eval samples file
            doc = row["doc"] if isinstance(row["doc"], dict) else {}
            try:
                prediction = row["resps"][0][0]
            except (IndexError, TypeError, KeyError):
                raise RecordError(path, record, "resps", "expected [[generation]]") from None
            target = doc.get("target", row.get("target"))
            is_bbh = "subset" in doc or str(doc.get("id", "")).startswith("bbh/")
            task = doc.get("subset") or _subtask_from_name(path) or suite
            if suite in MATH_SUITES and is_bbh:
                raise UsageError(f"{path}: {record} is a BBH sample ({task}); use --suite bbh_cot or bbh_ao, not {suite!r}")
            source = str(doc.get("id", "")).split("/", 1)[0]
            if suite in MATH_SUITES and source in MATH_SUITES and source != suite:
                raise UsageError(f"{path}: {record} is a {source} sample; use --suite {source}, not {suite!r}")
            gold_raw = doc.get("gold_raw", target)
            number = doc["number"] if "number" in doc else None
        else:
            for name in ("task", "prediction", "target"):
                if not isinstance(row.get(name), str):
                    raise RecordError(path, record, name, "missing or not a string")
            prediction, target, task = row["prediction"], row["target"], row["task"]
            if suite in MATH_SUITES and not _math_task_ok(task, suite):
                kind = "a BBH subtask" if task in TASKS else "another task"
                raise RecordError(path, record, "task", f"{task!r} is {kind}, but --suite is {suite!r}")
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


def read_generations(path: str | Path, suite: str) -> list[Generation]:
    """Every generation in a JSONL file, an lm-eval samples file, or BBH recorded outputs (a
    file or a folder of them). Raises DataError for an empty input."""
    check_choice("--suite", suite, SUITES)
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl") and not p.name.startswith("."))
        if not files:
            raise DataError(f"{path}: no .json or .jsonl files in this folder")
    else:
        files = [path]
    rows: list[Generation] = []
    for file in files:
        if _is_recorded(file):
            _check_protocol_folder(file, suite)
            rows.extend(_read_recorded(file, suite))
        else:
            rows.extend(_read_jsonl(file, suite))
    if not rows:
        raise DataError(f"{path}: no generations found (the file is empty)")
    return rows


def score(rows: list[Generation], suite: str, rule: str = "faithful") -> dict:
    """Accuracy in percent per task under one rule; for BBH also the 27-subtask and 23-group means."""
    check_choice("--suite", suite, SUITES)
    check_choice("--rule", rule, RULES)
    if rule == "bbh" and suite not in BBH_SUITES:
        raise UsageError(f"--rule bbh is the BBH paper's rule and applies to bbh_cot and bbh_ao only, not {suite!r}")
    if not rows:
        raise DataError("no generations to score")
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
        per_task = {t: (e["accuracy"], e["n"]) for t, e in tasks.items()}
        means = bbh_means(per_task)
        out["groups"] = {g: round(a, 4) for g, a in bbh_groups(per_task).items()}
        out.update({k: (round(v, 4) if v is not None else None) for k, v in means.items()})
        out["subtasks"] = len(tasks)
        if len(tasks) < len(TASKS):
            out["incomplete"] = f"{len(tasks)} of {len(TASKS)} subtasks present; means are over those"
    return out
