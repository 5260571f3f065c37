"""Any student tokenizer: exact alignment onto BPE / SentencePiece HF students, and the identity
path for a teacher that shares the student's tokenizer."""

from __future__ import annotations

import math
import random

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.align.api import AlignConfig, Aligner
from harness.align.exact import ExactConfig
from harness.align.targets import KIND_FIRST_PIECE, KIND_ONE_HOT, KIND_ONE_TO_ONE
from harness.errors import UsageError

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def pieces(tok, seq):
    """(student piece, kind, {piece: p}) per position, pieces as the tokenizer writes them (Ġ, Ċ)."""
    name = tok.tok.convert_ids_to_tokens
    return [(name(i), kind, {name(t): round(p, 6) for t, p in e}) for i, e, kind in zip(seq.student_ids, seq.entries, seq.kinds)]


def steps_for(tokens, alternatives):
    """The sampled token with probability 0.6 unless `alternatives` gives its whole top list."""
    return [list(alternatives.get(t, [(t, 0.6)])) for t in tokens]


@pytest.fixture(scope="module")
def onto_gpt2(gpt2):
    return Aligner(AlignConfig(student="hf-gpt2"), gpt2)


# --- golden strings: hand-written expected targets ---------------------------------------------


def test_golden_cl100k_onto_gpt2_digits_and_blank_lines(onto_gpt2, gpt2, data_dir):
    from harness.tokenizers import TiktokenTokenizer

    text = "She paid $1234.50 for 3 pens.\n\nThe answer is 1234"
    tokens = list(TiktokenTokenizer("cl100k_base").encode(text).tokens)
    assert tokens == ["She", " paid", " $", "123", "4", ".", "50", " for", " ", "3", " pens", ".\n\n", "The", " answer", " is",
                      " ", "123", "4"]
    alternatives = {"She": [("She", 0.7), ("He", 0.2)], " paid": [(" paid", 0.6), (" spent", 0.3)], ".": [(".", 0.6), (",", 0.2)],
                    "The": [("The", 0.6), ("So", 0.3)], " is": [(" is", 0.8), (" was", 0.1)]}
    seq = onto_gpt2.align(tokens, steps_for(tokens, alternatives), text)
    one_hot = KIND_ONE_HOT
    assert pieces(gpt2, seq) == [
        ("She", KIND_ONE_TO_ONE, {"She": 0.7, "He": 0.2}),
        ("Ġpaid", KIND_ONE_TO_ONE, {"Ġpaid": 0.6, "Ġspent": 0.3}),
        ("Ġ$", KIND_ONE_TO_ONE, {"Ġ$": 0.6}),
        ("12", one_hot, {"12": 1.0}), ("34", one_hot, {"34": 1.0}),          # '123','4' vs '12','34': 2 steps : 2 pieces
        (".", KIND_ONE_TO_ONE, {".": 0.6, ",": 0.2}),
        ("50", KIND_ONE_TO_ONE, {"50": 0.6}),
        ("Ġfor", KIND_ONE_TO_ONE, {"Ġfor": 0.6}),
        ("Ġ3", one_hot, {"Ġ3": 1.0}),                                        # ' ','3' vs ' 3'
        ("Ġpens", KIND_ONE_TO_ONE, {"Ġpens": 0.6}),
        # '.\n\n' alone is GPT-2 '.', '\n\n'; before 'The' GPT-2 writes '.', '\n', '\n': no exact correspondence
        (".", one_hot, {".": 1.0}), ("Ċ", one_hot, {"Ċ": 1.0}), ("Ċ", one_hot, {"Ċ": 1.0}),
        ("The", KIND_ONE_TO_ONE, {"The": 0.6, "So": 0.3}),                   # line-initial: no space added
        ("Ġanswer", KIND_ONE_TO_ONE, {"Ġanswer": 0.6}),
        ("Ġis", KIND_ONE_TO_ONE, {"Ġis": 0.8, "Ġwas": 0.1}),
        ("Ġ12", one_hot, {"Ġ12": 1.0}), ("34", one_hot, {"34": 1.0}),        # ' ','123','4' vs ' 12','34'
    ]


