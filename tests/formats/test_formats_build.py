"""build_formats: which records exist, their columns, byte-identical seeded builds, resume rules."""

import json

import pyarrow.parquet as pq
import pytest
from formats_testutil import item

from harness.errors import DataError, ResumeError
from harness.formats import CotSample, DemoPool, build_formats, render_record

QUESTIONS = [item(i, f"Made-up question {i}: how many?", f"{i} + 1 = <<{i}+1={i + 1}>>{i + 1}\n#### {i + 1}") for i in range(6)]
DEV_ID = QUESTIONS[5].id  # plays the dev item in these tests
POOL = DemoPool(QUESTIONS)
CORRECTED_POOL = DemoPool([q for q in QUESTIONS if q.id != DEV_ID], avoid_self=True)


def cot(n: int, colon: bool = False) -> str:
    step = "Step 1: add one" if colon else "Add one"
    return f"\n{step}.\nThe answer is {n}\n"


def samples():
    """Question 0: wrong, correct-with-': '-before-the-answer, correct, correct. Question 1: never
    correct. Questions 2-5: two correct samples each (question 5 is the 'dev' item)."""
    q0 = QUESTIONS[0]
    out = [CotSample(q0.id, 0, q0, cot(9), False), CotSample(q0.id, 1, q0, cot(1, colon=True), True),
           CotSample(q0.id, 2, q0, cot(1), True), CotSample(q0.id, 3, q0, cot(1), True)]
    out += [CotSample(QUESTIONS[1].id, k, QUESTIONS[1], cot(7), False) for k in range(2)]
    for q in QUESTIONS[2:]:
        out += [CotSample(q.id, k, q, cot(int(q.answer), colon=k == 0), True) for k in range(2)]
    return out


def alignment(s: CotSample) -> dict:
    n = 3 + s.sample_index  # made-up arrays; only their shapes and round trip matter here
    return {"status": "ok", "student_ids": list(range(n)), "topk_ids": [[t, 0] for t in range(n)],
            "topk_probs": [[0.75, 0.0]] * n, "topk_mask": [[1, 0]] * n}


