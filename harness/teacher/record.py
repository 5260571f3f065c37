"""One teacher sample as a row of the store: the record, its checks and how a completion becomes one.

The columns are the core contract `harness.schemas.TEACHER_STORE`; this is its Python form, with
the checks a writer runs before anything is stored and the grading of each sample by both rules.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from harness import answers
from harness.records import Example
from harness.rules import first_bad_logprob
from harness.schemas import TEACHER_FRAMINGS, TEACHER_STORE, TEACHER_TARGETS

from harness.teacher.base import Completion

SCHEMA = TEACHER_STORE.schema
TARGETS = TEACHER_TARGETS
FRAMINGS = TEACHER_FRAMINGS
# Log-probability stored for a probability the source rounded to 0.0 (the authors' 4-decimal
# pickles): exp(-1e4) == 0.0 exactly in float32 and float64, so the 0.0 comes back unchanged.
ZERO_PROB_LOGPROB = -1e4


@dataclass(frozen=True)
class TeacherRecord:
    """One row of the store (field order = column order; see harness.schemas and docs/teacher-store.md)."""

    question_id: str
    sample_index: int
    prompt_id: str
    question: str
    gold: str
    text: str
    raw_text: str | None
    teacher_model: str
    teacher_tokenizer: str
    targets: str
    framing: str
    tokens: list[str]
    token_ids: list[int] | None
    token_logprobs: list[float]
    top_tokens: list[list[str]]
    top_ids: list[list[int]] | None
    top_logprobs: list[list[float]]
    finish_reason: str | None
    answer: str | None
    correct: bool
    correct_faithful: bool
    top_has_token: bool | None = None  # every top list holds its position's own token (None: not said)

    @property
    def key(self) -> tuple[str, int]:
        return (self.question_id, self.sample_index)

    def problem(self) -> tuple[str, str] | None:
        """(field, what is wrong), or None for a valid record."""
        for name in ("question_id", "prompt_id", "question", "gold", "text", "teacher_model", "teacher_tokenizer"):
            if not isinstance(getattr(self, name), str):
                return name, "missing or not a string"
        if self.question_id == "":
            return "question_id", "empty"
        if isinstance(self.sample_index, bool) or not isinstance(self.sample_index, int) or not 0 <= self.sample_index < 2**31:
            return "sample_index", f"{self.sample_index!r} is not an integer in [0, 2^31)"
        if self.top_has_token is not None and not isinstance(self.top_has_token, bool):
            return "top_has_token", f"{self.top_has_token!r} is not true, false or null"
        if self.targets not in TARGETS:
            return "targets", f"{self.targets!r} is not one of {', '.join(TARGETS)}"
        if self.framing not in FRAMINGS:
            return "framing", f"{self.framing!r} is not one of {', '.join(FRAMINGS)}"
        n = len(self.tokens)
        for name in ("token_logprobs", "top_tokens", "top_logprobs"):
            if len(getattr(self, name)) != n:
                return name, f"has {len(getattr(self, name))} positions but there are {n} tokens"
        if self.framing == "none" and "".join(self.tokens) != self.text:
            return "tokens", "do not spell `text` (framing 'none' requires \"\".join(tokens) == text)"
        if self.token_ids is not None and len(self.token_ids) != n:
            return "token_ids", f"has {len(self.token_ids)} ids but there are {n} tokens"
        if self.top_ids is not None and (len(self.top_ids) != n or any(len(a) != len(b) for a, b in zip(self.top_ids, self.top_tokens))):
            return "top_ids", "does not have the shape of top_tokens"
        if list(map(len, self.top_tokens)) != list(map(len, self.top_logprobs)):
            i = next(i for i, (a, b) in enumerate(zip(self.top_tokens, self.top_logprobs)) if len(a) != len(b))
            return "top_logprobs", f"position {i}: {len(self.top_tokens[i])} top tokens but {len(self.top_logprobs[i])} logprobs"
        bad = first_bad_logprob(self.token_logprobs)
        if bad is not None:
            return "token_logprobs", f"position {bad}: {self.token_logprobs[bad]!r} is not a finite log-probability <= 0"
        if first_bad_logprob([x for row in self.top_logprobs for x in row]) is not None:
            for i, lps in enumerate(self.top_logprobs):
                bad = first_bad_logprob(lps)
                if bad is not None:
                    return "top_logprobs", f"position {i} entry {bad}: {lps[bad]!r} is not a finite log-probability <= 0"
        return None


COLUMNS = tuple(f.name for f in fields(TeacherRecord))
assert COLUMNS == TEACHER_STORE.columns, "TeacherRecord fields and the teacher-store contract must match"


def grade(text: str, example: Example) -> tuple[str | None, bool, bool]:
    """(extracted answer, corrected-rule verdict, authors'-rule verdict) of one completion.

    The answer is the corrected extraction (`answers.extract_number`) as a canonical number
    string; for a gold that is not a number, the extracted text answer.
    """
    if example.number is not None or answers.parse_gold_number(example.gold_raw) is not None:
        value = answers.extract_number(text)
        answer = None if value is None else answers.canonical_number(value)
    else:
        answer = answers.extract_text_answer(text) or None
    correct = answers.corrected_math_correct(text, example.number, example.answer)
    return answer, correct, answers.authors_math_correct(text, example.gold_raw)


def record_from_completion(
    completion: Completion,
    example: Example,
    sample_index: int,
    *,
    prompt_id: str,
    teacher_model: str,
    teacher_tokenizer: str,
    keep_tokens: int | None = None,
) -> TeacherRecord:
    """The store row for one completion of `example`'s question.

    `keep_tokens` cuts the sample to its first n tokens (e.g. at the end of the answer line):
    `text` is then what they spell and `raw_text` the full completion. Answer and both
    correctness labels are computed on the kept text.
    """
    n = len(completion.tokens) if keep_tokens is None else max(0, min(keep_tokens, len(completion.tokens)))
    tokens = list(completion.tokens[:n])
    text = "".join(tokens)
    cut = n < len(completion.tokens) or text != completion.text
    answer, correct, faithful = grade(text, example)
    return TeacherRecord(
        question_id=example.id,
        sample_index=sample_index,
        prompt_id=prompt_id,
        question=example.question,
        gold=example.answer,
        text=text,
        raw_text=completion.text if cut else None,
        teacher_model=teacher_model,
        teacher_tokenizer=teacher_tokenizer,
        targets=completion.targets,
        framing="none",
        tokens=tokens,
        token_ids=None if completion.token_ids is None else list(completion.token_ids[:n]),
        token_logprobs=list(completion.token_logprobs[:n]),
        top_tokens=[list(t) for t in completion.top_tokens[:n]],
        top_ids=None if completion.top_ids is None else [list(t) for t in completion.top_ids[:n]],
        top_logprobs=[list(t) for t in completion.top_logprobs[:n]],
        finish_reason=completion.finish_reason,
        answer=answer,
        correct=correct,
        correct_faithful=faithful,
        top_has_token=completion.top_has_token,
    )
