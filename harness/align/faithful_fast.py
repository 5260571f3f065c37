"""The authors' alignment, fast: identical path and output to `faithful_oracle`, ~100x+ quicker.

- Cost matrix: `rapidfuzz.process.cdist` with Levenshtein on the *distinct* normalised strings
  (a CoT repeats ' the', '.', numbers), expanded by fancy indexing.
- DTW + greedy backtracking: one numba-compiled function over int64 (costs are integers, so the
  sums and every tie compare exactly as the float matrix of the original does).
- Transfer: the same rule as the oracle, with each teacher step converted once.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from harness.align.errors import AlignmentError
from harness.align.framing import check_and_strip

_BIG = np.int64(1) << np.int64(62)


def cost_matrix(teacher_tokens: Sequence[str], student_tokens: Sequence[str]) -> np.ndarray:
    """int32 [n, m] Levenshtein costs between ' '-stripped teacher and '▁'-stripped student strings."""
    small, t_codes, s_codes = _distinct_costs(teacher_tokens, student_tokens)
    return small[t_codes[:, None], s_codes[None, :]]


def _distinct_costs(teacher_tokens: Sequence[str], student_tokens: Sequence[str]):
    """Costs between distinct strings only (a CoT repeats ' the', '.', numbers) plus index codes."""
    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cdist

    t_uniq, t_codes = _distinct(teacher_tokens, " ")
    s_uniq, s_codes = _distinct(student_tokens, "▁")
    small = cdist(t_uniq, s_uniq, scorer=Levenshtein.distance, dtype=np.int32, workers=1)
    return small, t_codes, s_codes


def _distinct(tokens: Sequence[str], marker: str) -> tuple[list[str], np.ndarray]:
    """Distinct tokens with `marker` removed, and each token's index among them."""
    distinct = list(dict.fromkeys(tokens))
    index = {token: k for k, token in enumerate(distinct)}
    return [token.replace(marker, "") for token in distinct], np.fromiter(map(index.__getitem__, tokens), np.int64, len(tokens))


def _dtw_path_py(small, t_codes, s_codes):  # numba compiles this; runs as plain Python too
    """DTW over cost(i, j) = small[t_codes[i], s_codes[j]] and the authors' greedy backtracking.

    Returns the path (teacher indices, student indices, from the last cell to (0, 0)) and, per
    student token, its only teacher index on the path or -1 when it has several.
    """
    n = t_codes.shape[0]
    m = s_codes.shape[0]
    D = np.full((n + 1, m + 1), _BIG, dtype=np.int64)  # int32 costs summed in int64
    D[0, 0] = 0
    for i in range(n):
        row = small[t_codes[i]]
        for j in range(m):
            best = D[i, j + 1]
            if D[i + 1, j] < best:
                best = D[i + 1, j]
            if D[i, j] < best:
                best = D[i, j]
            D[i + 1, j + 1] = row[s_codes[j]] + best
    path_i = np.empty(n + m, dtype=np.int64)
    path_j = np.empty(n + m, dtype=np.int64)
    k = 0
    i, j = n - 1, m - 1
    while i > 0 or j > 0:
        path_i[k] = i
        path_j[k] = j
        k += 1
        diag = D[i, j] if (i > 0 and j > 0) else _BIG
        up = D[i, j + 1] if i > 0 else _BIG
        left = D[i + 1, j] if j > 0 else _BIG
        if diag <= up and diag <= left:  # np.argmin order: diagonal, up, left
            i -= 1
            j -= 1
        elif up <= left:
            i -= 1
        else:
            j -= 1
    path_i[k] = 0
    path_j[k] = 0
    k += 1
    single = np.full(m, -1, dtype=np.int64)
    count = np.zeros(m, dtype=np.int64)
    for p in range(k):
        count[path_j[p]] += 1
        single[path_j[p]] = path_i[p]
    for jj in range(m):
        if count[jj] != 1:
            single[jj] = -1
    return path_i[:k], path_j[:k], single


