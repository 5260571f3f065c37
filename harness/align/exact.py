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
   - a step right after an empty teacher token completes a character split over several byte
     tokens: its top-k is a distribution over the character's remaining bytes, not over what
     starts there, so it gives no target either (one-hot).
4. Where the teacher's text and the student's text differ (e.g. a cleaned student text), the
   spans touching the differing characters are aligned by the authors' DTW (`faithful_fast`).
   Whitespace-only differences (a leading '\n', '\n' vs ' ') are not differences: they fold.
Options: renormalise the kept mass to 1, or report the missing mass as a tail bucket.

Any student tokenizer: the student is one of `harness.tokenizers` (T5 SentencePiece, or any
Hugging Face fast tokenizer) with tiling offsets and `pieces_for`. Step 1's folding applies only to
students that fold whitespace (`folds_whitespace`: T5 and T5-like normalisers); for the others
(GPT-2, Qwen, Llama: whitespace is text, `'\n'` is a token) cuts stay where the tokens put them,
so whitespace tokens are spans like any other, and "after whitespace" in step 3 means "at the
start of the student text" (where a SentencePiece student adds its dummy-prefix `▁`). Zero-width
pieces are bytes of a character another piece completes (byte-level or byte-fallback splits) or a
dummy-prefix `▁`; their teacher steps (empty strings) hold no spellable candidates and are skipped.
Step 4's DTW compares texts with spaces written `▁` and transfers onto student tokens by their text.

