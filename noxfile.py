"""nox sessions. CPU sessions run by default; GPU sessions are tagged `gpu` and opt-in.

    nox -s tests            # the CPU suite (same as README / CI)
    nox -s kernel-bench     # kernel microbenchmarks -> reports/kernels/ (needs a CUDA GPU)
    nox -s tests-gpu        # the GPU correctness suite

The `gpu` sessions install from PyPI with uv and Python 3.11: they suit a networked GPU box. On the
project's lent GPU machines (offline, Python 3.12, no nox/uv) run `bash scripts/gpu_check.sh`
instead -- every GPU part in <= 8 minutes -- and promote its folder here with
`nox -s kernel-baseline -- RUN_DIR` (reports/kernels/README.md, "Docs").
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


def _gpu_count() -> int:
    """CUDA GPUs on this machine (the same detection as `reproduce --profile auto`): `SPEC_GPU_COUNT`
    when set (tests simulate a GPU node with it), else `nvidia-smi -L`."""
    import shutil

    forced = os.environ.get("SPEC_GPU_COUNT")
    if forced is not None:
        return int(forced) if forced.strip().isdigit() else 0
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def _install(session: nox.Session, gpu: bool = False) -> None:
    """The pinned stack: the CUDA lock (PyPI's torch 2.13.0 is a CUDA 13 build: NVIDIA driver R580+)
    on a GPU machine, the CPU lock (a local CPU torch wheel where pip's find-links has one) elsewhere."""
    if gpu:
        session.install("-r", CUDA_LOCK)
    else:
        session.install(*_find_links(), "-r", LOCK)
    session.install("--no-deps", "-e", ".")


def _env(offline: bool = True) -> dict[str, str]:
    """SPEC_DATA_DIR for every session; the test and kernel sessions keep the Hub off. Reproduction
    sessions leave the user's HF_HUB_OFFLINE alone (the paper profile downloads its models; the cpu
    and rehearsal profiles switch the Hub off for their own child processes)."""
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"} if offline else {}
    env["SPEC_DATA_DIR"] = os.environ.get("SPEC_DATA_DIR", os.path.abspath("../shared/data"))
    return env


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The CPU test suite (kernels run under TRITON_INTERPRET=1)."""
    _install(session)
    session.run("python", "-m", "pytest", "-q", *session.posargs, env=_env())


@nox.session(name="tests-gpu", python="3.11", default=False, tags=["gpu"])
def tests_gpu(session: nox.Session) -> None:
    """GPU correctness suite: compiled Triton kernels against the PyTorch references (offline GPU machine: part (a) of scripts/gpu_check.sh)."""
    _install(session, gpu=True)
    session.run("python", "-m", "pytest", "-q", "-m", "gpu", "tests/kernels", *session.posargs, env=_env())


@nox.session(name="kernel-bench", python="3.11", default=False, tags=["gpu"])
def kernel_bench(session: nox.Session) -> None:
    """Kernel microbenchmarks -> reports/kernels/sparse_kl.md + JSON (offline GPU machine: parts (b)-(d) of scripts/gpu_check.sh)."""
    _install(session, gpu=True)
    session.run("python", "-m", "kernels.bench", *session.posargs, env=_env())


# --- CPU benchmark figures (reports/README.md lists each one and its command) ----------------------

# Every committed CPU figure, and the command that regenerates it (reports/README.md, in this order).
BENCH_CPU = (
    ("python", "-m", "harness.train.bench", "--device", "cpu"),
    ("python", "-m", "harness", "align", "report"),
    ("python", "-m", "harness.teacher.http_bench"),
    ("python", "scripts/bench_pipeline.py"),
    ("python", "-m", "kernels.bench", "--device", "cpu"),
)


@nox.session(name="bench-cpu", python="3.11", default=False)
def bench_cpu(session: nox.Session) -> None:
    """Regenerate every committed CPU benchmark figure; run it on a quiet machine.

    Each bench measures the machine's load and refuses to write (exit 3) when other processes
    took more than --max-load of it; `-- --allow-load` writes anyway, labelled "not a result".
    """
    _install(session)
    load = [a for a in session.posargs if a == "--allow-load" or a.startswith("--max-load=")]
    for command in BENCH_CPU:
        session.run(*command, *load, env=_env())


# --- Reproducing the paper (README, "Reproduce the paper's tables") --------------------------------


def _reproduce(session: nox.Session, table: str) -> None:
    """Thin: `python -m harness reproduce TABLE …` (posargs pass through, e.g. `-- --authors-formats DIR`).
    With a GPU visible (or `-- --profile paper`) the CUDA lock is installed and `--profile auto`
    picks the paper profile; without one, the CPU lock and the cpu profile."""
    gpu = _gpu_count() > 0 or "paper" in session.posargs
    if _rerun_in_container(session, "cuda" if gpu else "cpu"):
        return
    _install(session, gpu=gpu)
    session.run("python", "-m", "harness", "reproduce", table, *session.posargs, env=_env(offline=False))


@nox.session(name="reproduce-table1", python="3.11", default=False)
def reproduce_table1(session: nox.Session) -> None:
    """Table 1 end to end -> reports/table1/<profile>/ (cpu profile without a GPU: a pipeline check)."""
    _reproduce(session, "table1")


@nox.session(name="reproduce-table2", python="3.11", default=False)
def reproduce_table2(session: nox.Session) -> None:
    """Table 2 (before/after specialization, Flan-T5 vs T5) -> reports/table2/<profile>/."""
    _reproduce(session, "table2")


@nox.session(name="reproduce-table3", python="3.11", default=False)
def reproduce_table3(session: nox.Session) -> None:
    """Table 3 (model selection by GSM8K dev vs M-A-S dev) -> reports/table3/<profile>/."""
    _reproduce(session, "table3")


@nox.session(python="3.11", default=False)
def figures(session: nox.Session) -> None:
    """Figs. 2-3 (scaling before/after; dynamics, distribution vs sample matching) -> reports/figures/<profile>/."""
    _reproduce(session, "figures")


@nox.session(python="3.11", default=False)
def specialize(session: nox.Session) -> None:
    """`python -m harness specialize -- --student MODEL --teacher-config FILE`: your model, the paper's method, the trade-off report."""
    gpu = _gpu_count() > 0
    if _rerun_in_container(session, "cuda" if gpu else "cpu"):
        return
    _install(session, gpu=gpu)
    session.run("python", "-m", "harness", "specialize", *session.posargs, env=_env(offline=False))


@nox.session(python="3.11", default=False)
def report(session: nox.Session) -> None:
    """Re-render every report from the results files already under runs/reproduce/ (no training, no eval)."""
    import glob

    _install(session, gpu=False)
    found = sorted(glob.glob("runs/reproduce/*/*.results.json"))
    if not found:
        session.skip("no results under runs/reproduce/ yet: run nox -s reproduce-table1 first")
    for results in found:
        session.run("python", "-m", "harness", "report", "render", results, *session.posargs, env=_env())


# --- Containers, locks and the kernel-speed gate (README, "Containers and GPU CI") -------------------

CUDA_LOCK = "containers/requirements-cuda.lock"
BOOTSTRAP_LOCK = "containers/requirements-bootstrap.lock"
KERNEL_BASELINE = "reports/kernels/baseline.json"
KERNEL_LATEST = "reports/kernels/sparse_kl_latest.json"


def _script(name: str):
    """A module from scripts/ (they are plain files, not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"spec_scripts_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _lock_entries(text: str) -> dict[str, str]:
    """{package name: its whole entry (pin, hashes, via-comments)} of a `uv pip compile` output."""
    entries: dict[str, str] = {}
    name = None
    for line in text.splitlines(keepends=True):
        if line[:1].isalnum():
            name = line.split("==")[0].strip().lower()
            entries[name] = line
        elif name and line.startswith(" "):
            entries[name] += line
    return entries


def _rerun_in_container(session: nox.Session, profile: str = "cuda") -> bool:
    """`nox -s NAME -- --container …`: run this same session inside the pinned image instead; True if it did."""
    if "--container" not in session.posargs:
        return False
    import sys

    rest = [a for a in session.posargs if a != "--container"]
    inner = ["nox", "--no-venv", "--no-install", "-s", session.name, *(["--", *rest] if rest else [])]
    session.run(sys.executable, "scripts/containers.py", "run", profile, "--", *inner, external=True)
    return True


@nox.session(venv_backend="none", default=False)
def lock(session: nox.Session) -> None:
    """Regenerate the hash-pinned locks (existing pins kept; `-- --upgrade-package NAME` to move one).

    CPU:  uv pip compile pyproject.toml --extra dev --python-version 3.11 --python-platform x86_64-manylinux_2_28
          --generate-hashes --find-links <pip's find-links: the local torch +cpu wheel> -o containers/requirements-cpu.lock
    CUDA: the same without --find-links (PyPI's torch 2.13.0 is the CUDA 13.0 build), preferring the CPU lock's pins,
          so the two differ only in torch, triton and the CUDA libraries -o containers/requirements-cuda.lock
    Bootstrap: containers/bootstrap.in (uv, for the images) -o containers/requirements-bootstrap.lock
    """
    from pathlib import Path

    common = ["uv", "pip", "compile", "--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28",
              "--generate-hashes", "--custom-compile-command", "nox -s lock", "--quiet", *session.posargs]
    session.run(*common, "pyproject.toml", "--extra", "dev", *_find_links(), "-o", LOCK, external=True)
    # Preferences for the CUDA lock: the CPU lock's entries, then the CUDA-only ones it already has.
    cpu = _lock_entries(Path(LOCK).read_text())
    cuda_path = Path(CUDA_LOCK)
    cuda = _lock_entries(cuda_path.read_text()) if cuda_path.exists() else {}
    header = "# This file was autogenerated by uv via the following command:\n#    nox -s lock\n"
    cuda_path.write_text(header + "".join(cpu.values()) + "".join(v for k, v in cuda.items() if k not in cpu))
    session.run(*common, "pyproject.toml", "--extra", "dev", "-o", CUDA_LOCK, external=True)
    session.run(*common, "containers/bootstrap.in", "-o", BOOTSTRAP_LOCK, external=True)


@nox.session(name="container-build", venv_backend="none", default=False)
def container_build(session: nox.Session) -> None:
    """Build spec-harness:cpu and spec-harness:cuda (-- cpu|cuda|all, --base auto|public|local, --rebuild-base).

    Each from the public base pinned by digest in its Dockerfile; where that cannot be pulled, the CPU image
    is built on a Debian bookworm made here (debootstrap + docker import) and the CUDA image is skipped, with
    the reason. Skips the whole session, with the reason, where no Docker daemon answers.
    """
    containers = _script("containers")
    problem = containers.docker_problem()
    if problem:
        session.skip(f"no image can be built on this machine: {problem}")
    code = containers.main(["build", *(session.posargs or ["all"])])
    if code == containers.EXIT_CANNOT:
        session.skip("no image could be built on this machine (the reasons are above)")
    if code != containers.EXIT_OK:
        session.error("the image build failed (see above)")


@nox.session(name="kernel-compare", python="3.11", default=False, tags=["gpu"])
def kernel_compare(session: nox.Session) -> None:
    """Fail on a > 10% slowdown of any tracked kernel shape vs reports/kernels/baseline.json (after kernel-bench)."""
    if _rerun_in_container(session):
        return
    _install(session, gpu=True)
    session.run("python", "-m", "kernels.bench", "--compare", KERNEL_BASELINE, "--current", KERNEL_LATEST,
                "--max-slowdown", "0.10", *session.posargs, env=_env())


@nox.session(name="kernel-baseline", python="3.11", default=False, tags=["gpu"])
def kernel_baseline(session: nox.Session) -> None:
    """The only way the baseline changes: promote a GPU check's folder (-- RUN_DIR [--force], written by
    `bash scripts/gpu_check.sh`; also writes its reports/ pages), take -- RESULT.json, or benchmark now."""
    if session.posargs and os.path.isdir(session.posargs[0]):
        _install(session)  # promoting only reads files: the CPU install is enough
        session.run("python", "-m", "scripts.gpu_check", "promote", *session.posargs, env=_env())
        return
    if _rerun_in_container(session):
        return
    _install(session, gpu=True)
    if session.posargs:
        result = session.posargs[0]
    else:
        gpu = session.run("python", "-c", "import torch; print(torch.cuda.is_available())", silent=True, env=_env())
        if "True" not in str(gpu):
            session.error("kernel-baseline benchmarks on a CUDA GPU and none is visible; run it on the GPU machine")
        session.run("python", "-m", "kernels.bench", env=_env())
        result = KERNEL_LATEST
    session.run("python", "-m", "kernels.bench_compare", "--promote", result, "--baseline", KERNEL_BASELINE, env=_env())
