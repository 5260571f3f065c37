"""`nox -s bench-cpu` runs exactly the commands reports/README.md documents, in that order, passes
the load options on, and names the kernel CPU bench when it cannot run it (driven with a fake
nox session: nothing is installed or benchmarked here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


class Stop(Exception):
    pass


class FakeSession:
    def __init__(self, posargs=(), kernel_help="usage: python -m kernels.bench [-h] [--out OUT] [--quick] [--tune]"):
        self.posargs, self.kernel_help = list(posargs), kernel_help
        self.runs, self.warnings, self.errors = [], [], []

    def install(self, *args, **kwargs):
        pass

    def run(self, *args, silent=False, env=None, **kwargs):  # returns the output when silent, as nox does
        assert env and env["SPEC_DATA_DIR"] and env["HF_HUB_OFFLINE"] == "1"
        if args[-1] == "--help":
            return self.kernel_help
        self.runs.append(" ".join(args))
        return None

    def warn(self, message):
        self.warnings.append(message)

    def error(self, message):
        self.errors.append(message)
        raise Stop(message)


def documented_commands() -> list[str]:
    """The command column of reports/README.md's figures table, in order."""
    rows = [line for line in (ROOT / "reports" / "README.md").read_text().splitlines() if line.startswith("| ")][1:]  # after the header
    return [re.findall(r"`([^`]+)`", row.split(" | ")[-1])[0] for row in rows]


def session_fn(noxfile):
    fn = noxfile.bench_cpu
    return getattr(fn, "func", fn)  # nox wraps session functions


def test_runs_every_documented_command_in_order(noxfile, monkeypatch):
    monkeypatch.setattr(noxfile, "_install", lambda session, gpu=False: None)
    session = FakeSession(kernel_help="usage: python -m kernels.bench [--device {cpu,cuda}] [--allow-load]")
    session_fn(noxfile)(session)
    assert session.runs == documented_commands()
    assert session.runs[-1] == "python -m kernels.bench --device cpu" and not session.errors and not session.warnings


def test_load_options_reach_every_harness_bench(noxfile, monkeypatch):
    monkeypatch.setattr(noxfile, "_install", lambda session, gpu=False: None)
    session = FakeSession(posargs=["--allow-load", "--max-load=0.1", "--other"], kernel_help="--device cpu")
    session_fn(noxfile)(session)
    assert all(run.endswith(" --allow-load --max-load=0.1") for run in session.runs[:-1])
    assert session.runs[-1] == "python -m kernels.bench --device cpu"  # its --help offers no --allow-load: none passed


def test_without_the_kernel_cpu_bench_the_others_run_then_it_fails_naming_it(noxfile, monkeypatch):
    monkeypatch.setattr(noxfile, "_install", lambda session, gpu=False: None)
    session = FakeSession()
    with pytest.raises(Stop):
        session_fn(noxfile)(session)
    assert session.runs == documented_commands()[:-1]
    assert "kernels.bench" in session.warnings[0]
    assert "python -m kernels.bench --device cpu" in session.errors[0] and "every other figure" in session.errors[0]


def test_install_only_runs_nothing(noxfile, monkeypatch):
    monkeypatch.setattr(noxfile, "_install", lambda session, gpu=False: None)
    session = FakeSession(kernel_help=None)  # nox --install-only: session.run returns None
    session_fn(noxfile)(session)
    assert session.runs == [] and not session.errors
