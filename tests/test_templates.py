"""Golden prompt strings for every family (synthetic inputs), plus structure on the real files."""

import pytest

from harness import templates as T
from harness.data import bbh
from harness.data.prompts import authors_prompt

# A made-up BBH prompt file with the real files' shape (canary, -----, description, 3 exemplars).
SYNTH_BBH = (
    "CANARY LINE\n-----\nDecide.\n\n"
    "Q: Is 1 odd?\nA: Let's think step by step.\n1 is odd. So the answer is Yes.\n\n"
    "Q: Is 2 odd?\nA: Let's think step by step.\n2 is even. So the answer is No.\n\n"
    "Q: Is 3 odd?\nA: Let's think step by step.\n3 is odd. So the answer is Yes."
)


def test_distill_golden():
    assert T.distill_cot("What is 1+1?", "Q: d\nLet's think step by step\nThe answer is 1\n") == (
        "Q: d\nLet's think step by step\nThe answer is 1\n\nQ: What is 1+1?\nLet's think step by step\n"
    )
    assert T.distill_zeroshot("What is 1+1?") == "Q: What is 1+1?\nLet's think step by step\n"


def test_base_golden():
    demos = "Question: d\nLet's think step by step\nThe answer is 1.\n"
    assert T.base_cot("What is 1+1?", demos, trigger=False) == demos + "\nQuestion: What is 1+1?\n"
    assert T.base_cot("What is 1+1?", demos, trigger=True) == demos + "\nQuestion: What is 1+1?\nLet's think step by step\n"


def test_bbh_golden():
    assert T.bbh_cot("Is 5 odd?", SYNTH_BBH) == SYNTH_BBH + "\n\nQ: Is 5 odd?\nA: Let's think step by step.\n"
    assert T.bbh_ao("Is 5 odd?", SYNTH_BBH) == (
        "CANARY LINE\n-----\nDecide.\n\nQ: Is 1 odd?\nA: Yes\n\nQ: Is 2 odd?\nA: No\n\nQ: Is 3 odd?\nA: Yes\n\nQ: Is 5 odd?\nA:"
    )
    # The authors' modify_prompt: exemplar 1 answer-only, exemplar 2 cut after "So ", exemplar 3 lost.
    assert T.bbh_ao_faithful("Is 5 odd?", SYNTH_BBH) == (
        "CANARY LINE\n-----\nDecide.\n\nQ: Is 1 odd?\nA: the answer is Yes.\n\n"
        "Q: Is 2 odd?\nA: Let's think step by step.\n2 is even. So \n\nQ: Is 5 odd?\nA: the answer is "
    )


def test_bbh_exemplar_shape_error():
    with pytest.raises(ValueError, match="exemplar"):
        T.bbh_exemplars("header\n\nQ: x\nA: no trigger here")


@pytest.mark.parametrize("task", bbh.TASKS)
def test_real_bbh_prompts_render(task):
    prompt_file = bbh.cot_prompt(task)
    header, exemplars = T.bbh_exemplars(prompt_file)
    assert len(exemplars) == 3
    assert header.splitlines()[1] == "-----"
    ao = T.bbh_ao("QUERY", prompt_file)
    assert ao.count("\nA: ") == 3 and ao.endswith("\n\nQ: QUERY\nA:") and "step by step" not in ao
    faithful = T.bbh_ao_faithful("QUERY", prompt_file)
    third_question = exemplars[2][0]
    assert third_question not in faithful  # the bug: the third exemplar is dropped
    assert faithful.count("the answer is ") == 2 and faithful.endswith("\n\nQ: QUERY\nA: the answer is ")


def test_real_distill_prompt_structure():
    demos = authors_prompt("simple_4_cases")
    rendered = T.distill_cot("QUERY", demos)
    assert rendered.startswith(demos) and rendered.count("Q: ") == 5
    assert rendered.count("The answer is") == 4 and rendered.endswith("\n\nQ: QUERY\nLet's think step by step\n")
