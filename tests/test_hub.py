"""harness.hub: what counts as available before a long run starts."""

from __future__ import annotations

from harness import hub


def test_models_the_harness_builds_here_are_never_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert hub.missing(["tiny", "tiny-gpt2"]) == []
    assert hub.missing(["google/flan-t5-base", str(tmp_path / "no-such-folder")]) == ["google/flan-t5-base", str(tmp_path / "no-such-folder")]


def test_a_local_folder_needs_a_config(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    assert not hub.cached(str(folder))
    (folder / "config.json").write_text("{}")
    assert hub.cached(str(folder)) and hub.missing([str(folder)], check_hub=False) == []
