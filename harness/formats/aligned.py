"""Aligned targets as the formats read them: (question_id, sample_index) -> a row of an Arrow table.

    targets = AlignedTargets.load("runs/aligned/default")    # a sealed `align run` output, verified
    row = targets.row(("gsm8k/train/0", 3))                  # None: no usable targets for that sample
    columns = targets.take([row, None, ...])                  # a shard's four target columns at once

The rows stay columnar in memory (a paper-size output is ~15M top-k lists); a shard takes its rows
column-wise and no top-k list becomes Python objects. Rejected rows are absent. A plain mapping of
row dicts (tests, other callers) is turned into the same table once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from harness import handoff
from harness.errors import DataError
from harness.schemas import ALIGNED, FORMATS, TARGET_COLUMNS


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


class AlignedTargets(Mapping):
    FIELDS = TARGET_COLUMNS
    BLOCK = 2048  # rows turned into Python lists at a time by __getitem__

    def __init__(self, table, index: Mapping[tuple[str, int], int], manifest: handoff.Manifest | None = None, root: Path | None = None):
        import pyarrow.compute as pc

        self.table, self.index, self.manifest, self.root = table.select(list(self.FIELDS)), index, manifest, root
        lengths = [pc.list_value_length(self.table.column(name)).to_numpy(zero_copy_only=False) for name in self.FIELDS]
        self.ragged = np.zeros(len(self.table), dtype=bool)  # rows whose four lists differ in length
        for other in lengths[1:]:
            self.ragged |= other != lengths[0]
        self._block: tuple[int, dict[str, list]] | None = None

    # --- building ----------------------------------------------------------------------------------

    @classmethod
    def load(cls, folder: str | Path) -> "AlignedTargets":
        """The usable rows of a sealed `harness align run` output (every shard checked against its manifest)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        folder = Path(folder)
        manifest = handoff.verify(folder, ALIGNED, what="aligned targets")
        if not manifest.shards:
            raise DataError(f"{folder}: no aligned targets (data/part-*.parquet); run `harness align run STORE {folder}` first")
        ok = []  # filtered shard by shard: only one unfiltered shard is in memory at a time
        for _, part in handoff.read_shards(folder, ALIGNED, ["question_id", "sample_index", "status", *cls.FIELDS], manifest):
            ok.append(part.filter(pc.equal(part.column("status"), "ok")))
        table = pa.concat_tables(ok).combine_chunks()  # one chunk: `take` on ~50 chunks of list columns is ~15x slower
        del ok
        index = {key: i for i, key in enumerate(zip(table.column("question_id").to_pylist(), table.column("sample_index").to_pylist()))}
        return cls(table, index, manifest, folder)

    @classmethod
    def from_mapping(cls, aligned: Mapping[tuple[str, int], Mapping[str, Any]]) -> "AlignedTargets":
        """Row dicts (student_ids, topk_ids, topk_probs, topk_mask; status "rejected" = absent) as one table."""
        import pyarrow as pa

        keys, columns = [], {name: [] for name in cls.FIELDS}
        for key, row in aligned.items():
            if row.get("status", "ok") != "ok":
                continue
            missing = [f for f in cls.FIELDS if f not in row]
            if missing:
                raise DataError(f"aligned targets of {key}: missing {', '.join(missing)}")
            keys.append(key)
            for name in cls.FIELDS:
                columns[name].append(_plain(row[name]))
        types = FORMATS.schema
        table = pa.table({name: pa.array(values, types.field(name).type) for name, values in columns.items()})
        return cls(table, {key: i for i, key in enumerate(keys)})

    @classmethod
    def of(cls, aligned: Any) -> "AlignedTargets":
        """Whatever `build_formats` was given: targets as they are, a table with its index, or a mapping."""
        if isinstance(aligned, AlignedTargets):
            return aligned
        table, index = getattr(aligned, "table", None), getattr(aligned, "index", None)
        if table is not None and isinstance(index, Mapping) and set(cls.FIELDS) <= set(table.column_names):
            return cls(table, index)
        return cls.from_mapping(aligned)

    # --- reading -----------------------------------------------------------------------------------

    def row(self, key: tuple[str, int]) -> int | None:
        row = self.index.get(key)
        if row is not None and self.ragged[row]:
            raise DataError(f"aligned targets of {key}: student_ids, topk_ids, topk_probs and topk_mask differ in length")
        return row

    def student_ids(self, row: int) -> list[int]:
        return self.table.column("student_ids")[row].as_py()

    def take(self, rows: list[int | None]) -> dict[str, Any]:
        import pyarrow as pa

        taken = self.table.take(pa.array(rows, pa.int64()))  # a null row number gives null lists
        return {name: taken.column(name) for name in self.FIELDS}

    def __getitem__(self, key):
        i = self.index[key]
        start = i - i % self.BLOCK
        if self._block is None or self._block[0] != start:
            part = self.table.slice(start, self.BLOCK)
            self._block = (start, {name: part.column(name).to_pylist() for name in self.FIELDS})
        columns = self._block[1]
        return {**{name: columns[name][i - start] for name in self.FIELDS}, "status": "ok"}

    def __iter__(self):
        return iter(self.index)

    def __len__(self):
        return len(self.index)
