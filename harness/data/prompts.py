"""The authors' prompt files (lib_prompt/ of FlanT5-CoT-Specialization) and GSM8K dev index."""

from __future__ import annotations

from harness.config import data_file

PROMPTS = ("complex", "original", "simple", "random", "direct", "simple_4_cases")


def authors_prompt(name: str, data_dir=None) -> str:
    """Raw text of `prompts/prompt_{name}.txt`; `simple_4_cases` is the distilled-model prompt."""
    if name not in PROMPTS:
        raise ValueError(f"unknown prompt {name!r}; known: {', '.join(PROMPTS)}")
    return data_file(f"prompts/prompt_{name}.txt", data_dir).read_text(encoding="utf-8")


def gsm8k_validation_index(data_dir=None) -> list[int]:
    """The authors' 200 GSM8K *train* indices used as GSM8K dev (order kept as in the file)."""
    import numpy as np

    index = np.load(data_file("prompts/validation_index.npy", data_dir))
    return [int(i) for i in index.tolist()]
