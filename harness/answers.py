"""Answer extraction and scoring rules, shared by the lm-eval tasks and replay scoring.

Rule families side by side (see README, "Filters", and docs/protocol.md):
- `faithful`: what the authors' code did (FranxYao/FlanT5-CoT-Specialization, src/utils and
  test_bbh.py): last `\\d*\\.?\\d+` in the whole generation compared as floats; BBH
  case-sensitive substring rules.
- `corrected`: commas, signs and decimals parsed; the number after the first
  "The answer is" preferred; BBH answers extracted and compared exactly (exactly one option).
- `bbh` (BBH only): the BBH paper's exact match, which reproduces its code-davinci-002 row.

Standard library only: training-time filtering of teacher samples uses the same functions.
"""

from __future__ import annotations

import math
import re

# --- numbers -------------------------------------------------------------------------------

AUTHORS_NUMBER = re.compile(r"\d*\.?\d+")
NUMBER = re.compile(r"-?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
ANSWER_IS = re.compile(r"the answer is", re.IGNORECASE)


def canonical_number(value: float) -> str:
    """72.0 -> "72", 0.5 -> "0.5", -3.0 -> "-3"; the form stored in Example.answer."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def parse_number(token: str) -> float | None:
    """'1,000' -> 1000.0, '-$5.50' -> -5.5, '.5' -> 0.5; None if it is not a number."""
    cleaned = token.replace(",", "").replace("$", "").replace(" ", "")
    try:
        return float(cleaned)
    except ValueError:
        return None


# A gold such as "9 (apples)" or "1,000"; "5 (years old); 15 (years old)" is not one number.
NUMERIC_GOLD = re.compile(r"\s*(-?[\d,]*\.?\d+)\s*(\([^()]*\))?\s*")


def parse_gold_number(text: str) -> float | None:
    """The number of a single-number gold ('72', '1,000', '9 (apples)', '… #### 72'), else None."""
    match = NUMERIC_GOLD.fullmatch(text.rsplit("####", 1)[-1])
    return parse_number(match.group(1)) if match else None


def authors_last_number(text: str) -> float | None:
    """The authors' extraction: the last `\\d*\\.?\\d+` anywhere, as a float ("1,000" -> 0.0)."""
    found = AUTHORS_NUMBER.findall(text)
    return float(found[-1]) if found else None


def authors_math_correct(prediction: str, gold_raw: str) -> bool:
    """Faithful math rule: last number of prediction == last number of the gold text, exactly.

    A gold with no number (ASDiv "Yes") is counted wrong, as in the authors' scorer.
    """
    gold = authors_last_number(gold_raw)
    pred = authors_last_number(prediction)
    return gold is not None and pred is not None and pred == gold


CONTINUATION = re.compile(r"(?:^|\s)(?:Q|Question):\s")


def strip_continuation(prediction: str) -> str:
    """Cut a generation where it starts a new exemplar ("Q: …" / "Question: …").

    Models without a working stop sequence (T5 cannot emit the newlines lm-eval stops on) run
    on into a made-up next question; its numbers must not count as the answer.
    """
    match = CONTINUATION.search(prediction)
    return prediction[: match.start()] if match and match.start() > 0 else prediction


def answer_span(prediction: str) -> str | None:
    """Text after the first "The answer is" (any case), or None when the phrase is absent.

    The first occurrence is the model's conclusion; later ones are usually a continuation
    that starts a new, made-up question.
    """
    match = ANSWER_IS.search(prediction)
    return prediction[match.end():] if match else None


def extract_number(prediction: str) -> float | None:
    """Corrected extraction: first number after "The answer is", else the last number before any
    made-up continuation."""
    prediction = strip_continuation(prediction)
    span = answer_span(prediction)
    if span is not None:
        found = NUMBER.search(span)
        if found:
            return parse_number(found.group())
    found = NUMBER.findall(prediction)
    return parse_number(found[-1]) if found else None


def _normalise_text(text: str) -> str:
    text = text.strip().strip("*\"'` ").rstrip(".").strip()
    return re.sub(r"\s+", " ", text).lower()


def corrected_math_correct(prediction: str, gold_number: float | None, gold_answer: str) -> bool:
    """Corrected math rule: numbers compared with a 1e-6 tolerance; a gold of several numbers
    ("5 (years old); 15 (years old)") by the numbers after "The answer is", in order; any other
    non-numeric gold ("Yes", "3:30 p.m.") as text."""
    if gold_number is not None:
        pred = extract_number(prediction)
        return pred is not None and math.isclose(pred, gold_number, rel_tol=1e-9, abs_tol=1e-6)
    if ";" in gold_answer:
        gold = [parse_number(t) for t in NUMBER.findall(gold_answer)]
        if len(gold) > 1:
            text = strip_continuation(prediction)
            span = answer_span(text)
            got = [parse_number(t) for t in NUMBER.findall(span if span is not None else text)][: len(gold)]
            return len(got) == len(gold) and all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(got, gold))
    return _normalise_text(extract_text_answer(prediction)) == _normalise_text(gold_answer)


# --- BIG-Bench Hard --------------------------------------------------------------------------

AUTHORS_BBH_PHRASE = "the answer is"
CHOICE = re.compile(r"\([A-R]\)")


# test_bbh.py decodes T5 output without skipping special tokens, so a finished generation ends
# in "</s>" - and a target such as ">" (dyck_languages) then always matches. The faithful BBH rules
# score `prediction + "</s>"`, assuming the generation ended with EOS (it nearly always does).
AUTHORS_EOS = "</s>"


def _as_authors_saw_it(prediction: str) -> str:
    return prediction if prediction.endswith(AUTHORS_EOS) else prediction + AUTHORS_EOS


