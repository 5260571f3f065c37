"""Provenance for results files: lm-eval task versions and YAML hashes, the manifest fields."""

from __future__ import annotations

from harness.checksums import sha256_of
from harness.config import TASKS_DIR
from harness.report.provenance import collect_provenance, container, missing_fields, task_versions


def test_task_versions_follow_groups_and_includes():
    versions = task_versions(["mas_cot_spec", "gsm8k_cot_spec", "no_such_task"])
    group = versions["mas_cot_spec"]
    assert group["yaml"] == "_mas_cot_spec.yaml" and group["members"] == ["multiarith_cot_spec", "asdiv_cot_spec", "svamp_cot_spec"]
    assert {"multiarith_cot_spec", "asdiv_cot_spec", "svamp_cot_spec"} <= set(versions)
    task = versions["gsm8k_cot_spec"]
    assert task["version"] == 1.1 and task["sha256"] == sha256_of(TASKS_DIR / "gsm8k_cot_spec.yaml")
    assert task["include"] == "_math_template_yaml" and task["include_sha256"] == sha256_of(TASKS_DIR / "_math_template_yaml")
    assert versions["no_such_task"] == {"missing": True}


def test_collect_provenance_has_every_field_a_report_shows(data_dir):
    record = collect_provenance(data_dir, ["gsm8k_cot_spec"], image_digest="sha256:" + "0" * 64, profile="cpu")
    assert missing_fields(record) == []
    assert record["container"] == {"image_digest": "sha256:" + "0" * 64, "in_container": True}
    assert any(name.startswith("gsm8k/") for name in record["data_sha256"]) and record["profile"] == "cpu"
    assert len(record["tasks_utils_sha256"]) == 64


def test_missing_fields():
    assert missing_fields({}) == ["git_commit", "packages", "device", "data_sha256", "tasks", "container"]
    partial = {"git_commit": "x", "packages": {"a": "1"}, "device": "cpu", "data_sha256": {"f": "0"}, "tasks": {"t": {}},
               "container": container(None)}
    assert missing_fields(partial) == ["container.image_digest"]
