"""Shared tokenizers and a few real GSM8K rationales (read from the data dir at run time)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def teacher(data_dir):
    from harness.tokenizers import TiktokenTokenizer

    return TiktokenTokenizer("p50k_base")


@pytest.fixture(scope="session")
def student(data_dir):
    from harness.tokenizers import SentencePieceTokenizer

    return SentencePieceTokenizer()


@pytest.fixture(scope="session")
def vocab(student):
    return student.vocab()


@pytest.fixture(scope="session")
def rationales(data_dir):
    from harness.align.synthetic import gsm8k_rationales

    return gsm8k_rationales(40)


def one_hot_steps(tokens, prob=0.9):
    """Top-k lists holding only the sampled token."""
    return [[(t, prob)] for t in tokens]


@pytest.fixture(scope="session")
def student_specs(tmp_path_factory, data_dir):
    """Student tokenizer specs of four families: GPT-2 (data dir), Qwen-like, Llama-2-like, T5 fast."""
    from tests.align.student_tokenizers import llama_like, qwen_like, t5_fast

    root = tmp_path_factory.mktemp("students")
    return {
        "gpt2": "hf-gpt2",
        "qwen-like": f"hf:{qwen_like(root / 'qwen-like', data_dir)}",
        "llama-like": f"hf:{llama_like(root / 'llama-like', data_dir)}",
        "t5-fast": f"hf:{t5_fast(data_dir)}",
    }


@pytest.fixture(scope="session")
def gpt2(data_dir):
    from harness.align.api import load_student

    return load_student("hf-gpt2")
