"""The authors' pickle importer, on a small pickle set built here to the documented layout.

All question and CoT text below is made up; the layout follows authors-code-protocol.md §1:
"Question {i}: {q}\\n", "Answer: {rationale}\\n#### N\\n", "Model output {k}: \\n{CoT}\\n",
6 (token, prob) pairs per GPT step (sampled token first, probabilities rounded to 4 decimals),
the ' step' / '\\n' ... '\\n\\n' / '\\n' frame, and the parser's duplicated question.
"""

from __future__ import annotations

import collections
import datetime
import json
import math
import pickle
import random
import re

import pytest

from harness.errors import DataError, ResumeError
from harness.records import Example
from harness.teacher.authors_import import (
    FILES,
    RestrictedUnpickler,
    authors_strip,
    faithful_text,
    import_authors,
    load_dtw_targets,
    load_pickle,
)
from harness.teacher.record import ZERO_PROB_LOGPROB
from harness.teacher.store import TeacherStore

# (question, gold rationale, final answer, [sample CoTs]); made up for this test
QUESTIONS = [
    ("A shelf holds 3 rows of 4 jars. How many jars are there?", "3 rows of 4 is <<3*4=12>>12 jars.", "12",
     ["There are 3 rows of 4 jars.\n3 * 4 = 12.\nThe answer is 12.", "Each row has 4 jars and 3 rows give 7.\nThe answer is 7."]),
    ("Tom has 10 coins and spends 4. How many are left?", "10 - 4 = <<10-4=6>>6 coins.", "6",
     ["Tom keeps 10 - 4 = 6 coins.\nThe answer is 6.", "Step 1: 10 - 4 = 6.\nThe answer is 6.", "He spends 4 of 10.\nThe answer is 6."]),
    ("A kite costs 5 dollars. What do 2 kites cost?", "2 * 5 = <<2*5=10>>10 dollars.", "10",
     ["Two kites cost 2 * 5 = 10 dollars.\nThe answer is 10."]),
    ("Ann reads 6 pages a day for 3 days. How many pages?", "6 * 3 = <<6*3=18>>18 pages.", "18",
     ["6 * 3 = 18 pages.\nThe answer is 18.", "6 + 3 = 9 pages.\nThe answer is 9."]),
]


def tokenize(text: str) -> list[str]:
    tokens = re.findall(r"\n+| ?[^ \n]+", text)
    assert "".join(tokens) == text
    return tokens


def steps_for(tokens: list[str], rng: random.Random) -> list[list[tuple[str, float]]]:
    """6 pairs per step: the sampled token with its probability, then 5 API entries in a jumbled
    order (the sampled token among them) with some probabilities rounded to 0.0."""
    steps = []
    for token in tokens:
        p = round(rng.uniform(0.3, 0.99), 4)
        others = [(token, p), (" foo", round((1 - p) / 2, 4)), ("bar", round((1 - p) / 4, 4)), ("<|endoftext|>", 0.0), (" baz", 0.0)]
        rng.shuffle(others)
        steps.append([(token, p)] + others)
    return steps


def framed(content: str, tail: str = "") -> list[str]:
    return [" step", "\n"] + tokenize(content + tail) + ["\n\n", "\n"]


def build_pickles(folder, duplicate_at: int | None = 2, unframed: tuple[int, int] | None = (1, 2),
                  overrun: tuple[int, int] | None = (0, 0), updated: bool = False, **replace):
    """The five pickles for QUESTIONS; `duplicate_at` repeats question duplicate_at-1 there."""
    rng = random.Random(0)
    questions = [f"Question {i}: {q}\n" for i, (q, *_rest) in enumerate(QUESTIONS)]
    answers = [f"Answer: {r}\n#### {n}\n" for _, r, n, _ in QUESTIONS]
    predictions, per_step, labels = [], [], []
    for i, (_, _, gold, cots) in enumerate(QUESTIONS):
        predictions.append([f"Model output {k}: \n{cot}\n" for k, cot in enumerate(cots)])
        samples = []
        for k, cot in enumerate(cots):
            tokens = framed(cot, "\nAnd 1 more line." if (i, k) == overrun else "")
            if (i, k) == unframed:
                tokens = tokens[1:]  # no ' step' first: their alignment rejects it
            samples.append(steps_for(tokens, rng))
        per_step.append(samples)
        labels.append([int(re.findall(r"\d*\.?\d+", cot)[-1] == gold) for cot in cots])
    if duplicate_at is not None:
        questions.insert(duplicate_at, questions[duplicate_at - 1])
    data = {"questions": questions, "answers": answers, "predictions": predictions, "per_step_probs": per_step, "labels": labels}
    data.update(replace)
    for key, name in FILES.items():
        (folder / name).write_bytes(pickle.dumps(data[key]))
    if updated:
        new = [list(row) for row in labels]
        new[1][2] = 0  # the unframed sample: correct, but their alignment dropped it
        (folder / "codex_updated_labels.pkl").write_bytes(pickle.dumps(new))
    return data


