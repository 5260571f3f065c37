"""Format mixing: the authors' implicit composition (130,530 micro-batches for 3B) and explicit weights."""

import collections

import numpy as np
import pytest

from harness.errors import UsageError
from harness.mixing import (
    BATCH_SIZES,
    GRAD_ACCUM,
    authors_micro_batches,
    authors_mix_counts,
    authors_size_micro_batches,
    composition,
    weighted_micro_batches,
)

# Record counts consistent with authors-code-protocol.md §1.4: 207,135 aligned correct CoT samples
# in each CoT format; answer-only formats hold one record per question with a usable sample (the
# document bounds them in [7,200, 7,499]; 7,296 questions had a correct sample).
COUNTS = {"in_context_cot": 207_135, "zero_shot_cot": 207_135, "in_context_answer_only": 7_296, "zero_shot_answer_only": 7_296}


def test_3b_reproduces_130530_micro_batches():
    micro = authors_size_micro_batches(COUNTS, "3b")
    mix = composition(micro, GRAD_ACCUM["3b"])
    per = {f: r["micro_batches"] for f, r in mix["formats"].items()}
    assert mix["micro_batches"] == 130_530 and mix["optimizer_steps"] == 4_351
    assert per == {"in_context_cot": 103_560, "zero_shot_cot": 25_890, "in_context_answer_only": 720, "zero_shot_answer_only": 360}
    assert per == authors_mix_counts(COUNTS, BATCH_SIZES["3b"], GRAD_ACCUM["3b"])
    shares = {f: round(100 * r["share_micro_batches"], 2) for f, r in mix["formats"].items()}
    assert shares == {"in_context_cot": 79.34, "zero_shot_cot": 19.83, "in_context_answer_only": 0.55, "zero_shot_answer_only": 0.28}
    by_example = {f: round(100 * r["share_examples"], 1) for f, r in mix["formats"].items()}
    assert by_example == {"in_context_cot": 48.3, "zero_shot_cot": 48.3, "in_context_answer_only": 1.7, "zero_shot_answer_only": 1.7}
    assert mix["formats"]["in_context_cot"]["examples"] == 207_120 == mix["formats"]["zero_shot_cot"]["examples"]


@pytest.mark.parametrize("size, total", [("780m", 38_220), ("250m", 13_788), ("11b", 130_520)])
def test_other_sizes_match_the_document(size, total):
    got = sum(authors_mix_counts(COUNTS, BATCH_SIZES[size], GRAD_ACCUM[size]).values())
    assert got == total == len(authors_size_micro_batches(COUNTS, size))


def authors_reference(counts, batch_sizes, ga, mix_mode):
    """The authors' get_train_batches, written out on lists of (format, position) records."""
    records = {f: [(f, i) for i in range(n)] for f, n in counts.items()}
    all_batches = []
    for fmt in ("zero_shot_answer_only", "zero_shot_cot", "in_context_answer_only", "in_context_cot"):
        if fmt in counts:
            size = ga * batch_sizes[fmt]
            all_batches += [records[fmt][i:i + size] for i in range(0, len(records[fmt]), size) if len(records[fmt][i:i + size]) == size]
    np.random.seed(0)
    np.random.shuffle(all_batches)
    micro = []
    for b in all_batches:
        chunk = len(b) // ga
        micro += [b[i:i + chunk] for i in range(0, len(b), chunk)]
    if mix_mode == "fully_random":
        np.random.seed(0)
        np.random.shuffle(micro)
    return micro


@pytest.mark.parametrize("mix_mode", ["fully_random", "keep_together"])
def test_same_order_as_the_authors_code(mix_mode):
    counts = {"in_context_cot": 1_003, "zero_shot_cot": 1_003, "in_context_answer_only": 250, "zero_shot_answer_only": 250}
    sizes, ga = BATCH_SIZES["780m"], 4
    ours = [[(mb.format, i) for i in mb.indices] for mb in authors_micro_batches(counts, sizes, ga, mix_mode)]
    assert ours == authors_reference(counts, sizes, ga, mix_mode)


def test_keep_together_and_homogeneous():
    ga = GRAD_ACCUM["3b"]
    micro = authors_size_micro_batches({"in_context_cot": 600, "zero_shot_answer_only": 1_300}, "3b", mix_mode="keep_together")
    assert len(micro) == (10 + 2) * ga
    for start in range(0, len(micro), ga):
        window = micro[start:start + ga]
        assert len({mb.format for mb in window}) == 1
        assert [i for mb in window for i in mb.indices] == list(range(window[0].indices[0], window[0].indices[0] + ga * len(window[0].indices)))
    seen = collections.Counter((mb.format, i) for mb in micro for i in mb.indices)
    assert max(seen.values()) == 1 and sum(seen.values()) == 600 + 1_200  # the last 100 zs_ao records dropped


def test_weighted_micro_batches():
    counts = {"in_context_cot": 500, "zero_shot_cot": 500, "zero_shot_answer_only": 40}
    sizes = BATCH_SIZES["3b"]
    weights = {"in_context_cot": 0.5, "zero_shot_cot": 0.3, "zero_shot_answer_only": 0.2}
    micro = weighted_micro_batches(counts, sizes, weights, 20_000, by="examples", seed=0)
    assert micro == weighted_micro_batches(counts, sizes, weights, 20_000, by="examples", seed=0)
    assert micro != weighted_micro_batches(counts, sizes, weights, 20_000, by="examples", seed=1)
    mix = composition(micro)
    for fmt, w in weights.items():
        assert mix["formats"][fmt]["share_examples"] == pytest.approx(w, abs=0.02)
        assert all(len(mb.indices) == sizes[fmt] for mb in micro if mb.format == fmt)
    # every record once per pass: the first 25 zs_ao micro-batches cover all 40 records 10 times over
    zs_ao = [i for mb in micro if mb.format == "zero_shot_answer_only" for i in mb.indices][:400]
    assert collections.Counter(zs_ao) == {i: 10 for i in range(40)}
    by_mb = composition(weighted_micro_batches(counts, sizes, weights, 20_000, by="micro_batches"))
    assert by_mb["formats"]["zero_shot_cot"]["share_micro_batches"] == pytest.approx(0.3, abs=0.02)


def test_mixing_errors():
    with pytest.raises(UsageError, match="model size: '1b'.*250m, 780m, 3b, 11b"):
        authors_size_micro_batches(COUNTS, "1b")
    with pytest.raises(UsageError, match="mix mode"):
        authors_micro_batches(COUNTS, BATCH_SIZES["3b"], 30, mix_mode="same_question")
    with pytest.raises(UsageError, match="no records"):
        weighted_micro_batches({"zero_shot_cot": 0}, BATCH_SIZES["3b"], {"zero_shot_cot": 1.0}, 5)
    with pytest.raises(UsageError, match="weights must be >= 0"):
        weighted_micro_batches(COUNTS, BATCH_SIZES["3b"], {"zero_shot_cot": -1.0, "in_context_cot": 1.0}, 5)
