"""The JSONL runner: validation errors, output rows, resuming after a crash, multiprocessing, CLI."""

from __future__ import annotations

import json
import math
import re

import pytest
from typer.testing import CliRunner

from harness.align.api import AlignConfig
from harness.align.jsonl import read_samples, run_alignment
from harness.records import RecordError, write_jsonl


def teacher_rows(teacher, rationales, n=12):
    from harness.align.synthetic import synthesize

    rows = []
    for sample_id, text in rationales[:n]:
        syn = synthesize(teacher, text, sample_id)
        rows.append({"id": sample_id, "text": text, "tokens": syn.tokens,
                     "topk": [[[t, math.log(p)] for t, p in step] for step in syn.topk]})
    return rows


@pytest.fixture()
def teacher_file(tmp_path, teacher, rationales):
    path = tmp_path / "teacher.jsonl"
    write_jsonl(path, teacher_rows(teacher, rationales))
    return path


def read_rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_rows_have_fixed_k_arrays_and_stats(teacher_file, tmp_path, student):
    out = tmp_path / "aligned.jsonl"
    summary = run_alignment(teacher_file, out, AlignConfig(mode="exact", k=4))
    rows = read_rows(out)
    assert [r["id"] for r in rows] == [json.loads(l)["id"] for l in teacher_file.read_text().splitlines()]
    for row in rows:
        text = next(json.loads(l)["text"] for l in teacher_file.read_text().splitlines() if json.loads(l)["id"] == row["id"])
        assert row["student_ids"] == list(student.encode(text).ids)
        assert all(len(r) == 4 for r in row["topk_ids"]) and len(row["topk_ids"]) == len(row["student_ids"])
        for ids, probs, mask in zip(row["topk_ids"], row["topk_probs"], row["topk_mask"]):
            assert all((p > 0) == bool(m) for p, m in zip(probs, mask))
    assert summary["sequences"] == 12 and summary["positions"] == sum(len(r["student_ids"]) for r in rows)
    assert 0 < summary["soft_fraction"] <= 1


def test_resume_after_a_crash_neither_loses_nor_duplicates(teacher_file, tmp_path):
    config = AlignConfig(mode="faithful", k=5)
    clean = tmp_path / "clean.jsonl"
    run_alignment(teacher_file, clean, config, chunk_size=4)
    expected = clean.read_text(encoding="utf-8")

    crashed = tmp_path / "crashed.jsonl"
    lines = expected.splitlines(keepends=True)
    crashed.write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 2], encoding="utf-8")  # torn 6th line
    # the same job crashed: its settings file was written before any row
    (tmp_path / "crashed.jsonl.settings.json").write_bytes((tmp_path / "clean.jsonl.settings.json").read_bytes())
    summary = run_alignment(teacher_file, crashed, config, chunk_size=4)
    assert crashed.read_text(encoding="utf-8") == expected
    assert summary["written_now"] == len(lines) - 5 and summary["sequences"] == len(lines)
    again = run_alignment(teacher_file, crashed, config, chunk_size=4)  # nothing left to do
    assert again["written_now"] == 0 and crashed.read_text(encoding="utf-8") == expected


def test_two_worker_processes_give_the_same_file(teacher_file, tmp_path):
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    run_alignment(teacher_file, one, AlignConfig(mode="exact"), workers=1, chunk_size=3)
    run_alignment(teacher_file, two, AlignConfig(mode="exact"), workers=2, chunk_size=3)
    assert one.read_text(encoding="utf-8") == two.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "mutate, field, problem",
    [
        (lambda r: r.pop("text"), "text", "missing"),
        (lambda r: r.update(id=""), "id", "empty"),
        (lambda r: r.update(topk=r["topk"][:-1]), "topk", "steps but there are"),
        (lambda r: r["topk"][0].__setitem__(0, [r["tokens"][0], 0.5]), "topk", "positive"),
        (lambda r: r["topk"][1].__setitem__(0, ["x"]), "topk", "not a [token, logprob] pair"),
        (lambda r: r.update(tokens=r["tokens"][:-1], topk=r["topk"][:-1]), "tokens", "different text"),
        (lambda r: r.update(token_logprobs=[0.0]), "token_logprobs", "list of"),
    ],
)
def test_bad_input_names_file_record_and_field(tmp_path, teacher, rationales, mutate, field, problem):
    rows = teacher_rows(teacher, rationales, n=3)
    mutate(rows[1])
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, rows)
    with pytest.raises(RecordError, match=re.escape(problem)) as info:
        list(read_samples(path))
    assert info.value.field == field and info.value.path == str(path) and "line 2" in str(info.value.record)


def test_duplicate_ids_and_broken_json_are_record_errors(tmp_path, teacher, rationales):
    rows = teacher_rows(teacher, rationales, n=2)
    rows[1]["id"] = rows[0]["id"]
    path = tmp_path / "dup.jsonl"
    write_jsonl(path, rows)
    with pytest.raises(RecordError, match="duplicate id"):
        list(read_samples(path))
    path.write_text('{"id": "a", "text": "x"\n', encoding="utf-8")
    with pytest.raises(RecordError, match="not valid JSON"):
        list(read_samples(path))


def test_rows_before_a_bad_record_are_kept_for_the_rerun(tmp_path, teacher, rationales):
    rows = teacher_rows(teacher, rationales, n=6)
    rows[4]["topk"] = rows[4]["topk"][:-1]
    path, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(path, rows)
    with pytest.raises(RecordError):
        run_alignment(path, out, AlignConfig(), chunk_size=2)
    assert [r["id"] for r in read_rows(out)] == [r["id"] for r in rows[:4]]


def test_authors_framing_rejections_are_rows_not_crashes(tmp_path):
    framed = {"id": "ok", "text": "\nIf we", "tokens": [" step", "\n", "If", " we", "\n", "\n"],
              "topk": [[[t, -0.1]] for t in [" step", "\n", "If", " we", "\n", "\n"]]}
    unframed = {"id": "bad", "text": "If we\n\n", "tokens": ["If", " we", "\n", "\n"],
                "topk": [[["If", -0.1]], [[" we", -0.1]], [["\n", -0.1]], [["\n", -0.1]]]}
    path, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(path, [framed, unframed])
    summary = run_alignment(path, out, AlignConfig(mode="faithful", framing="authors"))
    rows = {r["id"]: r for r in read_rows(out)}
    assert rows["ok"]["status"] == "ok" and rows["bad"]["status"] == "rejected" and "step 0" in rows["bad"]["reason"]
    assert summary["rejected"] == 1 and summary["sequences"] == 1


def test_cli_run_and_synth(tmp_path, data_dir):
    from harness.cli import app

    runner = CliRunner()
    teacher_path, out = tmp_path / "t.jsonl", tmp_path / "o.jsonl"
    result = runner.invoke(app, ["align", "synth", str(teacher_path), "--n", "5"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["align", "run", str(teacher_path), str(out), "--mode", "exact", "--tail", "--workers", "1"])
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    assert len(rows) == 5 and all("tail_mass" in r for r in rows)


def test_student_text_that_is_another_text_is_a_record_error(tmp_path, teacher, rationales):
    rows = teacher_rows(teacher, rationales, n=3)
    rows[2]["student_text"] = "Something else entirely, with no relation to the teacher's completion."
    path, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(path, rows)
    with pytest.raises(RecordError, match="different text") as info:
        run_alignment(path, out, AlignConfig(mode="exact"))
    assert info.value.field == "tokens/text" and "line 3" in str(info.value.record)
    assert len(read_rows(out)) == 2
