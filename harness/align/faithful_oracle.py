"""The authors' alignment, written plainly in pure Python: the test oracle for the fast version.

Steps (authors' notebook `dev_align_codex_to_flan_t5_dtw` + `src/utils.dtw`, adapted from simpledtw):
1. cost(i, j) = Levenshtein(teacher_i without any ' ', student_j without any '▁');
2. DTW: D[0,0] = 0, borders +inf, D[i+1,j+1] = cost(i,j) + min(D[i,j+1], D[i+1,j], D[i,j]);
   teacher steps are rows, student tokens columns; no gap penalty;
3. greedy backtracking from the last cell over the cropped matrix, ties diagonal → up → left,
   every visited cell recorded, then (0, 0) appended;
4. transfer, per student token j: if exactly one teacher step i lies on the path and
   student_j == teacher_i with ' ' → '▁', copy step i's (token, prob) pairs in order with
   ' ' → '▁', keeping those in the student vocabulary, first occurrence winning, no renormalisation;
   otherwise {student_j: 1.0}.
Nothing here is optimised on purpose: it must be obviously the algorithm.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from harness.align.errors import AlignmentError
from harness.align.framing import check_and_strip

INF = float("inf")
Candidates = Sequence[tuple[str, float]]


def levenshtein(a: str, b: str) -> int:
    """Unit-cost edit distance (what `editdistance.eval` computes)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def token_cost(teacher_token: str, student_token: str) -> int:
    return levenshtein(teacher_token.replace(" ", ""), student_token.replace("▁", ""))


def dtw_mapping(teacher_tokens: Sequence[str], student_tokens: Sequence[str]) -> list[list[int]]:
    """For each student token, the ascending teacher indices on the authors' DTW path."""
    n, m = len(teacher_tokens), len(student_tokens)
    if n == 0 or m == 0:
        raise AlignmentError(f"cannot run DTW on {n} teacher and {m} student tokens")
    D = [[INF] * (m + 1) for _ in range(n + 1)]
    D[0][0] = 0
    for i in range(n):
        for j in range(m):
            cost = token_cost(teacher_tokens[i], student_tokens[j])
            D[i + 1][j + 1] = cost + min(D[i][j + 1], D[i + 1][j], D[i][j])

    def cell(i: int, j: int) -> float:  # the authors' matrix after cropping row 0 and column 0
        return D[i + 1][j + 1]

    mapping: list[list[int]] = [[] for _ in range(m)]
    i, j = n - 1, m - 1
    while i > 0 or j > 0:
        mapping[j].append(i)
        diag = cell(i - 1, j - 1) if i > 0 and j > 0 else INF
        up = cell(i - 1, j) if i > 0 else INF
        left = cell(i, j - 1) if j > 0 else INF
        if diag <= up and diag <= left:  # np.argmin: the first minimum wins
            i, j = i - 1, j - 1
        elif up <= left:
            i -= 1
        else:
            j -= 1
    mapping[0].append(0)
    return [sorted(indices) for indices in mapping]


def transfer(
    mapping: Sequence[Sequence[int]],
    teacher_tokens: Sequence[str],
    candidates: Sequence[Candidates],
    student_tokens: Sequence[str],
    student_vocab: Mapping[str, int],
) -> list[dict[str, float]]:
    out: list[dict[str, float]] = []
    for j, indices in enumerate(mapping):
        student = student_tokens[j]
        if len(indices) == 1 and student == teacher_tokens[indices[0]].replace(" ", "▁"):
            target: dict[str, float] = {}
            for token, prob in candidates[indices[0]]:
                converted = token.replace(" ", "▁")
                if converted in student_vocab and converted not in target:
                    target[converted] = prob
            out.append(target)
        else:
            out.append({student: 1.0})
    return out


def align_faithful_oracle(
    teacher_tokens: Sequence[str],
    candidates: Sequence[Candidates],
    student_tokens: Sequence[str],
    student_vocab: Mapping[str, int],
    framing: str = "none",
) -> list[dict[str, float]]:
    """Per student token, an ordered {student token string: prob} dict, exactly as the authors built it."""
    teacher_tokens, candidates = check_and_strip(teacher_tokens, candidates, framing)
    if not student_tokens:
        return []
    mapping = dtw_mapping(teacher_tokens, student_tokens)
    return transfer(mapping, teacher_tokens, candidates, student_tokens, student_vocab)
