"""Provenance for a results file: what ran, where, on which data, task definitions and teacher data.

`collect_provenance` is for the orchestrator that writes the results file (it reuses
harness.manifest.run_manifest: git commit, packages, device, data sha256); `task_versions` gives
the lm-eval task versions and YAML hashes; `teacher_data_entry` describes the training data of a
run, from a teacher store or from the import of the authors' pickles, for
`provenance["teacher_data"]`. All of it reads files only; the renderer reads what the file records.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import yaml

from harness import handoff, schemas
from harness.checksums import sha256_of
from harness.config import TASKS_DIR
from harness.errors import DataError, check_choice
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


# --- teacher data ---------------------------------------------------------------------------------

# The authors' released pickle files -> the format names our importer records their counts under
# (harness/formats/authors_import.py, PICKLES; tests/report/test_report_provenance.py checks they agree).
AUTHORS_FILES = {
    "in_context_answer_only.pkl": "in_context_answer_only",
    "in_context_chain_of_thought.pkl": "in_context_cot",
    "zero_shot_answer_only.pkl": "zero_shot_answer_only",
    "zero_shot_chain_of_thought.pkl": "zero_shot_cot",
}
SETTINGS = ("faithful", "corrected")  # the pipeline the data went through (alignment, formats)
STORE_STATS = ("questions", "samples", "first_sample_accuracy", "majority_vote_accuracy", "sample_accuracy",
               "questions_with_correct_sample", "tokens", "tokens_per_sample", "bytes_on_disk", "pipeline_check")


def _json(path: Path, what: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err}); {what}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object; {what}")
    return data


def teacher_from_store(store: str | os.PathLike, setting: str = "faithful") -> dict[str, Any]:
    """The `teacher_data` entry of a sealed teacher store: its teacher (model and tokenizer as the
    rows record them), the sampling settings, the stats.json figures and the store's content
    checksum. A store made by a random or barely trained teacher is kind `pipeline-check`."""
    check_choice("setting", setting, SETTINGS)
    root = Path(store)
    record = _json(root / "settings.json", "the teacher store's settings (harness.resume.claim)")
    settings = (record or {}).get("settings")
    if not isinstance(settings, dict) or not isinstance(settings.get("teacher"), dict):
        raise DataError(f"{root}: not a teacher store (no settings.json with teacher settings); see docs/teacher-store.md")
    manifest = handoff.verify(root, schemas.TEACHER_STORE, what="teacher store")  # sealed, every shard there with its size
    teacher = settings["teacher"]
    model, tokenizer = _store_identity(root, manifest)
    stats = _json(root / "stats.json", "written by TeacherStore.write_stats()") or {}
    sampling = dict(settings.get("sampling") or {})
    sampling.update({name: teacher[k] for k, name in (("kind", "backend"), ("base_url", "base_url"), ("api", "api"))
                     if teacher.get(k) is not None})
    if settings.get("source"):
        sampling["source"] = settings["source"]
    pipeline_check = bool(stats.get("pipeline_check")) or teacher.get("kind") == "default"
    return {
        "kind": "pipeline-check" if pipeline_check else "teacher-store",
        "model": model or teacher.get("model") or teacher.get("kind") or "not recorded",
        "tokenizer": tokenizer or teacher.get("tokenizer"),
        "sampling": sampling or None,
        "stats": {k: stats[k] for k in STORE_STATS if k in stats} or None,
        "content": manifest.content,
        "files": None,
        "setting": setting,
    }


def _store_identity(root: Path, manifest: handoff.Manifest) -> tuple[str | None, str | None]:
    """(teacher_model, teacher_tokenizer) as the store's rows record them, from its first shard;
    several values in that shard are joined with ' + '."""
    if not manifest.shards:
        return None, None
    first = sorted(manifest.shards)[0]
    table = handoff.read_table(root / first, ["teacher_model", "teacher_tokenizer"], contract=schemas.TEACHER_STORE,
                               expect=manifest.shards[first])
    values = [sorted({v for v in table.column(name).to_pylist() if v}) for name in ("teacher_model", "teacher_tokenizer")]
    return tuple(" + ".join(v) or None for v in values)  # type: ignore[return-value]


def teacher_from_authors(formats: str | os.PathLike, setting: str = "faithful") -> dict[str, Any]:
    """The `teacher_data` entry of the authors' released pickles, from the sealed output of
    `harness formats import-authors`: each pickle's name, sha256, bytes and record count."""
    check_choice("setting", setting, SETTINGS)
    root = Path(formats)
    stats = _json(root / "stats.json", "written by `harness formats import-authors`")
    pickles = ((stats or {}).get("source") or {}).get("pickles")
    if not isinstance(pickles, dict) or not pickles:
        raise DataError(f"{root}: not an import of the authors' pickles (its stats.json has no source.pickles); "
                        "run `harness formats import-authors PICKLES_DIR OUT` and give OUT")
    manifest = handoff.verify(root, schemas.FORMATS, what="formats output")
    records = stats.get("records") or {}
    files = {}
    for name, info in sorted(pickles.items()):
        count = records.get(AUTHORS_FILES.get(name, Path(name).stem))
        files[name] = {"sha256": info["sha256"], "bytes": info["bytes"], "records": count}
    settings = stats.get("settings") or {}
    return {
        "kind": "authors-pickles",
        "model": settings.get("teacher_model") or "code-davinci-002",
        "tokenizer": "t5 pieces (the authors aligned code-davinci-002's top-5 onto T5 tokens before release)",
        "sampling": None,  # not in the pickles; the authors' recipe: authors-code-protocol.md §1.1
        "stats": {"records": records, "cot_formats_same_targets": stats.get("cot_formats_same_targets")},
        "content": manifest.content,
        "files": files,
        "setting": setting,
    }


def teacher_data_entry(folder: str | os.PathLike, setting: str = "faithful") -> dict[str, Any]:
    """`teacher_from_authors` for an authors' import, `teacher_from_store` for a teacher store."""
    root = Path(folder)
    stats = _json(root / "stats.json", "") if (root / "stats.json").is_file() else None
    if stats and isinstance(stats.get("source"), dict) and "pickles" in stats["source"]:
        return teacher_from_authors(root, setting)
    if (root / "settings.json").is_file():
        return teacher_from_store(root, setting)
    raise DataError(f"{root}: neither a teacher store (settings.json, data/) nor an import of the authors' pickles "
                    "(stats.json with source.pickles)")