def test_golden_cl100k_onto_gpt2_multibyte_characters(onto_gpt2, gpt2, data_dir):
    from harness.tokenizers import TiktokenTokenizer

    text = "Natalia sold 48 clips.\nThen café 😀 x"
    tokens = list(TiktokenTokenizer("cl100k_base").encode(text).tokens)
    assert tokens == ["N", "atal", "ia", " sold", " ", "48", " clips", ".\n", "Then", " café", " 😀", " x"]
    alternatives = {".\n": [(".\n", 0.5), (".", 0.2), ("!\n", 0.1)], " café": [(" café", 0.5), (" cafe", 0.3)],
                    " 😀": [(" 😀", 0.6), (" the", 0.2), (" \ufffd", 0.1)]}
    seq = onto_gpt2.align(tokens, steps_for(tokens, alternatives), text)
    assert pieces(gpt2, seq) == [
        ("Nat", KIND_ONE_HOT, {"Nat": 1.0}), ("alia", KIND_ONE_HOT, {"alia": 1.0}),    # 3 steps : 2 pieces
        ("Ġsold", KIND_ONE_TO_ONE, {"Ġsold": 0.6}),
        ("Ġ48", KIND_ONE_HOT, {"Ġ48": 1.0}),
        ("Ġclips", KIND_ONE_TO_ONE, {"Ġclips": 0.6}),
        # '.\n' is GPT-2's '.', '\n': the first piece gets every candidate's first piece ('.\n' and '.' add up)
        (".", KIND_FIRST_PIECE, {".": 0.7, "!": 0.1}), ("Ċ", KIND_ONE_HOT, {"Ċ": 1.0}),
        ("Then", KIND_ONE_TO_ONE, {"Then": 0.6}),
        ("ĠcafÃ©", KIND_ONE_TO_ONE, {"ĠcafÃ©": 0.5, "Ġcafe": 0.3}),                  # "é" is 2 bytes, in one GPT-2 token
        # '😀' is 4 bytes: GPT-2 writes ' ' + 3 bytes, then the last byte. ' 😀' spells both pieces,
        # so the first gets the mass of each candidate's first piece; U+FFFD (lost bytes) spells nothing.
        ("ĠðŁĺ", KIND_FIRST_PIECE, {"ĠðŁĺ": 0.6, "Ġthe": 0.2}), ("Ģ", KIND_ONE_HOT, {"Ģ": 1.0}),
        ("Ġx", KIND_ONE_TO_ONE, {"Ġx": 0.6}),
    ]


def test_golden_p50k_onto_gpt2_whitespace_is_a_token(onto_gpt2, gpt2, data_dir):
    """GPT-2 keeps newlines as tokens: a '\\n' step is 1:1 and its whitespace candidates count."""
    from harness.tokenizers import TiktokenTokenizer

    text = "Total: 12 + 3 = 15\n\nYes"
    tokens = list(TiktokenTokenizer("p50k_base").encode(text).tokens)
    assert tokens == ["Total", ":", " 12", " +", " 3", " =", " 15", "\n", "\n", "Yes"]
    steps = [[(t, 0.6)] for t in tokens]
    steps[7] = [("\n", 0.5), ("\n\n", 0.3), (" ", 0.1)]
    steps[9] = [("Yes", 0.4), ("No", 0.4), (" Yes", 0.1)]
    seq = onto_gpt2.align(tokens, steps, text)
    got = pieces(gpt2, seq)
    assert [p for p, _, _ in got] == ["Total", ":", "Ġ12", "Ġ+", "Ġ3", "Ġ=", "Ġ15", "Ċ", "Ċ", "Yes"]
    assert all(kind == KIND_ONE_TO_ONE for _, kind, _ in got)
    assert got[7][2] == {"Ċ": 0.5, "ĊĊ": 0.3, "Ġ": 0.1}
    assert got[9][2] == {"Yes": 0.4, "No": 0.4, "ĠYes": 0.1}   # at a line start ' Yes' is still its own token


