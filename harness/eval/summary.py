"""Headline numbers from per-task accuracies: BBH means over 27 subtasks and 23 groups, M-A-S."""

from __future__ import annotations

from harness.data.bbh import task_group


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
