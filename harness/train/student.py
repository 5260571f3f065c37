"""The student: load a seq2seq (T5, Flan-T5) or decoder-only model through one code path, and run
it up to the target rows, either as logits or, for the fused kernel, as the last hidden states.

Both kinds give rows aligned with `Batch.labels` [B, T]: a seq2seq decoder emits them directly; a
causal model's targets start at column `prompt_width` of its left-padded input, so the rows that
predict them are columns prompt_width-1 … prompt_width+T-2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError

# Heads that are a plain Linear over the last hidden state (no soft-capping or logit scaling), so
# the fused linear + KL kernel computes exactly what the model's own head would.
# GPT-2's head is the tied embedding as a Linear without bias; SmolLM2 is a `llama`.
PLAIN_HEADS = {"t5", "mt5", "umt5", "gpt2", "llama", "qwen2", "qwen3", "mistral", "phi3", "olmo2", "smollm3"}


@dataclass
class Student:
    model: Any
    tokenizer: Any
    seq2seq: bool
    path: str
    pipeline_check: bool

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    def fused_ok(self) -> bool:
        head = self.model.get_output_embeddings()
        return getattr(self.model.config, "model_type", "") in PLAIN_HEADS and getattr(head, "bias", None) is None


def resolve(model: str, seed: int = 0) -> tuple[str, bool]:
    """(path or hub id, is a pipeline-check model). `tiny` builds the local random T5 once,
    `tiny-gpt2` the local random GPT-2 (real GPT-2 tokenizer, harness/tiny_gpt2.py)."""
    from harness.model_marker import read_marker
    from harness.tiny_gpt2 import build_tiny_gpt2
    from harness.tiny_t5 import build_tiny_t5

    if model == "tiny":
        return str(build_tiny_t5()), True
    if model == "tiny-gpt2":
        return str(build_tiny_gpt2()), True
    folder = Path(model).expanduser()
    if folder.is_dir():
        marker = read_marker(folder)
        return str(folder), bool(marker and marker.get("pipeline_check", True))
    if model.startswith((".", "/", "~")):
        raise UsageError(f"model: no such folder {model}")
    return model, False


def load_student(model: str, model_type: str = "auto", dropout: bool = False, seed: int = 0) -> Student:
    """Load weights and the fast tokenizer. Hub ids download (or read the HF cache); offline,
    a missing id is one clear error."""
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    path, pipeline_check = resolve(model, seed)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise UsageError(f"model: cannot load {model!r} ({str(e).splitlines()[0]})") from e
    seq2seq = bool(getattr(config, "is_encoder_decoder", False)) if model_type == "auto" else model_type == "seq2seq"
    cls = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    transformers.set_seed(seed)
    net = cls.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    # The authors never called train(): HF returns models in eval mode, so their dropout was off.
    net.train(dropout)
    return Student(net, tokenizer, seq2seq, path, pipeline_check)


def enable_gradient_checkpointing(net) -> int:
    """Recompute each transformer block in backward instead of keeping its activations; returns
    the number of blocks checkpointed.

    HF checkpoints a block only while that block is in training mode. With dropout off the model
    stays in eval mode (the authors' setting), so only the blocks themselves are switched to
    training mode: their submodules (dropout, attention) stay in eval mode, and the forward is the
    same function. Non-reentrant checkpointing; the objective already passes `use_cache=False`
    (a KV cache and recomputation do not mix).
    """
    from transformers.modeling_layers import GradientCheckpointingLayer

    kwargs = {"use_reentrant": False}
    if hasattr(net, "activation_checkpointing_enable"):  # transformers >= 5.x name; the old one warns
        net.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        net.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    blocks = [m for m in net.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]
    if not blocks:
        raise UsageError(f"gradient_checkpointing: {type(net).__name__} has no checkpointable blocks")
    for block in blocks:
        block.training = True  # only the block's own flag: HF tests `self.gradient_checkpointing and self.training`
    return len(blocks)
