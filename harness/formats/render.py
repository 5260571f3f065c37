"""The four training formats (paper Fig. 1B) rendered to (encoder input, decoder target) strings.

Layouts follow the authors' `process_data_format` and `sample_in_context_example`
(authors-code-protocol.md §2); `{q}` is the question, `{cot}` the teacher's chain of thought:

| format | encoder input | decoder target |
|---|---|---|
| zero_shot_answer_only  | `Q: {q} A:` | `The answer is N` |
| zero_shot_cot          | `Q: {q}\\nLet's think step by step` | `{cot}` |
| in_context_answer_only | 4 answer-only demos + `Q: {q}\\nA:` | `The answer is N` |
| in_context_cot         | 4 CoT demos + `Q: {q}\\nLet's think step by step` | `{cot}` |

Two settings:
- `faithful`: the authors' strings. Their question and CoT went through `get_question_or_cot`,
  which split `"Question {i}: {q}"` / `"Model output {k}: {cot}"` on `": "`, dropped the prefix
  and joined the rest with "" -- deleting every other `": "` in the question and the CoT. Our
  texts come without those prefixes, so `strip_colons` deletes every `": "` of the bare text
  (provably the same result: the prefixes hold no earlier `": "`). The answer-only target is cut
  at the first `": "` of the CoT (their `get_answer_only` kept only the piece after the prefix).
  Demos are *not* stripped: their code read them straight from the GSM8K train set.
- `corrected`: the same layouts with no `": "` deletion anywhere (whitespace still stripped).
"""

from __future__ import annotations

import re
from typing import Sequence

from harness.errors import DataError, check_choice
from harness.records import Example
from harness.rules import clean_text  # noqa: F401 (part of this module's API)
from harness.templates import COT_TRIGGER, strip_colons  # noqa: F401 (part of this module's API)
from harness.mixing import ANSWER_ONLY_FORMATS, COT_FORMATS, FORMATS, IN_CONTEXT_FORMATS  # noqa: F401 (re-exported)

SETTINGS = ("faithful", "corrected")
NUM_DEMOS = 4  # the authors' num_in_context_sample
ANSWER_IS = "The answer is"
CALCULATOR = re.compile(r"<<.*?>>")  # the authors' non-greedy pattern; `.` does not cross lines


def check_format(fmt: str) -> None:
    check_choice("format", fmt, FORMATS)


def check_setting(setting: str) -> None:
    check_choice("setting", setting, SETTINGS)




def answer_only_target(cot: str, setting: str) -> str | None:
    """`The answer is N` from a teacher CoT, or None when the CoT has no "The answer is".

    faithful (their `get_answer_only`): keep the CoT up to its first `": "`, strip it; if it holds
    "The answer is", return that phrase plus the text up to the next occurrence (or the end).
    corrected: the whole CoT; the phrase plus the rest of its line, stripped.
    """
    check_setting(setting)
    if setting == "faithful":
        head = cot.split(": ")[0].strip()
        if ANSWER_IS not in head:
            return None
        return ANSWER_IS + head.split(ANSWER_IS)[1]
    if ANSWER_IS not in cot:
        return None
    rest = cot.split(ANSWER_IS, 1)[1].split("\n", 1)[0]
    return (ANSWER_IS + rest).strip()


def _gold_parts(demo: Example) -> tuple[str, str]:
    """(rationale as the authors cut it, final answer) from a GSM8K gold `... #### N`."""
    parts = demo.gold_raw.split("####")
    if len(parts) < 2:
        raise DataError(f"demo {demo.id}: gold answer has no '#### N' final answer; demos must be GSM8K train items")
    return CALCULATOR.sub("", parts[0]), parts[1].strip()


def cot_demo(demo: Example) -> str:
    """`Q: {q}\\nLet's think step by step\\n{gold rationale, <<…>> removed}The answer is {N}\\n\\n`.

    The rationale is the raw gold text before `####`, so it keeps its own trailing newline.
    """
    rationale, final = _gold_parts(demo)
    return f"Q: {demo.question}\n{COT_TRIGGER}\n{rationale}{ANSWER_IS} {final}\n\n"


def answer_only_demo(demo: Example) -> str:
    """`Q: {q}\\nA: The answer is {N}\\n\\n`."""
    return f"Q: {demo.question}\nA: {ANSWER_IS} {_gold_parts(demo)[1]}\n\n"


def render_record(fmt: str, setting: str, question: str, answer: str, demos: Sequence[Example]) -> tuple[str, str]:
    """(encoder_input, decoder_target) of one record.

    `answer` is the teacher's CoT text; answer-only formats extract their target from it (DataError
    when it has no "The answer is"). `demos` are used by in-context formats (exactly NUM_DEMOS
    expected there) and must be empty for zero-shot formats.
    """
    check_format(fmt)
    check_setting(setting)
    in_context = fmt in IN_CONTEXT_FORMATS
    if in_context and len(demos) != NUM_DEMOS:
        raise DataError(f"format {fmt}: needs {NUM_DEMOS} demos, got {len(demos)}")
    if not in_context and demos:
        raise DataError(f"format {fmt}: zero-shot formats take no demos, got {len(demos)}")
    q = clean_text(question, setting)
    if fmt in COT_FORMATS:
        prefix = "".join(map(cot_demo, demos))
        return f"{prefix}Q: {q}\n{COT_TRIGGER}", clean_text(answer, setting)
    target = answer_only_target(answer, setting)
    if target is None:
        raise DataError(f"format {fmt}: the teacher text has no {ANSWER_IS!r}, so it has no answer-only target")
    if in_context:
        return "".join(map(answer_only_demo, demos)) + f"Q: {q}\nA:", target
    return f"Q: {q} A:", target
