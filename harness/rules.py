"""Rules several stages apply to the same data, defined once: the authors' step frame, the student
text of a setting, and what counts as a log-probability or a probability.

Pure functions over plain values (lists, numpy arrays); no stage is imported here.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from harness.templates import strip_colons

# --- the authors' frame -------------------------------------------------------------------------
# Their Codex samples came from a prompt ending in "Let's think step", so every stored step list
# begins with ' step', '\n' and, after their parser's truncation, ends with '\n'/'\n\n', '\n'.

FRAME_HEAD = (" step", "\n")
FRAME_TAIL_LAST = "\n"
FRAME_TAIL_BEFORE_LAST = ("\n", "\n\n")


def has_frame_head(tokens: Sequence[str]) -> bool:
    """The step list opens with the authors' ' step', '\\n' (and is long enough to hold a frame)."""
    return len(tokens) >= 4 and tokens[0] == FRAME_HEAD[0] and tokens[1] == FRAME_HEAD[1]


def frame_problems(tokens: Sequence[str]) -> list[str]:
    """What is wrong with the authors' frame of `tokens` (empty: framed as they required)."""
    if len(tokens) < 4:
        return [f"only {len(tokens)} steps (need the 4 framing steps)"]
    problems = []
    if tokens[0] != FRAME_HEAD[0]:
        problems.append(f"step 0 is {tokens[0]!r}, not ' step'")
    if tokens[1] != FRAME_HEAD[1]:
        problems.append(f"step 1 is {tokens[1]!r}, not '\\n'")
    if tokens[-2] not in FRAME_TAIL_BEFORE_LAST:
        problems.append(f"step -2 is {tokens[-2]!r}, not '\\n' or '\\n\\n'")
    if tokens[-1] != FRAME_TAIL_LAST:
        problems.append(f"step -1 is {tokens[-1]!r}, not '\\n'")
    return problems


def is_framed(tokens: Sequence[str]) -> bool:
    return not frame_problems(tokens)


def framed_text(tokens: Sequence[str]) -> str:
    """The text the content steps spell, the frame dropped (what the authors aligned)."""
    return "".join(tokens[2:-2]).strip()


# --- the student's text ------------------------------------------------------------------------

TEXT_SETTINGS = ("faithful", "corrected")


def clean_text(text: str, setting: str) -> str:
    """A question or CoT as the formats write it and the aligner tokenizes it: `faithful` deletes
    every ": " (the authors' `get_question_or_cot` did), `corrected` only strips whitespace."""
    if setting not in TEXT_SETTINGS:
        from harness.errors import check_choice

        check_choice("setting", setting, TEXT_SETTINGS)
    return strip_colons(text) if setting == "faithful" else text.strip()


# --- log-probabilities and probabilities -----------------------------------------------------------

LOGPROB_MAX = 1e-6  # servers round: a log-probability may read a hair above 0


def logprob_problem(value) -> str | None:
    """Why `value` is not a log-probability (a finite number <= 0), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"{value!r} is not a finite number"
    if value > LOGPROB_MAX:
        return f"{value!r} is positive (expected log-probabilities <= 0)"
    return None


def first_bad_logprob(values) -> int | None:
    """Index of the first value that is not a log-probability, or None. Lists are checked at C speed
    first and walked only when something is wrong; numpy arrays are checked vectorised."""
    if isinstance(values, np.ndarray):
        bad = ~(np.isfinite(values) & (values <= LOGPROB_MAX))
        return int(np.argmax(bad)) if bad.any() else None
    if (set(map(type, values)) <= {float, int} and all(map(math.isfinite, values))
            and (not values or max(values) <= LOGPROB_MAX)):
        return None
    return next((i for i, v in enumerate(values) if logprob_problem(v) is not None), None)


PROBABILITY_TOLERANCE = 1e-6  # rounding above 1


def is_probability(value) -> bool:
    """A plain number in [0, 1] (rounding above 1 allowed), not a bool, not NaN."""
    return type(value) in (float, int) and math.isfinite(value) and 0.0 <= value <= 1.0 + PROBABILITY_TOLERANCE


def all_probabilities(values: Sequence) -> bool:
    """Every value `is_probability`, checked at C speed over the whole list."""
    return (set(map(type, values)) <= {float, int} and all(map(math.isfinite, values))
            and (not values or (min(values) >= 0.0 and max(values) <= 1.0 + PROBABILITY_TOLERANCE)))


def first_bad_probability(values: np.ndarray, tolerance: float = PROBABILITY_TOLERANCE) -> int | None:
    """Index of the first entry that is not a probability in [0, 1] (+ rounding), or None."""
    bad = ~np.isfinite(values) | (values < 0) | (values > 1 + tolerance)
    return int(np.argmax(bad)) if bad.any() else None


def probability(logprob: float) -> float:
    """exp(logprob), with the rounding above 0 read as probability 1."""
    return math.exp(min(logprob, 0.0))
