"""Prompt layouts of the paper's evaluation protocols, rendered to plain strings.

Each function returns the exact text the model sees, so the lm-eval tasks, replay scoring and
(later) the training formats agree, and tests can compare against golden strings.
Layouts follow the authors' scripts (authors-code-protocol.md §6):

- distilled models (test_distill_multiple.py, `cot_4_cases`):
  `{4-case prompt}\\nQ: {q}\\nLet's think step by step\\n`; zero-shot: `Q: {q}\\nLet's think step by step\\n`
- base models (the Flan-T5 notebooks): `{8-shot prompt}\\nQuestion: {q}\\n`, plus
  `Let's think step by step\\n` for MultiArith/ASDiv/SVAMP
- BBH CoT (test_bbh.py): `{prompt file}\\n\\nQ: {input}\\nA: Let's think step by step.\\n`
- BBH answer-only: a proper 3-shot AO prompt built from the same exemplars, and the authors'
  malformed one (`modify_prompt`) kept as `faithful`.
"""

from __future__ import annotations

import re

COT_TRIGGER = "Let's think step by step"


def distill_cot(question: str, demos: str) -> str:
    """The distilled-model prompt: the fixed 4-case demos, then the question and the trigger."""
    return f"{demos}\nQ: {question}\n{COT_TRIGGER}\n"


def distill_zeroshot(question: str) -> str:
    return f"Q: {question}\n{COT_TRIGGER}\n"


def base_cot(question: str, demos: str, trigger: bool) -> str:
    """The base-model prompt of Table 1's "before" rows (8-shot `Question:` demos).

    The authors' MultiArith notebook joined `prompt + "Question: "` (no newline; their
    *_from_gsm8k prompt files are lost), the GSM8K and ASDiv ones `prompt + "\nQuestion: "`. With
    the prompt files' trailing newline both give the same T5 ids, so one layout serves all.
    """
    return f"{demos}\nQuestion: {question}\n" + (f"{COT_TRIGGER}\n" if trigger else "")


def strip_colons(text: str) -> str:
    """The authors' question/CoT stripper on a bare text: every `": "` deleted, then stripped.

    Their `''.join(("Question 3: " + text).split(': ')[1:]).strip()` equals this, because
    `str.split` finds the prefix's own `": "` first and then splits `text` exactly as here. The
    faithful training formats, and the alignment of their targets, use it.
    """
    return "".join(text.split(": ")).strip()


def teacher_cot(question: str, demos: str) -> str:
    """The teacher-sampling prompt (the authors' codex_decode_gsm8k.py): the 8-shot demos, a
    newline, `Question: {q}`, a newline and the trigger, with no trailing newline."""
    return f"{demos}\nQuestion: {question}\n{COT_TRIGGER}"


def bbh_cot(question: str, prompt_file: str) -> str:
    return f"{prompt_file}\n\nQ: {question}\nA: {COT_TRIGGER}.\n"


def bbh_exemplars(prompt_file: str) -> tuple[str, list[tuple[str, str, str]]]:
    """Split a BBH CoT prompt file into its header and (question, reasoning, answer) exemplars."""
    header, _, body = prompt_file.partition("\n\nQ: ")
    exemplars = []
    for block in ("Q: " + body).split("\n\nQ: "):
        block = block.removeprefix("Q: ")
        question, sep, reasoning = block.partition(f"\nA: {COT_TRIGGER}.")
        answer = re.search(r"So the answer is (.*?)\.?\s*$", reasoning, re.DOTALL)
        if not sep or not answer:
            raise ValueError(f"BBH exemplar does not have the 'A: {COT_TRIGGER}. … So the answer is X.' shape: {block[:80]!r}")
        exemplars.append((question, reasoning.strip(), answer.group(1).strip()))
    return header, exemplars


def bbh_ao(question: str, prompt_file: str) -> str:
    """A proper 3-shot answer-only prompt: header, then `Q: …\\nA: X` for each exemplar."""
    header, exemplars = bbh_exemplars(prompt_file)
    shots = "\n\n".join(f"Q: {q}\nA: {a}" for q, _, a in exemplars)
    return f"{header}\n\n{shots}\n\nQ: {question}\nA:"


def bbh_ao_faithful(question: str, prompt_file: str) -> str:
    """The authors' `modify_prompt` + query, bug included.

    Keeps the text before the first `A:`, appends `A: the answer is `, then the text between the
    first and second `the answer is `: exemplar 1 answer-only, exemplar 2 with its CoT cut after
    "So ", exemplar 3 lost.
    """
    head = prompt_file.split("A:")[0]
    between = prompt_file.split("the answer is ")[1]
    return f"{head}A: the answer is {between}\n\nQ: {question}\nA: the answer is "
