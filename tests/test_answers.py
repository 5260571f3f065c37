import pytest

from harness import answers as A


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so 5 + 3 = 8. The answer is 8", 8.0),
        ("The answer is 1,000.", 1000.0),  # comma thousands
        ("He lost money. The answer is -5", -5.0),  # sign kept
        ("The answer is $12.50 dollars", 12.5),  # currency and decimal
        ("The answer is .5", 0.5),
        ("first 3 then 7 apples", 7.0),  # no phrase: last number
        ("no number here", None),
        ("The answer is 12. The answer is 13.", 12.0),  # first "The answer is" wins
        ("the ANSWER IS 4", 4.0),  # any case
        ("x = 2 The answer is 9 Q: Tom has 40 apples", 9.0),  # T5-style run-on, no newline
        ("so it is 9 Q: Tom has 40 apples", 9.0),  # continuation cut before falling back to last number
    ],
)
def test_extract_number(text, expected):
    assert A.extract_number(text) == expected


def test_authors_rule_reproduces_their_bugs():
    # comma: "1,000" -> last match "000" -> 0.0, so it equals a gold of 0 and not 1000
    assert A.authors_last_number("The answer is 1,000") == 0.0
    assert not A.authors_math_correct("The answer is 1,000", "#### 1000")
    # no minus sign: -5 equals 5
    assert A.authors_math_correct("The answer is -5", "5")
    # last number of the whole generation, not the one after "The answer is"
    assert not A.authors_math_correct("The answer is 8. Q: 3 cats", "8")
    # gold without a number is always wrong
    assert not A.authors_math_correct("The answer is Yes", "Yes")
    assert A.authors_math_correct("The answer is 8.0", "[8.0]")


def test_corrected_rule():
    assert A.corrected_math_correct("The answer is 1,000", 1000.0, "1000")
    assert not A.corrected_math_correct("The answer is -5", 5.0, "5")
    assert A.corrected_math_correct("The answer is 8. Q: 3 cats", 8.0, "8")
    assert A.corrected_math_correct("The answer is 0.1", 0.1, "0.1")
    assert not A.corrected_math_correct("I do not know", 3.0, "3")
    # non-numeric gold (ASDiv "Yes", "3:30 p.m.") compared as text
    assert A.corrected_math_correct("So the answer is yes.", None, "Yes")
    assert A.corrected_math_correct("The answer is 3:30 p.m.", None, "3:30 p.m.")
    assert not A.corrected_math_correct("The answer is 30", None, "3:30 p.m.")
    # a gold of several numbers: the numbers after "The answer is", in order
    gold = "5 (years old); 15 (years old)"
    assert A.parse_gold_number(gold) is None
    assert A.corrected_math_correct("The answer is 5 and 15", None, gold)
    assert not A.corrected_math_correct("The answer is 15 and 5", None, gold)
    assert not A.corrected_math_correct("The answer is 5", None, gold)


def test_parse_gold_number():
    forms = ("72", "1,000", "9 (apples)", "a\n#### 12", "Yes", "5 (a); 6 (b)", "-3")
    assert [A.parse_gold_number(t) for t in forms] == [72.0, 1000.0, 9.0, 12.0, None, None, -3.0]


def test_canonical_number():
    assert [A.canonical_number(x) for x in (72.0, 0.5, -3.0, 1e20)] == ["72", "0.5", "-3", "1e+20"]


def test_bbh_authors_rules():
    assert A.authors_bbh_cot_correct("x. So the answer is (B).", "(B)")
    # only the text between the first and second "the answer is" counts (test_bbh.py's split()[1])
    assert not A.authors_bbh_cot_correct("So the answer is (A). Q: z. So the answer is (B).", "(B)")
    # their decode keeps "</s>": a finished generation matches a ">" target (dyck_languages)
    assert A.authors_bbh_cot_correct("So the answer is ] ]", ">") and A.authors_bbh_ao_correct("]", ">")
    assert not A.bbh_exact_correct("So the answer is ] ]", ">")
    assert not A.authors_bbh_cot_correct("x. So The answer is (B).", "(B)")  # case-sensitive
    assert A.authors_bbh_cot_correct("So the answer is 16.", "6")  # lenient substring
    assert not A.authors_bbh_cot_correct("(B) is right", "(B)")  # phrase required
    assert A.authors_bbh_ao_correct("(B).", "(B)")
    assert A.authors_bbh_ao_correct("the answer is 16", "6")


