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
   Whitespace-only differences (a leading '\n', '\n' vs ' ') are not differences: they fold.
Options: renormalise the kept mass to 1, or report the missing mass as a tail bucket.

Approximation, documented: at a line-initial position the target is the teacher's distribution
*after* its '\n' step (P(So | '\n') ...). The '\n' step's own alternatives that T5 would also
spell `▁So` (' So' instead of '\n') are not merged in: merging needs the teacher's distribution
after those alternatives, which a top-k list does not contain.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Sequence

from harness.errors import UsageError
from harness.align.errors import TextMismatchError
from harness.align.framing import check_and_strip
from harness.align.targets import (
    KIND_DP,
    KIND_FIRST_PIECE,
    KIND_ONE_HOT,
    KIND_ONE_TO_ONE,
    AlignedSequence,
)
from harness.tokenizers import SentencePieceTokenizer, Tokenized


@dataclass(frozen=True)
class ExactConfig:
    """`renormalize`: scale kept teacher mass to 1. `tail`: report 1 - kept mass per position.
    `max_mismatch_fraction`: share of differing characters above which texts count as different
    texts (TextMismatchError) rather than one text with local edits."""

    renormalize: bool = False
    tail: bool = False
    max_mismatch_fraction: float = 0.2

    def __post_init__(self):
        if not 0.0 <= self.max_mismatch_fraction <= 1.0:
            raise UsageError(f"--max-mismatch: {self.max_mismatch_fraction} is not allowed; it must be between 0 and 1")
        if self.renormalize and self.tail:
            raise UsageError("--renormalize and --tail are exclusive: a renormalised target has no missing mass")


