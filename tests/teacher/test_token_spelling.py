"""Token strings that spell the text, under each server's convention for partial UTF-8."""

from __future__ import annotations

import math

import pytest

from harness.errors import DataError
from harness.teacher.token_spelling import display_token, legacy_entries, logprob_or_nan, spell


def test_spell_conventions():
    # OpenAI: partial UTF-8 as "bytes:\\x..": the character goes to the token that completes it
    assert spell([" caf", "bytes:\\xc3", "bytes:\\xa9", "!"], None, " café!", allow_prefix=False) == [" caf", "", "é", "!"]
    # chat: exact bytes
    assert spell(["x", "\\xe2\\x80", "\\x99"], [[120], [226, 128], [153]], "x’", allow_prefix=False) == ["x", "", "’"]
    # vLLM: U+FFFD placeholders are matched against the text
    assert spell([" caf", "\ufffd", "\ufffd", "!"], None, " café!", allow_prefix=False) == [" caf", "", "é", "!"]
    assert spell(["\ufffd", "\ufffd\ufffd", "a"], None, "😀a", allow_prefix=False) == ["", "😀", "a"]
    # vLLM stop strings: tokens run past the text; cut at its end
    assert spell([" The", " end", "\n\nQ", "uestion"], None, " The end\n", allow_prefix=True) == [" The", " end", "\n"]
    assert spell([" caf", "\ufffd", "\ufffd", " Question"], None, " café", allow_prefix=True) == [" caf", "", "é"]
    with pytest.raises(DataError, match="do not spell"):
        spell([" The", " end"], None, " The start", allow_prefix=False)


def test_top_k_strings_and_missing_logprobs():
    assert display_token("bytes:\\xc3") == "\ufffd" and display_token("x", [195, 169]) == "é"
    assert legacy_entries({" a": -0.1, "bytes:\\xc3": -2.0}) == [(" a", -0.1), ("\ufffd", -2.0)]
    assert legacy_entries(None) == []
    notes = {"missing_logprob": 0}
    assert math.isnan(logprob_or_nan(None, notes)) and notes["missing_logprob"] == 1 and logprob_or_nan(-1, notes) == -1.0
