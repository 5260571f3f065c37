"""`harness specialize`: a tiny random GPT-2 student (the real GPT-2 tokenizer) specialized end to end
with distribution matching, from (a) the CPU default teacher, which shares its tokenizer (the
identity path), and (b) a teacher behind a loopback OpenAI-compatible server declaring p50k tokens
(exact alignment across tokenizers); the trade-off report renders and says it is a pipeline check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from harness.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent


def test_the_plan_aligns_onto_the_students_own_tokenizer(tmp_path):
    from harness.specialize import make

    teacher = tmp_path / "teacher.yaml"
    teacher.write_text("teacher:\n  kind: openai\n  model: my-teacher\n  base_url: http://127.0.0.1:9/v1\n")
    job = make("Qwen/Qwen2.5-0.5B", teacher, "gpu", gpus=8, work=tmp_path / "w", reports=tmp_path / "r")
    align = next(s for s in job.steps() if s.stage == "align")
    assert align.job.config.student == "hf:Qwen/Qwen2.5-0.5B" and align.job.setting == "corrected"
    train = next(s for s in job.steps() if s.stage == "train")
    assert train.launch == "accelerate launch: 8 GPU process(es), ddp"
    config = train.make_job()
    assert config.model == "Qwen/Qwen2.5-0.5B" and config.loss == "distribution"
    tasks = {t for s in job.steps() if s.stage == "eval" for t in s.tasks}
    assert {"gsm8k_cot_spec", "gsm8k_cot_spec_zeroshot", "mas_cot_spec", "mas_cot_spec_zeroshot", "bbh_ao_spec", "bbh_cot_spec"} <= tasks


def test_a_real_student_needs_a_real_teacher(tmp_path):
    from harness.specialize import make

    teacher = tmp_path / "teacher.yaml"
    teacher.write_text("teacher:\n  kind: default\n")
    with pytest.raises(UsageError, match="pipeline-check teacher"):
        make("Qwen/Qwen2.5-0.5B", teacher, "gpu", gpus=1, work=tmp_path / "w", reports=tmp_path / "r").check(models=False)


def _specialize(tmp_path: Path, teacher: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "harness", "specialize", "--student", "tiny-gpt2", "--teacher-config", str(teacher),
               "--profile", "cpu", "--work", str(tmp_path / "work"), "--reports", str(tmp_path / "reports")]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=1800, cwd=ROOT)


def _check_report(tmp_path: Path) -> dict:
    data = json.loads((tmp_path / "work" / "tiny-gpt2" / "tradeoff.results.json").read_text())
    assert data["pipeline_check"] and data["loss"] == "distribution" and data["selection"]["rule"] == "mas-dev"
    assert all(m["before"] and m["after"] for m in data["metrics"])
    md = (tmp_path / "reports" / "tiny-gpt2" / "tradeoff.md").read_text()
    assert "PIPELINE CHECK" in md and "What was gained and what was paid" in md
    html = (tmp_path / "reports" / "tiny-gpt2" / "tradeoff.html").read_text()
    assert html.count("data:image/png;base64,") >= 2
    return data


def test_specialize_a_gpt2_student_from_the_default_teacher_identity_path(tmp_path, data_dir):
    teacher = tmp_path / "teacher.yaml"
    teacher.write_text("teacher:\n  kind: default\nsampling:\n  mode: score\n")
    done = _specialize(tmp_path, teacher)
    assert done.returncode == 0, done.stderr[-3000:]
    _check_report(tmp_path)
    aligned = tmp_path / "work" / "tiny-gpt2" / "aligned"
    settings = json.loads((aligned / "settings.json").read_text())["settings"]
    assert settings["config"]["student"] == "hf-gpt2"
    stats = json.loads((aligned / "stats.json").read_text())
    assert stats["rows_by_mode"].get("identity", 0) > 0, stats  # gold rationales scored by a GPT-2: the teacher's ids are the student's
    formats = tmp_path / "work" / "tiny-gpt2" / "formats"
    cot = pq.read_table(sorted(formats.glob("zero_shot_cot-*.parquet"))).to_pylist()
    assert cot and all(r["topk_ids"] for r in cot)  # distribution-matching targets on every CoT record


def test_specialize_a_gpt2_student_from_a_served_p50k_teacher(tmp_path, data_dir):
    from tests.teacher.fake_openai_server import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        teacher = tmp_path / "teacher.yaml"
        teacher.write_text(f"teacher:\n  kind: openai\n  model: fake-teacher\n  base_url: {server.base_url}\n  api: completions\n"
                           "  tokenizer: tiktoken:p50k_base\nsampling:\n  mode: score\n  top_k: 5\n")
        done = _specialize(tmp_path, teacher, {"OPENAI_API_KEY": "loopback"})
    assert done.returncode == 0, done.stderr[-3000:]
    data = _check_report(tmp_path)
    assert data["teacher"]["model"] == "fake-teacher"
    aligned = tmp_path / "work" / "tiny-gpt2" / "aligned"
    settings = json.loads((aligned / "settings.json").read_text())["settings"]
    assert settings["config"]["student"] == "hf-gpt2" and settings["config"]["mode"] == "exact"
    assert json.loads((aligned / "stats.json").read_text())["rows_by_mode"].get("exact", 0) > 0  # p50k onto GPT-2: aligned by text