class _TextMap:
    """Teacher-text positions → student-text positions, with the differing regions marked."""

    def __init__(self, teacher_text: str, student_text: str, max_mismatch_fraction: float):
        self.identity = teacher_text == student_text
        if self.identity:
            return
        from rapidfuzz.distance import Levenshtein

        ops = Levenshtein.opcodes(teacher_text, student_text)

        def whitespace_only(op) -> bool:  # T5 folds whitespace anyway: such edits are not differences
            a, b = teacher_text[op.src_start : op.src_end], student_text[op.dest_start : op.dest_end]
            return (not a or a.isspace()) and (not b or b.isspace())

        real = [op.tag != "equal" and not whitespace_only(op) for op in ops]
        differing = sum(max(op.src_end - op.src_start, op.dest_end - op.dest_start) for op, r in zip(ops, real) if r)
        longest = max(len(teacher_text), len(student_text), 1)
        if differing > max_mismatch_fraction * longest:
            first = next(op for op in ops if op.tag != "equal")
            raise TextMismatchError(
                f"teacher tokens spell a different text than the student text: {differing} of {longest} characters "
                f"differ (limit {max_mismatch_fraction:.0%}); first difference at teacher char {first.src_start}: "
                f"{teacher_text[first.src_start:first.src_start + 30]!r} vs student "
                f"{student_text[first.dest_start:first.dest_start + 30]!r}"
            )
        self.ops = list(ops)
        self.real = real
        self.src_starts = [op.src_start for op in self.ops]
        self.bad_src = [(op.src_start, op.src_end) for op, r in zip(self.ops, real) if r]
        self.bad_dest = [(op.dest_start, op.dest_end) for op, r in zip(self.ops, real) if r]

    def map(self, pos: int) -> tuple[int, bool]:
        """(student position, exact?) for a teacher position."""
        if self.identity:
            return pos, True
        k = bisect.bisect_right(self.src_starts, pos) - 1
        op = self.ops[k]
        if op.tag == "equal":
            return op.dest_start + (pos - op.src_start), True
        if pos == op.src_start or not self.real[k]:  # block boundary, or inside folded whitespace
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
    ws_end = _whitespace_run_ends(student_text)
    n_teachers = len(teacher_tokens)

    # Teacher token spans [t_start, t_end) in student coordinates, whitespace folded forward.
    t_char_start = [0] * n_teachers
    t_start = [0] * n_teachers
    t_end = [0] * n_teachers
    cuts_exact: set[int] = set()
    t_clean = [True] * n_teachers
    pos = 0
    if tmap.identity:
        for i, token in enumerate(teacher_tokens):
            t_char_start[i] = pos
            t_start[i] = ws_end.get(pos, pos)
            pos += len(token)
            t_end[i] = ws_end.get(pos, pos)
        cuts_exact.update(t_start)
        cuts_exact.update(t_end)
    else:
        for i, token in enumerate(teacher_tokens):
            t_char_start[i] = pos
            ms, xs = tmap.map(pos)
            me, xe = tmap.map(pos + len(token))
            t_start[i] = ws_end.get(ms, ms)
            t_end[i] = ws_end.get(me, me)
            if xs:
                cuts_exact.add(t_start[i])
            if xe:
                cuts_exact.add(t_end[i])
            t_clean[i] = tmap.teacher_clean(pos, pos + len(token))
            pos += len(token)
    s_start = [ws_end.get(p, p) for p in student.starts]
    s_end = [ws_end.get(p, p) for p in student.ends]
    s_clean = [True] * n_students if tmap.identity else [tmap.student_clean(a, b) for a, b in zip(student.starts, student.ends)]
    student_cuts = set(s_start)
    student_cuts.update(s_end)
    bounds = sorted(cuts_exact & student_cuts)

    # Segment index of a position = number of common cuts at or before it (minus one); positions
    # arrive in increasing order on each side, so a moving pointer replaces a search.
    seg_teacher: dict[int, list[int]] = {}
    ptr, n_bounds = 0, len(bounds)
    for i in range(n_teachers):
        x = t_start[i]
        if t_clean[i] and x == t_end[i]:
            continue  # whitespace-only: T5 folds it into the next piece's ▁
        while ptr < n_bounds and bounds[ptr] <= x:
            ptr += 1
        seg_teacher.setdefault(ptr, []).append(i)
    seg_student: dict[int, list[int]] = {}
    pending: list[int] = []
    ptr, last_seg = 0, 0
    for k in range(n_students):
        x = s_start[k]
        if x == s_end[k]:
            pending.append(k)  # zero-width: joins the next piece's span
            continue
        while ptr < n_bounds and bounds[ptr] <= x:
            ptr += 1
        last_seg = ptr
        if pending:
            seg_student.setdefault(ptr, []).extend(pending)
            pending = []
        seg_student.setdefault(ptr, []).append(k)
    if pending:
        seg_student.setdefault(last_seg, []).extend(pending)

    ids = list(student.ids)
    entries: list[list[tuple[int, float]]] = [[(token_id, 1.0)] for token_id in ids]
    kinds = [KIND_ONE_HOT] * n_students
    derived = [False] * n_students
    spell = student_tokenizer.pieces_for
    for seg, pieces in seg_student.items():
        teachers = seg_teacher.get(seg)
        if not teachers:
            continue
        if not tmap.identity and not (all(t_clean[i] for i in teachers) and all(s_clean[k] for k in pieces)):
            _dp_fallback(teachers, pieces, teacher_tokens, candidates, student, student_tokenizer, entries, kinds, derived)
            continue
        if len(teachers) != 1:
            continue  # n:1 and n:m stay one-hot
        i = teachers[0]
        at = t_char_start[i]
        after_space = at == 0 or teacher_text[at - 1].isspace()
        first = pieces[0]
        single = len(pieces) == 1
        actual = spell(teacher_tokens[i], after_space)
        if (actual != (ids[first],)) if single else (actual != tuple(ids[k] for k in pieces)):
            continue  # the sampled token does not spell these pieces: no exact correspondence
        mass: dict[int, float] = {}
        seen: set[str] = set()
        for token, prob in candidates[i]:
            if token in seen:
                continue  # the sampled token listed again in the top-5 is the same event
            seen.add(token)
            spelled = spell(token, after_space)
            if spelled and (single is False or len(spelled) == 1):
                mass[spelled[0]] = mass.get(spelled[0], 0.0) + float(prob)
        if mass:
            entries[first] = sorted(mass.items(), key=_by_prob)
            kinds[first] = KIND_ONE_TO_ONE if single else KIND_FIRST_PIECE
            derived[first] = True

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


def _by_prob(entry: tuple[int, float]) -> float:
    return -entry[1]


_WHITESPACE_RUN = re.compile(r"\s+")


def _whitespace_run_ends(text: str) -> dict[int, int]:
    """Every position inside (or at the start of) a whitespace run → the position after the run."""
    ends: dict[int, int] = {}
    for match in _WHITESPACE_RUN.finditer(text):
        end = match.end()
        for p in range(match.start(), end):
            ends[p] = end
    return ends


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
