"""Core record I/O: atomic writes with ordinary permissions, JSONL errors naming file and line."""

import os

import pytest

from harness.records import RecordError, atomic_write, current_umask, iter_jsonl


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_write_respects_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        assert current_umask() == mask
        with atomic_write(tmp_path / "out.json") as handle:
            handle.write("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "out.json") as handle:
            handle.write("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_iter_jsonl_line_numbers_count_blank_lines_and_bad_bytes(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'\n\n{"a": 1}\n\n{"b": "\xff"}\n')
    rows = iter_jsonl(path)
    assert next(rows) == (3, {"a": 1})
    with pytest.raises(RecordError, match=r"line 5.*UTF-8"):
        next(rows)