def test_special_tokens_in_the_text_are_the_students_special_tokens(onto_gpt2, gpt2, data_dir):
    """Training's tokenizer reads '<|endoftext|>' in a text as the special token; the teacher
    (tiktoken, specials not allowed) spelled it as text: several steps onto one piece, one-hot."""
    from harness.tokenizers import TiktokenTokenizer

    text = "The answer is 7<|endoftext|>"
    tokens = list(TiktokenTokenizer("p50k_base").encode(text).tokens)
    assert len(tokens) > 5
    got = pieces(gpt2, onto_gpt2.align(tokens, steps_for(tokens, {}), text))
    assert got == [("The", KIND_ONE_TO_ONE, {"The": 0.6}), ("Ġanswer", KIND_ONE_TO_ONE, {"Ġanswer": 0.6}),
                   ("Ġis", KIND_ONE_TO_ONE, {"Ġis": 0.6}), ("Ġ7", KIND_ONE_TO_ONE, {"Ġ7": 0.6}),
                   ("<|endoftext|>", KIND_ONE_HOT, {"<|endoftext|>": 1.0})]


# --- properties, four student families ----------------------------------------------------------

EXTRAS = ["", " café", " 😀", " 日本", "  ", "\n\n", " ½", " naïve—x", " 1,234.5", "<|endoftext|>", " <|im_end|>\n"]


@pytest.fixture(scope="module")
def aligners(student_specs):
    made = {}

    def get(name: str, **exact):
        key = (name, tuple(sorted(exact.items())))
        if key not in made:
            made[key] = Aligner(AlignConfig(student=student_specs[name], exact=ExactConfig(**exact)))
        return made[key]

    return get


@pytest.fixture(scope="module")
def teachers(data_dir):
    from harness.tokenizers import TiktokenTokenizer

    return {name: TiktokenTokenizer(name) for name in ("p50k_base", "cl100k_base")}


def _fragment(data, rationales):
    _, text = data.draw(st.sampled_from(rationales))
    start = data.draw(st.integers(0, len(text) - 1))
    fragment = text[start : start + data.draw(st.integers(1, 120))]
    at = data.draw(st.integers(0, len(fragment)))
    return (fragment[:at] + data.draw(st.sampled_from(EXTRAS)) + fragment[at:]).strip()


@pytest.mark.parametrize("student_name", ["gpt2", "qwen-like", "llama-like", "t5-fast"])
@settings(max_examples=20, **SETTINGS)
@given(data=st.data())
def test_exact_targets_cover_every_student_position(student_name, aligners, teachers, rationales, data):
    """Every student position gets a target; student ids are the tokenizer's own ids of the text;
    with the tail bucket, kept mass + tail = 1 at every position (mass neither made nor lost)."""
    from harness.align.synthetic import synthesize

    text = _fragment(data, rationales)
    if not text:
        return
    teacher = teachers[data.draw(st.sampled_from(sorted(teachers)))]
    syn = synthesize(teacher, text, "fragment", seed=data.draw(st.integers(0, 5)))
    aligner = aligners(student_name, tail=True)
    hf = aligner.student_tokenizer.tok
    seq = aligner.align(syn.tokens, syn.topk, text)
    assert seq.student_ids == hf(text, add_special_tokens=False)["input_ids"]
    assert len(seq.entries) == len(seq.kinds) == len(seq.tail) == len(seq.student_ids)
    vocab_size = len(hf)
    for token_id, entries, kind, tail in zip(seq.student_ids, seq.entries, seq.kinds, seq.tail):
        assert entries and all(0 < p <= 1 and 0 <= t < vocab_size for t, p in entries)
        assert len({t for t, _ in entries}) == len(entries)
        assert sum(p for _, p in entries) + tail == pytest.approx(1.0, abs=1e-9) and tail >= 0
        if kind == KIND_ONE_HOT:
            assert entries == [(token_id, 1.0)]
        if kind == KIND_ONE_TO_ONE:
            assert token_id in {t for t, _ in entries}  # the sampled token spelled this very piece
    renormalized = aligners(student_name, renormalize=True).align(syn.tokens, syn.topk, text)
    for entries, derived in zip(renormalized.entries, renormalized.derived):
        assert sum(p for _, p in entries) == pytest.approx(1.0)


