"""Demo selection: seeded per record, order-independent; corrected never draws the question or dev."""

import pytest

from harness.data import load
from harness.errors import UsageError
from harness.formats import DemoPool, load_pool, select_demos
from harness.formats.demos import record_key

from formats_testutil import item


def synthetic_pool(n: int = 12):
    return [item(i, f"Made-up question number {i}?", f"{i} + 0 = <<{i}+0={i}>>{i}\n#### {i}") for i in range(n)]


def test_seeded_and_order_independent():
    pool = DemoPool(synthetic_pool())
    q = pool.examples[3]
    first = [select_demos(pool, 0, "in_context_cot", q, k) for k in range(5)]
    again = [select_demos(pool, 0, "in_context_cot", q, k) for k in reversed(range(5))][::-1]
    assert first == again
    assert all(len({d.id for d in ds}) == 4 for ds in first)  # without replacement
    assert select_demos(pool, 1, "in_context_cot", q, 0) != first[0] or select_demos(pool, 2, "in_context_cot", q, 0) != first[0]
    assert pool.draw(0, record_key("in_context_cot", q.id, 0), q) == first[0]


def test_faithful_pool_may_draw_the_question_itself():
    pool = DemoPool(synthetic_pool(5))
    q = pool.examples[0]
    drawn = {d.id for k in range(50) for d in select_demos(pool, 0, "in_context_cot", q, k)}
    assert q.id in drawn


def test_corrected_synthetic_pool_excludes_self_and_banned():
    examples = synthetic_pool(8)
    dup = item(99, examples[1].question, examples[1].gold_raw)  # same text as item 1, other id
    pool = DemoPool(examples + [dup], banned_texts=frozenset({"made up question number 2"}), avoid_self=True)
    for k in range(200):
        ids = {d.id for d in select_demos(pool, 0, "in_context_answer_only", examples[1], k)}
        assert not ids & {examples[1].id, dup.id, examples[2].id}
    with pytest.raises(UsageError, match="fewer than 4 usable demos"):
        DemoPool(examples[:4], avoid_self=True).draw(0, "k", examples[0])


def test_real_pools(data_dir):
    """The real pools (read from the data directory, nothing copied): sizes and exclusions."""
    train = load("gsm8k", "train")
    dev = load("gsm8k", "dev")
    faithful, corrected = load_pool("faithful"), load_pool("corrected")
    assert len(faithful.examples) == len(train) == 7473
    dev_ids = {e.id for e in dev}
    assert not dev_ids & {e.id for e in corrected.examples}
    # Questions whose demos are most at risk: every dev item (if ever used) and a spread of train items.
    targets = dev + train[::97]
    for q in targets:
        for k in range(3):
            for fmt in ("in_context_cot", "in_context_answer_only"):
                ids = {d.id for d in select_demos(corrected, 0, fmt, q, k)}
                assert q.id not in ids and not ids & dev_ids
