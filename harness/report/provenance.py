"""Provenance for a results file: what ran, where, on which data and task definitions.

`collect_provenance` is for the orchestrator that writes the results file (it reuses
harness.manifest.run_manifest: git commit, packages, device, data sha256); `task_versions` gives
the lm-eval task versions and YAML hashes. The renderer only reads what the file records.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import yaml

from harness.checksums import sha256_of
from harness.config import TASKS_DIR
from harness.manifest import run_manifest

DATA_PREFIXES = ("gsm8k", "multiarith", "asdiv", "svamp", "bbh", "prompts")
EXPECTED = ("git_commit", "packages", "device", "data_sha256", "tasks", "container")  # what a report shows


class _TaskLoader(yaml.SafeLoader):
    """Reads lm-eval YAML without running it: `!function x` stays the string "x"."""


_TaskLoader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None)


def _task_index(tasks_dir: Path) -> dict[str, tuple[Path, dict]]:
    index = {}
    for path in sorted(tasks_dir.glob("*.yaml")):
        spec = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskLoader) or {}
        name = spec.get("group") or spec.get("task")
        if isinstance(name, str):
            index[name] = (path, spec)
    return index


def task_versions(names: Iterable[str], tasks_dir: Path = TASKS_DIR) -> dict[str, dict]:
    """name -> {version, yaml, sha256, include_sha256?} for each task and, for a group, its members.
    An unknown name maps to {"missing": true}."""
    index = _task_index(tasks_dir)
    out: dict[str, dict] = {}
    todo = list(names)
    while todo:
        name = todo.pop(0)
        if name in out:
            continue
        if name not in index:
            out[name] = {"missing": True}
            continue
        path, spec = index[name]
        entry = {"version": (spec.get("metadata") or {}).get("version"), "yaml": path.name, "sha256": sha256_of(path)}
        include = spec.get("include")
        if isinstance(include, str) and (path.parent / include).is_file():
            entry["include"] = include
            entry["include_sha256"] = sha256_of(path.parent / include)
        out[name] = entry
        if spec.get("group"):
            members = [m for m in spec.get("task") or [] if isinstance(m, str)]
            entry["members"] = members
            todo.extend(members)
    return out


def container(image_digest: str | None = None) -> dict:
    """The container image digest when the caller knows it; otherwise whether we seem to be in one."""
    inside = os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")
    return {"image_digest": image_digest, "in_container": inside or image_digest is not None}


def collect_provenance(data_root: Path | None = None, tasks: Iterable[str] = (), image_digest: str | None = None, **extra) -> dict:
    """The `provenance` object of a results file (imports torch through device_description)."""
    record = run_manifest(data_root, DATA_PREFIXES, **extra)
    record["container"] = container(image_digest)
    record["tasks"] = task_versions(tasks)
    record["tasks_utils_sha256"] = sha256_of(TASKS_DIR / "utils.py")  # the prompts and filters every task runs
    return record


def missing_fields(provenance: dict) -> list[str]:
    """The expected provenance fields a results file does not give (listed as not verifiable)."""
    missing = [k for k in EXPECTED if not provenance.get(k)]
    if provenance.get("container") and not provenance["container"].get("image_digest"):
        missing.append("container.image_digest")
    return missing
