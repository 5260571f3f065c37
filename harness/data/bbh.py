"""BIG-Bench Hard (Suzgun et al. 2022): 27 tasks, 6,511 examples, 3-shot CoT prompt files."""

from __future__ import annotations

import json

from harness.config import data_file
from harness.records import Example, RecordError

TASKS = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa",
    "dyck_languages", "formal_fallacies", "geometric_shapes", "hyperbaton",
    "logical_deduction_five_objects", "logical_deduction_seven_objects",
    "logical_deduction_three_objects", "movie_recommendation", "multistep_arithmetic_two",
    "navigate", "object_counting", "penguins_in_a_table", "reasoning_about_colored_objects",
    "ruin_names", "salient_translation_error_detection", "snarks", "sports_understanding",
    "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects",
    "web_of_lies", "word_sorting",
)


def task_group(task: str) -> str:
    """The 23-group convention: the 3 logical_deduction and 3 tracking_shuffled_objects pooled."""
    for family in ("logical_deduction", "tracking_shuffled_objects"):
        if task.startswith(family + "_"):
            return family
    return task


def load(task: str, data_dir=None) -> list[Example]:
    if task not in TASKS:
        raise ValueError(f"unknown BBH task {task!r}; known: {', '.join(TASKS)}")
    path = data_file(f"bbh/{task}.json", data_dir)
    payload = json.loads(path.read_text(encoding="utf-8"))
    rows = payload.get("examples") if isinstance(payload, dict) else None
    if not isinstance(rows, list):
        raise RecordError(path, "<file>", "examples", "missing or not a list")
    examples = []
    for i, row in enumerate(rows):
        for field in ("input", "target"):
            if not isinstance(row.get(field), str):
                raise RecordError(path, i, field, "missing or not a string")
        examples.append(
            Example(
                id=f"bbh/{task}/{i}",
                source="bbh",
                question=row["input"],
                answer=row["target"],
                number=None,
                gold_raw=row["target"],
                subset=task,
                index=i,
            )
        )
    return examples


def cot_prompt(task: str, data_dir=None) -> str:
    """The task's 3-shot CoT prompt file, verbatim (canary line, `-----`, description, exemplars)."""
    if task not in TASKS:
        raise ValueError(f"unknown BBH task {task!r}")
    return data_file(f"bbh/cot-prompts/{task}.txt", data_dir).read_text(encoding="utf-8")
