"""The rehearsal: the paper profile's own plan run on CPU, end to end, through the real commands.

`reproduce table1 --profile rehearsal` with the real hub ids resolved from a local Hugging Face cache
of tiny random T5s (real tokenizer), training through `accelerate launch` with 2 CPU processes
(gloo) and DDP/FSDP configs per size, evaluation on 2 worker processes, teacher data from a small
authors'-layout pickle set built here from GSM8K items; flan-t5-xxl's stand-in has no weights, so
that row fails and the report must say so. A second rehearsal takes its teacher data from a
loopback OpenAI-compatible server (`--teacher-config`) through teacher -> align -> formats.
Only sizes and limits differ from the paper run (tests/test_reproduce.py compares the plans).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.reproduce.profiles import HUB_IDS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def authors_pickles(folder: Path, n: int = 24) -> Path:
    """The authors' four released format files, in their layout, for the first n GSM8K train
    questions: each question's gold rationale as its one correct 'Codex' sample, one-hot per T5 piece
    except a little mass moved to a neighbour piece (as their DTW transfer leaves it)."""
    import sentencepiece as spm

    from harness.config import data_file
    from harness.data import load
    from harness.templates import strip_colons

    sp = spm.SentencePieceProcessor(model_file=str(data_file("tokenizers/t5/spiece.model")))
    out = {name: [] for name in ("zero_shot_answer_only", "zero_shot_chain_of_thought", "in_context_answer_only",
                                 "in_context_chain_of_thought")}
    demo_ao = "Q: Demo question?\nA: The answer is 1\n\n" * 4
    demo_cot = "Q: Demo question?\nLet's think step by step\nOne step.\nThe answer is 1\n\n" * 4
    chosen = 0
    for example in load("gsm8k", "train"):
        if chosen == n:
            break
        q = strip_colons(example.question)
        cot = strip_colons(re.sub(r"<<.*?>>", "", example.rationale).strip() + f"\nThe answer is {example.answer}")
        if sp.unk_id() in sp.encode(cot):  # a character T5 cannot spell: their data holds none
            continue
        chosen += 1
        base = {"answer_gold": "Answer: " + example.gold_raw + "\n", "answer_label": 1}
        final = f"The answer is {example.answer}"
        pieces = sp.encode(cot, out_type=str)
        steps = [{p: 1.0} if i % 3 else {p: 0.8, pieces[i - 1] if i else "▁The": 0.2} for i, p in enumerate(pieces)]
        out["zero_shot_answer_only"].append({**base, "question": f"Q: {q} A:", "answer": final, "type": "zero_shot_answer_only"})
        out["in_context_answer_only"].append({**base, "question": f"{demo_ao}Q: {q}\nA:", "answer": final, "type": "in_context_answer_only"})
        for name, prefix in (("zero_shot_chain_of_thought", ""), ("in_context_chain_of_thought", demo_cot)):
            out[name].append({**base, "question": f"{prefix}Q: {q}\nLet's think step by step", "answer": cot, "per_step_probs": steps,
                              "type": name})
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in out.items():
        (folder / f"{name}.pkl").write_bytes(pickle.dumps(rows, protocol=4))
    return folder


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, data_dir):
    from harness.hub import build_rehearsal_cache

    cache = tmp_path_factory.mktemp("hf-cache")
    build_rehearsal_cache(cache, HUB_IDS.values(), without_weights=["google/flan-t5-xxl"])
    return cache


def test_table1_rehearsal_end_to_end(hub_cache, tmp_path, data_dir):
    pickles = authors_pickles(tmp_path / "processed_data")
    work, reports = tmp_path / "work", tmp_path / "reports"
    command = [sys.executable, "-m", "harness", "reproduce", "table1", "--profile", "rehearsal", "--authors-formats", str(pickles),
               "--work", str(work), "--reports", str(reports)]
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    assert first.returncode == 1, first.stderr[-3000:]  # the XXL row failed: said, and the exit code says so
    console = [line for line in first.stderr.splitlines() if line.strip()]
    assert len(console) <= 60, first.stderr
    assert any("flan-t5-xxl: not run" in line for line in console)
    results = json.loads((work / "rehearsal" / "table1.results.json").read_text())
    rows = {c["row"] for c in results["cells"]}
    assert {"flan-t5-base", "flan-t5-base specialized", "flan-t5-xl specialized"} <= rows
    assert [r["row"] for r in results["not_run"]] == ["flan-t5-xxl", "flan-t5-xxl specialized"]
    assert all(r["stage"] == "eval" and "log:" in r["reason"] for r in results["not_run"])
    spec = [c for c in results["cells"] if c["row"].endswith("specialized")]
    assert spec and all(c["selection"]["rule"] == "mas-dev" and c["selection"]["candidates"] >= 1 for c in spec)
    assert {c["launcher"] for c in spec} == {"accelerate launch: 2 CPU process(es), ddp", "accelerate launch: 2 CPU process(es), fsdp"}
    assert {c["precision"] for c in spec} == {"fp32"}
    assert any("clean" in c for c in results["cells"] if c["column"] in ("asdiv", "svamp"))
    teacher = results["provenance"]["teacher_data"]["training data"]
    assert teacher["kind"] == "authors-pickles" and len(teacher["files"]) == 4
    report = (reports / "table1" / "rehearsal" / "table1.md").read_text()
    assert "flan-t5-xxl" in report and "not run" in report
    # a rerun finds every finished step done and does not redo it
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900).stderr
    assert "train flan-t5-base distribution" in again and again.count(": done (") == 0, again


def test_teacher_config_rehearsal_runs_the_teacher_pipeline(tmp_path, monkeypatch, data_dir):
    from tests.teacher.fake_openai_server import FakeOpenAIServer

    from harness.reproduce import Reproduction, profile

    monkeypatch.setenv("OPENAI_API_KEY", "loopback")
    with FakeOpenAIServer() as server:
        config = tmp_path / "teacher.yaml"
        config.write_text(f"teacher:\n  kind: openai\n  model: fake-teacher\n  base_url: {server.base_url}\n  api: completions\n"
                          "sampling:\n  mode: score\n  top_k: 5\n")
        job = Reproduction("table1", profile("rehearsal"), tmp_path / "work", tmp_path / "reports", data_dir, teacher_config=config,
                           setting="corrected")
        job.check(models=False)  # the data path needs no model (in this process the Hub cache is the one already imported)
        job.run_data()
    assert not job.not_run, job.not_run
    formats = json.loads((tmp_path / "work" / "formats" / "stats.json").read_text())
    assert formats["records"]["zero_shot_cot"] > 0
    teacher = job.provenance_extra()["training data"]
    assert teacher["kind"] == "teacher-store" and teacher["model"] == "fake-teacher" and teacher["content"]
