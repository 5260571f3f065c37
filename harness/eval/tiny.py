"""Small randomly initialised models with real tokenizers, for offline pipeline checks.

Flan-T5 weights cannot be fetched everywhere (CI has no hub access); `tiny` (a T5 with the real
T5 tokenizer) exercises the same code path — SentencePiece tokenizer, seq2seq generation, lm-eval
— in seconds on a CPU, and `tiny-gpt2` (a GPT-2 with the real GPT-2 tokenizer and GPT-2's 1,024
positions) the decoder-only one. Their accuracies are meaningless: every report built on them says so.
"""

from __future__ import annotations

from pathlib import Path

from harness.checksums import manifest, sha256_of
from harness.config import data_file
from harness.model_marker import MARKER, read_marker  # noqa: F401 (MARKER re-exported)
from harness.tiny_gpt2 import build_tiny_gpt2
from harness.tiny_t5 import TINY_VERSION, build_tiny_t5, tiny_model_dir  # noqa: F401 (re-exported)

TINY_NAMES = ("tiny", "tiny-random-t5", "tiny-gpt2")


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
    if name_or_path == "tiny-gpt2":
        return str(build_tiny_gpt2(data_dir=data_dir)), True
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path.resolve()), is_pipeline_check(path)
    return name_or_path, False