def _whole_word_ids(encoding, limit=4000):
    """GPT-2 ids of plain words (' word' / 'word') that tiktoken encodes back to themselves."""
    out = []
    for i in range(limit):
        raw = encoding.decode_single_token_bytes(i)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if text.strip().isalpha() and text.strip().isascii() and text.lstrip(" ") == text.strip() and encoding.encode(text) == [i]:
            out.append(i)
    return out


@pytest.fixture(scope="module")
def gpt2_teacher(data_dir):
    from harness.tokenizers import TiktokenTokenizer

    teacher = TiktokenTokenizer("gpt2")
    return teacher, _whole_word_ids(teacher.encoding)


def _steps(teacher, ids, words, rng, width=5):
    """A top list per step: the token itself (p in [0.4, 0.9]) and `width - 1` whole words, halving."""
    enc = teacher.encoding
    top_ids, probs = [], []
    for i in ids:
        p = rng.uniform(0.4, 0.9)
        rest = 1 - p
        row, ps = [i], [p]
        while len(row) < width:
            other = rng.choice(words)
            if other in row:
                continue
            rest /= 2
            row.append(other)
            ps.append(rest)
        top_ids.append(row)
        probs.append(ps)
    names = [[enc.decode_single_token_bytes(t).decode("utf-8", errors="replace") for t in row] for row in top_ids]
    return top_ids, names, probs


@settings(max_examples=30, **SETTINGS)
@given(data=st.data())
def test_same_tokenizer_exact_moves_all_the_mass(onto_gpt2, gpt2_teacher, rationales, data):
    """Teacher = GPT-2 (tiktoken), student = GPT-2 (HF), candidates whole tokens: every position is
    1:1 and carries exactly the teacher step's mass, on every id; except the bytes of a character
    split over several tokens (’ is 3 bytes, 2 tokens), which exact mode cannot spell: one-hot."""
    teacher, words = gpt2_teacher
    _, text = data.draw(st.sampled_from(rationales))
    start = data.draw(st.integers(0, len(text) - 1))
    text = text[start : start + data.draw(st.integers(1, 150))].strip()
    if not text:
        return
    enc = teacher.encode(text)
    top_ids, names, probs = _steps(teacher, enc.ids, words, random.Random(data.draw(st.integers(0, 10**6))))
    seq = onto_gpt2.align(list(enc.tokens), [list(zip(n, p)) for n, p in zip(names, probs)], text)
    assert seq.student_ids == list(enc.ids)
    for k, (row, ps, entries, kind) in enumerate(zip(top_ids, probs, seq.entries, seq.kinds)):
        if enc.tokens[k] == "" or (k and enc.tokens[k - 1] == ""):
            assert kind == KIND_ONE_HOT and entries == [(enc.ids[k], 1.0)]
            continue
        assert kind == KIND_ONE_TO_ONE
        assert dict(entries) == pytest.approx(dict(zip(row, ps)), abs=1e-12)


# --- refusals --------------------------------------------------------------------------------------


def _one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_faithful_mode_is_t5_only():
    with pytest.raises(UsageError, match="faithful .*T5.*use --mode exact") as err:
        AlignConfig(mode="faithful", student="hf-gpt2")
    _one_line(err)


