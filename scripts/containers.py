"""Build and run the pinned images (containers/Dockerfile.cpu, containers/Dockerfile.cuda).

    python scripts/containers.py doctor                       # can this machine build and run them? why not?
    python scripts/containers.py build [cpu|cuda|all] [--base auto|public|local]
    python scripts/containers.py run cuda -- nox --no-venv --no-install -s tests-gpu

`nox -s container-build` runs `build`. Each image is built FROM the public base pinned by digest
in its Dockerfile (the `ARG` before `FROM`). Where that base cannot be pulled (these machines do
not reach Docker Hub), `--base auto` builds the CPU image on a Debian bookworm made here:
debootstrap a minimal root filesystem, `docker import` it, and pass it as BASE_IMAGE. Such a build
is for this machine: the torch +cpu wheel comes from pip's configured --find-links instead of
download.pytorch.org, and PyPI is reached with the CA bundle this machine's pip trusts (a TLS proxy
here); both travel in the build context under containers/local/ and are used by the installer
stage only. NVIDIA's CUDA base cannot be made that way, so without registry access the CUDA image
is skipped, with the reason.

The build context is exactly the repository's files as git sees them (tracked, plus untracked
files git does not ignore), sent as a tar on stdin: no .venv, .git or run outputs, and the same
bytes whether the engine uses BuildKit or the classic builder.

`run` starts a container on the current checkout: the repo at /workspace (so results land in
reports/ here), the data directory read-only at /data, a cache folder at /cache, the caller's
uid:gid, `--gpus all` for the CUDA image, and SPEC_CONTAINER_IMAGE set to the image's digest (or
id) for the run's records.

Standard library only: it runs before any environment exists. Exit codes: 0 done, 1 a build
failed, 3 nothing could be built or run on this machine (the reasons are printed); `run` returns
the command's own exit code.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXIT_OK, EXIT_FAILED, EXIT_CANNOT = 0, 1, 3
LOCAL_BASE_TAG = "spec-harness/debian-local:bookworm"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# What the official debian:bookworm-slim image lists, so the local base sees the same archive.
DEBIAN_SOURCES = """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
PULL_TIMEOUT_S = 120


@dataclass(frozen=True)
class Profile:
    name: str
    dockerfile: str
    lock: str
    tag: str
    base_arg: str  # the ARG before FROM that names the base image
    gpus: bool
    local_base: bool  # can it build on the locally made Debian base?


PROFILES = {
    "cpu": Profile("cpu", "containers/Dockerfile.cpu", "containers/requirements-cpu.lock", "spec-harness:cpu", "BASE_IMAGE", False, True),
    "cuda": Profile("cuda", "containers/Dockerfile.cuda", "containers/requirements-cuda.lock", "spec-harness:cuda", "CUDA_BASE", True, False),
}


class CannotBuild(Exception):
    """This machine cannot do it (no daemon, base not reachable, …); the message says exactly why."""


class Failed(Exception):
    """A command that should have worked did not."""


def log(msg: str) -> None:
    print(f"containers: {msg}", flush=True)


def pinned_base(profile: Profile, root: Path = ROOT) -> str:
    """The default of the Dockerfile's base ARG: the public image, pinned by digest."""
    text = (root / profile.dockerfile).read_text(encoding="utf-8")
    m = re.search(rf"^ARG {profile.base_arg}=(\S+)\s*$", text, re.M)
    if not m:
        raise Failed(f"{profile.dockerfile}: no `ARG {profile.base_arg}=IMAGE@sha256:…` line before FROM")
    return m.group(1)


