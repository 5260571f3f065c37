"""Teacher accuracy from store rows: first sample, majority vote and any-correct, under both answer rules."""

from __future__ import annotations

import collections
from typing import Any, Iterable

from harness import answers


def compute_stats(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Per-question accuracies from rows holding question_id, sample_index, text, answer, correct
    and correct_faithful.

    - first sample: the sample with the lowest sample_index of each question;
    - majority vote: the most frequent extracted answer of each question (ties: the answer seen
      first in sample order; samples with no answer do not vote), right if the samples giving it
      are right under that rule. The corrected vote is over the `answer` column, the faithful
      vote over the authors' last number of `text`;
    - any correct: questions with at least one correct sample.
    """
    by_question: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for row in rows:
        by_question[row["question_id"]].append(row)
    total = sum(len(v) for v in by_question.values())
    counts = collections.Counter()
    for samples in by_question.values():
        samples.sort(key=lambda r: r["sample_index"])
        counts["first"] += samples[0]["correct"]
        counts["first_faithful"] += samples[0]["correct_faithful"]
        counts["any"] += any(r["correct"] for r in samples)
        counts["any_faithful"] += any(r["correct_faithful"] for r in samples)
        counts["correct"] += sum(r["correct"] for r in samples)
        counts["correct_faithful"] += sum(r["correct_faithful"] for r in samples)
        counts["majority"] += _vote_is_correct(samples, [r["answer"] for r in samples], "correct")
        last = [answers.authors_last_number(r["text"]) for r in samples]
        counts["majority_faithful"] += _vote_is_correct(samples, last, "correct_faithful")
    n = len(by_question)

    def rate(key: str, denominator: int) -> float | None:
        return round(counts[key] / denominator, 6) if denominator else None

    return {
        "questions": n,
        "samples": {"total": total, "correct": counts["correct"], "correct_faithful": counts["correct_faithful"],
                    "per_question": round(total / n, 3) if n else None},
        "first_sample_accuracy": {"corrected": rate("first", n), "faithful": rate("first_faithful", n)},
        "majority_vote_accuracy": {"corrected": rate("majority", n), "faithful": rate("majority_faithful", n)},
        "questions_with_correct_sample": {"corrected": counts["any"], "faithful": counts["any_faithful"]},
        "sample_accuracy": {"corrected": rate("correct", total), "faithful": rate("correct_faithful", total)},
    }


def _vote_is_correct(samples: list[dict[str, Any]], votes: list[Any], verdict: str) -> bool:
    """Majority over `votes` (None abstains; a tie goes to the answer seen first in sample order),
    judged by the `verdict` column of a sample that gave the winning answer: every sample with the
    same extracted answer gets the same verdict under that rule."""
    counts: dict[Any, int] = {}
    for v in votes:
        if v is not None:
            counts[v] = counts.get(v, 0) + 1
    if not counts:
        return False
    best = max(counts.values())
    winner = next(v for v, c in counts.items() if c == best)  # dicts keep first-seen order
    return bool(next(r[verdict] for r, v in zip(samples, votes) if v == winner))
