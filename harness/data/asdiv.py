"""ASDiv (Miao et al. 2020), 2,305 problems in one XML file."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from harness.answers import canonical_number, parse_gold_number
from harness.config import data_file
from harness.records import Example, RecordError

FILE = "asdiv/ASDiv.xml"


def load(data_dir=None) -> list[Example]:
    path = data_file(FILE, data_dir)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise RecordError(path, "<file>", "<xml>", f"not valid XML ({err})") from None
    examples = []
    for i, problem in enumerate(root.iter("Problem")):
        pid = problem.get("ID", str(i))
        fields = {}
        for field in ("Body", "Question", "Answer"):
            node = problem.find(field)
            if node is None or node.text is None:
                raise RecordError(path, pid, field, "missing element")
            fields[field] = node.text.strip()
        number = parse_gold_number(fields["Answer"])  # None: compared as text ("Yes", "3:30 p.m.", several numbers)
        formula = problem.find("Formula")
        examples.append(
            Example(
                id=f"asdiv/{pid}",
                source="asdiv",
                question=fields["Body"] + " " + fields["Question"],
                answer=canonical_number(number) if number is not None else fields["Answer"],
                number=number,
                gold_raw=fields["Answer"],
                rationale=formula.text.strip() if formula is not None and formula.text else None,
                subset=problem.findtext("Solution-Type"),
                index=i,
            )
        )
    return examples
