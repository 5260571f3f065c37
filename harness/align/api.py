"""One entry point for both modes: teacher tokens + top-k in, student targets out.

    aligner = Aligner(AlignConfig(mode="exact"))
    seq = aligner.align(teacher_tokens, topk, student_text)
    arrays = to_fixed_k(seq, k=5)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from harness.align.exact import ExactConfig, align_exact
from harness.errors import check_choice, check_positive
from harness.align.faithful_fast import align_faithful_detailed
from harness.align.framing import FRAMINGS
from harness.align.targets import KIND_ONE_TO_ONE, AlignedSequence, from_string_targets
from harness.tokenizers import SentencePieceTokenizer, Tokenized

MODES = ("faithful", "exact")


@dataclass(frozen=True)
class AlignConfig:
    """`mode`: "faithful" (the authors' DTW, bit-for-bit) or "exact" (offset spans, ours).
    `framing`: "authors" to apply their ' step'/'\\n' frame checks, "none" otherwise.
    `k`: width of the fixed-K output arrays. `exact`: options of exact mode only."""

    mode: str = "exact"
    framing: str = "none"
    k: int = 5
    exact: ExactConfig = field(default_factory=ExactConfig)

    def __post_init__(self):
        check_choice("--mode", self.mode, MODES)
        check_choice("--framing", self.framing, FRAMINGS)
        check_positive("--k", self.k)


class Aligner:
    """Holds the student tokenizer (loaded once per process) and applies one configuration."""

    def __init__(self, config: AlignConfig = AlignConfig(), student_tokenizer: SentencePieceTokenizer | None = None):
        self.config = config
        self.student_tokenizer = student_tokenizer or SentencePieceTokenizer()
        self.vocab = self.student_tokenizer.vocab()

    def align(
        self,
        teacher_tokens: Sequence[str],
        topk: Sequence[Sequence[tuple[str, float]]],
        student_text: str | Tokenized,
    ) -> AlignedSequence:
        student = student_text if isinstance(student_text, Tokenized) else self.student_tokenizer.encode(student_text)
        if self.config.mode == "faithful":
            targets, derived = align_faithful_detailed(teacher_tokens, topk, student.tokens, self.vocab, self.config.framing)
            return from_string_targets(targets, student.ids, derived, self.vocab, KIND_ONE_TO_ONE)
        return align_exact(teacher_tokens, topk, student, self.student_tokenizer, self.config.exact, self.config.framing)
