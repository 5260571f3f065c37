"""Make the spec tasks visible to the plain `lm_eval` command.

lm-eval 0.4.13 has no plugin discovery: `TaskManager` indexes its own `lm_eval/tasks/` folder
(plus `--include_path`), and its `**/*.yaml` glob does not enter symlinked directories. So
`install()` creates a real folder `lm_eval/tasks/spec_harness/` holding one symlink per file of
this repo's `tasks/`, plus a marker file; `uninstall()` removes exactly that folder. Symlinks
keep the installed tasks in step with the repo; nothing of lm-eval's own is touched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.config import TASKS_DIR

FOLDER = "spec_harness"
MARKER = ".installed-by-spec-harness"


def lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


def task_files(source: Path = TASKS_DIR) -> list[Path]:
    return sorted(p for p in source.iterdir() if p.suffix == ".yaml" or p.name.endswith("_yaml") or p.name == "utils.py")


def installed_dir() -> Path:
    return lm_eval_tasks_dir() / FOLDER


def status() -> dict:
    target = installed_dir()
    ours = (target / MARKER).exists()
    links = [p for p in target.iterdir() if p.is_symlink()] if ours else []
    return {"installed": ours, "path": str(target), "source": (target / MARKER).read_text().strip() if ours else None, "files": len(links)}


def install(source: Path = TASKS_DIR) -> Path:
    target = installed_dir()
    if target.exists() and not (target / MARKER).exists():
        raise FileExistsError(f"{target} exists and was not created by spec-harness; refusing to touch it")
    target.mkdir(exist_ok=True)
    (target / MARKER).write_text(str(source.resolve()) + "\n")
    wanted = {p.name: p.resolve() for p in task_files(source)}
    for existing in target.iterdir():
        if existing.is_symlink() and existing.name not in wanted:
            existing.unlink()
    for name, path in wanted.items():
        link = target / name
        if link.is_symlink() and link.resolve() == path:
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(path)
    return target


def uninstall() -> bool:
    target = installed_dir()
    if not (target / MARKER).exists():
        return False
    shutil.rmtree(target)
    return True
