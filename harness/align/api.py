"""One entry point for both modes: teacher tokens + top-k in, student targets out.

    aligner = Aligner(AlignConfig(mode="exact"))                      # onto T5 (the default student)
    aligner = Aligner(AlignConfig(mode="exact", student="hf-gpt2"))   # onto GPT-2 (the data dir's)
    aligner = Aligner(AlignConfig(student="hf:Qwen/Qwen2.5-0.5B"))    # onto any HF fast tokenizer
    seq = aligner.align(teacher_tokens, topk, student_text)
    arrays = to_fixed_k(seq, k=5)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Sequence

from harness.align.exact import ExactConfig, align_exact
from harness.errors import UsageError, check_choice, check_positive
from harness.align.faithful_fast import align_faithful_detailed
from harness.align.framing import FRAMINGS
from harness.align.targets import KIND_ONE_TO_ONE, AlignedSequence, from_string_targets
from harness.tokenizers import SentencePieceTokenizer, Tokenized, fingerprint, load_tokenizer

MODES = ("faithful", "exact")
IDENTITY = ("auto", "require", "off")
DEFAULT_K = 5
STUDENT_SPECS = "t5, spm:<model file>, hf-gpt2 or hf:<folder or hub id>"
_TIKTOKEN_NAMES = ("p50k_base", "cl100k_base", "r50k_base", "gpt2", "o200k_base")


def is_t5_student(spec: str) -> bool:
    """A SentencePiece model read directly (`t5`, `spm:<file>`): the student the authors' DTW targets."""
    return spec == "t5" or spec.startswith("spm:")


def check_student(spec: str) -> None:
    """The spec names a tokenizer a student model trains with (checked without loading it)."""
    if not isinstance(spec, str) or not spec:
        raise UsageError(f"--student: {spec!r} is not a tokenizer spec; use {STUDENT_SPECS}")
    if spec.startswith("tiktoken:") or spec in _TIKTOKEN_NAMES:
        raise UsageError(f"--student {spec}: a tiktoken encoding is a teacher's tokenizer, not a student's "
                         f"(students train with a Hugging Face tokenizer); use {STUDENT_SPECS}")
    if not (is_t5_student(spec) or spec == "hf-gpt2" or (spec.startswith("hf:") and len(spec) > 3)):
        raise UsageError(f"--student {spec}: unknown student tokenizer; use {STUDENT_SPECS}")


def load_student(spec: str):
    """The student tokenizer of a spec: T5 SentencePiece or a Hugging Face fast tokenizer."""
    check_student(spec)
    try:
        return load_tokenizer(spec)
    except UsageError as err:
        raise UsageError(f"--student: {err}") from None


_DATA_DIR_SPECS = ("t5", "hf-gpt2", "p50k_base", "cl100k_base", "r50k_base", "gpt2")
_FINGERPRINTS: dict[tuple[str, str, str], dict[str, Any]] = {}


def teacher_fingerprint(spec: str) -> dict[str, Any]:
    """`fingerprint` of a teacher tokenizer spec (`harness.tokenizers.load_tokenizer`)."""
    return _fingerprint_of(spec, "teacher")


def student_fingerprint(spec: str) -> dict[str, Any]:
    """`fingerprint` of a student tokenizer spec (`api.load_student`)."""
    return _fingerprint_of(spec, "student")


def _fingerprint_of(spec: str, role: str) -> dict[str, Any]:
    """The data directory's tokenizers (tiktoken encodings, T5, GPT-2) are hashed once per process;
    a folder or hub tokenizer every time (its files may change between runs)."""
    key = (spec, role, os.environ.get("SPEC_DATA_DIR", ""))
    found = _FINGERPRINTS.get(key)
    if found is None:
        found = fingerprint(load_student(spec) if role == "student" else load_tokenizer(spec))
        if spec.startswith("tiktoken:") or spec in _DATA_DIR_SPECS:
            _FINGERPRINTS[key] = found
    return dict(found)


@dataclass(frozen=True)
class AlignConfig:
    """`mode`: "faithful" (the authors' DTW, bit-for-bit; T5 students only) or "exact" (offset spans, ours).
    `framing`: "authors" to apply their ' step'/'\\n' frame checks, "none" otherwise.
    `k`: width of the fixed-K output arrays; None: 5, or for a teacher store whose steps keep their
    own token (`top_has_token`), its `sampling.top_k + 1` (resolved before any work, then recorded).
    `student`: the student tokenizer spec (`t5`, `spm:<file>`, `hf-gpt2`, `hf:<folder or hub id>`).
    `identity`: teacher stores only, exact mode: "auto" takes the identity path (teacher ids are
    student ids, no alignment) for rows whose teacher tokenizer has the student's vocabulary hash;
    "require" refuses a store whose tokenizer differs; "off" always aligns by text.
    `exact`: options of exact mode only."""

    mode: str = "exact"
    framing: str = "none"
    k: int | None = None
    exact: ExactConfig = field(default_factory=ExactConfig)
    student: str = "t5"
    identity: str = "auto"

    def __post_init__(self):
        check_choice("--mode", self.mode, MODES)
        check_choice("--framing", self.framing, FRAMINGS)
        check_choice("--identity", self.identity, IDENTITY)
        check_positive("--k", self.k)
        check_student(self.student)
        if self.mode == "faithful" and not is_t5_student(self.student):
            raise UsageError(f"--mode faithful is the authors' DTW onto T5 SentencePiece pieces; --student {self.student} is not T5: use --mode exact")
        if self.mode == "faithful" and self.identity == "require":
            raise UsageError("--identity require takes the place of exact alignment; use it with --mode exact")

    def with_k(self, default: int = DEFAULT_K) -> "AlignConfig":
        """This config with `k` set (`default` where it is None)."""
        return self if self.k is not None else replace(self, k=default)


class Aligner:
    """Holds the student tokenizer (loaded once per process) and applies one configuration."""

    def __init__(self, config: AlignConfig = AlignConfig(), student_tokenizer=None):
        self.config = config.with_k()
        self.student_tokenizer = student_tokenizer or load_student(config.student)
        if config.mode == "faithful" and not isinstance(self.student_tokenizer, SentencePieceTokenizer):
            raise UsageError(f"--mode faithful is the authors' DTW onto T5 SentencePiece pieces; the student tokenizer "
                             f"{self.student_tokenizer.name} is not T5: use --mode exact")

    @cached_property
    def vocab(self) -> dict[str, int]:
        return self.student_tokenizer.vocab()

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

    def align_same_tokenizer(self, sample, student_text: str | Tokenized | None = None) -> AlignedSequence | None:
        """The identity path for a teacher sample whose tokenizer is the student's (`identity.py`):
        the targets, or None where the teacher's tokens are not the student's tokenization of its text."""
        from harness.align.identity import align_identity

        text = sample.student_text if student_text is None else student_text
        student = text if isinstance(text, Tokenized) else self.student_tokenizer.encode(text)
        return align_identity(sample, student, self.student_tokenizer, self.config.exact)
