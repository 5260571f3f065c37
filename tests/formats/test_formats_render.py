"""Golden strings for the four formats in both settings (made-up items, see conftest.py)."""

import pytest

from harness.errors import DataError, UsageError
from harness.formats import FORMATS, SETTINGS, answer_only_target, render_record, strip_colons

# A teacher CoT with ": " inside (no "The answer is" cut problem for CoT targets) ...
COT = "\nStep 1: Sam had 3 pens.\nStep 2: he gave 1 away, so 3 - 1 = 2.\nThe answer is 2\n"
# ... and one without, whose answer-only target is the same in both settings.
PLAIN = "\nSam had 3 pens and gave 1 away, so 3 - 1 = 2.\nThe answer is 2\n"

Q_FAITHFUL = "Samhow many pens are left? Notehe had 3 and gave 1 away."
Q_CORRECTED = "Sam: how many pens are left? Note: he had 3 and gave 1 away."
COT_FAITHFUL = "Step 1Sam had 3 pens.\nStep 2he gave 1 away, so 3 - 1 = 2.\nThe answer is 2"
COT_CORRECTED = "Step 1: Sam had 3 pens.\nStep 2: he gave 1 away, so 3 - 1 = 2.\nThe answer is 2"

# Demos keep their ": " in both settings (the authors read them straight from GSM8K train).
COT_DEMOS = (
    "Q: Ann has 4 cats: 2 are black. How many are not black?\nLet's think step by step\nNot black: 4 - 2 = 2 cats.\nThe answer is 2\n\n"
    "Q: What is 3 times 5?\nLet's think step by step\n3 * 5 = 15\nThe answer is 15\n\n"
    "Q: Bo runs 2 miles a day. How far in 3 days?\nLet's think step by step\n2 * 3 = 6 miles.\nThe answer is 6\n\n"
    "Q: A box holds 10 eggs; 4 break. How many are left?\nLet's think step by step\n10 - 4 = 6\nThe answer is 6\n\n"
)
AO_DEMOS = (
    "Q: Ann has 4 cats: 2 are black. How many are not black?\nA: The answer is 2\n\n"
    "Q: What is 3 times 5?\nA: The answer is 15\n\n"
    "Q: Bo runs 2 miles a day. How far in 3 days?\nA: The answer is 6\n\n"
    "Q: A box holds 10 eggs; 4 break. How many are left?\nA: The answer is 6\n\n"
)


@pytest.mark.parametrize("setting, q, cot", [("faithful", Q_FAITHFUL, COT_FAITHFUL), ("corrected", Q_CORRECTED, COT_CORRECTED)])
def test_golden_cot_formats(setting, q, cot, question, demos):
    assert render_record("zero_shot_cot", setting, question.question, COT, []) == (f"Q: {q}\nLet's think step by step", cot)
    assert render_record("in_context_cot", setting, question.question, COT, demos) == (
        COT_DEMOS + f"Q: {q}\nLet's think step by step", cot)


@pytest.mark.parametrize("setting, q", [("faithful", Q_FAITHFUL), ("corrected", Q_CORRECTED)])
def test_golden_answer_only_formats(setting, q, question, demos):
    assert render_record("zero_shot_answer_only", setting, question.question, PLAIN, []) == (f"Q: {q} A:", "The answer is 2")
    assert render_record("in_context_answer_only", setting, question.question, PLAIN, demos) == (
        AO_DEMOS + f"Q: {q}\nA:", "The answer is 2")


def test_faithful_full_strings(question, demos):
    """One complete string per setting, spelled out, so the `": "` deletion is visible."""
    enc, dec = render_record("zero_shot_cot", "faithful", question.question, COT, [])
    assert enc == "Q: Samhow many pens are left? Notehe had 3 and gave 1 away.\nLet's think step by step"
    assert dec == "Step 1Sam had 3 pens.\nStep 2he gave 1 away, so 3 - 1 = 2.\nThe answer is 2"
    enc, dec = render_record("zero_shot_cot", "corrected", question.question, COT, [])
    assert enc == "Q: Sam: how many pens are left? Note: he had 3 and gave 1 away.\nLet's think step by step"
    assert dec == "Step 1: Sam had 3 pens.\nStep 2: he gave 1 away, so 3 - 1 = 2.\nThe answer is 2"


def test_strip_colons_matches_the_authors_prefixed_stripper():
    authors = lambda s: "".join(s.split(": ")[1:]).strip()  # noqa: E731 - their get_question_or_cot
    for text in [COT, Q_CORRECTED, "a:: b", ": lead", "x: ", "no colon", "12:30 pm: lunch", "\n"]:
        assert strip_colons(text) == authors(f"Question 12: {text}\n") == authors(f"Model output 3: {text}")


def test_answer_only_target_rules():
    # faithful keeps only the CoT before its first ": ", so "The answer is" after one is lost.
    assert answer_only_target(COT, "faithful") is None
    assert answer_only_target(COT, "corrected") == "The answer is 2"
    assert answer_only_target("x\nThe answer is 5: five\n", "faithful") == "The answer is 5"
    assert answer_only_target("x\nThe answer is 5: five\n", "corrected") == "The answer is 5: five"
    assert answer_only_target("The answer is 3. The answer is 4", "faithful") == "The answer is 3. "
    assert answer_only_target("no final line", "corrected") is None


def test_errors(question, demos):
    with pytest.raises(UsageError, match="format: 'cot'.*in_context_answer_only, in_context_cot, zero_shot_answer_only, zero_shot_cot"):
        render_record("cot", "faithful", "q", COT, [])
    with pytest.raises(UsageError, match="setting: 'clean'.*faithful, corrected"):
        render_record("zero_shot_cot", "clean", "q", COT, [])
    with pytest.raises(DataError, match="needs 4 demos"):
        render_record("in_context_cot", "faithful", "q", COT, demos[:3])
    with pytest.raises(DataError, match="take no demos"):
        render_record("zero_shot_cot", "faithful", "q", COT, demos)
    with pytest.raises(DataError, match="no 'The answer is'"):
        render_record("zero_shot_answer_only", "corrected", "q", "no answer", [])
    assert set(FORMATS) == {"in_context_answer_only", "in_context_cot", "zero_shot_answer_only", "zero_shot_cot"}
    assert SETTINGS == ("faithful", "corrected")