def test_faithful_mode_refuses_a_non_t5_tokenizer_object(gpt2):
    with pytest.raises(UsageError, match="not T5") as err:
        Aligner(AlignConfig(mode="faithful"), gpt2)
    _one_line(err)


@pytest.mark.parametrize("spec, message", [("tiktoken:gpt2", "tiktoken encoding is a teacher's tokenizer"),
                                           ("p50k_base", "tiktoken encoding"), ("bert", "unknown student tokenizer"),
                                           ("hf:", "unknown student tokenizer")])
def test_student_specs_that_are_no_student_tokenizer(spec, message):
    with pytest.raises(UsageError, match=message) as err:
        AlignConfig(student=spec)
    _one_line(err)


def test_a_student_folder_that_does_not_exist_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="--student: tokenizer 'hf:.*cannot be loaded") as err:
        Aligner(AlignConfig(student=f"hf:{tmp_path / 'nowhere'}"))
    _one_line(err)


# --- teacher stores: the identity path, the student's record, k ----------------------------------


def gpt2_store(root, examples, words, *, spec="tiktoken:gpt2", with_ids=True, top_has_token=None, top_k=5, width=5, edit=None):
    """A teacher store of GSM8K gold texts as GPT-2 tokens with a synthetic top list per step
    (the token first, then whole words), as the CPU default teacher would write it.
    `edit(n, ids, text) -> (ids, text)` changes sample n before it is written."""
    from harness.teacher.base import Completion
    from harness.teacher.gold import gold_text
    from harness.teacher.record import record_from_completion
    from harness.teacher.store import TeacherStore
    from harness.tokenizers import TiktokenTokenizer

    teacher = TiktokenTokenizer("gpt2")
    enc = teacher.encoding
    settings = {"teacher": {"model": "synthetic-gpt2", "tokenizer": spec}, "sampling": {"seed": 0, "top_k": top_k}}
    rng = random.Random(0)
    records = []
    for n, example in enumerate(examples):
        text = gold_text(example)
        ids = list(teacher.encode(text).ids)
        if edit is not None:
            ids, text = edit(n, ids, text)
        tokens = _spelled(enc, ids)
        assert "".join(tokens) == text
        top_ids, names, probs = _steps(teacher, ids, words, rng, width)
        logp = [[math.log(p) for p in ps] for ps in probs]
        completion = Completion(text=text, tokens=tokens, token_logprobs=[lp[0] for lp in logp], top_tokens=names, top_logprobs=logp,
                                finish_reason="stop", token_ids=ids if with_ids else None, top_ids=top_ids if with_ids else None,
                                top_has_token=top_has_token)
        records.append(record_from_completion(completion, example, 0, prompt_id="synthetic", teacher_model="synthetic-gpt2",
                                              teacher_tokenizer=spec))
    with TeacherStore.open(root, "test.gpt2", settings) as out:
        out.write_shard(records)
    return root


