"""Exact mode: offset spans, whitespace folding, the span rules, fallbacks and output arrays."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.align.api import AlignConfig, Aligner
from harness.align.errors import TextMismatchError
from harness.align.exact import ExactConfig
from harness.align.targets import (
    KIND_DP,
    KIND_FIRST_PIECE,
    KIND_ONE_HOT,
    KIND_ONE_TO_ONE,
    AlignmentStats,
    to_fixed_k,
)


@pytest.fixture(scope="module")
def exact(student):
    return Aligner(AlignConfig(mode="exact"), student)


def targets_by_piece(aligner, seq):
    piece = aligner.student_tokenizer.piece
    return [(piece(i), kind, {piece(t): round(p, 6) for t, p in e}) for i, kind, e in zip(seq.student_ids, seq.kinds, seq.entries)]


def align_text(aligner, teacher, text, alternatives=None, student_text=None):
    tokens = list(teacher.encode(text).tokens)
    steps = [[(t, 0.7)] + list((alternatives or {}).get(t, [])) for t in tokens]
    return tokens, aligner.align(tokens, steps, text if student_text is None else student_text)


def test_line_initial_token_keeps_its_distribution(exact, teacher):
    """GPT 'So'/'The' after '\\n' and T5 '▁The' are the same event: 1:1 with '▁' added."""
    _, seq = align_text(exact, teacher, "It is 7.\nThe answer is 7", {"The": [("So", 0.2), (" The", 0.05), ("\n", 0.04)]})
    rows = targets_by_piece(exact, seq)
    the = next(r for r in rows if r[0] == "▁The")
    # 'The' and ' The' both spell '▁The' here (their mass adds); '\n' has no T5 token: dropped.
    assert the[1] == KIND_ONE_TO_ONE and the[2] == {"▁The": 0.75, "▁So": 0.2}
    first = rows[0]
    assert first[0] == "▁It" and first[1] == KIND_ONE_TO_ONE  # text-initial token too


def test_word_internal_and_spaced_tokens(exact, teacher):
    _, seq = align_text(exact, teacher, "If Natalia sold", {"alia": [("ilia", 0.1)], " sold": [(" made", 0.2), (" sells", 0.1)]})
    rows = {r[0]: r for r in targets_by_piece(exact, seq)}
    assert rows["alia"][2] == {"alia": 0.7, "ilia": 0.1}  # no '▁' inside a word
    # ' sells' is two T5 pieces ('▁sell', 's'): not one student token, so dropped at a 1:1 position.
    assert rows["▁sold"][2] == {"▁sold": 0.7, "▁made": 0.2}


def test_number_split_differently_is_one_hot(exact, teacher):
    tokens, seq = align_text(exact, teacher, "She pays $15 now")
    assert " $" in tokens and "15" in tokens
    rows = {r[0]: r for r in targets_by_piece(exact, seq)}
    assert rows["▁$15"][1] == KIND_ONE_HOT and rows["▁$15"][2] == {"▁$15": 1.0}


def test_one_to_many_gives_the_first_piece_a_distribution(exact, teacher):
    tokens, seq = align_text(exact, teacher, "She babysat for", {" babys": [(" baby", 0.2), (" bab", 0.05)]})
    assert " babys" in tokens
    rows = targets_by_piece(exact, seq)
    pieces = [r[0] for r in rows]
    k = pieces.index("▁baby")
    assert pieces[k + 1] == "s"
    assert rows[k][1] == KIND_FIRST_PIECE
    # ' babys' and ' baby' both start with the piece '▁baby'; ' bab' is spelled '▁', 'bab'.
    assert rows[k][2] == {"▁baby": pytest.approx(0.9), "▁": pytest.approx(0.05)}
    assert rows[k + 1][1] == KIND_ONE_HOT


@pytest.mark.parametrize(
    "text",
    [
        "  leading and trailing spaces  ",
        "two  spaces and\n\nblank lines\n",
        "tabs\tand\r\nwindows newlines",
        "Ünïcödé ½ 5² ﬁ — “quote” 1,000.5 🙂x {brace} café",
        "x",
        "7",
    ],
)
def test_whitespace_and_unicode_edge_cases(exact, teacher, text):
    _, seq = align_text(exact, teacher, text)
    student_ids = list(exact.student_tokenizer.encode(text).ids)
    assert seq.student_ids == student_ids
    for token_id, entries, kind, derived in zip(seq.student_ids, seq.entries, seq.kinds, seq.derived):
        assert entries and all(0 < p <= 1 for _, p in entries)
        assert sum(p for _, p in entries) <= 1 + 1e-9
        if kind == KIND_ONE_HOT:
            assert entries == [(token_id, 1.0)] and not derived
        if kind == KIND_ONE_TO_ONE:
            assert token_id in {t for t, _ in entries}


def test_unknown_characters_and_zero_width_pieces(exact, teacher):
    """T5 spells ' {' as '▁' + '<unk>' and '½' as '▁1', '⁄', '2': they group with their teacher token."""
    tokens, seq = align_text(exact, teacher, "a {b} ½")
    assert " {" in tokens and " ½" in tokens
    rows = targets_by_piece(exact, seq)
    pieces = [r[0] for r in rows]
    k = pieces.index("<unk>")
    assert pieces[k - 1] == "▁" and rows[k - 1][1] == KIND_FIRST_PIECE and rows[k][1] == KIND_ONE_HOT
    assert pieces[-3:] == ["▁1", "<unk>", "2"]  # NFKC: ½ → 1⁄2 ('⁄' is unknown to T5)
    assert rows[-3][1] == KIND_FIRST_PIECE and rows[-1][1] == KIND_ONE_HOT


def test_empty_and_one_token_texts(exact, teacher):
    assert len(exact.align([], [], "")) == 0
    seq = exact.align(["Hello"], [[("Hello", 0.6), ("Hi", 0.3)]], "Hello")
    assert targets_by_piece(exact, seq) == [("▁Hello", KIND_ONE_TO_ONE, {"▁Hello": 0.6, "▁Hi": 0.3})]


def test_mismatched_texts_raise_a_clear_error(exact):
    with pytest.raises(TextMismatchError, match="different text"):
        exact.align(["The", " cat", " sat"], [[("The", 1.0)]] * 3, "A completely unrelated sentence here")
    with pytest.raises(TextMismatchError, match="spell no text"):
        exact.align([], [], "Hello")


def test_local_text_differences_fall_back_to_the_dp(exact, teacher):
    """The authors' cleaned student text drops every ': '; only that region leaves the offset path."""
    text = "Step 1: add 3 and 4 to get 7 apples in total.\nThe answer is 7"
    cleaned = text.replace(": ", "")
    _, seq = align_text(exact, teacher, text, student_text=cleaned)
    rows = targets_by_piece(exact, seq)
    assert seq.student_ids == list(exact.student_tokenizer.encode(cleaned).ids)
    assert [r[0] for r in rows[:3]] == ["▁Step", "▁1", "add"]
    assert rows[2][1] == KIND_ONE_HOT  # ':' + ' add' on 'add' (DTW: two teacher tokens)
    assert [r[1] for r in rows].count(KIND_ONE_TO_ONE) == len(rows) - 1