def examples_for_check() -> list[Example]:
    return [Example(id=f"gsm8k/train/{i}", source="gsm8k", question=q, answer=n, number=float(n),
                    gold_raw=f"{r}\n#### {n}", rationale=r, index=i) for i, (q, r, n, _) in enumerate(QUESTIONS)]


@pytest.fixture()
def pickles(tmp_path):
    folder = tmp_path / "processed_data"
    folder.mkdir()
    build_pickles(folder, updated=True)
    return folder


def run_import(pickles, root, **kwargs):
    kwargs.setdefault("duplicate_index", 2)
    kwargs.setdefault("check_gsm8k", False)
    return import_authors(pickles, root, **kwargs)


def test_import_rows(pickles, tmp_path):
    root = tmp_path / "store"
    summary = run_import(pickles, root, questions_per_shard=2)
    assert summary["duplicate_question_removed"] is True
    assert (summary["questions"], summary["samples"], summary["written"]) == (4, 8, 8)
    store = TeacherStore.load(root)
    assert len(store.shards()) == 2 and json.loads((root / "import.json").read_text()) == summary
    rows = {r.key: r for r in store.iter_records()}
    assert set(rows) == {(f"gsm8k/train/{i}", k) for i, q in enumerate(QUESTIONS) for k in range(len(q[3]))}
    for (qid, k), rec in rows.items():
        i = int(qid.rsplit("/", 1)[1])
        question, _, gold, cots = QUESTIONS[i]
        assert rec.question == question and rec.gold == gold and rec.text == cots[k]  # the duplicate is gone
        assert (rec.teacher_model, rec.teacher_tokenizer, rec.prompt_id) == ("code-davinci-002", "tiktoken:p50k_base", "authors-complex-8shot")
        assert (rec.targets, rec.framing, rec.token_ids, rec.top_ids) == ("topk", "authors", None, None)
        assert all(len(top) == 5 for top in rec.top_tokens)
        for top in rec.top_logprobs:
            assert top == sorted(top, reverse=True)  # entries 1-5 sorted by probability
            assert top[-1] == ZERO_PROB_LOGPROB  # a rounded-to-0.0 probability, kept at the floor
        assert rec.correct_faithful == (re.findall(r"\d+", cots[k])[-1] == gold)
    rec = rows[("gsm8k/train/0", 0)]
    assert rec.tokens[:2] == [" step", "\n"] and rec.tokens[-2:] == ["\n\n", "\n"]
    assert rec.raw_text == "".join(rec.tokens) and rec.raw_text.endswith("And 1 more line.\n\n\n")  # steps run past the text
    rec = rows[("gsm8k/train/0", 1)]
    assert rec.raw_text is None and "".join(rec.tokens[2:-2]) == rec.text
    assert rec.correct is False and rec.answer == "7"
    assert rows[("gsm8k/train/1", 2)].tokens[0] == "\n"  # unframed sample kept as it was
    assert summary["framed"] == 7 and summary["frame_text_mismatch"] == 1
    assert summary["updated_label_dropped"] == summary["updated_label_dropped_unframed"] == 1
    assert summary["label_vs_last_number_disagreements"] == 0


def test_probabilities_become_logprobs(pickles, tmp_path):
    run_import(pickles, tmp_path / "store")
    raw = pickle.loads((pickles / FILES["per_step_probs"]).read_bytes())
    rec = next(TeacherStore.load(tmp_path / "store").iter_records())
    step = raw[0][0][3]
    assert rec.tokens[3] == step[0][0]
    assert rec.token_logprobs[3] == pytest.approx(math.log(step[0][1]), abs=1e-6)
    want = sorted(step[1:], key=lambda pair: -pair[1])
    assert rec.top_tokens[3] == [w for w, _ in want]
    assert [math.exp(lp) for lp in rec.top_logprobs[3]] == pytest.approx([p for _, p in want], abs=1e-7)


def test_resume_and_settings(pickles, tmp_path):
    root = tmp_path / "store"
    run_import(pickles, root)
    again = run_import(pickles, root)
    assert (again["written"], again["skipped"]) == (0, 8)
    assert len(TeacherStore.load(root)) == 8
    with pytest.raises(ResumeError, match="duplicate_index"):
        run_import(pickles, root, duplicate_index=3)


def test_alignment_with_authors_framing_runs_on_every_row(pickles, tmp_path, data_dir):
    import pyarrow.parquet as pq

    from harness.align.api import AlignConfig
    from harness.align.store import run_store_alignment

    run_import(pickles, tmp_path / "store")
    summary = run_store_alignment(tmp_path / "store", tmp_path / "aligned", AlignConfig(mode="faithful", framing="authors", k=5),
                                  setting="faithful", select="all")
    status = {row["id"]: row["status"] for row in pq.read_table(tmp_path / "aligned" / "data").to_pylist()}
    assert status.pop("gsm8k/train/1#2") == "rejected"  # the unframed sample, as in their alignment
    assert set(status.values()) == {"ok"} and len(status) == 7 and summary["rejected"] == 1


