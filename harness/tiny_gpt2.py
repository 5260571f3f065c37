"""A small randomly initialised GPT-2 with the real GPT-2 tokenizer: the decoder-only pipeline check.

The counterpart of `tiny_t5.py` for causal students: `model: tiny-gpt2` (training) and
`--model tiny-gpt2` (evaluation) build this folder once and use it. Its tokenizer is GPT-2's byte
-level BPE from the data directory (`tokenizers/gpt2/encoder.json` + `vocab.bpe`), saved into the
folder, so an aligner targeting `hf:<folder>` (or any GPT-2 tokenizer: tiktoken `gpt2` gives the
same ids) produces exactly the ids the trainer's guard expects. It keeps GPT-2's own 1,024
learned positions, so the long spec prompts meet the limit a real GPT-2 student meets. Its
accuracies are meaningless: the folder carries the harness's marker (pipeline_check true).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.config import data_file, default_cache_dir
from harness.model_marker import save_model_folder

TINY_GPT2_VERSION = "tiny-gpt2-v1"  # bump when the architecture or the folder layout below changes
N_POSITIONS = 1024  # GPT-2's context


def tiny_gpt2_dir() -> Path:
    root = os.environ.get("SPEC_CACHE_DIR")
    base = Path(root) if root else default_cache_dir().parent
    return base / "models" / TINY_GPT2_VERSION


def gpt2_tokenizer(data_dir=None):
    """GPT2TokenizerFast from the data directory's vocabulary and merges (no hub)."""
    from transformers import GPT2TokenizerFast

    folder = data_file("tokenizers/gpt2", data_dir)
    vocab = json.loads((folder / "encoder.json").read_text(encoding="utf-8"))
    lines = (folder / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:]  # first line: "#version"
    tok = GPT2TokenizerFast(vocab=vocab, merges=[tuple(line.split()) for line in lines if line.strip()],
                            model_max_length=N_POSITIONS)
    tok.name_or_path = "gpt2"
    return tok


def build_tiny_gpt2(out_dir: Path | None = None, seed: int = 0, data_dir=None) -> Path:
    """Build (once) and return the folder of the tiny GPT-2; the write is atomic (temp dir + rename)."""
    out_dir = Path(out_dir or tiny_gpt2_dir())
    if (out_dir / "config.json").exists():
        return out_dir
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = gpt2_tokenizer(data_dir)
    eos = tokenizer.eos_token_id  # <|endoftext|>, 50256: GPT-2's BOS and EOS; it has no pad token
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=N_POSITIONS, n_embd=64, n_layer=2, n_head=4,
                        bos_token_id=eos, eos_token_id=eos)
    with torch.random.fork_rng():  # the caller's global RNG is left as it was
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = eos  # as GPT-2 users set it: no "pad_token_id not set" warning

    def save(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return save_model_folder(out_dir, save, TINY_GPT2_VERSION, seed=seed,
                             description="tiny GPT-2 student: 2 layers, n_embd 64, 1,024 positions, random init; real GPT-2 tokenizer",
                             tokenizer_files="tokenizers/gpt2 (encoder.json, vocab.bpe)")
