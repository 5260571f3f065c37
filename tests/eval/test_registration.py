import pytest

from harness.eval import registration as R


@pytest.fixture
def fake_lm_eval(tmp_path, monkeypatch):
    root = tmp_path / "lm_eval_tasks"
    root.mkdir()
    monkeypatch.setattr(R, "lm_eval_tasks_dir", lambda: root)
    return root


def test_install_links_every_task_file_and_uninstall_removes_it(fake_lm_eval):
    target = R.install()
    assert target == fake_lm_eval / R.FOLDER
    links = {p.name: p for p in target.iterdir() if p.is_symlink()}
    assert "utils.py" in links and "gsm8k_cot_spec.yaml" in links and "_math_template_yaml" in links
    assert "_generate.py" not in links
    assert all(p.resolve().parent == R.TASKS_DIR.resolve() for p in links.values())
    assert R.status()["installed"] and R.status()["files"] == len(links)
    R.install()  # idempotent
    assert len([p for p in target.iterdir() if p.is_symlink()]) == len(links)
    assert R.uninstall() and not target.exists()
    assert not R.uninstall()


def test_install_refuses_a_folder_it_did_not_create(fake_lm_eval):
    (fake_lm_eval / R.FOLDER).mkdir()
    with pytest.raises(FileExistsError, match="refusing"):
        R.install()
    assert not R.uninstall() and (fake_lm_eval / R.FOLDER).exists()


def test_install_drops_links_to_removed_files(fake_lm_eval, tmp_path):
    source = tmp_path / "tasks"
    source.mkdir()
    (source / "a.yaml").write_text("task: a\n")
    (source / "b.yaml").write_text("task: b\n")
    R.install(source)
    (source / "b.yaml").unlink()
    R.install(source)
    assert sorted(p.name for p in (fake_lm_eval / R.FOLDER).iterdir() if p.is_symlink()) == ["a.yaml"]