def test_dp_fallback_transfers_where_the_dtw_finds_an_exact_match(exact):
    steps = [[(" red", 0.6), (" the", 0.1)], [(" car", 0.8)]]
    seq = exact.align([" red", " car"], steps, " redX car")
    rows = targets_by_piece(exact, seq)
    assert rows[0] == ("▁red", KIND_DP, {"▁red": 0.6, "▁the": 0.1})
    assert rows[-1] == ("▁car", KIND_ONE_TO_ONE, {"▁car": 0.8})
    assert all(r[1] == KIND_ONE_HOT for r in rows[1:-1])


def test_renormalize_and_tail(student, teacher):
    text = "It is 7 apples"
    tokens = list(teacher.encode(text).tokens)
    steps = [[(t, 0.5), ("\n", 0.3), (" the", 0.1)] for t in tokens]
    renorm = Aligner(AlignConfig(exact=ExactConfig(renormalize=True)), student).align(tokens, steps, text)
    tail = Aligner(AlignConfig(exact=ExactConfig(tail=True)), student).align(tokens, steps, text)
    for r, t, derived in zip(renorm.entries, tail.entries, tail.derived):
        assert sum(p for _, p in r) == pytest.approx(1.0)
    assert tail.tail is not None and renorm.tail is None
    for entries, missing, derived in zip(tail.entries, tail.tail, tail.derived):
        assert sum(p for _, p in entries) + missing == pytest.approx(1.0)
        if derived:
            assert missing == pytest.approx(0.4)
    with pytest.raises(ValueError, match="exclusive"):
        ExactConfig(renormalize=True, tail=True)