def _spelled(encoding, ids):
    """Token strings as the teacher backends spell them: a character belongs to the token holding its last byte."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return [decoder.decode(encoding.decode_single_token_bytes(i)) for i in ids]


@pytest.fixture(scope="module")
def examples(data_dir):
    from harness.data import load

    train = load("gsm8k", "train")
    chosen = train[:12] + [train[22]]  # 10 and 22 hold '’' (3 bytes, two GPT-2 tokens)
    assert any("’" in e.rationale for e in chosen)
    return chosen


def _rows(folder):
    return {r["id"]: r for r in pq.read_table(folder / "data").to_pylist()}


def _split_positions(row_tokens):
    """Positions of the bytes of a character split over several tokens (an empty token and the one after)."""
    return {k for k, t in enumerate(row_tokens) if t == "" or (k and row_tokens[k - 1] == "")}


def test_identity_path_equals_exact_alignment_on_same_tokenizer_data(tmp_path, gpt2_teacher, examples):
    from harness.align.store import run_store_alignment

    _, words = gpt2_teacher
    store = gpt2_store(tmp_path / "store", examples, words)
    kw = dict(select="all", chunk_size=4, shard_rows=5)
    same = run_store_alignment(store, tmp_path / "identity", AlignConfig(student="hf-gpt2"), **kw)
    aligned = run_store_alignment(store, tmp_path / "exact", AlignConfig(student="hf-gpt2", identity="off"), **kw)
    assert same["rows_by_mode"] == {"identity": len(examples)} and aligned["rows_by_mode"] == {"exact": len(examples)}
    assert same["teacher_tokenizers"]["tiktoken:gpt2"]["same_as_student"] is True
    tokens = {f"{r['question_id']}#{r['sample_index']}": r["tokens"] for r in pq.read_table(store / "data").to_pylist()}
    split_rows = 0
    for key, row in _rows(tmp_path / "identity").items():
        other = _rows(tmp_path / "exact")[key]
        split = _split_positions(tokens[key])
        split_rows += bool(split)
        if not split:
            assert {**row, "mode": None} == {**other, "mode": None}  # the same row, column by column
            continue
        # Only where exact mode cannot spell (a character's bytes): identity keeps the teacher's distribution.
        for name in ("student_ids", "k"):
            assert row[name] == other[name]
        for k in range(len(row["student_ids"])):
            columns = ("topk_ids", "topk_probs", "topk_mask")
            if k in split:
                assert other["topk_mask"][k] == [1, 0, 0, 0, 0] and sum(row["topk_mask"][k]) == 5
            else:
                assert [row[c][k] for c in columns] == [other[c][k] for c in columns]
    assert split_rows == 2


def test_identity_path_without_ids_maps_token_strings(tmp_path, gpt2_teacher, examples):
    """A server teacher sends strings, not ids: they are looked up in the student's vocabulary."""
    from harness.align.store import run_store_alignment

    _, words = gpt2_teacher
    kw = dict(select="all", chunk_size=4, shard_rows=5)
    run_store_alignment(gpt2_store(tmp_path / "ids", examples, words), tmp_path / "by-ids", AlignConfig(student="hf-gpt2"), **kw)
    stats = run_store_alignment(gpt2_store(tmp_path / "strings", examples, words, with_ids=False), tmp_path / "by-strings",
                                AlignConfig(student="hf-gpt2"), **kw)
    by_ids, by_strings = _rows(tmp_path / "by-ids"), _rows(tmp_path / "by-strings")
    # the empty token of a split character names no id: those two rows are aligned by text instead
    assert stats["rows_by_mode"] == {"exact": 2, "identity": len(examples) - 2}
    for key, row in by_strings.items():
        if row["mode"] == "identity":
            assert row == by_ids[key]


def test_a_sequence_the_tokenizer_would_not_write_is_aligned_by_text(tmp_path, gpt2_teacher, examples, gpt2):
    """Sampled tokens need not be the canonical tokenization (' 4', '8' for ' 48'): exact alignment."""
    from harness.align.store import run_store_alignment

    _, words = gpt2_teacher
    enc = gpt2_teacher[0].encoding

    def split_48(n, ids, text):
        if n == 0:
            at = ids.index(enc.encode(" 48")[0])
            ids = ids[:at] + enc.encode(" 4") + enc.encode("8") + ids[at + 1:]
        return ids, text

    store = gpt2_store(tmp_path / "store", examples[:3], words, edit=split_48)
    stats = run_store_alignment(store, tmp_path / "out", AlignConfig(student="hf-gpt2"), select="all")
    rows = _rows(tmp_path / "out")
    assert stats["rows_by_mode"] == {"exact": 1, "identity": 2}
    first = rows[f"{examples[0].id}#0"]
    text = pq.read_table(store / "data").to_pylist()[0]["text"]
    assert first["mode"] == "exact" and first["student_ids"] == gpt2.tok(text, add_special_tokens=False)["input_ids"]


