"""Hugging Face student tokenizers of the families that matter, built offline into a folder.

The hub is unreachable, so each family is rebuilt from files in the data directory:
- Qwen-like: byte-level BPE, cl100k's ranks with Qwen2's pre-tokenizer (digits one by one) and
  chat special tokens (what Qwen2.5 and Llama-3 tokenizers are);
- Llama-2-like: SentencePiece BPE with byte fallback and a dummy-prefix `▁`, trained on GSM8K
  rationales (newlines left out of its pieces, so they come out as `<0x0A>`, as in Llama-2);
- T5 fast: the data directory's tiny-random-t5 tokenizer.json (Unigram, whitespace folded).
Each builder writes a folder `AutoTokenizer.from_pretrained` (and so the `hf:<folder>` spec) loads.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

QWEN2_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def qwen_like(folder: Path, data_dir: Path) -> Path:
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    if not (folder / "tokenizer.json").is_file():
        converter = TikTokenConverter(vocab_file=str(data_dir / "tokenizers/tiktoken/cl100k_base.tiktoken"), pattern=QWEN2_PATTERN,
                                      extra_special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        tok = PreTrainedTokenizerFast(tokenizer_object=converter.converted(), eos_token="<|endoftext|>", pad_token="<|endoftext|>")
        tok.save_pretrained(str(folder))
    return folder


def llama_like(folder: Path, data_dir: Path) -> Path:
    import sentencepiece as spm
    from transformers import AutoTokenizer

    from harness.data import gsm8k

    if not (folder / "tokenizer.json").is_file():
        texts = [e.rationale.replace("\n", " ") for e in gsm8k.load("train")[:2000]]
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=model, vocab_size=800, model_type="bpe",
                                       byte_fallback=True, split_digits=True, character_coverage=1.0, num_threads=1,
                                       normalization_rule_name="identity", remove_extra_whitespaces=False,
                                       allow_whitespace_only_pieces=True, minloglevel=2)
        source = folder.with_name(folder.name + "-spm")
        source.mkdir(parents=True, exist_ok=True)
        (source / "tokenizer.model").write_bytes(model.getvalue())
        (source / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer", "add_bos_token": False,
                                                                  "add_eos_token": False, "legacy": False}))
        AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(folder))  # converted once: tokenizer.json
    return folder


def t5_fast(data_dir: Path) -> Path:
    return data_dir / "models/tiny-random-t5"
