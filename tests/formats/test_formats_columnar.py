"""build_formats reads the CLI's Arrow-backed aligned lookup column-wise: the shards are byte for
byte those of the same rows given as a plain mapping, and its checks still hold."""

from __future__ import annotations

import pyarrow as pa
import pytest

from harness.errors import DataError
from harness.formats.build import build_formats


@pytest.fixture(scope="module")
def chain(tmp_path_factory, data_dir):
    """A gold store of 12 questions and its aligned targets (faithful setting)."""
    from harness.align.api import AlignConfig
    from harness.align.store import run_store_alignment
    from harness.teacher.gold import build_gold_store

    root = tmp_path_factory.mktemp("chain")
    build_gold_store(root / "store", "tiktoken:p50k_base", limit=12)
    run_store_alignment(root / "store", root / "aligned", AlignConfig(), setting="faithful", chunk_size=4, shard_rows=4)
    return root


def _lookup_and_samples(chain):
    from harness.formats.aligned import AlignedTargets
    from harness.formats.teacher_data import read_teacher_store

    lookup = AlignedTargets.load(chain / "aligned")
    samples, _ = read_teacher_store(chain / "store", "faithful")
    return lookup, samples


def _build(samples, folder, aligned, **kw):
    return build_formats(samples, folder, setting="faithful", teacher_model="gold", seed=0, aligned=aligned, shard_size=5, **kw)


def test_arrow_lookup_gives_the_plain_mapping_shards(chain, tmp_path):
    lookup, samples = _lookup_and_samples(chain)
    plain = {key: dict(lookup[key]) for key in lookup}  # the same rows as Python lists
    arrow_stats = _build(samples, tmp_path / "arrow", lookup)
    plain_stats = _build(samples, tmp_path / "plain", plain)
    assert arrow_stats == plain_stats and arrow_stats["records"]["in_context_cot"] == 12
    shards = sorted(p.name for p in (tmp_path / "arrow").glob("*.parquet"))
    assert len(shards) > 4 and shards == sorted(p.name for p in (tmp_path / "plain").glob("*.parquet"))
    for name in shards:
        assert (tmp_path / "arrow" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes(), name


def test_arrow_lookup_checks_lengths_and_the_t5_ids(chain, tmp_path):
    lookup, samples = _lookup_and_samples(chain)
    with pytest.raises(DataError, match="not the T5 ids"):
        _build(samples, tmp_path / "enc", lookup, encode=lambda text: [1, 2, 3])

    class Ragged:  # a lookup whose first row has one position too few in topk_mask
        def __init__(self):
            table = lookup.table
            masks = table.column("topk_mask").to_pylist()
            masks[0] = masks[0][:-1]
            self.table = table.set_column(table.schema.get_field_index("topk_mask"), "topk_mask",
                                          pa.array(masks, table.schema.field("topk_mask").type))
            self.index = lookup.index

        def get(self, key):
            raise AssertionError("read column-wise, not row by row")

    first = next(key for key, row in lookup.index.items() if row == 0)
    with pytest.raises(DataError, match=rf"aligned targets of \('{first[0]}', {first[1]}\).*differ in length"):
        _build(samples, tmp_path / "ragged", Ragged())