def test_faithful_text_matches_the_authors_stripper():
    raw = "Model output 1: \nStep 1: 10 - 4 = 6.\nThe answer is 6.\n"
    stored = raw.split(": ", 1)[1].strip()
    assert stored == "Step 1: 10 - 4 = 6.\nThe answer is 6."
    assert faithful_text(stored) == authors_strip(raw) == "Step 110 - 4 = 6.\nThe answer is 6."
    assert authors_strip("Question 3: Ann: reads\n") == faithful_text("Ann: reads") == "Annreads"


def test_duplicate_must_be_the_known_one(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    data = build_pickles(folder, duplicate_at=None)
    questions = list(data["questions"])
    questions.insert(2, "Question 9: Something else entirely?\n")
    (folder / FILES["questions"]).write_bytes(pickle.dumps(questions))
    with pytest.raises(DataError, match=r"codex_questions.pkl: 5 questions for 4 answers, but entries 1 and 2 are not the known duplicate"):
        run_import(folder, tmp_path / "s1")
    (folder / FILES["questions"]).write_bytes(pickle.dumps(questions + ["Question 10: x\n"]))
    with pytest.raises(DataError, match=r"codex_questions.pkl: 6 questions for 4 answers"):
        run_import(folder, tmp_path / "s2")
    build_pickles(folder, duplicate_at=None)  # no duplicate at all: imported as is
    assert run_import(folder, tmp_path / "s3")["duplicate_question_removed"] is False


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["per_step_probs"][2][0].__setitem__(4, d["per_step_probs"][2][0][4][:5]),
         r"codex_per_step_probs.pkl: question 2 sample 0 step 4: expected 6 \(token, probability\) pairs"),
        (lambda d: d["per_step_probs"][1][1][3].__setitem__(2, (" x", 1.5)),
         r"codex_per_step_probs.pkl: question 1 sample 1 step 3: entry 2: probability 1.5 is not a number in \[0, 1\]"),
        (lambda d: d["per_step_probs"][0][1][0].__setitem__(0, (7, 0.5)),
         r"question 0 sample 1 step 0: entry 0: token 7 is not a string"),
        (lambda d: d["labels"][3].append(1), r"codex_per_step_probs.pkl: question 3: 2 samples, but codex_predictions.pkl has 2 and codex_prediction_labels.pkl has 3"),
        (lambda d: d["labels"][3].__setitem__(1, 2), r"codex_prediction_labels.pkl: question 3 sample 1: label 2 is not 0 or 1"),
        (lambda d: d["predictions"][2].__setitem__(0, "Output 0: text"), r"codex_predictions.pkl: question 2 sample 0: does not start with 'Model output \{k\}: '"),
        (lambda d: d["answers"].__setitem__(1, "Answer: no final line\n"), r"codex_answers.pkl: question 1: the answer has no '#### N'"),
        (lambda d: d["predictions"].pop(), r"codex_predictions.pkl: 3 questions, but codex_answers.pkl has 4"),
    ],
)
def test_layout_errors_name_pickle_question_sample(tmp_path, mutate, message):
    folder = tmp_path / "p"
    folder.mkdir()
    data = build_pickles(folder)
    mutate(data)
    for key, name in FILES.items():
        (folder / name).write_bytes(pickle.dumps(data[key]))
    with pytest.raises(DataError, match=message):
        run_import(folder, tmp_path / "store")


def test_gsm8k_check(pickles, tmp_path):
    assert run_import(pickles, tmp_path / "ok", check_gsm8k=True, examples=examples_for_check())["written"] == 8
    wrong = examples_for_check()
    wrong[3] = Example(**{**wrong[3].to_dict(), "question": "A different question?"})
    with pytest.raises(DataError, match="codex_questions.pkl: question 3: differs from GSM8K train 3"):
        run_import(pickles, tmp_path / "bad", check_gsm8k=True, examples=wrong)


def test_restricted_unpickler(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([datetime.date(2020, 1, 1)]))
    with pytest.raises(DataError, match=r"evil.pkl: cannot be read.*refusing to load datetime.date"):
        load_pickle(path)

    class Boom:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(DataError, match="refusing to load (posix|os).system"):
        load_pickle(path)
    plain = [collections.OrderedDict([("▁a", 0.5)]), {"b": (1, 2.0, True)}, {"x"}, None]
    path.write_bytes(pickle.dumps(plain))
    assert load_pickle(path) == plain
    assert RestrictedUnpickler.ALLOWED >= {("collections", "OrderedDict"), ("builtins", "list")}


def test_dtw_targets(tmp_path):
    path = tmp_path / "codex_dtw_transformed_step_probs.pkl"
    good = [[None, [collections.OrderedDict([("▁Nat", 0.9), ("▁If", 0.05)]), {"alia": 1.0}]]]
    path.write_bytes(pickle.dumps(good))
    assert load_dtw_targets(path) == good
    path.write_bytes(pickle.dumps([[[{"▁a": 2.0}]]]))
    with pytest.raises(DataError, match="question 0 sample 0 step 0: expected a {T5 token: probability} dict"):
        load_dtw_targets(path)
