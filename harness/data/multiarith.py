"""MultiArith (Roy & Roth 2015), 600 problems, as distributed with zero_shot_cot."""

from __future__ import annotations

import json

from harness.answers import canonical_number
from harness.config import data_file
from harness.records import Example, RecordError

FILE = "multiarith/MultiArith.json"


def load(data_dir=None) -> list[Example]:
    path = data_file(FILE, data_dir)
    rows = json.loads(path.read_text(encoding="utf-8"))
    examples = []
    for i, row in enumerate(rows):
        question = row.get("sQuestion")
        if not isinstance(question, str):
            raise RecordError(path, i, "sQuestion", "missing or not a string")
        solutions = row.get("lSolutions")
        if not isinstance(solutions, list) or len(solutions) != 1:
            raise RecordError(path, i, "lSolutions", "expected a one-element list")
        number = float(solutions[0])
        examples.append(
            Example(
                id=f"multiarith/{i}",
                source="multiarith",
                # The file pads each question with one space at each end; the authors cut
                # the first and last characters, which is the same as strip() here.
                question=question.strip(),
                answer=canonical_number(number),
                number=number,
                gold_raw=str(solutions),
                index=i,
            )
        )
    return examples
