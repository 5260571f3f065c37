"""Resumable outputs store their settings and refuse to resume with other ones."""

import json

import pytest

from harness.errors import ResumeError
from harness.resume import claim, settings_path


def test_first_claim_records_then_same_settings_resume(tmp_path):
    out = tmp_path / "rows.jsonl"
    assert claim(out, "align", {"mode": "exact", "k": 5}) is False
    stored = json.loads(settings_path(out).read_text())
    assert stored["job"] == "align" and stored["settings"] == {"k": 5, "mode": "exact"}
    out.write_text("row\n")
    assert claim(out, "align", {"k": 5, "mode": "exact"}) is True  # key order does not matter


def test_other_settings_are_refused_with_the_differences(tmp_path):
    out = tmp_path / "rows.jsonl"
    claim(out, "align", {"mode": "exact", "k": 5, "exact": {"tail": False}})
    with pytest.raises(ResumeError) as err:
        claim(out, "align", {"mode": "faithful", "k": 5, "exact": {"tail": True}})
    message = str(err.value)
    assert "mode: 'exact' -> 'faithful'" in message and "exact.tail: False -> True" in message
    assert "k:" not in message and "start fresh" in message and len(message.splitlines()) <= 3
    with pytest.raises(ResumeError, match="job: 'align' -> 'teacher'"):
        claim(out, "teacher", {"mode": "exact", "k": 5, "exact": {"tail": False}})


def test_folder_outputs_keep_settings_inside(tmp_path):
    store = tmp_path / "store"
    assert claim(store, "teacher.sample", {"n": 40}, folder=True) is False
    assert (store / "settings.json").exists()
    with pytest.raises(ResumeError, match="n: 40 -> 20"):
        claim(store, "teacher.sample", {"n": 20}, folder=True)


def test_names_with_dots_or_without_extension_resume(tmp_path):
    dotted = tmp_path / "Qwen2.5"  # a folder output whose name has a "suffix"
    assert claim(dotted, "formats.build", {"seed": 0}, folder=True) is False
    (dotted / "part.parquet").write_text("x")
    assert claim(dotted, "formats.build", {"seed": 0}, folder=True) is True
    plain = tmp_path / "aligned"  # a file output without an extension
    assert claim(plain, "align", {"k": 5}) is False and not plain.exists()
    plain.write_text("row\n")
    assert claim(plain, "align", {"k": 5}) is True and plain.is_file()


def test_an_output_without_settings_is_not_resumed(tmp_path):
    out = tmp_path / "rows.jsonl"
    out.write_text("something else wrote this\n")
    with pytest.raises(ResumeError, match="no settings file"):
        claim(out, "align", {"k": 5})
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert claim(empty, "align", {"k": 5}) is False  # an empty file holds nothing to mix with


def test_a_corrupt_settings_file_is_refused(tmp_path):
    out = tmp_path / "rows.jsonl"
    settings_path(out).write_text("{not json")
    with pytest.raises(ResumeError, match="not a settings file"):
        claim(out, "align", {"k": 5})
