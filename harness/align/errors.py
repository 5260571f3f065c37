"""Why an alignment can fail, as exception types the runner can tell apart."""

from __future__ import annotations


class AlignmentError(ValueError):
    """The two token sequences cannot be aligned as asked."""


class FramingError(AlignmentError):
    """`framing="authors"`: the teacher steps lack the authors' ' step' / '\\n' ... '\\n' frame.

    The authors dropped such samples (484 of 207,619) and relabelled them as wrong; the runner
    records them as rejected rows rather than stopping.
    """


class TextMismatchError(AlignmentError):
    """The teacher's tokens and the student's text spell different texts (beyond T5's normalisation)."""


class VocabularyError(AlignmentError):
    """The identity path: a teacher id the student's vocabulary does not hold (the store's ids are
    not the student tokenizer's). `field` names the store column."""

    def __init__(self, message: str, field: str = "top_ids"):
        super().__init__(message)
        self.field = field
