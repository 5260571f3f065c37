"""What every report records: git commit, package versions, device, data checksums."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from harness.checksums import manifest, sha256_of
from harness.config import REPO_ROOT

PACKAGES = ("torch", "transformers", "accelerate", "lm-eval", "triton", "tiktoken", "sentencepiece", "numpy", "datasets", "vllm")


def git_commit() -> str:
    """HEAD's hash, with "-dirty" when anything outside reports/ differs from it: the reports are
    this project's outputs (`nox -s bench-cpu` writes several in turn), not what produced them."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", ".", ":(exclude)reports"], cwd=REPO_ROOT, capture_output=True,
                               text=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_description() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda: {torch.cuda.get_device_name(0)} (torch.version.cuda {torch.version.cuda})"
    except ImportError:
        pass
    return f"cpu: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores"


def data_checksums(root: Path, prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of the data files used (manifest entries under the given prefixes), as found on disk."""
    sums = {}
    for entry in manifest():
        if prefixes and not entry.file.startswith(prefixes):
            continue
        path = root / entry.file
        if path.exists():
            sums[entry.file] = sha256_of(path)
    return sums


def run_manifest(data_root: Path | None = None, prefixes: tuple[str, ...] = (), **extra) -> dict:
    record = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "device": device_description(),
    }
    if os.environ.get("SPEC_CONTAINER_IMAGE"):  # set by `scripts/containers.py run`: the image's digest
        record["container_image"] = os.environ["SPEC_CONTAINER_IMAGE"]
    if data_root is not None:
        record["data_dir"] = str(data_root)
        record["data_sha256"] = data_checksums(data_root, prefixes)
    record.update(extra)
    return record
