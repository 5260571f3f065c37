"""nox sessions. CPU sessions run by default; GPU sessions are tagged `gpu` and opt-in.

    nox -s tests            # the CPU suite (same as README / CI)
    nox -s kernel-bench     # kernel microbenchmarks -> reports/kernels/ (needs a CUDA GPU)
    nox -s tests-gpu        # the GPU correctness suite
"""

from __future__ import annotations

import os
import subprocess

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests"]

LOCK = "containers/requirements-cpu.lock"


def _find_links() -> list[str]:
    """pip's configured --find-links (where a local CPU torch wheel lives), passed on to uv."""
    try:
        out = subprocess.run(["python3", "-m", "pip", "config", "get", "global.find-links"], capture_output=True, text=True).stdout
    except OSError:
        return []
    return [arg for link in out.split() for arg in ("--find-links", link)]


def _install(session: nox.Session, gpu: bool = False) -> None:
    if gpu:
        # GPU: the CUDA build of the pinned torch (it brings its matching triton), then the rest.
        session.install("-e", ".[dev]")
    else:
        session.install(*_find_links(), "-r", LOCK)
        session.install("--no-deps", "-e", ".")


def _env() -> dict[str, str]:
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env["SPEC_DATA_DIR"] = os.environ.get("SPEC_DATA_DIR", os.path.abspath("../shared/data"))
    return env


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The CPU test suite (kernels run under TRITON_INTERPRET=1)."""
    _install(session)
    session.run("python", "-m", "pytest", "-q", *session.posargs, env=_env())


@nox.session(name="tests-gpu", python="3.11", default=False, tags=["gpu"])
def tests_gpu(session: nox.Session) -> None:
    """GPU correctness suite: compiled Triton kernels against the PyTorch references."""
    _install(session, gpu=True)
    session.run("python", "-m", "pytest", "-q", "-m", "gpu", "tests/kernels", *session.posargs, env=_env())


@nox.session(name="kernel-bench", python="3.11", default=False, tags=["gpu"])
def kernel_bench(session: nox.Session) -> None:
    """Kernel microbenchmarks; writes reports/kernels/*.json and a Markdown table."""
    _install(session, gpu=True)
    session.run("python", "-m", "kernels.bench", *session.posargs, env=_env())
