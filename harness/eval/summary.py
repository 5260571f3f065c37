"""Headline numbers from lm-eval results: per-task accuracies under each rule, BBH means over 27
subtasks and 23 groups."""

from __future__ import annotations

from harness.data.bbh import TASKS
from harness.scoring import bbh_groups, bbh_means  # noqa: F401 (part of this module's API)

BBH_PREFIXES = ("bbh_cot_spec_", "bbh_ao_spec_faithful_", "bbh_ao_spec_")
RULES = ("acc_faithful", "acc_corrected", "acc_bbh")


def bbh_subtask(task_name: str) -> tuple[str, str] | None:
    """'bbh_ao_spec_faithful_snarks' -> ('bbh_ao_spec_faithful', 'snarks'); None for other names."""
    for prefix in sorted(BBH_PREFIXES, key=len, reverse=True):
        if task_name.startswith(prefix) and task_name[len(prefix):] in TASKS:
            return prefix.rstrip("_"), task_name[len(prefix):]
    return None


def summarise(results: dict) -> dict:
    """Per-task accuracies (percent) for every rule a task reports, plus BBH 27/23 means per protocol.
    A group's `n` is the sum of its members' items."""
    rows = results.get("results", {})
    n_samples = results.get("n-samples", {})
    members = results.get("group_subtasks", {})
    tasks = {}
    for name, metrics in rows.items():
        entry = {}
        for rule in RULES:
            value = metrics.get(f"{rule},none")
            if isinstance(value, (int, float)):
                entry[rule] = round(100 * value, 4)
        if entry:
            entry["n"] = n_samples.get(name, {}).get("effective")
            tasks[name] = entry
    for name, entry in tasks.items():
        if entry["n"] is None and members.get(name):
            counts = [n_samples.get(m, {}).get("effective") for m in members[name]]
            entry["n"] = sum(c for c in counts if c is not None) if any(c is not None for c in counts) else None
    out = {"tasks": tasks, "bbh": {}}
    for rule in RULES:
        per_protocol: dict[str, dict[str, tuple[float, int]]] = {}
        for name, entry in tasks.items():
            found = bbh_subtask(name)
            if found and rule in entry and entry.get("n"):
                per_protocol.setdefault(found[0], {})[found[1]] = (entry[rule], entry["n"])
        for protocol, per_task in per_protocol.items():
            out["bbh"].setdefault(protocol, {})[rule] = {**bbh_means(per_task), "subtasks": len(per_task)}
    return out


def primary_score(summary: dict, task: str) -> float | None:
    """The number a checkpoint is judged by: math tasks and M-A-S groups by the authors' rule
    (acc_faithful); BBH groups by the unweighted 27-task mean under the same rule (their test_bbh)."""
    entry = summary.get("tasks", {}).get(task)
    if entry and entry.get("acc_faithful") is not None:
        return entry["acc_faithful"]
    bbh = summary.get("bbh", {}).get(task, {}).get("acc_faithful")
    return bbh.get("mean_27") if bbh else None
