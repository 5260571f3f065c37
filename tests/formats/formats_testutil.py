"""Made-up GSM8K-shaped items for the format tests (never text from the data files)."""

from __future__ import annotations

from harness.records import Example


def item(i: int, question: str, gold_raw: str, split: str = "train") -> Example:
    final = gold_raw.split("####")[-1].strip()
    return Example(id=f"gsm8k/{split}/{i}", source="gsm8k", question=question, answer=final,
                   number=float(final), gold_raw=gold_raw, index=i)
