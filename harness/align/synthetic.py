"""Synthetic teacher top-k for real texts (bench and reports), seeded.

No real teacher logprobs ship with the data, so each teacher step gets the actual token first
with a probability in [0.4, 0.99], then 4 other vocabulary tokens with decreasing probabilities
(1/2, 1/4, 1/8, 1/16 of the remaining mass). The same (text, seed) always gives the same steps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.tokenizers import TiktokenTokenizer


@dataclass(frozen=True)
class SyntheticTeacher:
    id: str
    text: str
    tokens: list[str]
    topk: list[list[tuple[str, float]]]


def synthesize(teacher: TiktokenTokenizer, text: str, sample_id: str, seed: int = 0, k: int = 5) -> SyntheticTeacher:
    rng = random.Random(f"{seed}:{sample_id}")
    encoded = teacher.encode(text)
    n_vocab = teacher.encoding.n_vocab
    steps = []
    for token_id, token in zip(encoded.ids, encoded.tokens):
        p = rng.uniform(0.4, 0.99)
        rest = 1.0 - p
        step = [(token, round(p, 4))]
        while len(step) < k:
            other = rng.randrange(n_vocab)
            if other == token_id:
                continue
            try:
                text_other = teacher.encoding.decode_single_token_bytes(other).decode("utf-8", errors="replace")
            except KeyError:
                continue
            rest /= 2
            step.append((text_other, round(rest, 4)))
        steps.append(step)
    return SyntheticTeacher(sample_id, text, list(encoded.tokens), steps)


def gsm8k_rationales(n: int | None = None, split: str = "train") -> list[tuple[str, str]]:
    """(id, gold CoT text) for the first n GSM8K examples (calculator annotations removed)."""
    from harness.data import gsm8k

    examples = gsm8k.load(split)
    if n is not None:
        examples = examples[:n]
    return [(e.id, e.rationale) for e in examples]
