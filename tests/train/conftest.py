"""A small formats output written straight to Parquet (no teacher run), and the tiny T5."""

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
