"""Micro-batches dealt over processes: every micro-batch exactly once, the same slot count everywhere."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from harness.mixing import MicroBatch
from harness.train.plan import deal, epoch_micro_batches, slots_per_process, steps_of


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(1, 40), st.integers(1, 8))
def test_deal_covers_each_micro_batch_once(grad_accum, procs):
    step = [MicroBatch("zero_shot_cot", range(i, i + 1)) for i in range(grad_accum)]
    dealt = [deal(step, rank, procs) for rank in range(procs)]
    assert {len(d) for d in dealt} == {slots_per_process(grad_accum, procs)}
    real = [s.micro_batch for d in dealt for s in d if s.weight == 1.0]
    assert sorted(mb.indices.start for mb in real) == list(range(grad_accum))
    assert all(s.weight == 0.0 for d in dealt for s in d if s not in [x for x in d if x.weight == 1.0])


def test_authors_epoch_is_whole_steps_and_reshuffled_per_epoch():
    counts = {"zero_shot_cot": 100, "in_context_cot": 60}
    sizes = {"zero_shot_cot": 4, "in_context_cot": 2}
    e0 = epoch_micro_batches(counts, sizes, 3, mix="authors", mix_mode="fully_random", mix_weights={}, mix_by="examples", seed=0, epoch=0)
    e1 = epoch_micro_batches(counts, sizes, 3, mix="authors", mix_mode="fully_random", mix_weights={}, mix_by="examples", seed=0, epoch=1)
    assert len(e0) % 3 == 0 and len(steps_of(e0, 3)) == len(e0) // 3
    assert sorted((m.format, tuple(m.indices)) for m in e0) == sorted((m.format, tuple(m.indices)) for m in e1)
    assert [tuple(m.indices) for m in e0] != [tuple(m.indices) for m in e1]


@pytest.mark.parametrize("by", ["examples", "micro_batches"])
def test_weighted_epoch_is_whole_steps(by):
    counts = {"zero_shot_cot": 100, "in_context_cot": 60}
    sizes = {"zero_shot_cot": 4, "in_context_cot": 2}
    mbs = epoch_micro_batches(counts, sizes, 4, mix="weighted", mix_mode="fully_random",
                              mix_weights={"zero_shot_cot": 1, "in_context_cot": 3}, mix_by=by, seed=0, epoch=0)
    assert mbs and len(mbs) % 4 == 0



@settings(max_examples=300, deadline=None, database=None)
@given(st.integers(1, 60), st.integers(1, 40), st.integers(1, 5), st.integers(1, 20))
def test_checkpoints_per_run_gives_that_many_checkpoints(steps, step_examples, epochs, per_run):
    """The trainer's rule (a checkpoint at the first step boundary at or past each mark, and at
    the end) with uniform steps: exactly per_run checkpoints, or one per step when there are fewer."""
    from harness.train.plan import checkpoint_cadence

    cadence, planned = checkpoint_cadence(steps * step_examples, steps, epochs=epochs, every_examples=None, per_run=per_run)
    assert planned == epochs * steps * step_examples
    written, examples, mark = [], 0, cadence.next_mark(0)
    for _ in range(epochs * steps):
        examples += step_examples
        if examples >= mark:
            written.append(examples)
            mark = cadence.next_mark(examples)
    if written[-1] != examples:
        written.append(examples)
    assert len(written) == min(per_run, epochs * steps)


def test_cadence_marks_for_a_fixed_interval_and_for_a_count():
    from harness.train.plan import Cadence, checkpoint_cadence

    every = Cadence(250)
    assert [every.next_mark(x) for x in (0, 249, 250, 251, 999)] == [250, 250, 500, 500, 1000]
    assert checkpoint_cadence(1000, 10, epochs=3, every_examples=250, per_run=None) == (Cadence(250), 3000)
    thirteen, planned = checkpoint_cadence(1000, 10, epochs=3, every_examples=None, per_run=13)
    assert planned == 3000 and thirteen.interval == pytest.approx(3000 / 13)
    marks = [thirteen.next_mark(0)]
    while marks[-1] < 3000:
        marks.append(thirteen.next_mark(marks[-1]))
    assert len(marks) == 13 and marks[-1] == 3000  # ceil(k x 3000 / 13), k = 1..13
    assert checkpoint_cadence(1000, 10, epochs=3, every_examples=None, per_run=4, max_steps=5)[1] == 500
    assert checkpoint_cadence(1000, 10, epochs=3, every_examples=None, per_run=4, max_examples=700)[1] == 700
