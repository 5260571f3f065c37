"""The tokenizer layer: ids match the reference libraries, offsets tile the text."""

from __future__ import annotations

import pytest

@pytest.fixture(scope="module")
def teacher(data_dir):
    from harness.tokenizers import TiktokenTokenizer

    return TiktokenTokenizer("p50k_base")


@pytest.fixture(scope="module")
def student(data_dir):
    from harness.tokenizers import SentencePieceTokenizer

    return SentencePieceTokenizer()


TEXTS = [
    "If Natalia sold 48/2 = 24 clips.\nThe answer is $12,000",
    "  leading and trailing  \n\n",
    "Ünïcödé ½ 5² ﬁ — “quote” 1,000.5 🙂x {brace}",
    "\nHello",
    "a",
    "",
]


@pytest.mark.parametrize("text", TEXTS)
def test_tiktoken_tokens_spell_the_text(teacher, text):
    enc = teacher.encode(text)
    assert enc.starts[:1] in ((), (0,))
    for k in range(len(enc)):
        assert enc.starts[k] <= enc.ends[k]
        if k:
            assert enc.starts[k] == enc.ends[k - 1]
    assert "".join(enc.surface(k) for k in range(len(enc))) == text
    assert list(enc.ids) == teacher.encoding.encode(text)


@pytest.mark.parametrize("text", TEXTS)
def test_sentencepiece_matches_hf_t5_and_offsets_are_ordered(student, text, data_dir):
    from harness.t5_tokenizer import load

    hf = load()
    enc = student.encode(text)
    assert list(enc.ids) == hf(text)["input_ids"][:-1]  # HF appends </s>
    assert list(enc.tokens) == hf.convert_ids_to_tokens(list(enc.ids))
    for k in range(1, len(enc)):
        assert enc.starts[k] >= enc.ends[k - 1] >= enc.starts[k - 1]
    # Every non-whitespace character is covered by exactly one piece.
    covered = [0] * len(text)
    for k in range(len(enc)):
        for c in range(enc.starts[k], enc.ends[k]):
            covered[c] += 1
    assert all(covered[c] == 1 for c, ch in enumerate(text) if not ch.isspace())


def test_t5_piece_spans_include_the_whitespace_their_marker_stands_for(student):
    enc = student.encode("clips.\nThe end")
    assert enc.tokens[2] == "▁The" and enc.surface(2) == "\nThe"


def test_hf_gpt2_matches_tiktoken_gpt2(data_dir):
    from harness.tokenizers import HFTokenizer, TiktokenTokenizer

    hf, tk = HFTokenizer.gpt2(), TiktokenTokenizer("gpt2")
    for text in TEXTS:
        a, b = hf.encode(text), tk.encode(text)
        assert a.ids == b.ids
        assert "".join(a.surface(k) for k in range(len(a))) == text


def test_student_spelling_depends_on_the_preceding_whitespace(student):
    piece = student.piece
    assert [piece(i) for i in student.pieces_for("The", True)] == ["▁The"]
    assert [piece(i) for i in student.pieces_for(" The", False)] == ["▁The"]
    assert [piece(i) for i in student.pieces_for("alia", False)] == ["alia"]
    assert student.pieces_for("\n", True) == ()
    assert student.vocab()["<extra_id_0>"] == 32099 and len(student.vocab()) == 32100


def test_load_tokenizer_rejects_unknown_names():
    from harness.tokenizers import load_tokenizer

    with pytest.raises(ValueError, match="unknown tokenizer"):
        load_tokenizer("bert")
