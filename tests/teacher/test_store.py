"""The teacher store: schema, round trip, crash safety, resume rules, duplicates, statistics."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.errors import DataError, ResumeError, UsageError
from harness.records import Example
from harness.teacher.base import Completion
from harness.schemas import TEACHER_STORE
from harness.teacher.record import COLUMNS, TeacherRecord, record_from_completion
from harness.teacher.stats import compute_stats
from harness.teacher.store import DuplicateKeyError, TeacherStore

SCHEMA = TEACHER_STORE.schema
SETTINGS = {"teacher": {"model": "toy", "tokenizer": "tiktoken:p50k_base"}, "sampling": {"temperature": 0.5, "n": 2}}


def example(q: int, gold: str = "12") -> Example:
    return Example(id=f"toy/{q}", source="toy", question=f"How many marbles does bag {q} hold?", answer=gold,
                   number=float(gold), gold_raw=f"Counting.\n#### {gold}", rationale="Counting.")


def completion(text: str, k: int = 3) -> Completion:
    tokens = [w for w in text.replace(" ", "\0 ").split("\0") if w]
    tops = [[t] + [f"alt{j}" for j in range(1, k)] for t in tokens]
    lps = [[-0.1] + [-2.0 - j for j in range(1, k)] for _ in tokens]
    return Completion(text=text, tokens=tokens, token_logprobs=[-0.1] * len(tokens), top_tokens=tops, top_logprobs=lps,
                      finish_reason="stop", token_ids=list(range(len(tokens))), top_ids=[[i, 9, 8][:k] for i in range(len(tokens))])


def record(q: int, k: int, answer: str = "12", gold: str = "12") -> TeacherRecord:
    return record_from_completion(completion(f"Bag {q} has 5 and 7 more. The answer is {answer}"), example(q, gold), k,
                                  prompt_id="toy-prompt", teacher_model="toy", teacher_tokenizer="tiktoken:p50k_base")


@pytest.fixture()
def store(tmp_path):
    with TeacherStore.open(tmp_path / "store", "teacher-test", SETTINGS) as opened:
        yield opened


def test_schema_matches_the_record_and_the_docs():
    assert tuple(SCHEMA.names) == COLUMNS
    assert SCHEMA.field("top_logprobs").type == pa.list_(pa.list_(pa.float32()))
    assert SCHEMA.field("top_ids").type == pa.list_(pa.list_(pa.int32()))
    assert SCHEMA.field("sample_index").type == "int32" and not SCHEMA.field("question_id").nullable
    nullable = {f.name for f in SCHEMA if f.nullable}
    assert nullable == {"raw_text", "token_ids", "top_ids", "finish_reason", "answer", "top_has_token"}
    assert SCHEMA.metadata[b"harness.schema_version"] == b"2"
    from harness.config import REPO_ROOT

    docs = (REPO_ROOT / "docs/teacher-store.md").read_text()
    assert "## Schema (v2;" in docs and all(f"| `{name}` |" in docs for name in COLUMNS)


def test_record_from_completion_grades_with_both_rules():
    rec = record(0, 0)
    assert rec.text == "Bag 0 has 5 and 7 more. The answer is 12" and rec.raw_text is None
    assert (rec.answer, rec.correct, rec.correct_faithful) == ("12", True, True)
    assert rec.targets == "topk" and rec.framing == "none" and rec.problem() is None
    # "The answer is 12. 13" - corrected takes the number after the phrase, the authors' rule the last one
    odd = record_from_completion(completion("The answer is 12. 13"), example(1), 0, prompt_id="p", teacher_model="m",
                                 teacher_tokenizer="t")
    assert (odd.answer, odd.correct, odd.correct_faithful) == ("12", True, False)


def test_keep_tokens_cuts_text_and_keeps_the_full_completion():
    full = completion("The answer is 12 Question: next one")
    rec = record_from_completion(full, example(0), 0, prompt_id="p", teacher_model="m", teacher_tokenizer="t", keep_tokens=4)
    assert rec.text == "The answer is 12" and rec.raw_text == full.text
    assert len(rec.tokens) == len(rec.top_tokens) == len(rec.token_ids) == len(rec.top_ids) == 4
    assert rec.correct


def test_round_trip(store):
    first = [record(0, 0), record(0, 1, answer="13"), record(1, 0)]
    path = store.write_shard(first)
    assert path.name == "part-00000.parquet" and path.parent.name == "data"
    store.write_shard([record(1, 1)])
    assert len(store) == 4
    assert store.done_keys() == {("toy/0", 0), ("toy/0", 1), ("toy/1", 0), ("toy/1", 1)}
    back = list(store.iter_records())
    assert [r.key for r in back] == [("toy/0", 0), ("toy/0", 1), ("toy/1", 0), ("toy/1", 1)]
    for got, want in zip(back, first + [record(1, 1)]):
        for name in COLUMNS:
            a, b = getattr(got, name), getattr(want, name)
            if name in ("token_logprobs", "top_logprobs"):  # float32 on disk
                flat = lambda v: [x for row in v for x in (row if isinstance(row, list) else [row])]
                assert flat(a) == pytest.approx(flat(b), rel=1e-6)
            else:
                assert a == b, name
    table = store.read(["question_id", "correct"])
    assert table.column_names == ["question_id", "correct"] and table.num_rows == 4
    with pytest.raises(UsageError, match="unknown teacher store column"):
        store.read(["nope"])
    # plain pyarrow / pandas read the data folder directly
    assert pq.read_table(store.data).num_rows == 4
    assert len(pq.read_table(store.data, columns=["text"]).to_pandas()) == 4


def test_a_crash_leaves_no_partial_shard_and_reopening_cleans_up(tmp_path, monkeypatch):
    root = tmp_path / "store"
    with TeacherStore.open(root, "teacher-test", SETTINGS) as store:
        store.write_shard([record(0, 0), record(0, 1)])

        def die(table, handle, **options):  # half a file, then the process "dies"
            handle.write(b"PAR1 partial bytes")
            raise KeyboardInterrupt

        monkeypatch.setattr(pq, "write_table", die)
        with pytest.raises(KeyboardInterrupt):
            store.write_shard([record(1, 0)])
        monkeypatch.undo()
        assert [p.name for p in store.shards()] == ["part-00000.parquet"]
    # a hard kill cannot run cleanup: leave a temp file behind as one would
    (root / "data" / ".part-00001.parquet.abc123.tmp").write_bytes(b"PAR1 torn")
    with TeacherStore.open(root, "teacher-test", SETTINGS) as store:
        assert not list((root / "data").glob("*.tmp"))
        assert store.done_keys() == {("toy/0", 0), ("toy/0", 1)}
        store.write_shard([record(1, 0)])
        assert len(store) == 3 and store.shards()[-1].name == "part-00001.parquet"


def test_duplicate_keys_are_rejected_and_nothing_is_written(store):
    store.write_shard([record(0, 0)])
    with pytest.raises(DuplicateKeyError, match=r"\('toy/0', 0\) is already stored \(in part-00000.parquet\)"):
        store.write_shard([record(1, 0), record(0, 0)])
    with pytest.raises(DuplicateKeyError, match="twice in one shard"):
        store.write_shard([record(1, 0), record(1, 0)])
    assert len(store.shards()) == 1 and len(store) == 1


def test_duplicates_across_shards_on_disk_are_reported(tmp_path):
    root = tmp_path / "store"
    with TeacherStore.open(root, "teacher-test", SETTINGS) as store:
        path = store.write_shard([record(0, 0)])
    (root / "data" / "part-00007.parquet").write_bytes(path.read_bytes())  # e.g. a shard copied in by hand
    with pytest.raises(DuplicateKeyError, match="in both part-00000.parquet and part-00007.parquet"):
        TeacherStore.open(root, "teacher-test", SETTINGS).done_keys()


def test_a_shard_with_another_schema_is_refused(tmp_path):
    root = tmp_path / "store"
    with TeacherStore.open(root, "teacher-test", SETTINGS) as store:
        table = store.read()
    wrong = table.cast(table.schema.set(table.schema.get_field_index("token_logprobs"), pa.field("token_logprobs", pa.list_(pa.float64()))))
    pq.write_table(wrong, root / "data" / "part-00000.parquet")
    with pytest.raises(DataError, match="part-00000.parquet: schema differs from the teacher store schema"):
        TeacherStore.open(root, "teacher-test", SETTINGS)


def test_resume_rules(tmp_path):
    root = tmp_path / "store"
    with TeacherStore.open(root, "teacher-test", SETTINGS) as store:
        store.write_shard([record(0, 0)])
    other = {**SETTINGS, "sampling": {"temperature": 0.7, "n": 2}}
    with pytest.raises(ResumeError, match=r"sampling.temperature: 0.5 -> 0.7"):
        TeacherStore.open(root, "teacher-test", other)
    with pytest.raises(ResumeError):
        TeacherStore.open(root, "another-job", SETTINGS)
    with pytest.raises(UsageError, match="must include sampling"):
        TeacherStore.open(tmp_path / "x", "teacher-test", {"teacher": "toy"})
    with TeacherStore.open(root, "teacher-test", SETTINGS) as store:
        assert store.done_keys() == {("toy/0", 0)}
        with pytest.raises(UsageError, match="being written by another process"):
            TeacherStore.open(root, "teacher-test", SETTINGS)
    reader = TeacherStore.load(root)
    assert len(reader) == 1 and reader.settings == json.loads(json.dumps(SETTINGS))
    with pytest.raises(UsageError, match="not opened for writing"):
        reader.write_shard([record(1, 0)])


def test_invalid_records_name_the_field(store):
    good = record(0, 0)
    bad = TeacherRecord(**{**good.__dict__, "tokens": good.tokens[:-1] + ["13"]})
    with pytest.raises(DataError, match=r"record \('toy/0', 0\): field 'tokens': do not spell `text`"):
        store.write_shard([bad])
    bad = TeacherRecord(**{**good.__dict__, "top_logprobs": [[0.5]] + good.top_logprobs[1:],
                           "top_tokens": [["x"]] + good.top_tokens[1:], "top_ids": None})
    with pytest.raises(DataError, match="field 'top_logprobs': position 0 entry 0: 0.5 is not a finite log-probability"):
        store.write_shard([bad])
    with pytest.raises(DataError, match="field 'targets'"):
        store.write_shard([TeacherRecord(**{**good.__dict__, "targets": "soft"})])
    assert store.shards() == []


def test_empty_store_reads_as_an_empty_table(store):
    assert len(store) == 0 and store.read().schema.names == list(COLUMNS) and store.read(["text"]).num_rows == 0
    assert store.stats()["questions"] == 0


def test_stats_on_a_hand_built_store(store):
    # q0: first right, majority right (12,12,13)          q1: first wrong, majority right (9,12,12)
    # q2: first wrong, majority wrong (9,9,12), one right q3: all wrong, no answer at all
    # q4: tie 12/13 -> the answer seen first (13) wins, so the vote is wrong; one right sample
    plan = {0: ["12", "12", "13"], 1: ["9", "12", "12"], 2: ["9", "9", "12"], 3: [None, None], 4: ["13", "12"]}
    records = []
    for q, votes in plan.items():
        for k, vote in enumerate(votes):
            text = f"Bag {q} is a mystery" if vote is None else f"Bag {q} has 5 and 7 more. The answer is {vote}"
            records.append(record_from_completion(completion(text), example(q), k, prompt_id="p", teacher_model="m",
                                                  teacher_tokenizer="t"))
    store.write_shard(records[:7])
    store.write_shard(records[7:])
    stats = store.stats()
    assert stats["questions"] == 5
    assert stats["samples"] == {"total": 13, "correct": 6, "correct_faithful": 6, "per_question": 2.6}
    assert stats["first_sample_accuracy"] == {"corrected": 0.2, "faithful": 0.2}
    assert stats["majority_vote_accuracy"] == {"corrected": 0.4, "faithful": 0.4}
    assert stats["questions_with_correct_sample"] == {"corrected": 4, "faithful": 4}
    assert stats["tokens"] == sum(len(r.tokens) for r in records)
    assert stats["bytes_on_disk"] == sum(p.stat().st_size for p in store.shards())
    assert stats["bytes_per_token"] == round(stats["bytes_on_disk"] / stats["tokens"], 3)
    path = store.write_stats()
    assert json.loads(path.read_text())["first_sample_accuracy"]["corrected"] == 0.2


def test_compute_stats_first_sample_is_the_lowest_index_not_the_first_row():
    rows = [{"question_id": "a", "sample_index": 1, "gold": "5", "text": "The answer is 4", "answer": "4", "correct": False, "correct_faithful": False},
            {"question_id": "a", "sample_index": 0, "gold": "5", "text": "The answer is 5", "answer": "5", "correct": True, "correct_faithful": True}]
    assert compute_stats(rows)["first_sample_accuracy"]["corrected"] == 1.0
