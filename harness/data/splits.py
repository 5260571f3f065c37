"""Evaluation splits: `faithful` (what the authors' code evaluated) and `clean` (decontaminated).

| split | set | faithful | clean |
|---|---|---|---|
| dev  | gsm8k      | 200 train items of validation_index.npy | same 200; excluded from `train` |
| test | gsm8k      | 1,319 | 1,319 |
| train| gsm8k      | 7,473 (dev inside it) | 7,473 − dev − prompt demos |
| dev  | multiarith | 200, seeded draw (the authors' index is lost) | same draw, minus contaminated |
| test | multiarith | the other 400 | the other 400, minus contaminated |
| dev  | asdiv      | – (none in the authors' code) | 300, seeded draw |
| test | asdiv      | 2,305 | the rest, minus contaminated |
| dev  | svamp      | – | 300, seeded draw |
| test | svamp      | 1,000 | the rest, minus contaminated |

"Contaminated" = the normalised question text equals a GSM8K train question or a question
used in any prompt demo. Every draw uses `random.Random(f"{set}:{seed}")`, seed 0 by default.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache

from harness.data import asdiv, gsm8k, multiarith, svamp
from harness.data.prompts import PROMPTS, authors_prompt, gsm8k_validation_index
from harness.records import Example

MODES = ("faithful", "clean")
MATH_SETS = ("gsm8k", "multiarith", "asdiv", "svamp")
DEV_SIZE = {"multiarith": 200, "asdiv": 300, "svamp": 300}
SEED = 0


def normalise_question(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _seeded_dev(name: str, n_items: int, size: int, seed: int) -> set[int]:
    order = list(range(n_items))
    random.Random(f"{name}:{seed}").shuffle(order)
    return set(order[:size])


@lru_cache(maxsize=8)
def demo_questions(data_dir=None) -> frozenset[str]:
    """Normalised questions of every exemplar in the authors' prompt files."""
    found = set()
    for name in PROMPTS:
        for match in re.finditer(r"^(?:Question|Q): (.*)$", authors_prompt(name, data_dir), re.MULTILINE):
            found.add(normalise_question(match.group(1)))
    return frozenset(found)


@lru_cache(maxsize=8)
def _gsm8k_train_questions(data_dir=None) -> frozenset[str]:
    return frozenset(normalise_question(e.question) for e in gsm8k.load("train", data_dir))


def _clean(examples: list[Example], data_dir) -> list[Example]:
    seen = _gsm8k_train_questions(data_dir) | demo_questions(data_dir)
    return [e for e in examples if normalise_question(e.question) not in seen]


def load_split(name: str, split: str, mode: str = "faithful", seed: int = SEED, data_dir=None) -> list[Example]:
    """Examples of one math set's split under a split mode; see the module table."""
    if mode not in MODES:
        raise ValueError(f"split mode must be one of {MODES}, not {mode!r}")
    if name == "gsm8k":
        dev_index = gsm8k_validation_index(data_dir)
        if split == "test":
            return gsm8k.load("test", data_dir)
        train = gsm8k.load("train", data_dir)
        if split == "dev":
            return [train[i] for i in dev_index]
        if split == "train":
            if mode == "faithful":
                return train
            held_out = set(dev_index)
            demos = demo_questions(data_dir)
            return [e for i, e in enumerate(train) if i not in held_out and normalise_question(e.question) not in demos]
        raise ValueError(f"gsm8k has splits train/dev/test, not {split!r}")

    loaders = {"multiarith": multiarith.load, "asdiv": asdiv.load, "svamp": svamp.load}
    if name not in loaders:
        raise ValueError(f"unknown math set {name!r}; known: {', '.join(MATH_SETS)}")
    if split not in ("dev", "test"):
        raise ValueError(f"{name} has splits dev/test, not {split!r}")
    examples = loaders[name](data_dir)
    if mode == "faithful" and name != "multiarith":
        if split == "dev":
            raise ValueError(f"the authors' code has no {name} dev split; use mode='clean'")
        return examples
    dev = _seeded_dev(name, len(examples), DEV_SIZE[name], seed)
    chosen = [e for i, e in enumerate(examples) if (i in dev) == (split == "dev")]
    return chosen if mode == "faithful" else _clean(chosen, data_dir)