def authors_bbh_cot_correct(prediction: str, target: str) -> bool:
    """Faithful CoT rule (test_bbh.py): lowercase "the answer is" present, and the target a
    substring of `output.split("the answer is")[1]` - the text between its first and second
    occurrence. Case-sensitive: "The answer is" never matches."""
    text = _as_authors_saw_it(prediction)
    if AUTHORS_BBH_PHRASE not in text:
        return False
    return target in text.split(AUTHORS_BBH_PHRASE)[1]


def authors_bbh_ao_correct(prediction: str, target: str) -> bool:
    """Faithful answer-only rule: target is a substring of the whole output (with its "</s>")."""
    return target in _as_authors_saw_it(prediction)


def extract_text_answer(prediction: str) -> str:
    """The first sentence after "the answer is" (any case), else of the first line."""
    span = answer_span(prediction)
    text = span if span is not None else prediction
    text = strip_continuation(text.strip()).strip().split("\n")[0]
    # The answer ends at the sentence's full stop: "So the answer is 16. Q: ..." -> "16".
    text = re.split(r"\.(?:\s|$)", text, maxsplit=1)[0]
    return text.strip().strip("*\"'` ").rstrip(".").strip()


CHOICE_LOOSE = re.compile(r"\(\s*([A-Ra-r])\s*\)")
SENTENCE_END = re.compile(r"\.(?:\s|$)")


def _answer_clause(prediction: str) -> tuple[str, bool]:
    """(the clause that states the answer, whether "the answer is" was found).

    The clause runs from the first "the answer is" (any case; else the start) to the end of its
    line, its sentence, or a made-up next question, whichever comes first.
    """
    span = answer_span(prediction)
    text = span if span is not None else prediction
    text = strip_continuation(text.strip()).strip().split("\n")[0]
    return text, span is not None


def extract_bbh_answer(prediction: str, target: str | None = None) -> str | None:
    """Corrected BBH extraction: the answer stated after "the answer is" (any case), else in the
    first line.

    For multiple-choice targets like "(B)" the clause must name exactly one option: "(B) 12/25/1937."
    gives "(B)", "( b )" gives "(B)", a bare "B" gives "(B)", but a hedge such as "(A) or (B)" names
    two and gives None (counted wrong).
    """
    if target is not None and CHOICE.fullmatch(target.strip()):
        text, _ = _answer_clause(prediction)
        text = SENTENCE_END.split(text, maxsplit=1)[0]
        options = {m.upper() for m in CHOICE_LOOSE.findall(text)}
        if len(options) == 1:
            return f"({options.pop()})"
        if options:
            return None  # several options stated: a hedge, not an answer
        bare = re.fullmatch(r"\s*([A-R])\s*\.?\s*", text)
        return f"({bare.group(1)})" if bare else text.strip()
    return extract_text_answer(prediction)


def bbh_exact_correct(prediction: str, target: str, protocol: str = "ao") -> bool:
    """Corrected rule: the extracted answer equals the target (whitespace and case folded).

    In chain-of-thought tasks ("cot") a generation that never says "the answer is" is wrong:
    its first line is reasoning, not an answer.
    """
    if protocol == "cot" and answer_span(strip_continuation(prediction)) is None:
        return False
    extracted = extract_bbh_answer(prediction, target)
    return extracted is not None and _normalise_text(extracted) == _normalise_text(target)


# --- the BBH authors' exact match (Suzgun et al., 2022) --------------------------------------
#
# How the BBH paper scored code-davinci-002 (the row Fu et al. copy into Table 1): exact string
# match of the text after the *last* "the answer is " (CoT), or of the whole stripped generation
# (answer-only), with one trailing full stop removed. Case-sensitive, no option parsing.

PAPER_BBH_PHRASE = "the answer is "


def _drop_full_stop(text: str) -> str:
    return text[:-1] if text.endswith(".") else text


def bbh_paper_answer(prediction: str, protocol: str) -> str:
    """The answer string the BBH authors compared with the target."""
    if protocol == "cot":
        return _drop_full_stop(prediction.split(PAPER_BBH_PHRASE)[-1].strip())
    text = prediction.strip()
    if PAPER_BBH_PHRASE in text:
        text = text.split(PAPER_BBH_PHRASE)[-1].strip()
    return _drop_full_stop(text)


def bbh_paper_correct(prediction: str, target: str, protocol: str) -> bool:
    """The `bbh` rule: the BBH authors' exact match (protocol "cot" or "ao")."""
    return bbh_paper_answer(prediction, protocol) == target


# --- one verdict per item, as the tasks and replay scoring report it -------------------------


def score_math(prediction: str, gold_raw: str, gold_number: float | None, gold_answer: str) -> dict[str, float]:
    return {
        "acc_faithful": float(authors_math_correct(prediction, gold_raw)),
        "acc_corrected": float(corrected_math_correct(prediction, gold_number, gold_answer)),
    }


BBH_RULES = ("faithful", "corrected", "bbh")


def score_bbh(prediction: str, target: str, protocol: str) -> dict[str, float]:
    """All three BBH rules for one generation. protocol: "cot" or "ao".

    faithful: Fu et al.'s test_bbh.py (CoT substring between the 1st and 2nd phrase; AO substring);
    corrected: ours (one stated answer, exact); bbh: the BBH paper's exact match.
    """
    faithful = authors_bbh_cot_correct if protocol == "cot" else authors_bbh_ao_correct
    return {
        "acc_faithful": float(faithful(prediction, target)),
        "acc_corrected": float(bbh_exact_correct(prediction, target, protocol)),
        "acc_bbh": float(bbh_paper_correct(prediction, target, protocol)),
    }
