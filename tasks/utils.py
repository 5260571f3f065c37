"""lm-eval glue for the spec tasks: documents (prompts rendered by harness.templates) and scoring.

Only what YAML cannot say lives here. Every task reports two metrics from the same generation:
`acc_faithful` (the authors' rule) and `acc_corrected` (ours); see harness/answers.py.
Task options arrive through `dataset_kwargs` (fixed per task) and `--metadata` (per run):
`split_mode` ("faithful" | "clean"), `base_prompt` (complex/original/simple/random/direct),
`data_dir` (else $SPEC_DATA_DIR).
"""

from __future__ import annotations

import datasets

from harness import answers, templates
from harness.data import bbh, load
from harness.data.prompts import authors_prompt

MATH_TRIGGER_SETS = ("multiarith", "asdiv", "svamp")  # base protocol adds the CoT trigger for these


def render_math(example, protocol: str, base_prompt: str = "original", data_dir=None) -> str:
    if protocol == "cot_spec":
        return templates.distill_cot(example.question, authors_prompt("simple_4_cases", data_dir))
    if protocol == "cot_spec_zeroshot":
        return templates.distill_zeroshot(example.question)
    if protocol == "cot_base":
        trigger = example.source in MATH_TRIGGER_SETS and base_prompt != "direct"
        return templates.base_cot(example.question, authors_prompt(base_prompt, data_dir), trigger)
    raise ValueError(f"unknown math protocol {protocol!r}")


def render_bbh(example, protocol: str, data_dir=None) -> str:
    prompt_file = bbh.cot_prompt(example.subset, data_dir)
    render = {"cot": templates.bbh_cot, "ao": templates.bbh_ao, "ao_faithful": templates.bbh_ao_faithful}
    if protocol not in render:
        raise ValueError(f"unknown BBH protocol {protocol!r}")
    return render[protocol](example.question, prompt_file)


def math_docs(source, split, protocol, split_mode="faithful", base_prompt="original", data_dir=None, **_):
    """custom_dataset for the math tasks: {"test": Dataset} of rendered documents."""
    examples = load(source, split, mode=split_mode, data_dir=data_dir)
    rows = [
        {
            "id": e.id,
            "question": e.question,
            "prompt": render_math(e, protocol, base_prompt, data_dir),
            "target": e.answer,
            "number": e.number,
            "gold_raw": e.gold_raw,
        }
        for e in examples
    ]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def bbh_docs(subtask, protocol, data_dir=None, **_):
    """custom_dataset for one BBH subtask under one protocol (cot | ao | ao_faithful)."""
    rows = [
        {"id": e.id, "subset": e.subset, "question": e.question, "prompt": render_bbh(e, protocol, data_dir), "target": e.answer}
        for e in bbh.load(subtask, data_dir)
    ]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def process_math(doc, results):
    return answers.score_math(results[0], doc["gold_raw"], doc["number"], doc["target"])


def process_bbh_cot(doc, results):
    return answers.score_bbh(results[0], doc["target"], "cot")


def process_bbh_ao(doc, results):
    return answers.score_bbh(results[0], doc["target"], "ao")