@pytest.mark.parametrize(
    "prediction, target, extracted",
    [
        ("So the answer is (B).", "(B)", "(B)"),
        ("So The Answer Is (C) 12/25/1937.", "(B)", "(C)"),
        ("B", "(B)", "(B)"),
        ("So the answer is 16.", "6", "16"),
        ("So the answer is True. Q: not False", "True", "True"),
        ("So the answer is valid.", "valid", "valid"),
        ("So the answer is apple banana cherry.", "apple banana cherry", "apple banana cherry"),
        ("So the answer is ] ) }.", "] ) }", "] ) }"),
        ("12 Q: next", "12", "12"),
    ],
)
def test_bbh_exact_extraction(prediction, target, extracted):
    assert A.extract_bbh_answer(prediction, target) == extracted


def test_bbh_exact_rule():
    assert A.bbh_exact_correct("So the answer is (B).", "(B)")
    assert not A.bbh_exact_correct("So the answer is 16.", "6")  # no substring leniency
    assert A.bbh_exact_correct("So the answer is true.", "True")  # case folded
    assert A.score_bbh("So the answer is 16.", "6", "cot") == {"acc_faithful": 1.0, "acc_corrected": 0.0, "acc_bbh": 0.0}
    assert A.score_math("The answer is -5", "#### -5", -5.0, "-5") == {"acc_faithful": 1.0, "acc_corrected": 1.0}


# --- BBH `corrected`: exactly one stated option; CoT needs the answer phrase ------------------


@pytest.mark.parametrize(
    "prediction, target, protocol, correct",
    [
        ("So the answer is (A) or (B).", "(A)", "cot", False),  # hedge: two options
        ("So the answer is (A), (B) or (C).", "(C)", "cot", False),
        ("So the answer is (A). (A) is the only adjective order that works", "(A)", "cot", True),  # same option twice
        ("So the answer is (a).", "(A)", "cot", True),  # case
        ("So the answer is ( B ).", "(B)", "cot", True),  # spacing
        ("so THE ANSWER IS (B)", "(B)", "cot", True),
        ("Option (A) is wrong and (B) fits the order.", "(B)", "cot", False),  # no answer phrase in CoT
        ("Yes", "Yes", "cot", False),  # CoT without the phrase is never an answer
        ("Yes", "Yes", "ao", True),  # answer-only: the stripped generation is the answer
        ("(B)", "(B)", "ao", True),
        ("(A) or (B)", "(A)", "ao", False),
        ("So the answer is Yes or No.", "Yes", "cot", False),
        ("So the answer is   valid .", "valid", "cot", True),
    ],
)
def test_bbh_corrected_hedges_options_and_phrases(prediction, target, protocol, correct):
    assert A.bbh_exact_correct(prediction, target, protocol) is correct


@pytest.mark.parametrize(
    "prediction, target, protocol, correct",
    [
        ("Step 1. So the answer is (B).", "(B)", "cot", True),
        ("So the answer is (A). Then again the answer is (B).", "(B)", "cot", True),  # the last phrase counts
        ("So the answer is (b).", "(B)", "cot", False),  # case-sensitive
        ("So the answer is (B)", "(B)", "cot", True),
        ("So the answer is (B)..", "(B)", "cot", False),  # one full stop removed, not two
        ("So The answer is (B).", "(B)", "cot", False),  # the phrase is lowercase
        ("(B)", "(B)", "cot", True),  # no phrase: the whole (stripped) text is compared
        ("  (B)\n", "(B)", "ao", True),
        ("the answer is True.", "True", "ao", True),
        ("True. False", "True", "ao", False),
    ],
)
def test_bbh_paper_rule(prediction, target, protocol, correct):
    assert A.bbh_paper_correct(prediction, target, protocol) is correct
    assert A.score_bbh(prediction, target, protocol)["acc_bbh"] == float(correct)
