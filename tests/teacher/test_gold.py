"""The gold teacher on real GSM8K train: text layout, tokens that spell it, one-hot targets, resume."""

from __future__ import annotations

import pytest

from harness.errors import ResumeError, UsageError
from harness.teacher.gold import build_gold_store, gold_record, gold_text, load_surface_tokenizer, surface_tokens
from harness.teacher.store import TeacherStore


@pytest.fixture(scope="module")
def train(data_dir):
    from harness.data import load

    return load("gsm8k", "train")[:6]


def test_gold_text_is_the_rationale_then_the_answer_line(train):
    for example in train:
        text = gold_text(example)
        final = example.gold_raw.rsplit("####", 1)[1].strip()
        assert text == example.rationale + f"\nThe answer is {final}"
        assert "<<" not in text and "####" not in text and not text.endswith("\n")


@pytest.mark.parametrize("spec", ["t5", "tiktoken:p50k_base"])
def test_tokens_spell_the_text_one_hot_with_the_tokenizer_ids(train, spec):
    from harness.tokenizers import load_tokenizer

    reference = load_tokenizer(spec)
    tokenizer = load_surface_tokenizer(spec)
    for example in train:
        rec = gold_record(example, tokenizer, spec)
        assert rec.problem() is None
        assert "".join(rec.tokens) == rec.text
        assert rec.token_ids == list(reference.encode(rec.text).ids)
        assert rec.top_tokens == [[t] for t in rec.tokens] and rec.top_ids == [[i] for i in rec.token_ids]
        assert rec.token_logprobs == [0.0] * len(rec.tokens) and rec.top_logprobs == [[0.0]] * len(rec.tokens)
        assert (rec.targets, rec.prompt_id, rec.teacher_model, rec.teacher_tokenizer) == ("onehot", "gold", "gold", spec)
        assert (rec.question_id, rec.sample_index, rec.gold) == (example.id, 0, example.answer)
        assert rec.correct and rec.correct_faithful and rec.answer == example.answer


def test_t5_surfaces_carry_the_whitespace_their_piece_stands_for(train):
    rec = gold_record(train[0], load_surface_tokenizer("t5"), "t5")
    starts = [t for t in rec.tokens if t.startswith("\n")]  # "▁X" after a newline covers "\nX"
    assert len(starts) == rec.text.count("\n") and all(len(t) > 1 for t in starts)


def test_surface_tokens_fill_gaps_the_tokenizer_skipped():
    class Spans:
        starts, ends = [0, 3], [1, 4]

    assert surface_tokens("a  b  ", Spans()) == ["a", "  b  "]


def test_build_gold_store_is_resumable(tmp_path, train):
    root = tmp_path / "gold"
    first = build_gold_store(root, examples=train, limit=3)
    assert (first["written"], first["skipped"]) == (3, 0)
    again = build_gold_store(root, examples=train)
    assert (again["written"], again["skipped"]) == (3, 3)
    store = TeacherStore.load(root)
    assert len(store) == 6 and store.done_keys() == {(e.id, 0) for e in train}
    stats = store.stats()
    assert stats["first_sample_accuracy"] == {"corrected": 1.0, "faithful": 1.0}
    assert (root / "stats.json").is_file()
    with pytest.raises(ResumeError, match="teacher.tokenizer"):
        build_gold_store(root, "tiktoken:p50k_base", examples=train)


def test_build_gold_store_reads_gsm8k_train_itself(tmp_path, data_dir):
    summary = build_gold_store(tmp_path / "gold", limit=2)
    assert summary == {"store": str(tmp_path / "gold"), "written": 2, "skipped": 0, "total": 2}
    ids = [r.question_id for r in TeacherStore.load(tmp_path / "gold").iter_records()]
    assert ids == ["gsm8k/train/0", "gsm8k/train/1"]


def test_unknown_tokenizer_spec_says_what_to_do():
    with pytest.raises(UsageError, match="load_tokenizer"):
        load_surface_tokenizer("hf:/nowhere")
