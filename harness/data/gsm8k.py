"""GSM8K (Cobbe et al. 2021): train 7,473 / test 1,319, JSONL with `question` and `answer`."""

from __future__ import annotations

import re

from harness.answers import canonical_number, parse_number
from harness.config import data_file
from harness.records import Example, RecordError, read_jsonl

FILES = {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"}
CALCULATOR = re.compile(r"<<.*?>>")


def clean_rationale(text: str) -> str:
    """Gold rationale without calculator annotations (the authors' non-greedy `<<.*?>>`)."""
    return CALCULATOR.sub("", text).strip()


def load(split: str, data_dir=None) -> list[Example]:
    if split not in FILES:
        raise ValueError(f"GSM8K has splits {sorted(FILES)}, not {split!r}")
    path = data_file(FILES[split], data_dir)
    examples = []
    for i, row in enumerate(read_jsonl(path)):
        for field in ("question", "answer"):
            if not isinstance(row.get(field), str):
                raise RecordError(path, i, field, "missing or not a string")
        if "####" not in row["answer"]:
            raise RecordError(path, i, "answer", "has no '#### <number>' final answer")
        rationale, final = row["answer"].rsplit("####", 1)
        number = parse_number(final.strip())
        if number is None:
            raise RecordError(path, i, "answer", f"final answer {final.strip()!r} is not a number")
        examples.append(
            Example(
                id=f"gsm8k/{split}/{i}",
                source="gsm8k",
                question=row["question"],
                answer=canonical_number(number),
                number=number,
                gold_raw=row["answer"],
                rationale=clean_rationale(rationale),
                index=i,
            )
        )
    return examples