def test_stripped_whitespace_at_token_bounds_keeps_the_identity_path(tmp_path, gpt2_teacher, examples):
    """`corrected` strips the text: a leading '\\n' token is dropped and the rest maps one to one."""
    from harness.align.store import run_store_alignment

    _, words = gpt2_teacher
    newline = gpt2_teacher[0].encoding.encode("\n")

    def lead(n, ids, text):
        return newline + ids, "\n" + text

    store = gpt2_store(tmp_path / "store", examples[:2], words, edit=lead)
    stats = run_store_alignment(store, tmp_path / "out", AlignConfig(student="hf-gpt2"), select="all")
    assert stats["rows_by_mode"] == {"identity": 2}
    table = pq.read_table(store / "data").to_pylist()
    for stored, row in zip(sorted(table, key=lambda r: r["question_id"]), sorted(_rows(tmp_path / "out").values(), key=lambda r: r["question_id"])):
        assert row["student_ids"] == stored["token_ids"][1:]
        assert row["topk_ids"][0][0] == stored["top_ids"][1][0]


def test_another_vocabulary_is_refused_in_one_line(tmp_path, gpt2_teacher, examples):
    from harness.align.store import run_store_alignment

    _, words = gpt2_teacher
    store = gpt2_store(tmp_path / "store", examples[:2], words, spec="tiktoken:p50k_base")
    with pytest.raises(UsageError, match=r"--identity require: the teacher tokenizer tiktoken:p50k_base .* is not the student's hf:gpt2") as err:
        run_store_alignment(store, tmp_path / "out", AlignConfig(student="hf-gpt2", identity="require"), select="all")
    _one_line(err)
    assert not (tmp_path / "out").exists()
    stats = run_store_alignment(store, tmp_path / "auto", AlignConfig(student="hf-gpt2"), select="all")
    assert stats["rows_by_mode"] == {"exact": 2} and stats["teacher_tokenizers"]["tiktoken:p50k_base"]["same_as_student"] is False


def test_ids_outside_the_students_vocabulary_are_refused_in_one_line(tmp_path, gpt2_teacher, examples):
    from harness.align.store import run_store_alignment
    from harness.records import RecordError

    _, words = gpt2_teacher
    store = gpt2_store(tmp_path / "store", examples[:3], words)
    import shutil

    from tests.align.test_align_store_columnar import _broken_store

    broken = _broken_store(store, tmp_path, 1, "top_ids", lambda steps: [[*steps[0][:-1], 60000], *steps[1:]])
    shutil.rmtree(store)
    with pytest.raises(RecordError, match=r"field 'top_ids': id 60000 at step 0 is outside the student's vocabulary \(0..50256\)") as err:
        run_store_alignment(broken, tmp_path / "out", AlignConfig(student="hf-gpt2"), select="all")
    _one_line(err)


def test_k_defaults_to_the_servers_k_plus_one(tmp_path, gpt2_teacher, examples):
    """Steps that keep their own token (top_has_token) hold top_k + 1 entries: k follows."""
    import json

    from harness.align.store import default_k, run_store_alignment

    _, words = gpt2_teacher
    server = gpt2_store(tmp_path / "server", examples[:2], words, top_has_token=True, top_k=5, width=6)
    local = gpt2_store(tmp_path / "local", examples[:2], words)
    assert default_k(server) == 6 and default_k(local) == 5
    stats = run_store_alignment(server, tmp_path / "out", AlignConfig(student="hf-gpt2"), select="all")
    settings = json.loads((tmp_path / "out" / "settings.json").read_text())["settings"]
    assert stats["k"] == 6 == settings["config"]["k"]
    assert all(row["k"] == 6 and sum(row["topk_mask"][0]) == 6 for row in _rows(tmp_path / "out").values())
    given = run_store_alignment(server, tmp_path / "given", AlignConfig(student="hf-gpt2", k=3), select="all")
    assert given["k"] == 3 and all(row["k"] == 3 for row in _rows(tmp_path / "given").values())
    # a rerun without --k resolves to the same k, so it resumes
    assert run_store_alignment(server, tmp_path / "out", AlignConfig(student="hf-gpt2"), select="all")["written_now"] == 0


