"""The sampling job: the authors' prompt and cut, grading, shards, resume without loss or
duplication, refusal to resume with other settings. A scripted teacher stands in for a model."""

from __future__ import annotations

import json
import re

import pytest

from harness.errors import ResumeError, UsageError
from harness.teacher.base import Completion
from harness.teacher.sample import SampleJobConfig, SamplingConfig, TeacherConfig, answer_line_cut, load_config, run_sampling
from harness.teacher.store import TeacherStore


def _completion(text: str) -> Completion:
    tokens = re.findall(r"\n| ?[^\s]+| ", text)  # newlines alone, words with their leading space
    return Completion(text=text, tokens=tokens, token_logprobs=[-0.1] * len(tokens), top_tokens=[[t, "x"] for t in tokens],
                      top_logprobs=[[-0.1, -2.5] for _ in tokens], finish_reason="length")


class ScriptedTeacher:
    """Sample i of a question answers the gold when i is even, gold+1 when odd, then rambles on."""

    model, tokenizer = "scripted", "tiktoken:p50k_base"

    def __init__(self, golds: dict[str, str], fail_after_calls: int | None = None):
        self.golds, self.calls, self.fail_after_calls, self.prompts = golds, 0, fail_after_calls, []

    def sample(self, requests, progress=None):
        self.calls += 1
        if self.fail_after_calls is not None and self.calls > self.fail_after_calls:
            raise KeyboardInterrupt  # the job dies mid-run
        out = []
        for request in requests:
            self.prompts.append(request.prompt)
            question = request.prompt.rsplit("\nQuestion: ", 1)[1].split("\n")[0]
            gold = int(self.golds[question])
            out.append([_completion(f"\nStep one.\nThe answer is {gold + i % 2}\n\nQuestion: more") for i in range(request.n)])
        return out


@pytest.fixture(scope="module")
def gsm8k_first(data_dir):
    from harness.data import load

    return load("gsm8k", "train")[:10]


def _config(tmp_path, **sampling) -> SampleJobConfig:
    return SampleJobConfig(output=tmp_path / "store", teacher=TeacherConfig(kind="default"),
                           sampling=SamplingConfig(limit=10, n=3, **sampling), questions_per_shard=3)


def _teacher(examples, **kw):
    return ScriptedTeacher({e.question: e.answer for e in examples}, **kw)


def test_answer_line_cut_keeps_the_first_answer_line():
    tokens = ["\n", "Step", ".\n", "The", " answer", " is", " 5", ".\n", "\n", "Question", ":"]
    assert "".join(tokens[: answer_line_cut(tokens)]) == "\nStep.\nThe answer is 5.\n"
    assert answer_line_cut(["no", " answer"]) == 2


def test_job_writes_graded_cut_samples_with_the_authors_prompt(tmp_path, gsm8k_first, data_dir):
    teacher = _teacher(gsm8k_first)
    result = run_sampling(_config(tmp_path), teacher=teacher)
    store = TeacherStore.load(tmp_path / "store")
    rows = store.read().to_pylist()
    assert len(rows) == 30 and sorted({(r["question_id"], r["sample_index"]) for r in rows}) == sorted(
        (e.id, i) for e in gsm8k_first for i in range(3))
    assert all(r["text"].endswith(f"The answer is {r['answer']}\n") and r["raw_text"].endswith("Question: more") for r in rows)
    assert [r["correct"] for r in rows if r["question_id"] == gsm8k_first[0].id] == [True, False, True]
    prompt = (data_dir / "prompts/prompt_complex.txt").read_text()
    assert teacher.prompts[0] == f"{prompt}\nQuestion: {gsm8k_first[0].question}\nLet's think step by step"
    stats = result["stats"]
    assert stats["first_sample_accuracy"]["corrected"] == 1.0 and stats["questions_with_correct_sample"]["corrected"] == 10
    assert stats["samples"]["correct"] == 20 and json.loads((tmp_path / "store/stats.json").read_text()) == stats


def test_a_killed_job_resumes_without_loss_or_duplicates(tmp_path, gsm8k_first):
    with pytest.raises(KeyboardInterrupt):
        run_sampling(_config(tmp_path), teacher=_teacher(gsm8k_first, fail_after_calls=2))
    assert len(TeacherStore.load(tmp_path / "store")) == 18  # two shards of 3 questions x 3 samples
    again = _teacher(gsm8k_first)
    result = run_sampling(_config(tmp_path), teacher=again)
    assert again.calls == 2 and result["this_run"]["skipped"] == 6  # only the 4 missing questions asked
    keys = [(r["question_id"], r["sample_index"]) for r in TeacherStore.load(tmp_path / "store").read(["question_id", "sample_index"]).to_pylist()]
    assert len(keys) == 30 and len(set(keys)) == 30