Approximation, documented: at a line-initial position the target is the teacher's distribution
*after* its '\n' step (P(So | '\n') ...). The '\n' step's own alternatives that T5 would also
spell `▁So` (' So' instead of '\n') are not merged in: merging needs the teacher's distribution
after those alternatives, which a top-k list does not contain.
"""

from __future__ import annotations

import bisect
import re
import weakref
from dataclasses import dataclass
from itertools import accumulate
from operator import itemgetter
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
from harness.tokenizers import SentencePieceTokenizer, Tokenized, text_ids


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
    student_tokenizer,
    config: ExactConfig = ExactConfig(),
    framing: str = "none",
) -> AlignedSequence:
    """Targets for every student token of `student` (the student's tokenization of its text, by
    `student_tokenizer`: a `harness.tokenizers` tokenizer with `pieces_for`)."""
    teacher_tokens, candidates = check_and_strip(teacher_tokens, candidates, framing)
    teacher_text = "".join(teacher_tokens)
    student_text = student.text
    n_students = len(student)
    if n_students == 0:
        return AlignedSequence([], [], [], [], [] if config.tail else None)
    if not teacher_text.strip():
        raise TextMismatchError(f"the teacher tokens spell no text but the student text is {student_text[:40]!r}")
    tmap = _TextMap(teacher_text, student_text, config.max_mismatch_fraction)
    folds = getattr(student_tokenizer, "folds_whitespace", True)
    fold = (_whitespace_run_ends(student_text) if folds else range(len(student_text) + 1)).__getitem__
    n_teachers = len(teacher_tokens)

    # Teacher token spans [t_start, t_end) in student coordinates, whitespace folded forward.
    t_ends = list(accumulate(map(len, teacher_tokens)))
    t_char_start = [0, *t_ends[:-1]]
    t_clean = [True] * n_teachers
    if tmap.identity:
        t_start = list(map(fold, t_char_start))
        t_end = list(map(fold, t_ends))
        cuts_exact = set(t_start)
        cuts_exact.update(t_end)
    else:
        t_start, t_end = [0] * n_teachers, [0] * n_teachers
        cuts_exact: set[int] = set()
        for i, (pos, end) in enumerate(zip(t_char_start, t_ends)):
            ms, xs = tmap.map(pos)
            me, xe = tmap.map(end)
            t_start[i] = fold(ms)
            t_end[i] = fold(me)
            if xs:
                cuts_exact.add(t_start[i])
            if xe:
                cuts_exact.add(t_end[i])
            t_clean[i] = tmap.teacher_clean(pos, end)
    s_start = list(map(fold, student.starts))
    s_end = list(map(fold, student.ends))
    s_clean = [True] * n_students if tmap.identity else [tmap.student_clean(a, b) for a, b in zip(student.starts, student.ends)]
    student_cuts = set(s_start)
    student_cuts.update(s_end)
    bounds = sorted(cuts_exact & student_cuts)

    # Segment index of a position = number of common cuts at or before it (minus one); positions
    # arrive in increasing order on each side, so a moving pointer replaces a search.
    seg_teacher: dict[int, list[int]] = {}
    ptr, n_bounds = 0, len(bounds)
    for i, x in enumerate(t_start):
        if x == t_end[i] and t_clean[i]:
            continue  # whitespace-only: T5 folds it into the next piece's ▁
        while ptr < n_bounds and bounds[ptr] <= x:
            ptr += 1
        seg_teacher.setdefault(ptr, []).append(i)
    seg_student: dict[int, list[int]] = {}
    pending: list[int] = []
    ptr, last_seg = 0, 0
    for k, x in enumerate(s_start):
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
    entries: list = [None] * n_students  # filled where the teacher gives a target; the rest one-hot below
    kinds = [KIND_ONE_HOT] * n_students
    derived = [False] * n_students
    spell = student_tokenizer.pieces_for
    first_piece = _first_pieces(student_tokenizer)
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
        if i and teacher_tokens[i - 1] == "":
            continue  # the step completes a character an earlier step began: its top-k are continuations of those bytes
        at = t_char_start[i]
        after_space = (at == 0 or teacher_text[at - 1].isspace()) if folds else t_start[i] == 0
        first = pieces[0]
        single = len(pieces) == 1
        # The sampled token must spell exactly these pieces; each candidate then counts on the
        # first piece it spells (a 1:1 span: only candidates spelling one piece).
        lookup = first_piece[after_space, single]
        if single:
            sampled = lookup.get(teacher_tokens[i])
            if sampled is None:
                sampled = _first_piece(lookup, spell, teacher_tokens[i], after_space, single)
            if sampled != ids[first]:
                continue  # the sampled token does not spell this piece: no exact correspondence
        elif spell(teacher_tokens[i], after_space) != tuple(ids[k] for k in pieces):
            continue
        mass: dict[int, float] = {}
        for token, prob in candidates[i]:
            piece = lookup.get(token)
            if piece is None:
                piece = _first_piece(lookup, spell, token, after_space, single)
            if piece >= 0:
                if piece in mass:  # two candidates on one piece (rare): the full rule below
                    mass = _mass(candidates[i], lookup, spell, after_space, single)
                    break
                mass[piece] = 0.0 + float(prob)
        if mass:
            entries[first] = sorted(mass.items(), key=itemgetter(1), reverse=True)  # stable, most probable first
            kinds[first] = KIND_ONE_TO_ONE if single else KIND_FIRST_PIECE
            derived[first] = True

    entries = [[(token_id, 1.0)] if target is None else target for token_id, target in zip(ids, entries)]
    return finish(ids, entries, kinds, derived, config)


def finish(ids: list[int], entries: list, kinds: list[str], derived: list[bool], config: ExactConfig) -> AlignedSequence:
    """The options every exact-mode sequence gets: renormalised teacher mass, or the tail bucket."""
    n_students = len(ids)
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


def _mass(step: Sequence[tuple[str, float]], lookup: dict[str, int], spell, after_space: bool, single: bool) -> dict[int, float]:
    """Teacher mass per student piece: candidates spelling the same piece add up, in order; a
    token listed twice (the sampled token repeated in the top-5) is one event and counts once."""
    mass: dict[int, float] = {}
    seen: set[str] = set()
    for token, prob in step:
        if token in seen:
            continue
        seen.add(token)
        piece = lookup.get(token)
        if piece is None:
            piece = _first_piece(lookup, spell, token, after_space, single)
        if piece >= 0:
            mass[piece] = mass.get(piece, 0.0) + float(prob)
    return mass


_FIRST_PIECES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _first_pieces(tokenizer) -> dict[tuple[bool, bool], dict[str, int]]:
    """Per tokenizer, (after_space, single) -> {teacher string: the student piece it counts on}.

    A flat memo over `pieces_for`: the candidate loop runs for every top-k entry of every
    position, and a dict lookup is several times cheaper than the method call and the checks.
    """
    memo = _FIRST_PIECES.get(tokenizer)
    if memo is None:
        memo = _FIRST_PIECES[tokenizer] = {(a, s): {} for a in (False, True) for s in (False, True)}
    return memo


def _first_piece(lookup: dict[str, int], spell, token: str, after_space: bool, single: bool) -> int:
    """The first student piece `token` spells here, -1 when it spells none (or, for a 1:1 span,
    more than one); remembered in `lookup`."""
    spelled = spell(token, after_space)
    piece = spelled[0] if spelled and (not single or len(spelled) == 1) else -1
    if len(lookup) > 500_000:
        lookup.clear()
    lookup[token] = piece
    return piece


_WHITESPACE_RUN = re.compile(r"\s+")


def _whitespace_run_ends(text: str) -> list[int]:
    """Position p (0..len) -> the position after the whitespace run holding or starting at p, else p."""
    ends = list(range(len(text) + 1))
    for match in _WHITESPACE_RUN.finditer(text):
        start, end = match.span()
        ends[start:end] = [end] * (end - start)
    return ends


def _dp_fallback(teachers, pieces, teacher_tokens, candidates, student, student_tokenizer, entries, kinds, derived):
    """Authors' DTW + transfer on one region where the texts differ."""
    from harness.align.faithful_fast import align_faithful_detailed

    if isinstance(student_tokenizer, SentencePieceTokenizer):
        vocab, strings = student_tokenizer.vocab(), [student.tokens[k] for k in pieces]
    else:  # token texts with spaces written '▁', the way the DTW and its transfer rule compare them
        vocab, strings = _marker_vocab(student_tokenizer), [student.tokens[k].replace(" ", "▁") for k in pieces]
    targets, is_derived = align_faithful_detailed(
        [teacher_tokens[i] for i in teachers],
        [candidates[i] for i in teachers],
        strings,
        vocab,
    )
    for k, string, target, d in zip(pieces, strings, targets, is_derived):
        # the student's own token must be the one its text names (a byte piece's text names another)
        if d and target and vocab.get(string) == student.ids[k]:
            entries[k] = [(vocab[t], float(p)) for t, p in target.items()]
            kinds[k] = KIND_DP
            derived[k] = True


_MARKER_VOCABS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _marker_vocab(tokenizer) -> dict[str, int]:
    """A student's token texts with ' ' written '▁' -> id (one dict per tokenizer: the DTW's
    transfer memo is kept per vocabulary object)."""
    vocab = _MARKER_VOCABS.get(tokenizer)
    if vocab is None:
        vocab = _MARKER_VOCABS[tokenizer] = {text.replace(" ", "▁"): i for text, i in text_ids(tokenizer).items()}
    return vocab