def read(folder, fmt):
    files = sorted(folder.glob(f"{fmt}-*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def build(folder, setting="faithful", data=None, **kw):
    kw.setdefault("pool", POOL if setting == "faithful" else CORRECTED_POOL)
    kw.setdefault("dev_question_ids", [DEV_ID])
    return build_formats(samples() if data is None else data, folder, setting=setting, teacher_model="made-up-teacher", seed=0, **kw)


def test_records_and_columns(tmp_path):
    lookup = {(s.question_id, s.sample_index): alignment(s) for s in samples() if s.correct}
    stats = build(tmp_path, aligned=lookup)
    assert stats["records"] == {"in_context_answer_only": 5, "in_context_cot": 11, "zero_shot_answer_only": 5, "zero_shot_cot": 11}
    assert stats["counts"]["skipped_incorrect"] == 3 and stats["answer_only_questions_without_target"] == 1
    ic = read(tmp_path, "in_context_cot")
    assert [(r["question_id"], r["sample_index"]) for r in ic] == [(s.question_id, s.sample_index) for s in samples() if s.correct]
    first = ic[0]
    q0 = QUESTIONS[0]
    demos = [next(q for q in QUESTIONS if q.id == i) for i in first["demo_ids"]]
    assert (first["encoder_input"], first["decoder_target"]) == render_record("in_context_cot", "faithful", q0.question, cot(1, True), demos)
    assert first["student_ids"] == [0, 1, 2, 3] and first["topk_mask"] == [[1, 0]] * 4 and first["topk_probs"][0] == [0.75, 0.0]
    assert (first["teacher_model"], first["seed"], first["setting"], first["gold_answer"]) == ("made-up-teacher", 0, "faithful", "1")
    ao = read(tmp_path, "zero_shot_answer_only")
    assert all(r["student_ids"] is None and r["topk_ids"] is None and r["demo_ids"] == [] for r in ao)
    assert read(tmp_path, "zero_shot_cot")[0]["encoder_input"] == "Q: Made-up question 0how many?\nLet's think step by step"
    assert json.loads((tmp_path / "stats.json").read_text())["records"] == stats["records"]


def test_answer_only_takes_the_first_correct_sample(tmp_path):
    """Faithful skips sample 1 (its ': ' hides "The answer is"), corrected takes it; input order
    does not matter (lowest sample index wins); faithful with a lookup skips unaligned samples."""
    picks = {}
    for setting in ("faithful", "corrected"):
        build(tmp_path / setting, setting, data=samples()[::-1])
        picks[setting] = {r["question_id"]: r["sample_index"] for r in read(tmp_path / setting, "zero_shot_answer_only")}
    assert picks["faithful"] == {QUESTIONS[i].id: (2 if i == 0 else 1) for i in (0, 2, 3, 4, 5)}
    assert picks["corrected"] == {QUESTIONS[i].id: (1 if i == 0 else 0) for i in (0, 2, 3, 4)}  # no dev question
    q0 = QUESTIONS[0].id
    lookup = {(s.question_id, s.sample_index): alignment(s) for s in samples() if s.correct and (s.question_id, s.sample_index) != (q0, 2)}
    build(tmp_path / "unaligned", aligned=lookup)
    assert {r["question_id"]: r["sample_index"] for r in read(tmp_path / "unaligned", "in_context_answer_only")}[q0] == 3
    assert (q0, 2) not in {(r["question_id"], r["sample_index"]) for r in read(tmp_path / "unaligned", "zero_shot_cot")}


def test_corrected_never_uses_dev_or_self(tmp_path):
    stats = build(tmp_path, "corrected")
    assert stats["counts"]["skipped_dev_question"] == 2
    for fmt in ("in_context_cot", "in_context_answer_only", "zero_shot_cot"):
        for r in read(tmp_path, fmt):
            assert r["question_id"] != DEV_ID and r["question_id"] not in r["demo_ids"] and DEV_ID not in r["demo_ids"]
    assert read(tmp_path, "zero_shot_cot")[0]["encoder_input"] == "Q: Made-up question 0: how many?\nLet's think step by step"


def test_seeded_builds_are_byte_identical(tmp_path):
    lookup = {(s.question_id, s.sample_index): alignment(s) for s in samples() if s.correct}
    for name in ("a", "b"):
        build(tmp_path / name, aligned=lookup, shard_size=4)
    shards = sorted(p.name for p in (tmp_path / "a").glob("*.parquet"))
    assert len(shards) == 10 and shards == sorted(p.name for p in (tmp_path / "b").glob("*.parquet"))
    for name in shards + ["stats.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    build_formats(samples(), tmp_path / "c", setting="faithful", teacher_model="made-up-teacher", seed=1, pool=POOL,
                  aligned=lookup, shard_size=4)
    a, c = read(tmp_path / "a", "in_context_cot"), read(tmp_path / "c", "in_context_cot")
    assert [r["demo_ids"] for r in a] != [r["demo_ids"] for r in c]


def test_resume_and_errors(tmp_path):
    build(tmp_path, shard_size=2)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.parquet")}
    build(tmp_path, shard_size=2)  # same settings: rewritten, identical
    assert before == {p.name: p.read_bytes() for p in tmp_path.glob("*.parquet")}
    with pytest.raises(ResumeError, match="other settings"):
        build(tmp_path, shard_size=3)
    with pytest.raises(DataError, match="appears twice"):
        build(tmp_path / "dup", data=samples() + samples()[:1])
    with pytest.raises(DataError, match="not the T5 ids"):
        lookup = {(s.question_id, s.sample_index): alignment(s) for s in samples() if s.correct}
        build(tmp_path / "enc", aligned=lookup, encode=lambda text: [1, 2, 3])
