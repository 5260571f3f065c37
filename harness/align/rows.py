"""Aligned rows: one AlignedSequence as the stored row, in the two encodings the front ends write.

`AlignedRows` builds Arrow columns of the `harness.schemas.ALIGNED` contract (the pipeline's
output); `aligned_dict` builds the same row as a dict (the JSONL export, plus `kinds`).
"""

from __future__ import annotations

from itertools import compress
from operator import itemgetter
from typing import Any

import numpy as np

from harness.align.api import AlignConfig, Aligner
from harness.align.errors import FramingError
from harness.align.samples import TeacherSample
from harness.align.targets import AlignedSequence, round6, stored_k
from harness.schemas import ALIGNED, ALIGNED_STAT_COLUMNS

_prob = itemgetter(1)


def sequence_stats(seq: AlignedSequence) -> dict[str, Any]:
    """The per-row statistics both encodings store (the JSONL adds `kinds`)."""
    entries = seq.entries
    widths = list(map(len, entries))
    one_hot = sum(1 for e in entries if len(e) == 1 and e[0][1] == 1.0)
    captured = sum([sum(map(_prob, e)) for e in compress(entries, seq.derived)])  # in order, as the sums always were
    return {
        "positions": len(seq),
        "soft": len(entries) - one_hot,
        "multi_entry": len(widths) - widths.count(0) - widths.count(1),
        "derived": sum(seq.derived),
        "captured_mass": round(captured, 6),
    }


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def aligned_dict(aligner: Aligner, sample: TeacherSample) -> dict[str, Any]:
    """One JSONL output row (or a rejection); other alignment errors propagate."""
    config = aligner.config
    try:
        seq = aligner.align(sample.tokens, sample.topk, sample.student_text)
    except FramingError as err:
        return {"id": sample.id, "mode": config.mode, "status": "rejected", "reason": str(err)}
    topk_ids, topk_probs, topk_mask = stored_k(seq.entries, config.k, aligner.student_tokenizer.pad_id)
    row = {
        "id": sample.id,
        "mode": config.mode,
        "status": "ok",
        "k": config.k,
        "student_ids": list(seq.student_ids),
        "topk_ids": topk_ids.tolist(),
        "topk_probs": topk_probs.tolist(),
        "topk_mask": topk_mask.tolist(),
        "stats": {**sequence_stats(seq), "kinds": _count(seq.kinds)},
    }
    if seq.tail is not None:
        row["tail_mass"] = round6(seq.tail).tolist()
    return row


class AlignedRows:
    """Aligned rows of one chunk, column by column (the ALIGNED contract's columns)."""

    def __init__(self, config: AlignConfig, pad: int):
        self.config, self.pad = config, pad
        self.columns: dict[str, list] = {name: [] for name in ("id", "question_id", "sample_index", "mode", "status", "reason", "k",
                                                               *ALIGNED_STAT_COLUMNS)}
        self.lengths: list[int | None] = []  # positions per row; None: a rejection (null lists)
        self.tail_lengths: list[int | None] = []
        self.student: list[int] = []
        self.entries: list = []  # every position's target, all rows
        self.tail: list[float] = []
        self.count = 0

    def _key(self, sample_id: str, mode: str, status: str, reason: str | None, k: int | None) -> None:
        question_id, _, index = sample_id.rpartition("#")
        for name, value in (("id", sample_id), ("question_id", question_id), ("sample_index", int(index)), ("mode", mode),
                            ("status", status), ("reason", reason), ("k", k)):
            self.columns[name].append(value)
        self.count += 1

    def add(self, sample_id: str, seq: AlignedSequence, mode: str | None = None) -> None:
        """One aligned row; `mode`: how it was built (the config's mode unless said, e.g. "identity")."""
        self._key(sample_id, mode or self.config.mode, "ok", None, self.config.k)
        self.lengths.append(len(seq))
        self.student.extend(seq.student_ids)
        self.entries.extend(seq.entries)
        self.tail_lengths.append(None if seq.tail is None else len(seq.tail))
        if seq.tail is not None:
            self.tail.extend(seq.tail)
        for name, value in sequence_stats(seq).items():
            self.columns[name].append(value)

    def reject(self, sample_id: str, reason: str) -> None:
        self._key(sample_id, self.config.mode, "rejected", reason, None)
        self.lengths.append(None)
        self.tail_lengths.append(None)
        for name in ALIGNED_STAT_COLUMNS:
            self.columns[name].append(None)

    def batch(self):
        import pyarrow as pa

        schema = ALIGNED.schema
        types = {f.name: f.type for f in schema}
        arrays = {name: pa.array(values, types[name]) for name, values in self.columns.items()}
        arrays["student_ids"] = _lists(self.lengths, pa.array(self.student, pa.int32()))
        k = self.config.k
        ids, probs, mask = stored_k(self.entries, k, self.pad)
        per_position = [k] * len(self.entries)
        for name, values in (("topk_ids", ids), ("topk_probs", probs.astype(np.float32)), ("topk_mask", mask)):
            arrays[name] = _lists(self.lengths, _lists(per_position, pa.array(values.ravel())))
        arrays["tail_mass"] = _lists(self.tail_lengths, pa.array(round6(self.tail).astype(np.float32)))
        return pa.RecordBatch.from_arrays([arrays[name] for name in types], schema=schema)


def _lists(lengths: list[int | None], values):
    """A list array of `values` cut into `lengths` (None: a null list)."""
    import pyarrow as pa

    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum([n or 0 for n in lengths], out=offsets[1:])
    mask = pa.array([n is None for n in lengths], pa.bool_()) if None in lengths else None
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=mask)
