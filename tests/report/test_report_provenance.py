"""Provenance for results files: lm-eval task versions and YAML hashes, the manifest fields."""

from __future__ import annotations

import json
import pickle

import pytest
from conftest import results_dict, schema2

from harness.checksums import sha256_of
from harness.config import TASKS_DIR
from harness.errors import DataError, UsageError
from harness.handoff import read_manifest
from harness.report.provenance import (AUTHORS_FILES, collect_provenance, container, missing_fields, task_versions, teacher_data_entry,
                                       teacher_from_authors, teacher_from_store)
from harness.report.results import parse_results


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


# --- teacher data -----------------------------------------------------------------------------


def _record(q: int, k: int, model: str = "toy-teacher"):
    from harness.records import Example
    from harness.teacher.base import Completion
    from harness.teacher.record import record_from_completion

    text = f"Bag {q} has 5 and 7 more. The answer is 12"
    tokens = [w for w in text.replace(" ", "\0 ").split("\0") if w]
    completion = Completion(text=text, tokens=tokens, token_logprobs=[-0.1] * len(tokens), top_tokens=[[t, "x"] for t in tokens],
                            top_logprobs=[[-0.1, -3.0] for _ in tokens], finish_reason="stop")
    example = Example(id=f"toy/{q}", source="toy", question=f"Bag {q}?", answer="12", number=12.0, gold_raw="#### 12", rationale="")
    return record_from_completion(completion, example, k, prompt_id="complex-8shot", teacher_model=model, teacher_tokenizer="tiktoken:p50k_base")


SETTINGS = {"teacher": {"kind": "openai", "model": "served-name", "tokenizer": None, "base_url": "http://127.0.0.1:8000/v1", "api": "completions"},
            "sampling": {"mode": "sample", "n": 2, "temperature": 0.5, "max_tokens": 256, "top_k": 5, "prompt": "complex"}}


def _store(root, settings=SETTINGS, seal=True, notes=None):
    from harness.teacher.store import TeacherStore

    store = TeacherStore.open(root, "teacher-sample", settings)
    store.write_shard([_record(q, k) for q in range(3) for k in range(2)])
    store.write_stats()
    if notes is not None:
        stats = json.loads((root / "stats.json").read_text())
        (root / "stats.json").write_text(json.dumps({**stats, "notes": notes, "pipeline_check": True}))
    if seal:
        store.seal()
    store.close()
    return root


def test_teacher_from_a_store(tmp_path):
    root = _store(tmp_path / "store")
    entry = teacher_from_store(root, "corrected")
    assert entry["kind"] == "teacher-store" and entry["setting"] == "corrected" and entry["files"] is None
    assert entry["model"] == "toy-teacher" and entry["tokenizer"] == "tiktoken:p50k_base"  # as the rows record them
    assert entry["sampling"]["temperature"] == 0.5 and entry["sampling"]["base_url"] == "http://127.0.0.1:8000/v1" and entry["sampling"]["backend"] == "openai"
    assert entry["stats"]["questions"] == 3 and entry["stats"]["samples"]["total"] == 6
    assert entry["stats"]["first_sample_accuracy"] == {"corrected": 1.0, "faithful": 1.0}
    assert entry["content"] == read_manifest(root).content and teacher_data_entry(root, "corrected") == entry


def test_a_pipeline_check_store_and_refusals(tmp_path):
    check = _store(tmp_path / "check", notes=["PIPELINE CHECK: random weights"])
    assert teacher_from_store(check)["kind"] == "pipeline-check"
    default = _store(tmp_path / "default", settings={**SETTINGS, "teacher": {"kind": "default", "model": None}})
    assert teacher_from_store(default)["kind"] == "pipeline-check"
    with pytest.raises(DataError, match="incomplete teacher store"):
        teacher_from_store(_store(tmp_path / "open", seal=False))
    with pytest.raises(UsageError, match="setting: 'clean' is not allowed"):
        teacher_from_store(check, "clean")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither a teacher store .* nor an import of the authors' pickles"):
        teacher_data_entry(tmp_path / "empty")
    with pytest.raises(DataError, match="not an import of the authors' pickles"):
        teacher_from_authors(check)


def test_authors_file_names_match_the_importer():
    from harness.formats.authors_import import PICKLES

    assert AUTHORS_FILES == {f"{stem}.pkl": fmt for stem, fmt in PICKLES.items()}


def test_teacher_from_the_authors_pickles(tmp_path, data_dir):
    import sentencepiece as spm

    from harness.formats.authors_import import import_authors_formats

    sp = spm.SentencePieceProcessor(model_file=str(data_dir / "tokenizers" / "t5" / "spiece.model"))
    rows = {"zero_shot_answer_only": [], "zero_shot_chain_of_thought": []}
    for i, (question, answer, cots) in enumerate((("Tom has 3 balls and buys 2. How many?", 5, ["3 + 2 = 5.\nThe answer is 5"]),
                                                  ("Lia reads 4 pages a day for 6 days. How many?", 24,
                                                   ["4 * 6 = 24.\nThe answer is 24", "6 days of 4 is 24.\nThe answer is 24"]))):
        base = {"answer_gold": f"Answer: x\n#### {answer}\n", "answer_label": 1}
        rows["zero_shot_answer_only"].append({**base, "question": f"Q: {question} A:", "answer": f"The answer is {answer}",
                                              "type": "zero_shot_answer_only"})
        for cot in cots:
            rows["zero_shot_chain_of_thought"].append({**base, "question": f"Q: {question}\nLet's think step by step", "answer": cot,
                                                       "per_step_probs": [{p: 1.0} for p in sp.encode(cot, out_type=str)],
                                                       "type": "zero_shot_chain_of_thought"})
    pickles = tmp_path / "pickles"
    pickles.mkdir()
    for name, data in rows.items():
        (pickles / f"{name}.pkl").write_bytes(pickle.dumps(data, protocol=4))
    out = tmp_path / "formats"
    import_authors_formats(pickles, out, match_gsm8k=False, data_dir=data_dir)
    entry = teacher_data_entry(out)
    assert entry["kind"] == "authors-pickles" and entry["model"] == "code-davinci-002" and entry["setting"] == "faithful"
    assert entry["files"] == {
        "zero_shot_answer_only.pkl": {"sha256": sha256_of(pickles / "zero_shot_answer_only.pkl"),
                                      "bytes": (pickles / "zero_shot_answer_only.pkl").stat().st_size, "records": 2},
        "zero_shot_chain_of_thought.pkl": {"sha256": sha256_of(pickles / "zero_shot_chain_of_thought.pkl"),
                                           "bytes": (pickles / "zero_shot_chain_of_thought.pkl").stat().st_size, "records": 3}}
    assert entry["content"] == read_manifest(out).content
    # both kinds of entry are valid teacher_data in a results file
    data = schema2(results_dict())
    data["provenance"]["teacher_data"] = {"authors": entry, "store": teacher_from_store(_store(tmp_path / "store"))}
    loaded = parse_results(data, "r.json")
    assert loaded.teacher_data["authors"].files["zero_shot_chain_of_thought.pkl"]["records"] == 3
    assert loaded.teacher_data["store"].kind == "teacher-store"
