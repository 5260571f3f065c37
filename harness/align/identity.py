"""The identity path: teacher and student share a tokenizer, so nothing needs aligning.

When the teacher's tokenizer has the student's vocabulary hash (`harness.tokenizers.fingerprint`:
every id stands for the same bytes), each teacher step is one student position and each top-k
entry is already a student id: a row is built directly, with no spans and no DTW. Ids come from the
store's `token_ids` / `top_ids` when the backend knew them, else the token strings are looked up in
the student's text -> id table (`harness.tokenizers.text_ids`; strings it does not hold, such as a
partial character spelled U+FFFD, are dropped, as exact mode drops what it cannot spell).

It applies only where the teacher's tokens are the student's tokenization of the student text:
the student text is the teacher's text, or that text stripped at token boundaries (`corrected`),
and the teacher's ids there equal the student tokenizer's ids of it. A sampled sequence need not
be canonical (a model may write " 4", "8" where the tokenizer writes " 48"), and the `faithful`
text deletes every ": ": such rows return None and go through exact alignment instead.

The result is what exact alignment gives on the same data wherever exact mode can spell every
candidate (tests/align/test_align_students.py); it differs only where exact mode cannot: the bytes
of a character split over several tokens, and candidates whose text the tokenizer would spell
otherwise on its own, keep the teacher's distribution here.
"""

from __future__ import annotations

from itertools import accumulate
from operator import itemgetter
from typing import Sequence

import weakref

from harness.align.errors import VocabularyError
from harness.align.exact import ExactConfig, finish
from harness.align.targets import KIND_IDENTITY, KIND_ONE_HOT, AlignedSequence
from harness.tokenizers import Tokenized, text_ids

_prob = itemgetter(1)


def token_span(tokens: Sequence[str], text: str, student_text: str) -> tuple[int, int] | None:
    """Steps [a, b) whose tokens spell `student_text` when it is `text` or `text` stripped, the
    stripped whitespace being whole tokens; else None."""
    if student_text == text:
        return 0, len(tokens)
    if student_text != text.strip():
        return None
    lead = len(text) - len(text.lstrip())
    bounds = [0, *accumulate(map(len, tokens))]
    try:
        a = bounds.index(lead)
        b = bounds.index(lead + len(student_text), a)
    except ValueError:
        return None
    return a, b  # the first step at each bound: empty tokens (bytes of the next character) stay in


def align_identity(sample, student: Tokenized, student_tokenizer, config: ExactConfig = ExactConfig()) -> AlignedSequence | None:
    """Targets for `student` straight from the teacher sample's steps, or None (see the module doc).

    `sample`: a `samples.TeacherSample` with `token_ids` / `top_ids` (None where not known).
    Entries at a position: the step's top-k as (id, probability), a repeated id counted once,
    most probable first (ties in the teacher's order), as exact mode orders them."""
    limit = id_limit(student_tokenizer)
    for field, rows in (("token_ids", [sample.token_ids] if sample.token_ids is not None else []), ("top_ids", sample.top_ids or [])):
        for step, row in enumerate(rows):
            bad = next((i for i in row if not 0 <= i < limit), None)
            if bad is not None:
                where = f" at step {step}" if field == "top_ids" else ""
                raise VocabularyError(f"id {bad}{where} is outside the student's vocabulary (0..{limit - 1}): the store's ids are not "
                                      f"{student_tokenizer.name}'s; align with --identity off", field)
    span = token_span(sample.tokens, sample.text, student.text)
    if span is None:
        return None
    a, b = span
    ids = list(student.ids)
    if b - a != len(ids):
        return None
    by_text = None
    if sample.token_ids is not None:
        if list(sample.token_ids[a:b]) != ids:
            return None
    else:
        by_text = text_ids(student_tokenizer)
        if [by_text.get(t) for t in sample.tokens[a:b]] != ids:
            return None
    entries: list[list[tuple[int, float]]] = []
    for step in range(a, b):
        probs = [p for _, p in sample.topk[step]]
        if sample.top_ids is not None:
            keys = sample.top_ids[step]
        else:
            by_text = by_text or text_ids(student_tokenizer)
            keys = [by_text.get(t) for t, _ in sample.topk[step]]
        mass: dict[int, float] = {}
        for key, prob in zip(keys, probs):
            if key is not None and key not in mass:
                mass[key] = 0.0 + float(prob)
        entries.append(sorted(mass.items(), key=_prob, reverse=True))
    derived = [bool(e) for e in entries]
    entries = [e if e else [(token_id, 1.0)] for token_id, e in zip(ids, entries)]
    kinds = [KIND_IDENTITY if d else KIND_ONE_HOT for d in derived]
    return finish(ids, entries, kinds, derived, config)


_LIMITS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def id_limit(tokenizer) -> int:
    """One more than the tokenizer's largest id."""
    limit = _LIMITS.get(tokenizer)
    if limit is None:
        limit = _LIMITS[tokenizer] = 1 + max(i for i, _, _ in tokenizer.id_table())
    return limit
