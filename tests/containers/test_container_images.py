"""The images: what the Dockerfiles promise (pinned bases, hash-checked installs, non-root, volumes),
scripts/containers.py's decisions (why a machine cannot build, what goes in the context), and, where
a Docker daemon answers and `nox -s container-build` has built spec-harness:cpu, the image itself."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIGEST = re.compile(r"^[a-z0-9./_-]+:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}$")


def load_script():
    spec = importlib.util.spec_from_file_location("containers_script", ROOT / "scripts" / "containers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


containers = load_script()


def instructions(profile: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (ROOT / "containers" / f"Dockerfile.{profile}").read_text(encoding="utf-8")
    text = re.sub(r"\\\n\s*", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#")))
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


@pytest.mark.parametrize("profile", ["cpu", "cuda"])
def test_dockerfile_promises(profile):
    prof = containers.PROFILES[profile]
    ins = instructions(profile)
    # The base: an ARG before the first FROM, defaulting to a public image pinned by digest.
    assert ins[0].startswith(f"ARG {prof.base_arg}=")
    assert DIGEST.match(containers.pinned_base(prof)), containers.pinned_base(prof)
    froms = [i for i in ins if i.startswith("FROM ")]
    assert all(f.split()[1] in (f"${{{prof.base_arg}}}", "system") for f in froms), froms
    # Installs: uv from the hashed bootstrap lock with pip --require-hashes, then the profile's lock, hash-checked.
    assert any("pip install --no-cache-dir --require-hashes -r /tmp/install/requirements-bootstrap.lock" in i for i in ins)
    assert any("uv pip sync" in i and "--require-hashes" in i and f"requirements-{profile}.lock" in i for i in ins)
    # The final stage: non-root (numeric uid), data and caches as volumes, HF_HOME and the data dir set.
    final = ins[max(i for i, x in enumerate(ins) if x.startswith("FROM ")):]
    assert final[-2] == "USER ${USER_UID}" and "ARG USER_UID=1000" in final
    assert 'VOLUME ["/data", "/cache"]' in final
    env = next(i for i in final if i.startswith("ENV PATH="))
    for setting in ("SPEC_DATA_DIR=/data", "HF_HOME=/cache/huggingface", "TRITON_CACHE_DIR=/cache/triton", f"SPEC_IMAGE_PROFILE={profile}"):
        assert setting in env
    assert not any(":latest" in i for i in ins)


def test_cuda_image_matches_the_cuda_lock():
    base = containers.pinned_base(containers.PROFILES["cuda"])
    assert base.startswith("nvidia/cuda:13.0.")  # PyPI's torch 2.13.0 is a CUDA 13.0 build
    lock = (ROOT / "containers" / "requirements-cuda.lock").read_text()
    assert re.search(r"^nvidia-cuda-runtime==13\.0\.", lock, re.M)
    assert 'ARG PYTHON_VERSION=3.11.' in (ROOT / "containers" / "Dockerfile.cuda").read_text()  # the CPU profile's minor


@pytest.mark.parametrize("profile", ["cpu", "cuda"])
def test_dockerignore_mirrors_gitignore(profile):
    ignored = {ln.strip().strip("/") for ln in (ROOT / ".gitignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    listed = {ln.strip().removeprefix("**/") for ln in (ROOT / "containers" / f"Dockerfile.{profile}.dockerignore").read_text().splitlines()
              if ln.strip() and not ln.startswith("#")}
    assert {"__pycache__", "*.pyc", ".venv", ".nox", "*.egg-info", "runs"} <= listed
    assert {i.strip("/") for i in ignored} <= listed | {".git"}, ignored - listed


def fake_docker(tmp_path: Path, monkeypatch, script: str, dockerd: bool = False) -> None:
    """A `docker` (and optionally `dockerd`) on PATH that behaves as `script` says."""
    bin_ = tmp_path / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "docker").write_text("#!/bin/sh\n" + script)
    (bin_ / "docker").chmod(0o755)
    if dockerd:
        (bin_ / "dockerd").write_text("#!/bin/sh\nexit 0\n")
        (bin_ / "dockerd").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}:/usr/bin:/bin")


def test_docker_problem_says_exactly_why(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    assert "no `docker` command on PATH" in containers.docker_problem()
    no_daemon = 'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2; exit 1\n'
    fake_docker(tmp_path / "a", monkeypatch, no_daemon, dockerd=False)  # PATH without sbin: no dockerd
    msg = containers.docker_problem()
    assert "Cannot connect to the Docker daemon at unix:///var/run/docker.sock" in msg and "none is installed here" in msg
    fake_docker(tmp_path / "b", monkeypatch, no_daemon, dockerd=True)
    msg = containers.docker_problem()
    assert "dockerd is installed" in msg and ("start it as root" in msg or "needs root" in msg)
    fake_docker(tmp_path / "c", monkeypatch, 'echo "permission denied while trying to connect to the Docker daemon socket" >&2; exit 1\n')
    assert "not accessible to this user" in containers.docker_problem()
    fake_docker(tmp_path / "d", monkeypatch, 'echo 20.10.24; exit 0\n')
    assert containers.docker_problem() is None


def test_no_daemon_means_exit_3_with_the_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(containers, "docker_problem", lambda docker="docker": "no Docker daemon answers (test)")
    assert containers.main(["build", "cpu"]) == containers.EXIT_CANNOT
    assert "cannot on this machine: no Docker daemon answers (test)" in capsys.readouterr().err
    assert containers.main(["doctor"]) == containers.EXIT_CANNOT


def test_cuda_is_never_built_on_the_local_base(monkeypatch):
    monkeypatch.setattr(containers, "pull_problem", lambda ref: "lookup registry-1.docker.io: no such host")
    with pytest.raises(containers.CannotBuild, match="NVIDIA's CUDA images cannot be made locally"):
        containers.build(containers.PROFILES["cuda"], base="auto")
    with pytest.raises(containers.CannotBuild, match="cannot be pulled here"):
        containers.build(containers.PROFILES["cpu"], base="public")


def test_build_context_is_gits_file_list_plus_local_files(tmp_path):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "a.py").write_text("x = 1\n")
    (repo / "new.txt").write_text("untracked, not ignored\n")
    (repo / ".gitignore").write_text(".venv/\n")
    (repo / ".venv").mkdir()
    (repo / ".venv" / "big").write_text("ignored")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "pkg/a.py", ".gitignore"], cwd=repo, check=True)
    wheel = tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(b"PK")
    ca = tmp_path / "ca-certificates.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    data = containers.build_context([wheel, ca], root=repo)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = sorted(tar.getnames())
    assert names == [".gitignore", "containers/local/ca-bundle.crt", f"containers/local/{wheel.name}", "new.txt", "pkg/a.py"]
    assert data[257:263] == b"ustar " and data[263:265] == b" \x00"  # GNU header: docker sniffs it as a tar on stdin


def test_local_wheels_are_the_locks_local_versions(tmp_path, monkeypatch):
    links = tmp_path / "wheels"
    links.mkdir()
    for name in ("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "torch-2.12.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
                 "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl"):
        (links / name).write_bytes(b"")
    monkeypatch.setattr(containers, "find_links_dirs", lambda: [links])
    found = containers.local_wheels(ROOT / "containers" / "requirements-cpu.lock")
    assert [w.name for w in found] == ["torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"]
    assert containers.local_wheels(ROOT / "containers" / "requirements-cuda.lock") == []


# --- With a Docker daemon and a built image (nox -s container-build -- cpu) -------------------------

@pytest.fixture(scope="module")
def cpu_image():
    problem = containers.docker_problem()
    if problem:
        pytest.skip(f"no Docker daemon: {problem}")
    tag = containers.PROFILES["cpu"].tag
    if not containers.image_present(tag):
        pytest.skip(f"no image {tag} on this machine: build it with `nox -s container-build -- cpu`")
    return tag


def docker(*args: str, timeout: float = 120) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_cpu_image_metadata(cpu_image):
    info = json.loads(docker("image", "inspect", cpu_image))[0]["Config"]
    assert info["User"] == "1000"
    assert set(info["Volumes"]) == {"/data", "/cache"}
    env = dict(e.split("=", 1) for e in info["Env"])
    assert env["HF_HOME"] == "/cache/huggingface" and env["SPEC_DATA_DIR"] == "/data"
    assert info["Labels"]["org.opencontainers.image.base.name"]  # the base it was built on, public or local


def test_cpu_image_runs_the_locked_stack_as_non_root(cpu_image):
    code = (
        "import json, os, sys, importlib.metadata as md; "
        "import huggingface_hub.constants as hf; "
        "print(json.dumps({'uid': os.getuid(), 'python': sys.version.split()[0], 'hf_home': hf.HF_HOME, "
        "'dists': {d.metadata['Name'].lower(): d.version for d in md.distributions()}}))"
    )
    out = json.loads(docker("run", "--rm", "-e", "HF_HOME=/tmp/hf-elsewhere", cpu_image, "python", "-c", code))
    assert out["uid"] == 1000 and out["python"].startswith("3.11.")
    assert out["hf_home"] == "/tmp/hf-elsewhere"  # HF_HOME honoured
    locked = dict(re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", (ROOT / "containers" / "requirements-cpu.lock").read_text(), re.M))
    want = {k.lower(): v for k, v in locked.items()}
    got = {k.replace("_", "-"): v for k, v in out["dists"].items() if k != "spec-harness"}
    stale = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    if stale:
        pytest.skip(f"{cpu_image} was built from another lock ({len(stale)} pins differ): rebuild with `nox -s container-build -- cpu`")
    assert set(got) == set(want)
    assert docker("run", "--rm", cpu_image).startswith("spec-harness ")  # CMD: python -m harness --version


def test_run_takes_its_options_before_the_command(monkeypatch):
    seen = {}
    monkeypatch.setattr(containers, "run", lambda profile, command, data, cache, mount_repo=True: seen.update(
        profile=profile.name, command=command, mount=mount_repo, data=data) or 0)
    assert containers.main(["run", "cuda", "--no-mount", "--data", "/d", "--", "nox", "--no-venv", "-s", "tests-gpu"]) == 0
    assert seen == {"profile": "cuda", "command": ["nox", "--no-venv", "-s", "tests-gpu"], "mount": False, "data": Path("/d")}
    with pytest.raises(SystemExit):
        containers.main(["run", "cpu"])  # no command