_dtw_path_compiled = None


def _compiled():
    global _dtw_path_compiled
    if _dtw_path_compiled is None:
        import numba

        _dtw_path_compiled = numba.njit(cache=True, nogil=True)(_dtw_path_py)
    return _dtw_path_compiled


def dtw_path(teacher_tokens: Sequence[str], student_tokens: Sequence[str]):
    """(path teacher indices, path student indices, single teacher index per student or -1)."""
    small, t_codes, s_codes = _distinct_costs(teacher_tokens, student_tokens)
    return _compiled()(small, t_codes, s_codes)


def dtw_mapping(teacher_tokens: Sequence[str], student_tokens: Sequence[str]) -> list[list[int]]:
    """Same contract as `faithful_oracle.dtw_mapping` (used by the equality tests)."""
    n, m = len(teacher_tokens), len(student_tokens)
    if n == 0 or m == 0:
        raise AlignmentError(f"cannot run DTW on {n} teacher and {m} student tokens")
    path_i, path_j, _ = dtw_path(teacher_tokens, student_tokens)
    mapping: list[list[int]] = [[] for _ in range(m)]
    for i, j in zip(path_i.tolist(), path_j.tolist()):
        mapping[j].append(i)
    return [sorted(indices) for indices in mapping]


def align_faithful_fast(
    teacher_tokens: Sequence[str],
    candidates: Sequence[Sequence[tuple[str, float]]],
    student_tokens: Sequence[str],
    student_vocab: Mapping[str, int],
    framing: str = "none",
) -> list[dict[str, float]]:
    """Drop-in replacement for `align_faithful_oracle` (identical output, tested by property tests)."""
    return align_faithful_detailed(teacher_tokens, candidates, student_tokens, student_vocab, framing)[0]


def align_faithful_detailed(
    teacher_tokens: Sequence[str],
    candidates: Sequence[Sequence[tuple[str, float]]],
    student_tokens: Sequence[str],
    student_vocab: Mapping[str, int],
    framing: str = "none",
) -> tuple[list[dict[str, float]], list[bool]]:
    """The targets plus, per student token, whether the 1:1 transfer branch produced it."""
    teacher_tokens, candidates = check_and_strip(teacher_tokens, candidates, framing)
    m = len(student_tokens)
    if m == 0:
        return [], []
    if not teacher_tokens:
        raise AlignmentError(f"cannot run DTW on 0 teacher and {m} student tokens")
    single = dtw_path(teacher_tokens, student_tokens)[2].tolist()
    out: list[dict[str, float]] = [{student: 1.0} for student in student_tokens]
    derived = [False] * m
    convert = _converter(student_vocab).__getitem__
    for j, i in enumerate(single):
        if i < 0 or student_tokens[j] != teacher_tokens[i].replace(" ", "▁"):
            continue
        target: dict = {}
        keep_first = target.setdefault  # first occurrence wins; OOV entries all land on None
        for token, prob in candidates[i]:
            keep_first(convert(token), prob)
        target.pop(None, None)
        out[j] = target
        derived[j] = True
    return out, derived


class _Converter(dict):
    """Memo for one vocabulary: teacher token → its '▁' spelling if in the vocabulary, else None."""

    def __init__(self, vocab: Mapping[str, int]):
        super().__init__()
        self.vocab = vocab

    def __missing__(self, token: str):
        converted = token.replace(" ", "▁")
        value = converted if converted in self.vocab else None
        if len(self) > 1_000_000:
            self.clear()
        self[token] = value
        return value


_CONVERTERS: dict[int, _Converter] = {}


def _converter(vocab: Mapping[str, int]) -> _Converter:
    found = _CONVERTERS.get(id(vocab))
    if found is None or found.vocab is not vocab:
        found = _CONVERTERS[id(vocab)] = _Converter(vocab)
    return found
