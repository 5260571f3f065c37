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
