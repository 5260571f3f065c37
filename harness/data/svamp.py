"""SVAMP (Patel et al. 2021), 1,000 problems."""

from __future__ import annotations

import json

from harness.answers import canonical_number
from harness.config import data_file
from harness.records import Example, RecordError

FILE = "svamp/SVAMP.json"


def load(data_dir=None) -> list[Example]:
    path = data_file(FILE, data_dir)
    rows = json.loads(path.read_text(encoding="utf-8"))
    examples = []
    for i, row in enumerate(rows):
        for field in ("Body", "Question"):
            if not isinstance(row.get(field), str):
                raise RecordError(path, row.get("ID", i), field, "missing or not a string")
        if not isinstance(row.get("Answer"), (int, float)):
            raise RecordError(path, row.get("ID", i), "Answer", "missing or not a number")
        number = float(row["Answer"])
        examples.append(
            Example(
                id=f"svamp/{row.get('ID', i)}",
                source="svamp",
                # The authors' join, byte for byte: Body + ". " + Question. Most bodies already end
                # in "." so this gives ".." - kept, because it reaches the model (T5 ids differ).
                question=row["Body"] + ". " + row["Question"],
                answer=canonical_number(number),
                number=number,
                gold_raw=str(number),
                index=i,
            )
        )
    return examples
