"""The default teacher: built offline into the cache with the real GPT-2 tokenizer, marked as a
pipeline check, and tokenized the way the alignment stage's tokenizer spec re-tokenizes it."""

from __future__ import annotations

import codecs
import json
import math
from pathlib import Path

import pytest
import torch

from harness.teacher.base import SampleRequest, ScoreRequest
from harness.teacher.default_teacher import (CHECK_TEXTS, TOKENIZER_SPEC, build_default_teacher, default_teacher,
                                             default_teacher_dir, gpt2_tokenizer)
from harness.model_marker import MARKER
from harness.teacher.hf_backend import HFTeacher

TEXTS = ["Natalia sold 48/2 = 24 clips in May.\nThe answer is 72", " naïve — 日本語 😀 x", "  two  spaces\n\n\tand a tab",
         "She paid $1,234.50 (½ off) — 3×4=12 ✓", "<|endoftext|> is plain text here"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, data_dir):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPEC_CACHE_DIR", str(cache))
        rng = torch.get_rng_state()
        teacher = default_teacher()
        assert torch.equal(rng, torch.get_rng_state())  # building leaves the global RNG alone
        folder = default_teacher_dir()
    return cache, folder, teacher


def test_builds_offline_into_the_cache_with_the_marker(built):
    from harness.eval.tiny import is_pipeline_check

    cache, folder, teacher = built
    assert Path(teacher.model) == folder.resolve() and folder.parent == cache / "models"
    assert [p.name for p in (cache / "models").iterdir()] == [folder.name]  # no temp dir left behind
    marker = json.loads((folder / MARKER).read_text())
    assert marker["pipeline_check"] is True and marker["built_by"] == "spec-harness"
    assert (marker["weights"], marker["train_steps"], marker["training"]) == ("random", 0, None)
    assert is_pipeline_check(folder)
    text = teacher.describe()
    assert "PIPELINE CHECK" in text and "random init (seed 0)" in text and "real GPT-2 tokenizer" in text
    cfg = teacher.net.config
    assert (cfg.n_layer, cfg.n_embd, cfg.vocab_size, teacher.tokenizer) == (2, 128, 50257, TOKENIZER_SPEC)


def test_built_once(built):
    cache, folder, _ = built
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPEC_CACHE_DIR", str(cache))
        assert Path(default_teacher().model) == folder.resolve()
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert default_teacher_dir(train_steps=5) != default_teacher_dir()


def test_gpt2_tokenizer_ids_equal_tiktoken_gpt2(data_dir):
    from harness.config import setup_offline_tokenizers
    from harness.data import load

    setup_offline_tokenizers()
    import tiktoken

    tok, enc = gpt2_tokenizer(), tiktoken.get_encoding("gpt2")
    texts = [*CHECK_TEXTS, *TEXTS, *(e.rationale for e in load("gsm8k", "train")[:40])]
    for text in texts:
        assert tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"] == enc.encode(text, disallowed_special=())


def test_alignment_tokenizer_reproduces_the_teachers_tokens(built):
    from harness.tokenizers import load_tokenizer

    _, _, teacher = built
    align = load_tokenizer(teacher.tokenizer)
    for comp in teacher.score([ScoreRequest("Q: how many?\nA:", t, 2) for t in TEXTS]):
        enc = align.encode(comp.text)
        assert list(enc.tokens) == comp.tokens and list(enc.ids) == comp.token_ids
    # sampled token sequences need not be canonical BPE, but each token is spelled as tiktoken's bytes spell it
    [samples] = teacher.sample([SampleRequest("Q: how many?\nA:", n=4, temperature=1.0, max_tokens=16, top_k=2)])
    for comp in samples:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        spelled = [decoder.decode(align.encoding.decode_single_token_bytes(i)) for i in comp.token_ids]
        spelled[-1] += decoder.decode(b"", final=True)
        assert spelled == comp.tokens


def test_hf_spec_agrees_on_whole_characters(built):
    from harness.tokenizers import load_tokenizer

    _, folder, teacher = built
    align = load_tokenizer(f"hf:{folder}")
    [comp] = teacher.score([ScoreRequest("Q:", TEXTS[0], 1)])
    assert list(align.encode(comp.text).tokens) == comp.tokens


def test_hf_spec_agrees_on_split_characters(built):
    """HFTokenizer (alignment's `hf:` specs) gives a split character to the token holding its last
    byte, as the teacher, the OpenAI backend and tiktoken do."""
    from harness.tokenizers import load_tokenizer

    _, folder, teacher = built
    [comp] = teacher.score([ScoreRequest("Q:", " 😀 日本", 1)])
    assert list(load_tokenizer(f"hf:{folder}").encode(comp.text).tokens) == comp.tokens


def test_trained_teacher_says_so(tmp_path, data_dir):
    folder = build_default_teacher(tmp_path / "t", train_steps=2, n_layer=1, n_embd=16, n_head=2, batch=2, seq_len=24)
    marker = json.loads((folder / MARKER).read_text())
    assert marker["pipeline_check"] is True and marker["weights"] == "trained" and marker["train_steps"] == 2
    training = marker["training"]
    assert training["steps"] == 2 and training["texts"] == 7473
    assert math.isfinite(training["final_loss"]) and training["final_loss"] < training["uniform_loss"] + 1
    text = HFTeacher(str(folder), device="cpu").describe()
    assert "trained 2 steps on GSM8K train rationales" in text and "PIPELINE CHECK" in text
