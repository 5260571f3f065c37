"""The authors' sanity checks on Codex step lists (`framing="authors"`), shared by every mode.

Their teacher samples came from a prompt ending in "Let's think step", so the stored steps begin
with `' step'`, `'\\n'` and, after their parser's truncation, end with `'\\n'`/`'\\n\\n'`, `'\\n'`.
They rejected any sample not framed that way and dropped those four steps before aligning.
Synthetic data and modern teachers have no such frame: use `framing="none"` (the default).
"""

from __future__ import annotations

from typing import Sequence, TypeVar

from harness.align.errors import FramingError

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
    problems = []
    if len(tokens) < 4:
        problems.append(f"only {len(tokens)} steps (need the 4 framing steps)")
    else:
        if tokens[0] != " step":
            problems.append(f"step 0 is {tokens[0]!r}, not ' step'")
        if tokens[1] != "\n":
            problems.append(f"step 1 is {tokens[1]!r}, not '\\n'")
        if tokens[-2] not in ("\n", "\n\n"):
            problems.append(f"step -2 is {tokens[-2]!r}, not '\\n' or '\\n\\n'")
        if tokens[-1] != "\n":
            problems.append(f"step -1 is {tokens[-1]!r}, not '\\n'")
    if problems:
        raise FramingError("authors' framing check failed: " + "; ".join(problems))
    return list(tokens[2:-2]), list(steps[2:-2])
