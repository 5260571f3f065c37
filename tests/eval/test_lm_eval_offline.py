"""End to end, offline, on the tiny random T5: the plain `lm_eval` command, and `harness eval`
whose sample files `harness score` re-scores to the same numbers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.eval import registration
from harness.eval.tiny import build_tiny_t5

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_t5(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def installed():
    was_installed = registration.status()["installed"]
    registration.install()
    yield
    if not was_installed:
        registration.uninstall()


def test_tiny_model_is_a_real_t5(tiny):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny)
    assert config.is_encoder_decoder and config.vocab_size == 32128 and config.decoder_start_token_id == 0
    assert AutoTokenizer.from_pretrained(tiny)("The answer is 42.")["input_ids"] == [37, 1525, 19, 6426, 5, 1]


def test_plain_lm_eval_command(tiny, installed, tmp_path):
    cmd = [
        str(BIN / "lm_eval"), "--model", "hf", "--model_args", f"pretrained={tiny},max_length=4096",
        "--tasks", "gsm8k_cot_spec,bbh_cot_spec_navigate", "--limit", "2", "--device", "cpu",
        "--output_path", str(tmp_path), "--log_samples", "--gen_kwargs", "max_length=256",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(next(tmp_path.rglob("results_*.json")).read_text())["results"]
    for task in ("gsm8k_cot_spec", "bbh_cot_spec_navigate"):
        assert 0.0 <= results[task]["acc_faithful,none"] <= 1.0 and "acc_corrected,none" in results[task]
    samples = next(tmp_path.rglob("samples_gsm8k_cot_spec_*.jsonl"))
    assert _longest_generation(samples, tiny) <= 256


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _longest_generation(samples, tokenizer_dir) -> int:
    """T5 tokens of the longest generation (the random model never emits EOS, so it runs to the cap)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    return max(len(tokenizer(r["resps"][0][0], add_special_tokens=False)["input_ids"]) for r in rows)


def test_harness_eval_then_score_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEC_CACHE_DIR", str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "harness", "eval", "--model", "tiny", "--tasks", "svamp_cot_spec_zeroshot", "--limit", "3",
           "--output-dir", str(tmp_path / "out"), "--json"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert summary["pipeline_check"] is True and "not results" in summary["note"]
    entry = summary["tasks"]["svamp_cot_spec_zeroshot"]
    assert entry["n"] == 3
    run_dir = Path(summary["output_dir"])
    assert run_dir.parent == tmp_path / "out" / "tiny"  # named from the model, one folder per run
    assert {p.name.split("_")[0] for p in run_dir.iterdir()} == {"results", "samples", "summary.json"}
    assert (run_dir / "summary.json").stat().st_mode & 0o777 == 0o666 & ~_umask()
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["manifest"]["git_commit"] and saved["manifest"]["data_sha256"]["svamp/SVAMP.json"]
    samples = next((tmp_path / "out").rglob("samples_svamp_cot_spec_zeroshot_*.jsonl"))
    # The authors' generate(max_length=256): at most 255 new tokens, not encoder length + 256.
    assert 100 < _longest_generation(samples, saved["manifest"]["model_args"]["pretrained"]) <= 256
    for rule in ("faithful", "corrected"):
        rescored = subprocess.run([sys.executable, "-m", "harness", "score", "--suite", "svamp", str(samples), "--rule", rule, "--json"],
                                  capture_output=True, text=True)
        assert json.loads(rescored.stdout)["tasks"]["svamp"] == {"accuracy": entry[f"acc_{rule}"], "n": 3}
