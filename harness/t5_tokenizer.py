"""The real T5 (Flan-T5) SentencePiece tokenizer, loaded from the data directory.

Trap in transformers 5: `T5Tokenizer(vocab_file=…)` ignores the file and builds a 104-token
vocabulary that maps every word to <unk>. `from_pretrained(<folder holding spiece.model>)`
converts the model properly (needs sentencepiece and protobuf) and matches SentencePiece's own
ids; `load()` checks that on a known sentence before returning.
"""

from __future__ import annotations

from functools import lru_cache

from harness.config import data_file

# Published T5 ids for this sentence (SOURCES.md of the data directory; HF/T5 examples).
CHECK_TEXT = "The answer is 42."
CHECK_IDS = [37, 1525, 19, 6426, 5, 1]


@lru_cache(maxsize=4)
def load(data_dir=None):
    from transformers import T5Tokenizer

    folder = data_file("tokenizers/t5/spiece.model", data_dir).parent
    tokenizer = T5Tokenizer.from_pretrained(str(folder))
    ids = tokenizer(CHECK_TEXT)["input_ids"]
    if ids != CHECK_IDS or len(tokenizer) != 32100:
        raise RuntimeError(f"T5 tokenizer from {folder} is broken: {CHECK_TEXT!r} -> {ids}, vocab {len(tokenizer)}")
    return tokenizer
