"""`exact` mode: align by character offsets, since teacher and student tokenized the same text.

1. Both tokenizations tile the text (see `tokenizers`). A cut between tokens is moved to the end
   of any whitespace run it touches, because T5 folds whitespace (spaces, newlines, runs) into the
   `▁` of the next piece: GPT `'\\n'`, `'The'` and T5 `'▁The'` then share the cut before "The".
2. Cuts present on both sides split the text into minimal spans. Whitespace-only teacher tokens
   (`'\\n'`, `' '`) fall into no span: T5 has no token for them. Zero-width student pieces
   (a lone `'▁'` before `{`, NFKC's `'⁄'`) join the span of the next piece.
3. Per span:
   - 1 teacher : 1 student: every top-k entry is spelled the way the student would spell it at
     this position (`'▁'` prefix after whitespace or at the start, none inside a word) and kept
     if that is exactly one student piece; entries landing on the same piece add up. The sampled
     teacher token must spell the student's actual piece, else the position is one-hot.
   - 1 teacher : n students: the first piece gets the mass of each entry on its own first piece
     (exact when the sampled token spells exactly these n pieces on its own); the rest one-hot.
   - n : 1 and n : m: one-hot (the teacher gave no joint distribution over several steps).
4. Where the teacher's text and the student's text differ (e.g. a cleaned student text), the
   spans touching the differing characters are aligned by the authors' DTW (`faithful_fast`).
Options: renormalise the kept mass to 1, or report the missing mass as a tail bucket.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

from harness.align.errors import TextMismatchError
from harness.align.framing import check_and_strip
from harness.align.targets import (
    KIND_DP,
    KIND_FIRST_PIECE,
    KIND_ONE_HOT,
    KIND_ONE_TO_ONE,
    AlignedSequence,
)
from harness.align.tokenizers import SentencePieceTokenizer, Tokenized


@dataclass(frozen=True)
class ExactConfig:
    """`renormalize`: scale kept teacher mass to 1. `tail`: report 1 - kept mass per position.
    `max_mismatch_fraction`: share of differing characters above which texts count as different
    texts (TextMismatchError) rather than one text with local edits."""

    renormalize: bool = False
    tail: bool = False
    max_mismatch_fraction: float = 0.2

    def __post_init__(self):
        if self.renormalize and self.tail:
            raise ValueError("renormalize and tail are exclusive: a renormalised target has no missing mass")


def _dedupe(candidates: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """The same teacher token listed twice (sampled token + its top-5 entry) is one event."""
    seen: dict[str, float] = {}
    for token, prob in candidates:
        if token not in seen:
            seen[token] = float(prob)
    return list(seen.items())


def _skip_space(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos].isspace():
        pos += 1
    return pos


class _TextMap:
    """Teacher-text positions → student-text positions, with the differing regions marked."""

    def __init__(self, teacher_text: str, student_text: str, max_mismatch_fraction: float):
        self.identity = teacher_text == student_text
        if self.identity:
            return
        from rapidfuzz.distance import Levenshtein

        ops = Levenshtein.opcodes(teacher_text, student_text)
        differing = sum(max(op.src_end - op.src_start, op.dest_end - op.dest_start) for op in ops if op.tag != "equal")
        longest = max(len(teacher_text), len(student_text), 1)
        if differing > max_mismatch_fraction * longest:
            first = next(op for op in ops if op.tag != "equal")
            raise TextMismatchError(
                f"teacher tokens spell a different text than the student text: {differing} of {longest} characters "
                f"differ (limit {max_mismatch_fraction:.0%}); first difference at teacher char {first.src_start}: "
                f"{teacher_text[first.src_start:first.src_start + 30]!r} vs student "
                f"{student_text[first.dest_start:first.dest_start + 30]!r}"
            )
        self.ops = [op for op in ops]
        self.src_starts = [op.src_start for op in self.ops]
        self.bad_src = [(op.src_start, op.src_end) for op in self.ops if op.tag != "equal"]
        self.bad_dest = [(op.dest_start, op.dest_end) for op in self.ops if op.tag != "equal"]

    def map(self, pos: int) -> tuple[int, bool]:
        """(student position, exact?) for a teacher position."""
        if self.identity:
            return pos, True
        k = bisect.bisect_right(self.src_starts, pos) - 1
        op = self.ops[k]
        if op.tag == "equal":
            return op.dest_start + (pos - op.src_start), True
        if pos == op.src_start:  # boundary with the previous equal block
            return op.dest_start, True
        return op.dest_start, False

    @staticmethod
    def _overlaps(ranges, start: int, end: int) -> bool:
        for a, b in ranges:
            if a == b:  # pure insertion/deletion point
                if start < a < end or (start == end == a):
                    return True
            elif a < end and start < b:
                return True
        return False

    def teacher_clean(self, start: int, end: int) -> bool:
        return self.identity or not self._overlaps(self.bad_src, start, end)

    def student_clean(self, start: int, end: int) -> bool:
        return self.identity or not self._overlaps(self.bad_dest, start, end)


def align_exact(
    teacher_tokens: Sequence[str],
    candidates: Sequence[Sequence[tuple[str, float]]],
    student: Tokenized,
    student_tokenizer: SentencePieceTokenizer,
    config: ExactConfig = ExactConfig(),
    framing: str = "none",
) -> AlignedSequence:
    """Targets for every student token of `student` (the student's tokenization of its text)."""
    teacher_tokens, candidates = check_and_strip(teacher_tokens, candidates, framing)
    teacher_text = "".join(teacher_tokens)
    student_text = student.text
    n_students = len(student)
    if n_students == 0:
        return AlignedSequence([], [], [], [], [] if config.tail else None)
    if not teacher_text.strip():
        raise TextMismatchError(f"the teacher tokens spell no text but the student text is {student_text[:40]!r}")
    tmap = _TextMap(teacher_text, student_text, config.max_mismatch_fraction)

    # Teacher spans in student coordinates, whitespace folded into the following cut.
    t_start, t_end, t_exact_start, t_exact_end, t_clean, t_char_start = [], [], [], [], [], []
    pos = 0
    for token in teacher_tokens:
        s, e = pos, pos + len(token)
        ms, xs = tmap.map(s)
        me, xe = tmap.map(e)
        t_start.append(_skip_space(student_text, ms))
        t_end.append(_skip_space(student_text, me))
        t_exact_start.append(xs)
        t_exact_end.append(xe)
        t_clean.append(tmap.teacher_clean(s, e))
        t_char_start.append(s)
        pos = e
    s_start = [_skip_space(student_text, p) for p in student.starts]
    s_end = [_skip_space(student_text, p) for p in student.ends]
    s_clean = [tmap.student_clean(a, b) for a, b in zip(student.starts, student.ends)]

    teacher_cuts = {t_start[i] for i in range(len(teacher_tokens)) if t_exact_start[i]}
    teacher_cuts |= {t_end[i] for i in range(len(teacher_tokens)) if t_exact_end[i]}
    student_cuts = set(s_start) | set(s_end)
    bounds = sorted(teacher_cuts & student_cuts)
    if not bounds or bounds[0] > 0:
        bounds.insert(0, 0)

    def segment_of(position: int) -> int:
        return bisect.bisect_right(bounds, position) - 1

    # Group tokens by segment.
    seg_teacher: dict[int, list[int]] = {}
    for i, token in enumerate(teacher_tokens):
        if t_clean[i] and t_start[i] == t_end[i]:
            continue  # whitespace-only: T5 folds it into the next piece's ▁
        seg_teacher.setdefault(segment_of(t_start[i]), []).append(i)
    seg_student: dict[int, list[int]] = {}
    pending: list[int] = []
    last_seg = None
    for k in range(n_students):
        if s_start[k] == s_end[k]:
            pending.append(k)  # zero-width: joins the next piece's span
            continue
        last_seg = segment_of(s_start[k])
        seg_student.setdefault(last_seg, []).extend(pending + [k])
        pending = []
    if pending:
        seg_student.setdefault(last_seg if last_seg is not None else 0, []).extend(pending)

    entries: list[list[tuple[int, float]]] = [[] for _ in range(n_students)]
    kinds = [KIND_ONE_HOT] * n_students
    derived = [False] * n_students
    ids = list(student.ids)
    for seg, pieces in seg_student.items():
        teachers = seg_teacher.get(seg, [])
        clean = all(t_clean[i] for i in teachers) and all(s_clean[k] for k in pieces)
        if not clean and teachers:
            _dp_fallback(teachers, pieces, teacher_tokens, candidates, student, student_tokenizer, entries, kinds, derived)
            continue
        if len(teachers) == 1 and clean:
            i = teachers[0]
            at = t_char_start[i]
            after_space = at == 0 or teacher_text[at - 1].isspace()
            actual = student_tokenizer.pieces_for(teacher_tokens[i], after_space)
            wanted = tuple(ids[k] for k in pieces)
            if actual == wanted:
                first = pieces[0]
                mass: dict[int, float] = {}
                single = len(pieces) == 1
                for token, prob in _dedupe(candidates[i]):
                    spelled = student_tokenizer.pieces_for(token, after_space)
                    if spelled and (len(spelled) == 1 or not single):
                        mass[spelled[0]] = mass.get(spelled[0], 0.0) + prob
                if mass:
                    entries[first] = sorted(mass.items(), key=lambda e: -e[1])
                    kinds[first] = KIND_ONE_TO_ONE if single else KIND_FIRST_PIECE
                    derived[first] = True
        # Everything not filled above is one-hot on the student's own token.
    for k in range(n_students):
        if not entries[k]:
            entries[k] = [(ids[k], 1.0)]
            kinds[k] = KIND_ONE_HOT
            derived[k] = False

    tail = None
    if config.renormalize:
        for k in range(n_students):
            if derived[k]:
                total = sum(p for _, p in entries[k])
                if total > 0:
                    entries[k] = [(t, p / total) for t, p in entries[k]]
    if config.tail:
        tail = [max(0.0, 1.0 - sum(p for _, p in entries[k])) for k in range(n_students)]
    return AlignedSequence(ids, entries, kinds, derived, tail)


def _dp_fallback(teachers, pieces, teacher_tokens, candidates, student, student_tokenizer, entries, kinds, derived):
    """Authors' DTW + transfer on one region where the texts differ."""
    from harness.align.faithful_fast import align_faithful_detailed

    vocab = student_tokenizer.vocab()
    targets, is_derived = align_faithful_detailed(
        [teacher_tokens[i] for i in teachers],
        [candidates[i] for i in teachers],
        [student.tokens[k] for k in pieces],
        vocab,
    )
    for k, target, d in zip(pieces, targets, is_derived):
        if d and target:
            entries[k] = [(vocab[t], float(p)) for t, p in target.items()]
            kinds[k] = KIND_DP
            derived[k] = True
