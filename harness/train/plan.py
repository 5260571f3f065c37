"""The order of training: epochs of format-homogeneous micro-batches, grouped into optimizer steps,
and each step's micro-batches dealt out to the processes.

Everything here is a pure function of (record counts, settings, seed, epoch), so every process
computes the same plan without communication, and a resumed run recomputes it from the position
stored in its checkpoint (epoch, step) instead of saving a data-loader state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from harness.errors import UsageError
from harness.mixing import BATCH_SIZES, GRAD_ACCUM, MicroBatch, authors_micro_batches, authors_mix_counts, weighted_micro_batches


def size_defaults(size: str | None) -> tuple[dict[str, int], int | None]:
    if size is None:
        return {}, None
    return dict(BATCH_SIZES[size]), GRAD_ACCUM[size]


@dataclass(frozen=True)
class Slot:
    """One micro-batch a process runs within a step. `weight` 0 marks a padding slot: a process
    with fewer real micro-batches than its peers repeats one with zero loss weight, so that every
    process runs the same number of forward/backward passes (DDP, FSDP and ZeRO need that)."""

    micro_batch: MicroBatch
    weight: float = 1.0


def epoch_micro_batches(
    counts: Mapping[str, int],
    batch_sizes: Mapping[str, int],
    grad_accum: int,
    *,
    mix: str,
    mix_mode: str,
    mix_weights: Mapping[str, float],
    mix_by: str,
    seed: int,
    epoch: int,
) -> list[MicroBatch]:
    """One epoch's micro-batches; their count is a multiple of `grad_accum`.

    Epoch e uses seed `seed + e` (the authors built one list and reused its order; we keep their
    order for epoch 0 and reshuffle after, as any epoch-based trainer does). The weighted mix has as
    many micro-batches per epoch as the authors' mix would have for the same counts.
    """
    counts = {f: n for f, n in counts.items() if f in batch_sizes}
    if mix == "authors":
        return authors_micro_batches(counts, batch_sizes, grad_accum, mix_mode, seed=seed + epoch)
    total = sum(authors_mix_counts(counts, batch_sizes, grad_accum).values())
    total -= total % grad_accum
    weights = {f: mix_weights.get(f, 0.0) for f in counts}
    return weighted_micro_batches(counts, batch_sizes, weights, total, by=mix_by, seed=seed + epoch)


def steps_of(micro_batches: Sequence[MicroBatch], grad_accum: int) -> list[list[MicroBatch]]:
    """Consecutive groups of `grad_accum` micro-batches: one optimizer step each."""
    return [list(micro_batches[i : i + grad_accum]) for i in range(0, len(micro_batches) - grad_accum + 1, grad_accum)]


def slots_per_process(grad_accum: int, num_processes: int) -> int:
    return -(-grad_accum // num_processes)


def deal(step: Sequence[MicroBatch], rank: int, num_processes: int) -> list[Slot]:
    """Micro-batches rank, rank + P, ... of the step, padded to the same count on every process."""
    mine = [Slot(mb) for mb in step[rank::num_processes]]
    want = slots_per_process(len(step), num_processes)
    while len(mine) < want:
        mine.append(Slot(step[0], weight=0.0))
    return mine


def check_counts(counts: Mapping[str, int], batch_sizes: Mapping[str, int], grad_accum: int) -> None:
    """At least one full optimizer step must exist, else training would silently do nothing."""
    usable = authors_mix_counts({f: counts.get(f, 0) for f in batch_sizes}, batch_sizes, grad_accum)
    if sum(usable.values()) == 0:
        need = ", ".join(f"{f}: {grad_accum * batch_sizes[f]} (have {counts.get(f, 0)})" for f in batch_sizes)
        raise UsageError(f"not enough records for one optimizer step of grad_accum {grad_accum}; records needed per format: {need}")



@dataclass(frozen=True)
class Cadence:
    """Where checkpoints fall: the marks ceil(k x span / count) training examples, k = 1, 2, …; a
    checkpoint is written at the first step boundary at or past each mark, and at the run's end.
    A fixed interval is (span=interval, count=1); `checkpoints_per_run` N is (span=planned, count=N),
    which spaces N marks evenly up to the planned end, so a run with uniform steps and at least N
    of them writes exactly N checkpoints (the last at its end)."""

    span: int
    count: int = 1

    @property
    def interval(self) -> float:
        return self.span / self.count

    def next_mark(self, examples: int) -> int:
        """The first mark past `examples`."""
        k = examples * self.count // self.span + 1
        return -(-k * self.span // self.count)


def checkpoint_cadence(
    examples_per_epoch: int,
    steps_per_epoch: int,
    *,
    epochs: int,
    every_examples: int | None,
    per_run: int | None,
    max_steps: int | None = None,
    max_examples: int | None = None,
) -> tuple[Cadence, int]:
    """(the cadence, the run's planned training examples: all epochs, cut by max_examples and by
    max_steps at the epoch's mean examples per step)."""
    planned = epochs * examples_per_epoch
    if max_examples:
        planned = min(planned, max_examples)
    if max_steps and steps_per_epoch:
        planned = min(planned, -(-max_steps * examples_per_epoch // steps_per_epoch))
    if per_run is None:
        return Cadence(int(every_examples)), planned
    return Cadence(max(planned, 1), per_run), planned
