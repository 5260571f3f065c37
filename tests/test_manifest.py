"""harness.manifest: the commit a report records is "-dirty" only for changes outside reports/."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from harness import manifest


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_commit_is_dirty_for_code_changes_not_for_reports(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "page.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-qm", "first")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    monkeypatch.setattr(manifest, "REPO_ROOT", tmp_path)
    assert manifest.git_commit() == head
    (tmp_path / "reports" / "page.md").write_text("new\n")  # a bench wrote its report: still the commit
    (tmp_path / "reports" / "other.json").write_text("{}\n")
    assert manifest.git_commit() == head
    (tmp_path / "code.py").write_text("x = 2\n")  # the code changed: dirty
    assert manifest.git_commit() == head + "-dirty"