def _gist(text: str) -> str:
    """The last non-empty line of a command's output: where docker and debootstrap put the error."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def docker_problem(docker: str = "docker") -> str | None:
    """None when a Docker daemon answers; otherwise exactly why not and what would fix it."""
    if shutil.which(docker) is None:
        return "no `docker` command on PATH: install Debian's engine (`apt-get install -y docker.io`)"
    try:
        proc = subprocess.run([docker, "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker version` did not answer within 30 s: the daemon is hung or the socket is unreachable"
    if proc.returncode == 0 and proc.stdout.strip():
        return None
    said = _gist(proc.stderr or proc.stdout)
    if "permission denied" in said.lower():
        return f"the Docker socket is not accessible to this user ({said}): run as root or join the `docker` group"
    if shutil.which("dockerd") is None:
        return f"no Docker daemon answers ({said}) and none is installed here: `apt-get install -y docker.io`, then start `dockerd`"
    if os.geteuid() != 0:
        return f"no Docker daemon answers ({said}); dockerd is installed but starting it needs root"
    return (f"no Docker daemon answers ({said}); dockerd is installed: start it as root, "
            "e.g. `dockerd > /var/log/dockerd.log 2>&1 &` (or `systemctl start docker` where systemd runs)")


def _docker(*args: str, check: bool = True, timeout: float | None = None, input: bytes | None = None,
            capture: bool = True) -> subprocess.CompletedProcess:
    cmd = ["docker", *args]
    try:
        proc = subprocess.run(cmd, input=input, capture_output=capture, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failed(f"`{' '.join(cmd)}` took more than {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        err = (proc.stderr or b"").decode(errors="replace") if capture else ""
        raise Failed(f"`{' '.join(cmd[:4])} …` failed (exit {proc.returncode}): {_gist(err)}")
    return proc


def image_present(ref: str) -> bool:
    return _docker("image", "inspect", ref, check=False).returncode == 0


def pull_problem(ref: str) -> str | None:
    """None when `ref` is here or could be pulled; otherwise the registry's answer."""
    if image_present(ref):
        return None
    log(f"pulling {ref} …")
    try:
        proc = _docker("pull", ref, check=False, timeout=PULL_TIMEOUT_S)
    except Failed as e:
        return str(e)
    if proc.returncode == 0:
        return None
    return _gist(proc.stderr.decode(errors="replace"))


