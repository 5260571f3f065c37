"""Models by hub id: is one here (a local folder or the Hugging Face cache), can the Hub be reached,
fetch what is missing, and a rehearsal cache of tiny random models under the real ids.

    missing(["google/flan-t5-base", "google/flan-t5-xl"])   # -> the ids neither cached nor reachable
    download(["google/flan-t5-base"])                        # `harness models download`
    build_rehearsal_cache(cache, ["google/flan-t5-base"])    # tiny random T5s under those ids (CPU rehearsal)

Everything reads the cache through huggingface_hub, so `HF_HOME` / `HF_HUB_CACHE` and
`HF_HUB_OFFLINE` mean what they mean for transformers.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable

from harness.model_marker import MARKER

# What a model needs to load and tokenize: configs, weights, tokenizer files (no TF/Flax/ONNX).
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
# Names the harness builds here on first use (harness/tiny_t5.py, harness/tiny_gpt2.py): never fetched.
BUILT_HERE = ("tiny", "tiny-gpt2")


def is_local(model: str) -> bool:
    return Path(model).expanduser().is_dir()


def looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.count("/") > 1


def hub_off() -> bool:
    return os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"


def cached_file(model: str, name: str) -> Path | None:
    """A file of a hub model in the local Hugging Face cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model, name)
    return Path(found) if isinstance(found, str) else None


def cached(model: str) -> bool:
    """A local model folder, or a hub id whose config is in the Hugging Face cache."""
    if is_local(model):
        return (Path(model).expanduser() / "config.json").is_file()
    if looks_like_path(model):
        return False  # a folder that is not there (a hub id has no leading . / ~ and no empty parts)
    return cached_file(model, "config.json") is not None


def pipeline_marker(model: str) -> dict | None:
    """The harness's pipeline-check marker of a model (a folder, or a cached hub snapshot), if any."""
    from harness.model_marker import read_marker

    if is_local(model):
        return read_marker(Path(model).expanduser())
    if looks_like_path(model):
        return None
    path = cached_file(model, MARKER)
    return read_marker(path.parent) if path is not None else None


def reachable(model: str, timeout: float = 10.0) -> bool:
    """The Hub answers for `model` (False when the Hub is off or cannot be reached)."""
    if hub_off():
        return False
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(model, timeout=timeout)
    except Exception:  # noqa: BLE001 - any failure means: not available from here
        return False
    return True


def missing(models: Iterable[str], check_hub: bool = True) -> list[str]:
    """The models that can be neither loaded from here nor fetched (local folders must exist)."""
    out = []
    for model in dict.fromkeys(models):
        if model in BUILT_HERE or cached(model):
            continue
        if is_local(model) or looks_like_path(model) or not check_hub or not reachable(model):
            out.append(model)
    return out


def download(models: Iterable[str], progress: Callable[[str], None] | None = None) -> dict[str, str]:
    """Fetch each hub model's config, weights and tokenizer into the cache; returns id -> snapshot folder."""
    from huggingface_hub import snapshot_download

    out = {}
    for model in dict.fromkeys(models):
        if model in BUILT_HERE or is_local(model):
            continue
        if progress:
            progress(model)
        out[model] = snapshot_download(model, allow_patterns=ALLOW_PATTERNS)
    return out


# --- the rehearsal cache ------------------------------------------------------------------------


def cache_root() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def build_rehearsal_cache(cache: str | Path, models: Iterable[str], *, seed: int = 0, data_dir=None,
                          without_weights: Iterable[str] = ()) -> dict[str, Path]:
    """Tiny random models of the real families under their real hub ids, in Hugging Face cache layout
    (`models--ORG--NAME/refs/main`, `snapshots/<rev>/…`), each carrying the pipeline-check marker.
    T5 ids get a tiny T5 with the real T5 tokenizer (the shape of `harness.tiny_t5`). Ids in
    `without_weights` get a config and tokenizer but no weights (a model that cannot load: for
    rehearsing a failed row)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from harness import t5_tokenizer
    from harness.model_marker import write_marker

    cache = Path(cache)
    broken = set(without_weights)
    tokenizer = t5_tokenizer.load(data_dir)
    out = {}
    for i, model in enumerate(dict.fromkeys(models)):
        name = model.rsplit("/", 1)[-1]
        if "t5" not in name:
            raise ValueError(f"{model}: the rehearsal cache builds T5-family models only")
        revision = hashlib.sha1(f"spec-harness rehearsal {model} {seed}".encode()).hexdigest()
        repo = cache / ("models--" + model.replace("/", "--"))
        snapshot = repo / "snapshots" / revision
        if (snapshot / "config.json").is_file():
            out[model] = snapshot
            continue
        snapshot.mkdir(parents=True, exist_ok=True)
        config = T5Config(vocab_size=32128, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
                          feed_forward_proj="gated-gelu", tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0,
                          eos_token_id=1)
        torch.manual_seed(seed + i)
        net = T5ForConditionalGeneration(config)
        net.save_pretrained(snapshot)
        tokenizer.save_pretrained(snapshot)
        if model in broken:
            for weights in snapshot.glob("*.safetensors"):
                weights.unlink()
        write_marker(snapshot, "rehearsal", description=f"tiny random T5 standing in for {model} (rehearsal)", hub_id=model)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(revision)
        out[model] = snapshot
    (cache / "spec_harness_rehearsal.json").write_text(json.dumps({"models": list(out), "seed": seed}, indent=1))
    return out
