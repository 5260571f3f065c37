"""A small formats output written straight to Parquet (no teacher run), the tiny T5 and the tiny GPT-2."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_testutil import write_formats


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory) -> Path:
    from harness.tiny_t5 import build_tiny_t5

    return build_tiny_t5()


@pytest.fixture(scope="session")
def t5_tokenizer(tiny_t5):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_t5)


@pytest.fixture(scope="session")
def formats_dir(tmp_path_factory, t5_tokenizer) -> Path:
    counts = {"zero_shot_answer_only": 24, "zero_shot_cot": 40, "in_context_answer_only": 16, "in_context_cot": 32}
    return write_formats(tmp_path_factory.mktemp("formats"), t5_tokenizer, counts)


@pytest.fixture(scope="session")
def tiny_gpt2() -> Path:
    from harness.tiny_gpt2 import build_tiny_gpt2

    return build_tiny_gpt2()


@pytest.fixture(scope="session")
def gpt2_tokenizer(tiny_gpt2):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_gpt2)


@pytest.fixture(scope="session")
def gpt2_formats_dir(tmp_path_factory, gpt2_tokenizer) -> Path:
    """Records aligned onto GPT-2 ids (the target tokenized alone, as the trainer's guard expects)."""
    counts = {"zero_shot_answer_only": 12, "zero_shot_cot": 16, "in_context_answer_only": 8, "in_context_cot": 8}
    return write_formats(tmp_path_factory.mktemp("gpt2-formats"), gpt2_tokenizer, counts)