def make_local_base(rebuild: bool = False, mirror: str = DEBIAN_MIRROR) -> str:
    """Debian bookworm (minbase) from debootstrap, imported as LOCAL_BASE_TAG; reused unless `rebuild`."""
    if image_present(LOCAL_BASE_TAG) and not rebuild:
        log(f"reusing the local base {LOCAL_BASE_TAG} (`--rebuild-base` makes a fresh one)")
        return LOCAL_BASE_TAG
    if shutil.which("debootstrap") is None:
        raise CannotBuild("the local base needs debootstrap: `apt-get install -y debootstrap`")
    if os.geteuid() != 0:
        raise CannotBuild("debootstrap needs root to build the local base")
    with tempfile.TemporaryDirectory(prefix="spec-debootstrap-", dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap --variant=minbase {DEBIAN_SUITE} from {mirror} (about 30 s) …")
        t0 = time.monotonic()
        proc = subprocess.run(["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), mirror], capture_output=True, text=True)
        if proc.returncode != 0:
            raise CannotBuild(f"debootstrap failed (exit {proc.returncode}): {_gist(proc.stderr or proc.stdout)}")
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        (rootfs / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
        (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(DEBIAN_SOURCES)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (rootfs / cache).glob("*"):
                if p.is_file():
                    p.unlink()
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        imp = subprocess.run(
            ["docker", "import", "--change", 'CMD ["bash"]',
             "--change", f"LABEL org.opencontainers.image.description=\"Debian {DEBIAN_SUITE} minbase, debootstrap from {mirror} at {stamp}\"",
             "--message", f"debootstrap --variant=minbase {DEBIAN_SUITE} {mirror} ({stamp})", "-", LOCAL_BASE_TAG],
            stdin=tar.stdout, capture_output=True, text=True)
        tar.stdout.close()
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise Failed(f"docker import of the local base failed: {_gist(imp.stderr)}")
        log(f"local base {LOCAL_BASE_TAG} imported ({time.monotonic() - t0:.0f} s)")
    return LOCAL_BASE_TAG


def repo_files(root: Path = ROOT) -> list[str]:
    """The repository's files as git sees them: tracked (not deleted) plus untracked, not ignored."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise Failed(f"cannot list the repository's files with git ({e}); build from a git checkout") from None
    return sorted({f for f in out.decode().split("\0") if f and (root / f).is_file()})


def _pip_config(key: str) -> list[str]:
    """A pip setting (its PIP_* variable, else the config files), asked of this interpreter's pip or python3's."""
    env = os.environ.get("PIP_" + key.split(".")[-1].upper().replace("-", "_"))
    if env:
        return env.split()
    for python in dict.fromkeys([sys.executable, "python3"]):  # a uv venv (nox's) has no pip
        try:
            proc = subprocess.run([python, "-m", "pip", "config", "get", key], capture_output=True, text=True)
        except OSError:
            continue
        if proc.returncode == 0:
            return proc.stdout.split()
    return []


def find_links_dirs() -> list[Path]:
    """pip's configured --find-links folders (where a local CPU torch wheel lives on these machines)."""
    dirs = [Path(p.removeprefix("file://")) for p in _pip_config("global.find-links")]
    return [d for d in dirs if d.is_dir()]


def host_ca_bundle() -> Path | None:
    """The CA bundle this machine's pip trusts (it may hold a local TLS proxy's certificate)."""
    candidates = [os.environ.get(v) for v in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT")]
    candidates += _pip_config("global.cert") + ["/etc/ssl/certs/ca-certificates.crt"]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    return None


def local_wheels(lock: Path) -> list[Path]:
    """Wheels in pip's find-links folders that the lock pins with a local version (torch==2.13.0+cpu)."""
    pins = set(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+\+\S+?)(?: |$)", lock.read_text(encoding="utf-8"), re.M))
    wanted = {(n.lower().replace("-", "_"), v) for n, v in pins}
    found = []
    for d in find_links_dirs():
        for whl in sorted(d.glob("*.whl")):
            name, version = whl.name.split("-")[:2]
            if (name.lower(), version) in wanted:
                found.append(whl)
    return found


def build_context(local: list[Path], root: Path = ROOT) -> bytes:
    """The build context as a tar: the repo's files, plus `local` files under containers/local/.

    containers/local/ is what a build on the local base needs from this machine: the torch +cpu wheel
    and the CA bundle its pip trusts. The Dockerfiles use them in the installer stage only.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:  # docker sniffs a tar on stdin by its first header
        for rel in repo_files(root):
            tar.add(root / rel, arcname=rel, recursive=False)
        for path in local:
            name = "ca-bundle.crt" if path.suffix in (".crt", ".pem") else path.name
            tar.add(path, arcname=f"containers/local/{name}")
    return buf.getvalue()


def git_commit(root: Path = ROOT) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def image_ref(tag: str) -> str:
    """`repo@sha256:…` when the image came from a registry, else its content id `sha256:…`."""
    proc = _docker("image", "inspect", "--format", "{{json .RepoDigests}} {{.Id}}", tag)
    digests, image_id = proc.stdout.decode().strip().rsplit(" ", 1)
    found = re.findall(r'"([^"]+@sha256:[0-9a-f]{64})"', digests)
    return found[0] if found else image_id


def smoke(profile: Profile) -> str:
    """The built image starts as a non-root user with the pinned stack importable (no GPU needed)."""
    code = ("import os, sys, torch, transformers, lm_eval, triton, harness; "
            "print(f'uid={os.getuid()} python={sys.version.split()[0]} torch={torch.__version__} triton={triton.__version__} "
            "HF_HOME={os.environ[\"HF_HOME\"]} SPEC_DATA_DIR={os.environ[\"SPEC_DATA_DIR\"]}')")
    out = _docker("run", "--rm", profile.tag, "python", "-c", code, timeout=300).stdout.decode().strip()
    if out.startswith("uid=0 "):
        raise Failed(f"{profile.tag} runs as root: {out}")
    return out


def build(profile: Profile, base: str = "auto", rebuild_base: bool = False) -> str:
    """Build one image; returns a one-line summary. Raises CannotBuild with the reason where impossible."""
    public = pinned_base(profile)
    build_args = {"GIT_COMMIT": git_commit()}
    local_files: list[Path] = []
    if base in ("auto", "public"):
        problem = pull_problem(public)
        if problem is None:
            chosen = public
        elif base == "public" or not profile.local_base:
            why = f"the pinned base {public} cannot be pulled here ({problem})"
            if not profile.local_base:
                why += "; NVIDIA's CUDA images cannot be made locally, so build this one where the registry is reachable"
            raise CannotBuild(why)
        else:
            log(f"the pinned base cannot be pulled here ({problem}); building on a Debian {DEBIAN_SUITE} made locally")
            chosen = make_local_base(rebuild_base)
    else:
        if not profile.local_base:
            raise CannotBuild(f"{profile.name}: only the pinned public base ({public}) will do; --base local is for the CPU image")
        chosen = make_local_base(rebuild_base)
    if chosen != public:
        # Built for this machine: it reaches Debian and PyPI (through the TLS proxy its pip trusts) but not
        # download.pytorch.org, so the +cpu wheel and the CA bundle travel in the context.
        local_files = local_wheels(ROOT / profile.lock)
        ca = host_ca_bundle()
        local_files += [ca] if ca else []
        build_args["TORCH_FIND_LINKS"] = ""
        log(f"shipping {', '.join(str(w) for w in local_files) or 'nothing'} in the build context (installer stage only)")
    build_args[profile.base_arg] = chosen
    context = build_context(local_files)
    args = ["build", "-f", profile.dockerfile, "-t", profile.tag]
    for k, v in build_args.items():
        args += ["--build-arg", f"{k}={v}"]
    log(f"docker build {profile.name}: base {chosen}, context {len(context) / 2**20:.0f} MiB …")
    t0 = time.monotonic()
    proc = subprocess.run(["docker", *args, "-"], input=context)
    if proc.returncode != 0:
        raise Failed(f"docker build of {profile.dockerfile} failed (exit {proc.returncode}); its output is above")
    took = time.monotonic() - t0
    return f"{profile.tag} = {image_ref(profile.tag)} on {chosen}, built in {took:.0f} s; {smoke(profile)}"


def build_images(names: list[str], base: str = "auto", rebuild_base: bool = False) -> tuple[list[str], list[str]]:
    """(built summaries, skip reasons). Raises CannotBuild when no daemon answers at all."""
    problem = docker_problem()
    if problem:
        raise CannotBuild(problem)
    built, skipped = [], []
    for name in names:
        try:
            built.append(build(PROFILES[name], base, rebuild_base))
            log(f"built {built[-1]}")
        except CannotBuild as e:
            skipped.append(f"{name}: {e}")
            log(f"skipped {name}: {e}")
    return built, skipped


def run(profile: Profile, command: list[str], data: Path, cache: Path, mount_repo: bool = True) -> int:
    problem = docker_problem()
    if problem:
        raise CannotBuild(problem)
    if not image_present(profile.tag):
        raise CannotBuild(f"no image {profile.tag} here: build it with `nox -s container-build -- {profile.name}`")
    cache.mkdir(parents=True, exist_ok=True)
    args = ["run", "--rm", "--init", "--ipc=host", "--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp",
            "-e", f"SPEC_CONTAINER_IMAGE={image_ref(profile.tag)}", "-v", f"{cache.resolve()}:/cache"]
    if data.is_dir():
        args += ["-v", f"{data.resolve()}:/data:ro"]
    else:
        log(f"no data directory at {data}: /data stays empty (set SPEC_DATA_DIR or pass --data)")
    if mount_repo:
        args += ["-v", f"{ROOT}:/workspace"]
    if profile.gpus:
        args += ["--gpus", "all"]
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "CI", "GITHUB_ACTIONS"):
        if name in os.environ:
            args += ["-e", name]
    log("docker " + " ".join(args + [profile.tag, *command]))
    return subprocess.run(["docker", *args, profile.tag, *command]).returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python scripts/containers.py", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("doctor", help="say whether this machine can build and run the images, and why not")
    b = sub.add_parser("build", help="build images (what `nox -s container-build` runs)")
    b.add_argument("profiles", nargs="?", default="all", choices=["all", *PROFILES])
    b.add_argument("--base", choices=["auto", "public", "local"], default="auto",
                   help="auto: the pinned public base, or a local debootstrap base (CPU) where it cannot be pulled")
    b.add_argument("--rebuild-base", action="store_true", help="debootstrap the local base again instead of reusing it")
    r = sub.add_parser("run", help="run a command in an image on this checkout")
    r.add_argument("profile", choices=list(PROFILES))
    r.add_argument("--data", type=Path, default=Path(os.environ.get("SPEC_DATA_DIR", ROOT.parent / "shared" / "data")),
                   help="data directory mounted read-only at /data (default $SPEC_DATA_DIR or ../shared/data)")
    r.add_argument("--cache", type=Path, default=Path(os.environ.get("SPEC_CONTAINER_CACHE", Path.home() / ".cache" / "spec-harness-container")),
                   help="host folder mounted at /cache: Hugging Face, Triton and pip caches (default ~/.cache/spec-harness-container)")
    r.add_argument("--no-mount", action="store_true", help="use the code baked into the image instead of this checkout")
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    try:
        if args.cmd == "doctor":
            problem = docker_problem()
            print(problem or "a Docker daemon answers; pinned bases: " + ", ".join(pinned_base(p) for p in PROFILES.values()))
            return EXIT_CANNOT if problem else EXIT_OK
        if args.cmd == "build":
            names = list(PROFILES) if args.profiles == "all" else [args.profiles]
            built, skipped = build_images(names, args.base, args.rebuild_base)
            for line in built:
                print(f"built   {line}")
            for line in skipped:
                print(f"skipped {line}")
            return EXIT_OK if built else EXIT_CANNOT
        if not command:
            ap.error("run: give the command after `--`, e.g. `run cpu -- nox --no-venv --no-install -s tests`")
        return run(PROFILES[args.profile], command, args.data, args.cache, mount_repo=not args.no_mount)
    except CannotBuild as e:
        print(f"containers: cannot on this machine: {e}", file=sys.stderr)
        return EXIT_CANNOT
    except Failed as e:
        print(f"containers: {e}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
