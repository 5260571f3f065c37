"""What every mode produces per student token, the fixed-K arrays training reads, and the statistics.

A position's target is an ordered list of (student id, probability). It is *soft* when it is not
a plain one-hot (several entries, or one entry below 1). *Captured mass* is the teacher
probability that reached the target from the teacher's top-k (0 for a one-hot fallback).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Mapping, Sequence

import numpy as np

# Where a position's target came from.
KIND_ONE_TO_ONE = "1:1"  # teacher distribution mapped onto the student token
KIND_FIRST_PIECE = "1:n first piece"  # exact mode: first student piece of a longer teacher token
KIND_DP = "dp fallback"  # exact mode: region where the texts disagree, aligned by the authors' DTW
KIND_ONE_HOT = "one-hot"  # no exact correspondence: the student's own token with probability 1
KIND_IDENTITY = "identity"  # same tokenizer: the teacher step's top-k ids as they are


@dataclass
class AlignedSequence:
    """Targets for one student sequence (EOS not included)."""

    student_ids: list[int]
    entries: list[list[tuple[int, float]]]
    kinds: list[str]
    derived: list[bool]  # True where the probabilities come from the teacher
    tail: list[float] | None = None  # missing mass per position, when the tail bucket is on

    def __len__(self) -> int:
        return len(self.student_ids)


def from_string_targets(
    targets: Sequence[Mapping[str, float]],
    student_ids: Sequence[int],
    derived: Sequence[bool],
    vocab: Mapping[str, int],
    kind: str = KIND_ONE_TO_ONE,
) -> AlignedSequence:
    """Convert the authors' {T5 token string: prob} dicts into id entries."""
    entries, kinds = [], []
    for target, is_derived in zip(targets, derived):
        entries.append([(vocab[token], float(prob)) for token, prob in target.items()])
        kinds.append(kind if is_derived else KIND_ONE_HOT)
    return AlignedSequence(list(student_ids), entries, kinds, list(derived))


def is_soft(entries: Sequence[tuple[int, float]]) -> bool:
    return not (len(entries) == 1 and entries[0][1] == 1.0)


def to_fixed_k(seq: AlignedSequence, k: int, pad_id: int = 0) -> dict[str, np.ndarray]:
    """[T, K] ids / probs / mask, highest probability first (stable), padded with `pad_id`, 0.0, False."""
    if k < 1:
        raise ValueError(f"K must be >= 1, not {k}")
    flat_ids: list[int] = []
    flat_probs: list[float] = []
    widths: list[int] = []
    pad_ids, pad_probs = [pad_id] * k, [0.0] * k
    for entries in seq.entries:
        ranked = entries if len(entries) == 1 else sorted(entries, key=_by_prob)[:k]
        width = len(ranked)
        widths.append(width)
        for token_id, prob in ranked:
            flat_ids.append(token_id)
            flat_probs.append(prob)
        flat_ids.extend(pad_ids[width:])
        flat_probs.extend(pad_probs[width:])
    n = len(seq)
    ids = np.array(flat_ids, dtype=np.int32).reshape(n, k)
    probs = np.array(flat_probs, dtype=np.float32).reshape(n, k)
    mask = np.arange(k)[None, :] < np.array(widths, dtype=np.int64).reshape(n, 1)
    out = {"student_ids": np.asarray(seq.student_ids, dtype=np.int32), "topk_ids": ids, "topk_probs": probs, "topk_mask": mask}
    if seq.tail is not None:
        out["tail_mass"] = np.asarray(seq.tail, dtype=np.float32)
    return out


def _by_prob(entry: tuple[int, float]) -> float:
    return -entry[1]


def stored_k(entries: Sequence[Sequence[tuple[int, float]]], k: int, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The [P, K] arrays `align run` writes for P positions: ids (int32), probabilities rounded to
    6 decimals (float64) and a 0/1 mask (int8); each position's entries most probable first (ties
    keep their order, as a stable sort on -p), cut at K, padded with `pad_id`, 0.0, 0.

    One vectorised pass over all positions: a Python loop per position was most of the writer's time.
    """
    n_positions = len(entries)
    widths = np.fromiter(map(len, entries), np.int64, n_positions)
    flat = list(chain.from_iterable(entries))
    ids = np.fromiter(map(itemgetter(0), flat), np.int64, len(flat))
    probs = np.fromiter(map(itemgetter(1), flat), np.float64, len(flat))
    position = np.repeat(np.arange(n_positions), widths)
    order = np.lexsort((-probs, position))  # stable; positions stay where they were
    rank = np.arange(len(flat)) - np.repeat(np.cumsum(widths) - widths, widths)
    top = rank < k
    rows, cols, src = position[top], rank[top], order[top]
    out_ids = np.full((n_positions, k), pad_id, dtype=np.int32)
    out_ids[rows, cols] = ids[src]
    out_probs = np.zeros((n_positions, k))
    out_probs[rows, cols] = round6(probs[src])
    mask = (np.arange(k)[None, :] < widths[:, None]).astype(np.int8)
    return out_ids, out_probs, mask


def round6(values: np.ndarray) -> np.ndarray:
    """Python's `round(v, 6)` on every value, vectorised. rint(v * 1e6) / 1e6 gives the same double
    unless v * 1e6 lies within 1e-6 of a half (then the product's rounding error could matter):
    those few, and any value too large for that bound, go through `round` itself."""
    values = np.asarray(values, dtype=np.float64)
    scaled = values * 1e6
    out = np.rint(scaled) / 1e6
    doubtful = (np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6) | ~(np.abs(values) < 1e3)
    if doubtful.any():
        out[doubtful] = [round(v, 6) for v in values[doubtful].tolist()]
    return out


@dataclass
class AlignmentStats:
    """Running totals over sequences; `summary()` gives the reported fractions."""

    sequences: int = 0
    rejected: int = 0
    positions: int = 0
    soft: int = 0
    multi_entry: int = 0
    derived: int = 0
    captured_mass: float = 0.0
    kinds: dict[str, int] = field(default_factory=dict)

    def add(self, seq: AlignedSequence) -> None:
        self.sequences += 1
        self.positions += len(seq)
        for entries, kind, derived in zip(seq.entries, seq.kinds, seq.derived):
            self.soft += is_soft(entries)
            self.multi_entry += len(entries) > 1
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            if derived:
                self.derived += 1
                self.captured_mass += sum(p for _, p in entries)

    def merge(self, other: "AlignmentStats") -> None:
        self.sequences += other.sequences
        self.rejected += other.rejected
        self.positions += other.positions
        self.soft += other.soft
        self.multi_entry += other.multi_entry
        self.derived += other.derived
        self.captured_mass += other.captured_mass
        for kind, count in other.kinds.items():
            self.kinds[kind] = self.kinds.get(kind, 0) + count

    def summary(self) -> dict:
        n = max(self.positions, 1)
        return {
            "sequences": self.sequences,
            "rejected": self.rejected,
            "positions": self.positions,
            "soft_fraction": self.soft / n,
            "multi_entry_fraction": self.multi_entry / n,
            "teacher_derived_fraction": self.derived / n,
            "mean_captured_mass": self.captured_mass / n,
            "mean_captured_mass_where_derived": self.captured_mass / max(self.derived, 1),
            "kinds": dict(sorted(self.kinds.items())),
        }

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("sequences", "rejected", "positions", "soft", "multi_entry", "derived", "captured_mass", "kinds")}

    @classmethod
    def from_dict(cls, d: dict) -> "AlignmentStats":
        return cls(**{**d, "kinds": dict(d.get("kinds", {}))})
