"""`nox -s bench-cpu` runs exactly the commands reports/README.md documents, in that order, and
passes the load options on to every one (driven with a fake nox session: nothing is installed or
benchmarked here; each bench's own refusal is tested beside it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


class FakeSession:
    def __init__(self, posargs=()):
        self.posargs, self.runs = list(posargs), []

    def install(self, *args, **kwargs):
        pass

    def run(self, *args, env=None, **kwargs):
        assert env and env["SPEC_DATA_DIR"] and env["HF_HUB_OFFLINE"] == "1"
        self.runs.append(" ".join(args))


def documented_commands() -> list[str]:
    """The command column of reports/README.md's figures table, in order."""
    rows = [line for line in (ROOT / "reports" / "README.md").read_text().splitlines() if line.startswith("| ")][1:]  # after the header
    return [re.findall(r"`([^`]+)`", row.split(" | ")[-1])[0] for row in rows]


def session_fn(noxfile):
    fn = noxfile.bench_cpu
    return getattr(fn, "func", fn)  # nox wraps session functions


def test_runs_every_documented_command_in_order(noxfile, monkeypatch):
    monkeypatch.setattr(noxfile, "_install", lambda session, gpu=False: None)
    session = FakeSession()
    session_fn(noxfile)(session)
    assert session.runs == documented_commands()
    assert session.runs[-1] == "python -m kernels.bench --device cpu"


def test_load_options_reach_every_bench(noxfile, monkeypatch):
    monkeypatch.setattr(noxfile, "_install", lambda session, gpu=False: None)
    session = FakeSession(posargs=["--allow-load", "--max-load=0.1", "--other"])
    session_fn(noxfile)(session)
    assert len(session.runs) == len(documented_commands())
    assert all(run.endswith(" --allow-load --max-load=0.1") for run in session.runs)


@pytest.mark.parametrize("command", documented_commands())
def test_every_bench_understands_the_load_options(command):
    import shlex
    import subprocess
    import sys

    args = shlex.split(command)[1:]
    done = subprocess.run([sys.executable, *args, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0 and "--allow-load" in done.stdout and "--max-load" in done.stdout, done.stderr[-500:]
