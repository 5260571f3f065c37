"""Data layer: one loader per source, all returning `harness.records.Example`.

    from harness.data import load
    load("gsm8k", "dev")                       # faithful split (default)
    load("svamp", "test", mode="clean")
    load("bbh", "date_understanding")          # BBH: the second argument is the subtask
"""

from __future__ import annotations

from harness.records import Example

SOURCES = ("gsm8k", "multiarith", "asdiv", "svamp", "bbh")


def load(source: str, split: str, mode: str = "faithful", data_dir=None) -> list[Example]:
    if source == "bbh":
        from harness.data import bbh

        return bbh.load(split, data_dir)
    from harness.data.splits import load_split

    return load_split(source, split, mode=mode, data_dir=data_dir)


__all__ = ["Example", "SOURCES", "load"]
