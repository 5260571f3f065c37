"""The authors' sanity checks on Codex step lists (`framing="authors"`), shared by every mode.

The frame itself (' step', '\\n' ... '\\n'/'\\n\\n', '\\n') is the core rule `harness.rules.frame_problems`.
They rejected any sample not framed that way and dropped those four steps before aligning.
Synthetic data and modern teachers have no such frame: use `framing="none"` (the default).
"""

from __future__ import annotations

from typing import Sequence, TypeVar

from harness.align.errors import FramingError
from harness.rules import frame_problems

FRAMINGS = ("none", "authors")
T = TypeVar("T")


def check_and_strip(tokens: Sequence[str], steps: Sequence[T], framing: str = "none") -> tuple[list[str], list[T]]:
    """Return the content tokens and their per-step candidates, after the authors' checks if asked."""
    if framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {FRAMINGS}, not {framing!r}")
    if len(tokens) != len(steps):
        raise ValueError(f"{len(tokens)} teacher tokens but {len(steps)} top-k steps")
    if framing == "none":
        return list(tokens), list(steps)
    problems = frame_problems(tokens)
    if problems:
        raise FramingError("authors' framing check failed: " + "; ".join(problems))
    return list(tokens[2:-2]), list(steps[2:-2])
