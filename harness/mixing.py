"""The four training formats and how they are mixed into micro-batches: the authors' implicit mix,
or explicit weights. Core: the formats stage reports the mix, the trainer draws its batches from it.

Pure functions over record indices: a `MicroBatch` names a format and the positions of its records
in that format's record list (shard order); the trainer turns them into tensors.

`authors_micro_batches` is `get_train_batches` (authors-code-protocol.md §2, "Batching"):
1. per format, in the order zero_shot_answer_only, zero_shot_cot, in_context_answer_only,
   in_context_cot, consecutive *effective* batches of `grad_accum × batch_size[format]` records;
   an incomplete last one is dropped;
2. all effective batches shuffled (numpy legacy RNG, `seed`: their `np.random.seed(0)`);
3. each effective batch cut into `grad_accum` micro-batches, so every micro-batch has one format;
4. `fully_random`: all micro-batches shuffled again (fresh RNG, same seed); `keep_together`: the
   micro-batches of one effective batch stay consecutive (one optimizer step = one format).
There is no ratio: the mix follows from the record counts and the per-format batch sizes.

`weighted_micro_batches` is ours: each micro-batch's format is drawn with probability proportional
to its weight (by micro-batches, or by examples: weight / batch size), records are taken in a
seeded permutation per format, re-permuted at every pass.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Mapping, Sequence

from harness.errors import UsageError, check_choice, check_positive

FORMATS = ("in_context_answer_only", "in_context_cot", "zero_shot_answer_only", "zero_shot_cot")
COT_FORMATS = ("in_context_cot", "zero_shot_cot")
ANSWER_ONLY_FORMATS = ("in_context_answer_only", "zero_shot_answer_only")
IN_CONTEXT_FORMATS = ("in_context_answer_only", "in_context_cot")

# The authors' order of formats when building the batch list (it decides the shuffled order).
AUTHORS_ORDER = ("zero_shot_answer_only", "zero_shot_cot", "in_context_answer_only", "in_context_cot")
MIX_MODES = ("fully_random", "keep_together")

# src/conf/batch_size/*.yaml (micro-batch size per format) and grad_accum per size (experiments*.md).
BATCH_SIZES: dict[str, dict[str, int]] = {
    "250m": {"in_context_cot": 25, "in_context_answer_only": 35, "zero_shot_cot": 40, "zero_shot_answer_only": 60},
    "780m": {"in_context_cot": 8, "in_context_answer_only": 12, "zero_shot_cot": 18, "zero_shot_answer_only": 30},
    "3b": {"in_context_cot": 2, "in_context_answer_only": 10, "zero_shot_cot": 8, "zero_shot_answer_only": 20},
    "11b": {"in_context_cot": 2, "in_context_answer_only": 10, "zero_shot_cot": 8, "zero_shot_answer_only": 20},
}
GRAD_ACCUM = {"250m": 3, "780m": 20, "3b": 30, "11b": 20}


@dataclass(frozen=True)
class MicroBatch:
    format: str
    indices: Sequence[int]  # positions in the format's record list (a `range` for the authors' mix)


def size_config(size: str) -> tuple[dict[str, int], int]:
    """(per-format micro-batch sizes, grad_accum) of a model-size key."""
    check_choice("model size", size, BATCH_SIZES)
    return dict(BATCH_SIZES[size]), GRAD_ACCUM[size]


def _check_counts(counts: Mapping[str, int], batch_sizes: Mapping[str, int]) -> None:
    for fmt, n in counts.items():
        check_choice("format", fmt, FORMATS)
        check_positive(f"record count of {fmt}", n, allow_zero=True)
        if fmt not in batch_sizes:
            raise UsageError(f"batch sizes: no micro-batch size for {fmt}; give one of {', '.join(FORMATS)}")
        check_positive(f"micro-batch size of {fmt}", batch_sizes[fmt])


def authors_micro_batches(
    counts: Mapping[str, int],
    batch_sizes: Mapping[str, int],
    grad_accum: int,
    mix_mode: str = "fully_random",
    seed: int = 0,
) -> list[MicroBatch]:
    """The authors' epoch: format-homogeneous micro-batches (see the module docstring).

    `counts`: records per enabled format (formats left out are not trained on).
    """
    import numpy as np

    check_choice("mix mode", mix_mode, MIX_MODES)
    check_positive("grad_accum", grad_accum)
    _check_counts(counts, batch_sizes)
    effective: list[tuple[str, int]] = []  # (format, start of an effective batch)
    for fmt in AUTHORS_ORDER:
        if fmt in counts:
            size = grad_accum * batch_sizes[fmt]
            effective.extend((fmt, start) for start in range(0, counts[fmt] - size + 1, size))
    np.random.RandomState(seed).shuffle(effective)  # same permutation as np.random.seed(0); shuffle(list)
    micro = [
        MicroBatch(fmt, range(start + j * batch_sizes[fmt], start + (j + 1) * batch_sizes[fmt]))
        for fmt, start in effective
        for j in range(grad_accum)
    ]
    if mix_mode == "fully_random":
        np.random.RandomState(seed).shuffle(micro)
    return micro


def authors_size_micro_batches(counts: Mapping[str, int], size: str, mix_mode: str = "fully_random", seed: int = 0) -> list[MicroBatch]:
    """`authors_micro_batches` with the batch sizes and grad_accum of a model-size key."""
    batch_sizes, grad_accum = size_config(size)
    return authors_micro_batches(counts, batch_sizes, grad_accum, mix_mode, seed)


def weighted_micro_batches(
    counts: Mapping[str, int],
    batch_sizes: Mapping[str, int],
    weights: Mapping[str, float],
    num_micro_batches: int,
    by: str = "examples",
    seed: int = 0,
) -> list[MicroBatch]:
    """`num_micro_batches` format-homogeneous micro-batches mixed by explicit weights.

    by="examples": each format's expected share of *examples* is its weight (normalised);
    by="micro_batches": its share of micro-batches. A micro-batch is always full: records wrap
    around to a fresh permutation of the format when one pass runs out.
    """
    check_choice("weights by", by, ("examples", "micro_batches"))
    check_positive("num_micro_batches", num_micro_batches, allow_zero=True)
    _check_counts(counts, batch_sizes)
    chosen = [f for f in FORMATS if weights.get(f, 0) > 0]
    for fmt, w in weights.items():
        check_choice("format", fmt, FORMATS)
        if w < 0:
            raise UsageError(f"weight of {fmt}: {w} is not allowed; weights must be >= 0")
    if not chosen:
        raise UsageError("weights: at least one format needs a weight > 0")
    for fmt in chosen:
        if counts.get(fmt, 0) <= 0:
            raise UsageError(f"weights: {fmt} has weight {weights[fmt]} but no records")
    probs = [weights[f] / (batch_sizes[f] if by == "examples" else 1) for f in chosen]
    rng = random.Random(f"formats.mixing:{seed}")
    order: dict[str, list[int]] = {f: [] for f in chosen}
    cursor: dict[str, int] = {f: 0 for f in chosen}
    out: list[MicroBatch] = []
    for fmt in rng.choices(chosen, weights=probs, k=num_micro_batches):
        taken: list[int] = []
        while len(taken) < batch_sizes[fmt]:
            if cursor[fmt] == len(order[fmt]):
                order[fmt] = list(range(counts[fmt]))
                rng.shuffle(order[fmt])
                cursor[fmt] = 0
            take = min(batch_sizes[fmt] - len(taken), len(order[fmt]) - cursor[fmt])
            taken.extend(order[fmt][cursor[fmt] : cursor[fmt] + take])
            cursor[fmt] += take
        out.append(MicroBatch(fmt, tuple(taken)))
    return out


def authors_mix_counts(counts: Mapping[str, int], batch_sizes: Mapping[str, int], grad_accum: int) -> dict[str, int]:
    """Micro-batches per format in the authors' epoch, by arithmetic (same numbers as the list)."""
    check_positive("grad_accum", grad_accum)
    _check_counts(counts, batch_sizes)
    return {f: counts[f] // (grad_accum * batch_sizes[f]) * grad_accum for f in FORMATS if f in counts}


def composition(micro_batches: Sequence[MicroBatch], grad_accum: int | None = None) -> dict:
    """Micro-batches and examples per format, with shares; optimizer steps when grad_accum is given."""
    per: dict[str, dict[str, float]] = {}
    for mb in micro_batches:
        row = per.setdefault(mb.format, {"micro_batches": 0, "examples": 0})
        row["micro_batches"] += 1
        row["examples"] += len(mb.indices)
    total_mb = sum(r["micro_batches"] for r in per.values())
    total_ex = sum(r["examples"] for r in per.values())
    for row in per.values():
        row["share_micro_batches"] = row["micro_batches"] / total_mb
        row["share_examples"] = row["examples"] / total_ex
    out = {"micro_batches": total_mb, "examples": total_ex, "formats": {f: per[f] for f in FORMATS if f in per}}
    if grad_accum:
        out["optimizer_steps"] = -(-total_mb // grad_accum)
    return out