def test_the_output_records_the_student_tokenizer(tmp_path, gpt2_teacher, examples):
    import json

    from harness.align.api import student_fingerprint
    from harness.align.store import run_store_alignment
    from harness.errors import ResumeError

    _, words = gpt2_teacher
    store = gpt2_store(tmp_path / "store", examples[:2], words)
    stats = run_store_alignment(store, tmp_path / "out", AlignConfig(student="hf-gpt2"), select="all")
    recorded = json.loads((tmp_path / "out" / "settings.json").read_text())["settings"]
    expected = student_fingerprint("hf-gpt2")
    assert recorded["student"] == expected == stats["student"] and recorded["config"]["student"] == "hf-gpt2"
    assert expected["name"] == "hf:gpt2" and expected["size"] == 50257 and len(expected["vocab_sha256"]) == 64
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["student"] == expected
    with pytest.raises(ResumeError, match=r"config.student: 'hf-gpt2' -> 't5'.*student.name: 'hf:gpt2' -> 'sentencepiece:spiece.model'"):
        run_store_alignment(store, tmp_path / "out", AlignConfig(), select="all")


def test_cli_aligns_a_store_onto_a_gpt2_student_and_refuses_in_one_line(tmp_path, gpt2_teacher, examples, capsys):
    import json

    from harness.cli import main

    _, words = gpt2_teacher
    store = gpt2_store(tmp_path / "store", examples[:2], words)
    with pytest.raises(SystemExit) as done:
        main(["align", "run", str(store), str(tmp_path / "out"), "--student", "hf-gpt2", "--select", "all", "--workers", "1"])
    assert done.value.code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows_by_mode"] == {"identity": 2} and summary["k"] == 5 and summary["student"]["name"] == "hf:gpt2"
    for argv in (["--student", "hf-gpt2", "--mode", "faithful"], ["--student", "tiktoken:gpt2"],
                 ["--student", "t5", "--identity", "require"]):
        with pytest.raises(SystemExit) as done:
            main(["align", "run", str(store), str(tmp_path / "refused"), *argv])
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err


def test_identity_rows_are_the_same_on_the_columnar_and_the_reference_path(tmp_path, gpt2_teacher, examples, monkeypatch):
    import harness.align.store as align_store
    from harness.align.store import run_store_alignment

    _, words = gpt2_teacher
    kw = dict(select="all", chunk_size=4, shard_rows=5)
    for with_ids in (True, False):
        store = gpt2_store(tmp_path / f"store-{with_ids}", examples, words, with_ids=with_ids)
        fast = run_store_alignment(store, tmp_path / f"fast-{with_ids}", AlignConfig(student="hf-gpt2"), **kw)
        workers = 2 if with_ids else 1  # worker processes: once is enough (they start slowly)
        two = run_store_alignment(store, tmp_path / f"two-{with_ids}", AlignConfig(student="hf-gpt2"), workers=workers, **kw)
        with monkeypatch.context() as patch:
            patch.setattr(align_store, "_samples", lambda *args: None)  # every chunk row by row
            reference = run_store_alignment(store, tmp_path / f"reference-{with_ids}", AlignConfig(student="hf-gpt2"), **kw)
        assert fast == reference and two["rows_by_mode"] == fast["rows_by_mode"] and fast["rows_by_mode"].get("identity")
        shards = [{p.name: p.read_bytes() for p in sorted((tmp_path / f"{name}-{with_ids}" / "data").glob("part-*.parquet"))}
                  for name in ("fast", "reference", "two")]
        assert shards[0] == shards[1] == shards[2] and len(shards[0]) > 1
