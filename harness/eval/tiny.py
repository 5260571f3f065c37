"""A small randomly initialised T5 with the real T5 tokenizer, for offline pipeline checks.

Flan-T5 weights cannot be fetched everywhere (CI has no hub access); this model exercises the
same code path — SentencePiece tokenizer, seq2seq generation, lm-eval — in seconds on a CPU.
Its accuracies are meaningless: every report built on it says so.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.checksums import manifest, sha256_of
from harness.config import data_file, default_cache_dir
from harness.model_marker import MARKER, read_marker, save_model_folder  # noqa: F401 (MARKER re-exported)

TINY_NAMES = ("tiny", "tiny-random-t5")
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


def is_pipeline_check(path: str | Path) -> bool:
    """True for a model folder the harness built (its marker file), or the data directory's
    tiny random T5 wherever it was copied (its weights' sha256 is in the manifest)."""
    folder = Path(path)
    marker = read_marker(folder)
    if marker is not None:
        return bool(marker.get("pipeline_check", True))
    known = {e.sha256 for e in manifest() if e.file.startswith("models/")}
    weights = [folder / name for name in ("pytorch_model.bin", "model.safetensors")]
    return any(w.is_file() and w.stat().st_size < 50_000_000 and sha256_of(w) in known for w in weights)


def model_label(name_or_path: str) -> str:
    """A short name for output folders: `tiny`, a local folder's name, or `org__model` for a hub id."""
    if name_or_path in TINY_NAMES:
        return name_or_path
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path.resolve().name or "model"
    return name_or_path.replace("/", "__")


def resolve_model(name_or_path: str, data_dir=None) -> tuple[str, bool]:
    """Map the CLI's model argument to (path or hub id, is_pipeline_check)."""
    if name_or_path == "tiny":
        return str(build_tiny_t5(data_dir=data_dir)), True
    if name_or_path == "tiny-random-t5":
        return str(data_file("models/tiny-random-t5", data_dir)), True
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path.resolve()), is_pipeline_check(path)
    return name_or_path, False
