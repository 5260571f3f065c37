"""The task YAMLs: generated, loadable by lm-eval, rendering what harness.templates renders,
and free of the T5 pitfalls (long prompts, stop strings T5 cannot emit, dropped newlines)."""

import subprocess
import sys

import pytest

from harness import t5_tokenizer, templates
from harness.config import TASKS_DIR
from harness.data import bbh, load
from harness.data.prompts import authors_prompt
from harness.eval.run import SEQ2SEQ_MAX_LENGTH

TASK_NAMES = [line.split(": ", 1)[1] for p in sorted(TASKS_DIR.glob("*.yaml")) for line in p.read_text().splitlines() if line.startswith("task: ")]
GROUP_NAMES = [line.split(": ", 1)[1] for p in sorted(TASKS_DIR.glob("*.yaml")) for line in p.read_text().splitlines() if line.startswith("group: ")]


@pytest.fixture(scope="module")
def manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR))


def test_yamls_match_generator():
    result = subprocess.run([sys.executable, str(TASKS_DIR / "_generate.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_task_inventory(manager):
    math = [f"{s}_{p}{d}" for p in ("cot_spec", "cot_spec_zeroshot", "cot_base") for s in ("gsm8k", "multiarith", "asdiv", "svamp") for d in ("", "_dev")]
    bbh_tasks = [f"{g}_{t}" for g in ("bbh_cot_spec", "bbh_ao_spec", "bbh_ao_spec_faithful") for t in bbh.TASKS]
    assert sorted(TASK_NAMES) == sorted(math + bbh_tasks)
    assert len(GROUP_NAMES) == 6 + 3  # M-A-S groups, BBH groups
    known = set(manager.all_tasks)
    assert set(TASK_NAMES) <= known and set(GROUP_NAMES) <= known


CASES = [
    ("gsm8k_cot_spec", "gsm8k", "test", lambda e: templates.distill_cot(e.question, authors_prompt("simple_4_cases")), 1319),
    ("gsm8k_cot_spec_dev", "gsm8k", "dev", lambda e: templates.distill_cot(e.question, authors_prompt("simple_4_cases")), 200),
    ("svamp_cot_spec_zeroshot", "svamp", "test", lambda e: templates.distill_zeroshot(e.question), 1000),
    ("asdiv_cot_spec_dev", "asdiv", "dev", lambda e: templates.distill_cot(e.question, authors_prompt("simple_4_cases")), 300),
    ("gsm8k_cot_base", "gsm8k", "test", lambda e: templates.base_cot(e.question, authors_prompt("original"), trigger=False), 1319),
    ("multiarith_cot_base", "multiarith", "test", lambda e: templates.base_cot(e.question, authors_prompt("original"), trigger=True), 400),
]


@pytest.mark.parametrize("task_name, source, split, render, size", CASES)
def test_math_task_renders_template(manager, task_name, source, split, render, size):
    task = manager.load([task_name])["tasks"][task_name]
    docs = list(task.test_docs())
    assert len(docs) == size
    mode = "clean" if split == "dev" and source in ("asdiv", "svamp") else "faithful"
    examples = load(source, split, mode)
    for doc, example in list(zip(docs, examples))[:: max(1, size // 7)]:
        assert task.doc_to_text(doc) == render(example)
        assert task.doc_to_target(doc) == example.answer
    assert task.config.generation_kwargs["until"] == [] and task.config.generation_kwargs["do_sample"] is False


@pytest.mark.parametrize("protocol, render", [("bbh_cot_spec", templates.bbh_cot), ("bbh_ao_spec", templates.bbh_ao), ("bbh_ao_spec_faithful", templates.bbh_ao_faithful)])
def test_bbh_task_renders_template(manager, protocol, render):
    name = f"{protocol}_date_understanding"
    task = manager.load([name])["tasks"][name]
    docs = list(task.test_docs())
    examples = bbh.load("date_understanding")
    assert len(docs) == len(examples) == 250
    prompt_file = bbh.cot_prompt("date_understanding")
    assert task.doc_to_text(docs[3]) == render(examples[3].question, prompt_file)
    assert task.doc_to_target(docs[3]) == examples[3].answer


def test_metadata_switches_split_and_prompt():
    from lm_eval.tasks import TaskManager

    clean = TaskManager(include_path=str(TASKS_DIR), metadata={"split_mode": "clean"}).load(["svamp_cot_spec"])["tasks"]["svamp_cot_spec"]
    assert len(list(clean.test_docs())) == 700
    complex_ = TaskManager(include_path=str(TASKS_DIR), metadata={"base_prompt": "complex"}).load(["gsm8k_cot_base"])["tasks"]["gsm8k_cot_base"]
    doc = next(iter(complex_.test_docs()))
    assert complex_.doc_to_text(doc).startswith(authors_prompt("complex"))


# --- T5 pitfalls ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def t5():
    return t5_tokenizer.load()


def _longest(texts, k=40):
    return sorted(texts, key=len, reverse=True)[:k]


def test_prompts_fit_the_seq2seq_context(t5):
    """Every family's longest prompts fit the context `harness eval` gives T5 (no truncation),
    and the distilled prompt really does exceed T5's default 512 (so the default would cut)."""
    four = authors_prompt("simple_4_cases")
    families = {
        "cot_spec": [templates.distill_cot(e.question, four) for e in load("gsm8k", "test")],
        "cot_base_complex": [templates.base_cot(e.question, authors_prompt("complex"), True) for e in load("asdiv", "test")],
        "bbh_cot": [templates.bbh_cot(e.question, bbh.cot_prompt(t)) for t in bbh.TASKS for e in bbh.load(t)],
    }
    longest = {name: max(len(ids) for ids in t5(_longest(texts))["input_ids"]) for name, texts in families.items()}
    assert longest["cot_spec"] > 512
    assert all(n <= SEQ2SEQ_MAX_LENGTH for n in longest.values()), longest


def test_stop_sequences_are_emittable_by_t5(manager, t5):
    """T5 drops newlines and has no '{', '}', so a stop string containing them never fires."""
    for name in ("gsm8k_cot_spec", "bbh_cot_spec_boolean_expressions", "bbh_ao_spec_faithful_snarks"):
        task = manager.load([name])["tasks"][name]
        for stop in task.config.generation_kwargs["until"]:
            assert t5.decode(t5(stop, add_special_tokens=False)["input_ids"]) == stop, (name, stop)
    assert t5.decode(t5("\n\n", add_special_tokens=False)["input_ids"]) == ""  # why lm-eval's "\n\n" stop is useless for T5


def test_scoring_survives_t5_newline_loss(t5):
    """A T5 generation has no newlines: 'The answer is 13 Q: …' must still score as 13."""
    from harness.answers import corrected_math_correct, extract_bbh_answer

    generated = t5.decode(t5("x = 13.\nThe answer is 13\n\nQ: Tom has 40 apples.", add_special_tokens=False)["input_ids"])
    assert "\n" not in generated
    assert corrected_math_correct(generated, 13.0, "13")
    assert extract_bbh_answer(t5.decode(t5("So the answer is (B).\n\nQ: next", add_special_tokens=False)["input_ids"]), "(B)") == "(B)"
