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


# --- Hugging Face students of every family ------------------------------------------------------

HF_TEXTS = TEXTS + ["  naïve — 日本語 😀 <|endoftext|> x\n\n", "Total: 12 + 3 = 15\n\n\nYes   no\ttab", "’s “quoted” 1½"]


@pytest.fixture(scope="module")
def hf_students(tmp_path_factory, data_dir):
    from harness.tokenizers import HFTokenizer, load_tokenizer
    from tests.align.student_tokenizers import llama_like, qwen_like, t5_fast

    root = tmp_path_factory.mktemp("hf-students")
    return {"gpt2": HFTokenizer.gpt2(), "qwen-like": load_tokenizer(f"hf:{qwen_like(root / 'qwen', data_dir)}"),
            "llama-like": load_tokenizer(f"hf:{llama_like(root / 'llama', data_dir)}"),
            "t5-fast": load_tokenizer(f"hf:{t5_fast(data_dir)}")}


@pytest.mark.parametrize("family", ["gpt2", "qwen-like", "llama-like", "t5-fast"])
def test_hf_offsets_tile_the_text_and_ids_are_the_tokenizers(hf_students, family):
    tok = hf_students[family]
    for text in HF_TEXTS:
        enc = tok.encode(text)
        assert list(enc.ids) == tok.tok(text, add_special_tokens=False)["input_ids"]
        for k in range(len(enc)):
            assert enc.starts[k] <= enc.ends[k] and (k == 0 or enc.starts[k] == enc.ends[k - 1])
        if tok.folds_whitespace:  # T5-like: whitespace is dropped, every other character covered once
            assert "".join(enc.tokens).split() == text.split() or not text.strip()
        else:  # whitespace is text: the tokens spell the text exactly
            assert "".join(enc.tokens) == text


def test_hf_families_keep_or_fold_whitespace(hf_students, student):
    assert [hf_students[f].folds_whitespace for f in ("gpt2", "qwen-like", "llama-like", "t5-fast")] == [False, False, False, True]
    assert student.folds_whitespace


def test_split_characters_belong_to_the_token_holding_their_last_byte(hf_students):
    """GPT-2 writes ' 😀' as ' ' + 3 bytes, then the last byte; Llama-like as 4 byte-fallback pieces."""
    gpt2, llama = hf_students["gpt2"].encode(" 😀"), hf_students["llama-like"].encode(" 😀")
    assert gpt2.tokens == (" ", "😀")
    assert llama.tokens[-1] == "😀" and set(llama.tokens[:-1]) <= {"", " "} and len(llama) >= 4


def test_continuations_are_spelled_without_a_dummy_prefix(hf_students):
    llama, gpt2 = hf_students["llama-like"], hf_students["gpt2"]
    name = llama.piece
    assert name(llama.pieces_for("The", True)[0]) == "▁The"  # the start of a text: SentencePiece's dummy prefix
    assert "".join(name(i) for i in llama.pieces_for("The", False)) == "The"  # after '\n' or inside a word: none
    assert [name(i) for i in llama.pieces_for("\n", False)] == ["<0x0A>"]
    assert gpt2.pieces_for("\n\n", False) == (628,) and gpt2.pieces_for(" sold", False) == (2702,)  # tiktoken gpt2: " sold" -> [2702]
    assert gpt2.pieces_for(" \ufffd", False) == ()  # lost bytes spell nothing


def test_fingerprints_compare_tokenizers_across_libraries(hf_students, student, data_dir):
    from harness.tokenizers import TiktokenTokenizer, fingerprint

    gpt2 = fingerprint(hf_students["gpt2"])
    assert gpt2 == {**fingerprint(TiktokenTokenizer("gpt2")), "name": "hf:gpt2"}  # same ids, same bytes
    assert gpt2["vocab_sha256"] == fingerprint(TiktokenTokenizer("r50k_base"))["vocab_sha256"]
    others = {fingerprint(t)["vocab_sha256"] for t in (TiktokenTokenizer("p50k_base"), student, hf_students["t5-fast"],
                                                          hf_students["qwen-like"], hf_students["llama-like"])}
    assert len(others) == 5 and gpt2["vocab_sha256"] not in others
    assert fingerprint(student)["size"] == 32100 and gpt2["size"] == 50257


def test_text_ids_map_whole_token_texts_to_their_ids(hf_students):
    from harness.tokenizers import text_ids

    gpt2 = text_ids(hf_students["gpt2"])
    assert gpt2[" sold"] == 2702 and gpt2["\n"] == 198 and gpt2["<|endoftext|>"] == 50256
    assert not any("\ufffd" in t for t in gpt2)  # partial characters are not texts
    llama = text_ids(hf_students["llama-like"])
    assert llama["\n"] == hf_students["llama-like"].tok.convert_tokens_to_ids("<0x0A>")


def test_load_tokenizer_refuses_a_missing_folder_in_one_line(tmp_path):
    from harness.errors import UsageError
    from harness.tokenizers import load_tokenizer

    with pytest.raises(UsageError, match="cannot be loaded") as err:
        load_tokenizer(f"hf:{tmp_path / 'none'}")
    assert "\n" not in str(err.value)
