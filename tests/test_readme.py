"""The README's two commands are the ones CI and new users run, byte for byte."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    return [block.strip() for block in blocks[:2]]


def test_ci_runs_the_readme_test_command_verbatim():
    setup_and_main, tests = readme_commands()
    assert setup_and_main.startswith("bash scripts/setup.sh && ")
    ci_lines = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci_lines[-1] == tests  # the last thing CI does is exactly what the README prints
    assert "bash scripts/setup.sh" in ci_lines  # after a fresh install
    assert not any(line.startswith("export ") for line in ci_lines)  # no environment the README does not set


def test_readme_test_command_uses_a_relative_data_dir():
    # What newcomers type: a relative SPEC_DATA_DIR must work (the suite resolves it once).
    assert readme_commands()[1].startswith("SPEC_DATA_DIR=../shared/data ")
