"""A small randomly initialised T5 with the real T5 tokenizer, for offline pipeline checks.

Flan-T5 weights cannot be fetched everywhere (CI has no hub access); this model exercises the
same code path (SentencePiece tokenizer, seq2seq training and generation, lm-eval) in seconds on a
CPU. Its accuracies are meaningless: every report built on it says so. Core: the eval stage
evaluates it, the trainer starts from it.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.config import default_cache_dir
from harness.model_marker import save_model_folder

TINY_VERSION = "tiny-t5-v3"  # bump when the architecture or the folder layout below changes


def tiny_model_dir() -> Path:
    root = os.environ.get("SPEC_CACHE_DIR")
    base = Path(root) if root else default_cache_dir().parent
    return base / "models" / TINY_VERSION


def build_tiny_t5(out_dir: Path | None = None, seed: int = 0, data_dir=None) -> Path:
    """Build (once) and return the folder of the tiny T5; the write is atomic (temp dir + rename)."""
    out_dir = Path(out_dir or tiny_model_dir())
    if (out_dir / "config.json").exists():
        return out_dir
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from harness import t5_tokenizer

    tokenizer = t5_tokenizer.load(data_dir)
    config = T5Config(
        vocab_size=32128,  # Flan-T5's padded vocabulary (32,100 pieces incl. <extra_id_*>)
        d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        # transformers 5's T5Config() has no decoder_start_token_id; T5 uses pad (0) / eos (1).
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    def save(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return save_model_folder(out_dir, save, TINY_VERSION, seed=seed)
