"""Seeded in-context demo selection: any record's demos can be recomputed on their own.

The authors drew `np.random.choice(7473, 4, replace=False)` afresh for every record, unseeded, from
the full GSM8K train split. Here each record gets its own `random.Random` keyed by the seed and
the record key (format, question id, sample index), so the draw depends neither on the order of
the records nor on which other records exist.

- `faithful`: 4 distinct items of the full train split (may be the question itself or a dev item).
- `corrected`: 4 distinct items of the `clean` train split (no GSM8K dev item, no question of the
  authors' prompt files), never the question itself, nor any item whose normalised text equals the
  question's or a dev question's (GSM8K train holds a few duplicated questions).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from harness.data.splits import normalise_question
from harness.errors import UsageError
from harness.records import Example

from harness.formats.render import NUM_DEMOS, check_setting


@dataclass(frozen=True)
class DemoPool:
    """The items demos are drawn from, in a fixed order, plus what a draw must avoid.

    `banned_texts`: normalised question texts never drawn (corrected: the dev questions).
    `avoid_self`: also skip the record's own question (by id and by normalised text).
    """

    examples: tuple[Example, ...]
    banned_texts: frozenset[str] = frozenset()
    avoid_self: bool = False
    _norm: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "examples", tuple(self.examples))
        object.__setattr__(self, "_norm", tuple(normalise_question(e.question) for e in self.examples))

    def draw(self, seed: int, key: str, question: Example, k: int = NUM_DEMOS) -> list[Example]:
        """k distinct demos for the record `key` (deterministic in seed, key and the pool)."""
        n = len(self.examples)
        if n < k:
            raise UsageError(f"demo pool has {n} items; {k} demos are needed per record")
        own = normalise_question(question.question) if self.avoid_self else None
        restricted = bool(self.banned_texts) or self.avoid_self
        rng = random.Random(f"formats.demos:{seed}:{key}")
        picked: list[int] = []
        for _ in range(1000 * k + 10 * n):  # rejection sampling; the bound only stops a pool with too few usable items
            i = rng.randrange(n)
            if i in picked or (restricted and not self._usable(i, question.id, own)):
                continue
            picked.append(i)
            if len(picked) == k:
                return [self.examples[i] for i in picked]
        raise UsageError(f"demo pool has fewer than {k} usable demos for {question.id}")

    def _usable(self, i: int, question_id: str, own: str | None) -> bool:
        text = self._norm[i]
        if text in self.banned_texts:
            return False
        return not (self.avoid_self and (self.examples[i].id == question_id or text == own))


def record_key(fmt: str, question_id: str, sample_index: int) -> str:
    return f"{fmt}:{question_id}:{sample_index}"


def select_demos(pool: DemoPool, seed: int, fmt: str, question: Example, sample_index: int, k: int = NUM_DEMOS) -> list[Example]:
    """The demos of one in-context record."""
    return pool.draw(seed, record_key(fmt, question.id, sample_index), question, k)


def load_pool(setting: str, data_dir=None) -> DemoPool:
    """The GSM8K demo pool of a setting, from the data directory (see the module docstring)."""
    check_setting(setting)
    from harness.data import load

    if setting == "faithful":
        return DemoPool(tuple(load("gsm8k", "train", mode="faithful", data_dir=data_dir)))
    dev = frozenset(normalise_question(e.question) for e in load("gsm8k", "dev", data_dir=data_dir))
    clean = load("gsm8k", "train", mode="clean", data_dir=data_dir)
    return DemoPool(tuple(clean), banned_texts=dev, avoid_self=True)


def dev_ids(data_dir=None) -> frozenset[str]:
    """Ids of the GSM8K dev items (200 train questions of the authors' validation index)."""
    from harness.data import load

    return frozenset(e.id for e in load("gsm8k", "dev", data_dir=data_dir))