def test_the_run_records_its_throughput_and_a_rerun_keeps_it(tmp_path, gsm8k_first):
    first = run_sampling(_config(tmp_path), teacher=_teacher(gsm8k_first))["stats"]["last_run"]
    assert first["questions"] == 10 and first["samples"] == 30 and first["teacher"] == "scripted"
    assert first["wall_s"] > 0 and first["seconds_per_1k_questions"] == round(1000 * first["wall_s"] / 10, 1)
    rate, wall = first["samples_per_s"], first["wall_s"]  # rounded to 2 and 3 decimals from one duration
    assert abs(rate * wall - 30) <= (rate + 0.005) * 0.0005 + (wall + 0.0005) * 0.005 + 1e-5
    rerun = run_sampling(_config(tmp_path), teacher=_teacher(gsm8k_first))
    assert rerun["this_run"]["questions"] == 0 and rerun["this_run"]["seconds_per_1k_questions"] is None
    assert rerun["stats"]["last_run"] == first  # nothing sampled: the last measurement stays


def test_a_rerun_with_nothing_to_do_keeps_the_pipeline_check_note(tmp_path, gsm8k_first):
    class MarkedTeacher(ScriptedTeacher):
        def marker(self):
            return {"pipeline_check": True, "description": "a scripted stand-in"}

    cfg = _config(tmp_path)
    cfg.teacher = TeacherConfig(kind="hf", model="some/local-model")
    first = run_sampling(cfg, teacher=MarkedTeacher({e.question: e.answer for e in gsm8k_first}))["stats"]
    assert first["pipeline_check"] is True and any("a scripted stand-in" in n for n in first["notes"])
    again = run_sampling(cfg)["stats"]  # nothing left: no teacher is loaded, so no marker is read
    assert again["pipeline_check"] is True and again["notes"] == first["notes"]


def test_other_settings_are_refused(tmp_path, gsm8k_first):
    run_sampling(_config(tmp_path), teacher=_teacher(gsm8k_first))
    with pytest.raises(ResumeError, match="sampling.temperature: 0.5 -> 0.7"):
        run_sampling(_config(tmp_path, temperature=0.7), teacher=_teacher(gsm8k_first))


def test_config_files_and_overrides(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("output: runs/x\nteacher:\n  kind: hf\n  model: /models/t\nsampling:\n  n: 8\n  temperature: 0.7\n")
    cfg = load_config(path, **{"sampling.n": 2})
    assert cfg.teacher.model == "/models/t" and cfg.sampling.n == 2 and cfg.sampling.temperature == 0.7
    assert "concurrency" not in cfg.settings()["teacher"]  # speed knobs do not change the data
    path.write_text("sampling:\n  temprature: 0.7\n")
    with pytest.raises(UsageError, match="temprature"):
        load_config(path)
    with pytest.raises(UsageError, match="teacher.kind"):
        load_config(None, **{"teacher.kind": "gpt"})
    with pytest.raises(UsageError, match="sampled"):
        load_config(None, **{"teacher.kind": "openai", "teacher.model": "m", "sampling.targets": "sampled"})


def test_the_address_and_unused_knobs_are_not_data_settings():
    def settings(**kw):
        teacher = {"kind": "openai", "model": "m", "base_url": kw.pop("base_url", "http://127.0.0.1:8000/v1")}
        return SampleJobConfig(teacher=TeacherConfig(**teacher), sampling=SamplingConfig(**kw)).settings()

    assert settings(base_url="http://127.0.0.1:8000/v1") == settings(base_url="http://other-host:9000/v1")
    assert "base_url" not in settings()["teacher"]
    assert settings(mode="score", n=40) == settings(mode="score", n=4, temperature=0.0, max_tokens=9)  # score mode uses none of them
    assert settings(n=40) != settings(n=4)


def test_a_server_job_probes_records_its_server_and_resumes_on_another_port(tmp_path, gsm8k_first):
    from tests.teacher.fake_openai_server import FakeOpenAIServer

    cfg = _config(tmp_path, max_tokens=8)
    cfg.teacher = TeacherConfig(kind="openai", model="fake")
    cfg.questions_per_shard = 2
    notes = []
    with FakeOpenAIServer() as first:
        cfg.sampling.limit = 2
        cfg.teacher.base_url = url = first.base_url
        stats = run_sampling(cfg, note=notes.append)["stats"]
        assert first.log[0]["body"]["max_tokens"] == 2 and first.log[0]["body"]["n"] == 2  # the probe came first
    server = stats["last_run"]["server"]
    assert server["base_url"] == url and server["capabilities"]["logprobs"] is True
    assert notes[0] == server["summary"] and notes[0].startswith(f"teacher server {url} /completions")
    with FakeOpenAIServer() as second:  # the server restarted on another port: the same data, so it resumes
        cfg.sampling.limit = 4
        cfg.teacher.base_url = url = second.base_url
        stats = run_sampling(cfg)["stats"]
    assert stats["last_run"]["questions"] == 2 and stats["last_run"]["server"]["base_url"] == url
    rows = TeacherStore.load(tmp_path / "store").read(["question_id", "top_has_token"]).to_pylist()
    assert len(rows) == 4 * 3 and all(r["top_has_token"] is True for r in rows)
