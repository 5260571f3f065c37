"""`align run` on a teacher store: Parquet in, Parquet out, resumable, settings-checked."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from harness.align.api import AlignConfig
from harness.align.store import count_selected, run_store_alignment
from harness.errors import DataError, ResumeError
from harness.teacher.gold import build_gold_store


@pytest.fixture(scope="module")
def store(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("teacher") / "gold-p50k"
    build_gold_store(root, "tiktoken:p50k_base", limit=12)  # questions 0-11, no ": " in their rationales
    return root


def _rows(folder):
    return pq.read_table(folder / "data").sort_by("id").to_pylist()


def test_store_to_aligned_targets(store, tmp_path, student):
    out = tmp_path / "aligned"
    stats = run_store_alignment(store, out, AlignConfig(mode="exact", k=5), chunk_size=4, shard_rows=4)
    rows = _rows(out)
    assert len(rows) == 12 == stats["sequences"] and len(list((out / "data").glob("part-*.parquet"))) == 3
    texts = {r["question_id"]: r["text"] for r in pq.read_table(store / "data").to_pylist()}
    for row in rows:
        assert row["status"] == "ok" and row["id"] == f"{row['question_id']}#{row['sample_index']}"
        assert row["student_ids"] == list(student.encode(texts[row["question_id"]].strip()).ids)
        assert len(row["topk_ids"]) == len(row["student_ids"]) and all(len(k) == 5 for k in row["topk_ids"])
    assert (out / "settings.json").is_file() and (out / "stats.json").is_file()


def test_faithful_setting_aligns_onto_the_authors_stripped_text(tmp_path, student, data_dir):
    from harness.data import load

    examples = [e for e in load("gsm8k", "train")[:30] if ": " in e.rationale][:3]  # e.g. "Monday: 5 ..."
    assert examples
    store = tmp_path / "store"
    build_gold_store(store, "tiktoken:p50k_base", examples=examples)
    run_store_alignment(store, tmp_path / "faithful", AlignConfig(mode="exact"), setting="faithful")
    run_store_alignment(store, tmp_path / "corrected", AlignConfig(mode="exact"), setting="corrected")
    faithful, corrected = _rows(tmp_path / "faithful"), _rows(tmp_path / "corrected")
    for row, f, c in zip(pq.read_table(store / "data").sort_by("question_id").to_pylist(), faithful, corrected):
        assert f["student_ids"] == list(student.encode("".join(row["text"].split(": ")).strip()).ids)
        assert c["student_ids"] == list(student.encode(row["text"].strip()).ids) != f["student_ids"]


def test_resume_after_a_crash_and_refusal_of_other_settings(store, tmp_path):
    out = tmp_path / "aligned"
    calls = {"n": 0}

    def die_after_two_chunks(_):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_store_alignment(store, out, AlignConfig(), chunk_size=4, shard_rows=4, progress=die_after_two_chunks)
    kept = _rows(out)
    assert 0 < len(kept) < 12
    stats = run_store_alignment(store, out, AlignConfig(), chunk_size=4, shard_rows=4)
    ids = [r["id"] for r in _rows(out)]
    assert len(ids) == 12 == len(set(ids)) and stats["written_now"] == 12 - len(kept)
    with pytest.raises(ResumeError, match="'exact' -> 'faithful'"):
        run_store_alignment(store, out, AlignConfig(mode="faithful"))


def test_not_a_store(tmp_path):
    with pytest.raises(DataError, match="not a teacher store"):
        run_store_alignment(tmp_path, tmp_path / "out", AlignConfig())


def test_counting_a_store_checks_each_shard_before_parsing_it(store, tmp_path):
    """`align run` counts the selected samples first: a shard whose footer a flipped bit broke is named
    corrupted (its sha256), not "unreadable Parquet" (the fault table, issue 21)."""
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    shard = sorted((copy / "data").glob("part-*.parquet"))[0]
    data = bytearray(shard.read_bytes())
    data[-6] ^= 0x40  # the footer's length field: the Parquet no longer opens
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"{shard}: corrupted: its sha256 differs"):
        count_selected(copy, "correct")