def test_fixed_k_arrays_pad_and_mask_when_k_exceeds_the_entries(exact, teacher):
    _, seq = align_text(exact, teacher, "It is 7", {" is": [(" was", 0.2)]})
    arrays = to_fixed_k(seq, k=8, pad_id=0)
    n = len(seq)
    assert arrays["topk_ids"].shape == (n, 8) and arrays["topk_probs"].shape == (n, 8)
    widths = arrays["topk_mask"].sum(axis=1).tolist()
    assert widths == [len(e) for e in seq.entries]
    assert (arrays["topk_probs"][~arrays["topk_mask"]] == 0).all() and (arrays["topk_ids"][~arrays["topk_mask"]] == 0).all()
    assert (arrays["topk_probs"][:, :-1] >= arrays["topk_probs"][:, 1:]).all()  # highest first
    small = to_fixed_k(seq, k=1)
    assert small["topk_mask"].all() and small["topk_ids"].shape == (n, 1)
    with pytest.raises(ValueError):
        to_fixed_k(seq, k=0)


def test_exact_keeps_more_soft_targets_than_faithful_on_real_rationales(student, teacher, rationales):
    from harness.align.synthetic import synthesize

    exact = Aligner(AlignConfig(mode="exact"), student)
    faithful = Aligner(AlignConfig(mode="faithful"), student)
    s_exact, s_faithful = AlignmentStats(), AlignmentStats()
    for sample_id, text in rationales[:30]:
        syn = synthesize(teacher, text, sample_id)
        s_exact.add(exact.align(syn.tokens, syn.topk, text))
        s_faithful.add(faithful.align(syn.tokens, syn.topk, text))
    e, f = s_exact.summary(), s_faithful.summary()
    assert e["positions"] == f["positions"]
    assert e["soft_fraction"] > f["soft_fraction"] + 0.1
    assert e["mean_captured_mass"] > f["mean_captured_mass"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_exact_targets_are_well_formed_on_real_fragments(exact, teacher, rationales, data):
    from harness.align.synthetic import synthesize

    _, text = data.draw(st.sampled_from(rationales))
    start = data.draw(st.integers(0, len(text) - 1))
    fragment = text[start : start + data.draw(st.integers(1, 150))]
    syn = synthesize(teacher, fragment, "fragment", seed=data.draw(st.integers(0, 5)))
    if not fragment.strip():
        return
    seq = exact.align(syn.tokens, syn.topk, fragment)
    assert seq.student_ids == list(exact.student_tokenizer.encode(fragment).ids)
    for token_id, entries, kind in zip(seq.student_ids, seq.entries, seq.kinds):
        assert sum(p for _, p in entries) <= 1 + 1e-9
        if kind == KIND_ONE_TO_ONE:
            assert entries[0][0] == token_id or token_id in {t for t, _ in entries}


def test_whitespace_only_differences_between_texts_are_not_mismatches(exact, teacher):
    """The authors' stored text starts with '\\n' and T5 sees newlines as spaces: still exact spans."""
    text = "If she sold 48.\nThe answer is 48"
    for student_text in ("\n" + text, text.replace("\n", " "), "  " + text + "\n\n"):
        _, seq = align_text(exact, teacher, text, student_text=student_text)
        rows = targets_by_piece(exact, seq)
        assert rows[0][:2] == ("▁If", KIND_ONE_TO_ONE)
        assert next(r for r in rows if r[0] == "▁The")[1] == KIND_ONE_TO_ONE
        assert KIND_DP not in [r[1] for r in rows]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_exact_survives_local_edits_of_the_student_text(exact, teacher, rationales, data):
    """Random small insertions/deletions/replacements: the student ids stay exact, targets well formed."""
    from harness.align.synthetic import synthesize

    sample_id, text = data.draw(st.sampled_from(rationales))
    chars = list(text)
    for _ in range(data.draw(st.integers(0, 4))):
        pos = data.draw(st.integers(0, len(chars) - 1))
        kind = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        if kind == "delete":
            chars.pop(pos)
        elif kind == "insert":
            chars.insert(pos, data.draw(st.sampled_from(list("xz:;\n "))))
        else:
            chars[pos] = data.draw(st.sampled_from(list("qw")))
    edited = "".join(chars)
    syn = synthesize(teacher, text, sample_id)
    seq = exact.align(syn.tokens, syn.topk, edited)
    assert seq.student_ids == list(exact.student_tokenizer.encode(edited).ids)
    assert all(entries and sum(p for _, p in entries) <= 1 + 1e-9 for entries in seq.entries)
