"""Teacher samples as the aligner reads them: validated, probabilities, sampled token first.

A sample is a dict (a teacher-store row, or a line of a teacher JSONL; docs/alignment.md):
    {"id": "gsm8k/train/0#3", "text": "...", "tokens": [...],        # tokens spell `text`
     "topk": [[[token, logprob], ...], ...],                          # one list per step
     "token_logprobs": [...],   # optional: the sampled token's logprob, put first (the authors' layout)
     "student_text": "..."}     # optional: the text the student is trained on (default `text`)
`parse_record` checks every field and names the file, record and field of the first problem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from harness.records import RecordError
from harness.rules import clean_text, first_bad_logprob, framed_text, has_frame_head, logprob_problem, probability


@dataclass(frozen=True)
class TeacherSample:
    id: str
    text: str
    student_text: str
    tokens: list[str]
    topk: list[list[tuple[str, float]]]  # probabilities, sampled token first when given
    line: int
    # Teacher stores only (the identity path): the teacher's ids where the backend knew them, and its tokenizer spec.
    token_ids: list[int] | None = None
    top_ids: list[list[int]] | None = None
    teacher_tokenizer: str | None = None


def store_row_sample(row: dict[str, Any], setting: str) -> dict[str, Any]:
    """A teacher-store row as the sample dict `parse_record` reads; the student text is the
    setting's (`rules.clean_text`). For the authors' 6-entry layout (framing "authors") the sampled
    token's logprob goes first and `text` is what the content steps spell (the frame dropped)."""
    text, tokens = row["text"], row["tokens"]
    sample = {"id": f"{row['question_id']}#{row['sample_index']}", "text": text, "student_text": clean_text(text, setting),
              "tokens": tokens,
              "topk": [[[w, lp] for w, lp in zip(words, lps)] for words, lps in zip(row["top_tokens"], row["top_logprobs"])]}
    if row.get("framing") == "authors":
        sample["token_logprobs"] = row["token_logprobs"]
        if has_frame_head(tokens):
            sample["text"] = framed_text(tokens)
    return sample


def parse_record(row: dict[str, Any], path: str | os.PathLike, line: int, framing: str = "none") -> TeacherSample:
    """Validate one input row; every problem names the file, the record and the field."""
    rid = row.get("id")
    record = f"line {line}" + (f" (id {rid!r})" if rid is not None else "")

    def fail(field: str, problem: str):
        raise RecordError(path, record, field, problem)

    if not isinstance(rid, (str, int)) or isinstance(rid, bool) or str(rid) == "":
        fail("id", "missing, empty, or not a string/integer")
    text = row.get("text")
    if not isinstance(text, str):
        fail("text", "missing or not a string")
    student_text = row.get("student_text", text)
    if not isinstance(student_text, str):
        fail("student_text", "not a string")
    tokens = row.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        fail("tokens", "missing or not a list of strings")
    topk = row.get("topk")
    if not isinstance(topk, list):
        fail("topk", "missing or not a list (one list of [token, logprob] pairs per step)")
    if len(topk) != len(tokens):
        fail("topk", f"has {len(topk)} steps but there are {len(tokens)} tokens")
    sampled = row.get("token_logprobs")
    if sampled is not None and (not isinstance(sampled, list) or len(sampled) != len(tokens)):
        fail("token_logprobs", f"must be a list of {len(tokens)} numbers")
    steps = _parse_steps(topk, tokens, sampled, fail)
    spelled = "".join(tokens)
    if framing == "none" and spelled != text:
        at = next((i for i, (a, b) in enumerate(zip(spelled, text)) if a != b), min(len(spelled), len(text)))
        fail("tokens", f"the tokens spell a different text than `text` (first difference at char {at}: "
                       f"{spelled[at:at + 20]!r} vs {text[at:at + 20]!r})")
    if framing == "authors" and has_frame_head(tokens) and framed_text(tokens) != text.strip():
        fail("tokens", "after dropping the authors' framing steps, the tokens do not spell `text`")
    return TeacherSample(str(rid), text, student_text, list(tokens), steps, line)


def _parse_steps(topk: list, tokens: list[str], sampled: list | None, fail: Callable) -> list[list[tuple[str, float]]]:
    """[token, logprob] pairs -> (token, prob) lists, validated for the whole sample at once.

    The checks run over one flattened list (C-speed `map`/`set`); only a sample that fails them
    is walked entry by entry, to name the bad step and entry.
    """
    try:
        lengths = [len(step) for step in topk]
        flat = [pair for step in topk for pair in step]
        words = [w for w, _ in flat]
        logprobs = [lp for _, lp in flat]
        ok = (all(type(step) is list for step in topk) and set(map(type, words)) <= {str}
              and first_bad_logprob(logprobs) is None)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        for s, step in enumerate(topk):
            _check_step(step, s, fail)
        lengths = [len(step) for step in topk]  # every entry passed the slow checks
        words = [pair[0] for step in topk for pair in step]
        logprobs = [pair[1] for step in topk for pair in step]
    pairs = list(zip(words, map(probability, logprobs)))
    steps: list[list[tuple[str, float]]] = []
    start = 0
    for s, n in enumerate(lengths):
        entries = pairs[start : start + n]
        start += n
        if sampled is not None:
            entries.insert(0, (tokens[s], _probability(sampled[s], fail, "token_logprobs", f"step {s}")))
        steps.append(entries)
    return steps


def _check_step(step: Any, s: int, fail: Callable) -> None:
    if not isinstance(step, list):
        fail("topk", f"step {s} is not a list of [token, logprob] pairs")
    for e, pair in enumerate(step):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)):
            fail("topk", f"step {s} entry {e} is not a [token, logprob] pair: {pair!r}")
        _probability(pair[1], fail, "topk", f"step {s} entry {e}")


def _probability(value: Any, fail: Callable, field: str, where: str) -> float:
    problem = logprob_problem(value)
    if problem is not None:
        fail(field, f"{where}: logprob {problem}")
    return probability(value)
