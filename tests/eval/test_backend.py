"""Which lm-eval backend runs `harness eval`, and the arguments each gets: checked without vLLM or
a GPU (the vLLM path's arguments are captured from a stand-in for lm_eval.simple_evaluate)."""

from __future__ import annotations

import json

import pytest

from harness import manifest
from harness.eval import EvalSetupError
from harness.eval import backend as eval_backend
from harness.eval import run as eval_run
from harness.eval.backend import batch_arguments, choose_backend, model_arguments


@pytest.mark.parametrize("requested, seq2seq, device, has_vllm, chosen", [
    ("hf", False, "cuda", True, "hf"),
    ("auto", True, "cuda", True, "hf"),  # T5: vLLM serves decoder-only models
    ("auto", False, "cuda", False, "hf"),  # vLLM not installed
    ("auto", False, "cpu", True, "hf"),  # no GPU
    ("auto", False, "cuda", True, "vllm"),
    ("auto", False, "cuda:1", True, "hf"),  # a device index: vLLM would ignore it, so hf keeps it
    ("vllm", False, "cuda:0", True, "vllm"),
])
def test_backend_choice(requested, seq2seq, device, has_vllm, chosen):
    assert choose_backend(requested, seq2seq, device, has_vllm=has_vllm, warn=lambda m: None) == chosen


@pytest.mark.parametrize("seq2seq, device, has_vllm, words", [
    (True, "cuda", True, ["--backend vllm", "decoder-only", "--backend hf"]),
    (False, "cuda", False, ["--backend vllm: vLLM is not installed (pip install vllm); use --backend hf"]),
    (False, "cpu", True, ["--backend vllm", "CUDA", "--backend hf"]),
])
def test_vllm_that_cannot_run_is_a_one_line_error(seq2seq, device, has_vllm, words):
    with pytest.raises(EvalSetupError) as err:
        choose_backend("vllm", seq2seq, device, has_vllm=has_vllm)
    assert "\n" not in str(err.value) and all(w in str(err.value) for w in words)


def test_vllm_warns_that_it_picks_its_own_gpus():
    warnings = []
    choose_backend("vllm", False, "cuda:1", has_vllm=True, warn=warnings.append)
    assert len(warnings) == 1 and "CUDA_VISIBLE_DEVICES" in warnings[0]


def test_arguments_per_backend():
    assert model_arguments("hf", "/m", 4096, 3, {}) == {"pretrained": "/m", "max_length": 4096}
    assert model_arguments("vllm", "/m", 2048, 3, {}) == {"pretrained": "/m", "dtype": "auto", "seed": 3, "max_model_len": 2048}
    assert "max_model_len" not in model_arguments("vllm", "/m", None, 0, {})
    assert batch_arguments("hf", None, None, "cpu") == {"batch_size": 8, "max_batch_size": None, "device": "cpu"}
    assert batch_arguments("vllm", None, 32, "cuda") == {"batch_size": "auto", "max_batch_size": 32, "device": None}
    assert batch_arguments("vllm", 16, None, "cuda")["batch_size"] == 16


# --- through `run`, lm-eval replaced by a recorder --------------------------------------------------


@pytest.fixture
def decoder_only(tmp_path):
    """A decoder-only model folder: a GPT-2 config is all the checks before lm-eval read."""
    from transformers import GPT2Config

    folder = tmp_path / "gpt2-student"
    GPT2Config(n_layer=1, n_head=1, n_embd=8).save_pretrained(folder)
    return folder


@pytest.fixture
def captured(monkeypatch):
    """Stands in for lm_eval.simple_evaluate (and skips lm-eval's task index); keeps its arguments."""
    import lm_eval

    calls = []

    def simple_evaluate(**kwargs):
        calls.append(kwargs)
        return {"results": {}, "configs": {}, "n-samples": {}, "config": {"batch_sizes": []}}

    monkeypatch.setattr(lm_eval, "simple_evaluate", simple_evaluate)
    monkeypatch.setattr(eval_run, "_task_manager", lambda metadata, only_ours=False: None)
    return calls


@pytest.fixture
def gpu_and_vllm(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(eval_backend, "vllm_installed", lambda: True)
    monkeypatch.setattr(manifest, "device_description", lambda: "a pretend GPU")  # the manifest would ask torch for its name


def _config(model, tmp_path, **kw):
    return eval_run.EvalConfig(model=str(model), tasks=["svamp_cot_spec_zeroshot"], output_dir=tmp_path / "out", **kw)


def test_vllm_gets_its_own_arguments(decoder_only, tmp_path, captured, gpu_and_vllm):
    summary = eval_run.run(_config(decoder_only, tmp_path, backend="auto", max_length=1024, max_batch_size=64, seed=7),
                           warn=lambda m: None)
    (call,) = captured
    assert call["model"] == "vllm"
    assert call["model_args"] == {"pretrained": str(decoder_only.resolve()), "dtype": "auto", "seed": 7, "max_model_len": 1024}
    assert call["batch_size"] == "auto" and call["max_batch_size"] == 64 and call["device"] is None
    saved = json.loads(next((tmp_path / "out" / "gpt2-student").glob("*/summary.json")).read_text())
    assert saved["backend"] == summary["backend"] == "vllm" and saved["batch_size"] == "auto"
    assert saved["manifest"]["config"]["backend"] == "auto"  # what was asked; `backend` is what ran


def test_auto_without_vllm_runs_decoder_only_models_on_hf(decoder_only, tmp_path, captured, monkeypatch):
    monkeypatch.setattr(eval_backend, "vllm_installed", lambda: False)
    summary = eval_run.run(_config(decoder_only, tmp_path, backend="auto", device="cpu", batch_size="auto:2"), warn=lambda m: None)
    (call,) = captured
    assert call["model"] == "hf" and call["device"] == "cpu" and call["batch_size"] == "auto:2"
    assert call["model_args"] == {"pretrained": str(decoder_only.resolve())}
    assert summary["backend"] == "hf" and summary["manifest"]["config"]["batch_size"] == "auto:2"


def test_vllm_for_t5_stops_before_lm_eval(tmp_path, captured, gpu_and_vllm):
    with pytest.raises(EvalSetupError, match="decoder-only"):
        eval_run.run(_config("tiny-random-t5", tmp_path, backend="vllm"), warn=lambda m: None)
    assert captured == []


def test_vllm_not_installed_stops_before_the_model_is_read(tmp_path, captured, monkeypatch):
    monkeypatch.setattr(eval_backend, "vllm_installed", lambda: False)
    monkeypatch.setattr(eval_run, "check_model", lambda model: pytest.fail("the model was read before the backend check"))
    with pytest.raises(EvalSetupError, match="vLLM is not installed"):
        eval_run.run(_config("tiny-random-t5", tmp_path, backend="vllm", device="cpu"), warn=lambda m: None)
    assert captured == []
