"""Faithful mode: the authors' DTW + transfer, and the fast implementation's equality with the oracle."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.align import faithful_fast, faithful_oracle
from harness.align.errors import AlignmentError, FramingError

FIG_1C_TEXT = "Mia earns $15 for every hour of babysitting.\nShe babysat for 40 minutes.\nThe answer is 10"


def ordered(targets):
    return [list(t.items()) for t in targets]


def test_levenshtein_matches_rapidfuzz():
    from rapidfuzz.distance import Levenshtein

    for a, b in [("", ""), ("abc", ""), ("kitten", "sitting"), ("▁$12", "$"), ("\n", ".")]:
        assert faithful_oracle.levenshtein(a, b) == Levenshtein.distance(a, b)


def test_cost_ignores_spaces_and_markers_but_not_newlines():
    assert faithful_oracle.token_cost(" Nat", "▁Nat") == 0
    assert faithful_oracle.token_cost("\n", ".") == 1


@pytest.mark.parametrize(
    "teacher, student, expected",
    [
        (["a", "a"], ["a", "a"], [[0], [1]]),  # all ties: the diagonal wins
        (["a", "b", "a"], ["b", "a", "b"], [[0], [0], [1, 2]]),  # up is preferred over left
        (["ab"], ["a", "b"], [[0], [0]]),  # one teacher token over two student tokens
        (["a", "b"], ["ab"], [[0, 1]]),
    ],
)
def test_dtw_tie_order_and_shapes(teacher, student, expected):
    assert faithful_oracle.dtw_mapping(teacher, student) == expected
    assert faithful_fast.dtw_mapping(teacher, student) == expected


def test_fig_1c_kind_of_example(teacher, student, vocab):
    """A GSM8K-style CoT: line-initial tokens, split numbers and many-to-one spans become one-hot."""
    t_tokens = list(teacher.encode(FIG_1C_TEXT).tokens)
    s_tokens = list(student.encode(FIG_1C_TEXT).tokens)
    steps = [[(tok, 0.6), (" every", 0.2), ("\n", 0.1), (tok, 0.6), ("<|endoftext|>", 0.05)] for tok in t_tokens]
    out = faithful_oracle.align_faithful_oracle(t_tokens, steps, s_tokens, vocab)
    assert ordered(out) == ordered(faithful_fast.align_faithful_fast(t_tokens, steps, s_tokens, vocab))
    by_token = dict(zip(s_tokens, out))
    # GPT 'She'/'The' after a newline vs T5 '▁She'/'▁The': the strings differ, so one-hot.
    assert by_token["▁She"] == {"▁She": 1.0} and by_token["▁The"] == {"▁The": 1.0}
    # GPT ' $' + '15' vs T5 '▁$15': two teacher tokens on one student token, one-hot.
    assert by_token["▁$15"] == {"▁$15": 1.0}
    # ' babys' spans '▁baby', 's', 'i': strings differ, one-hot.
    assert by_token["▁baby"] == {"▁baby": 1.0}
    # '.' followed by '\n' on T5 '.': two teacher tokens, one-hot.
    assert out[s_tokens.index(".")] == {".": 1.0}
    # A clean 1:1 token: the sampled token first, '\n' and '<|endoftext|>' dropped (not in the T5
    # vocabulary), the repeated sampled token ignored, no renormalisation.
    assert list(by_token["▁for"].items()) == [("▁for", 0.6), ("▁every", 0.2)]


def test_authors_framing_is_checked_and_stripped(vocab):
    tokens = [" step", "\n", "If", " we", "\n", "\n"]
    steps = [[(t, 1.0)] for t in tokens]
    out = faithful_fast.align_faithful_fast(tokens, steps, ["▁If", "▁we"], vocab, framing="authors")
    assert out == [{"▁If": 1.0}, {"▁we": 1.0}]  # 'If' vs '▁If' differs: one-hot; ' we' is 1:1
    with pytest.raises(FramingError, match="step 0"):
        faithful_fast.align_faithful_fast(["If"] + tokens[1:], steps, ["▁If"], vocab, framing="authors")
    with pytest.raises(FramingError, match="step -1"):
        faithful_oracle.align_faithful_oracle(tokens[:-1] + [" x"], steps, ["▁If"], vocab, framing="authors")
    with pytest.raises(FramingError, match="only 2 steps"):
        faithful_oracle.align_faithful_oracle(tokens[:2], steps[:2], ["▁If"], vocab, framing="authors")


def test_empty_and_one_token_texts(vocab):
    for impl in (faithful_oracle.align_faithful_oracle, faithful_fast.align_faithful_fast):
        assert impl([], [], [], vocab) == []
        assert impl(["Hello"], [[("Hello", 0.5), (" Hi", 0.3)]], ["▁Hello"], vocab) == [{"▁Hello": 1.0}]
        assert impl([" Hello"], [[(" Hello", 0.5), (" Hi", 0.3)]], ["▁Hello"], vocab) == [{"▁Hello": 0.5, "▁Hi": 0.3}]
        with pytest.raises(AlignmentError):
            impl([], [], ["▁Hello"], vocab)


# ------------------------------------------------------------------ oracle equality (property tests)

PIECES = st.text(alphabet="ab1 ▁\n$.", min_size=0, max_size=4)


@st.composite
def token_problems(draw):
    teacher = draw(st.lists(PIECES, min_size=1, max_size=12))
    student = draw(st.lists(PIECES.map(lambda s: s.replace(" ", "▁")), min_size=1, max_size=12))
    steps = [
        draw(st.lists(st.tuples(st.one_of(st.just(t), PIECES), st.floats(0, 1)), min_size=0, max_size=6))
        for t in teacher
    ]
    return teacher, steps, student


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(token_problems())
def test_fast_equals_oracle_on_random_tokens(problem):
    teacher, steps, student = problem
    vocab = {s: i for i, s in enumerate(set(student) | {"▁a", "a", "▁", "1", "$", "."})}
    assert faithful_fast.dtw_mapping(teacher, student) == faithful_oracle.dtw_mapping(teacher, student)
    assert ordered(faithful_fast.align_faithful_fast(teacher, steps, student, vocab)) == ordered(
        faithful_oracle.align_faithful_oracle(teacher, steps, student, vocab)
    )


def test_fast_equals_oracle_on_real_rationales(teacher, student, vocab, rationales):
    from harness.align.synthetic import synthesize

    for sample_id, text in rationales[:25]:
        syn = synthesize(teacher, text, sample_id)
        s_tokens = list(student.encode(text).tokens)
        assert ordered(faithful_fast.align_faithful_fast(syn.tokens, syn.topk, s_tokens, vocab)) == ordered(
            faithful_oracle.align_faithful_oracle(syn.tokens, syn.topk, s_tokens, vocab)
        ), sample_id


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fast_equals_oracle_on_real_text_fragments(teacher, student, vocab, rationales, data):
    from harness.align.synthetic import synthesize

    _, text = data.draw(st.sampled_from(rationales))
    start = data.draw(st.integers(0, len(text) - 1))
    fragment = text[start : start + data.draw(st.integers(1, 120))]
    syn = synthesize(teacher, fragment, "fragment", seed=data.draw(st.integers(0, 5)))
    s_tokens = list(student.encode(fragment).tokens)
    if not s_tokens:
        return
    assert ordered(faithful_fast.align_faithful_fast(syn.tokens, syn.topk, s_tokens, vocab)) == ordered(
        faithful_oracle.align_faithful_oracle(syn.tokens, syn.topk, s_tokens, vocab)
    )
