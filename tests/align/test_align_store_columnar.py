"""`align run` on a store: the columnar worker path writes exactly what the JSONL runner's code
(parse, align, serialise, the reference path) writes, and unusual rows fail the same way."""

from __future__ import annotations

import math
import random
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import harness.align.store as align_store
from harness.align.api import AlignConfig
from harness.align.exact import ExactConfig
from harness.align.store import run_store_alignment
from harness.align.targets import round6, stored_k
from harness.records import RecordError


@pytest.fixture(scope="module")
def store(tmp_path_factory, data_dir, teacher):
    """GSM8K gold CoTs as p50k tokens with synthetic top-5, two samples per question; some texts
    hold ': ' (so faithful and corrected texts differ) and one holds a double space."""
    from harness.align.synthetic import synthesize
    from harness.data import load
    from harness.teacher.base import Completion
    from harness.teacher.gold import gold_text
    from harness.teacher.record import record_from_completion
    from harness.teacher.store import TeacherStore

    examples = load("gsm8k", "train")
    chosen = examples[:14] + [e for e in examples[14:200] if ": " in e.rationale][:6]
    root = tmp_path_factory.mktemp("store") / "synthetic"
    settings = {"teacher": {"model": "synthetic", "tokenizer": "tiktoken:p50k_base"}, "sampling": {"seed": 0}}
    with TeacherStore.open(root, "test.synthetic", settings) as out:
        for index in range(2):
            records = []
            for n, example in enumerate(chosen):
                text = gold_text(example) + ("  Done." if n == 3 else "")
                syn = synthesize(teacher, text, f"{example.id}#{index}", seed=index)
                top = [[w for w, _ in step] for step in syn.topk]
                logp = [[math.log(max(p, 1e-6)) for _, p in step] for step in syn.topk]
                completion = Completion(text=syn.text, tokens=syn.tokens, token_logprobs=[lp[0] for lp in logp],
                                        top_tokens=top, top_logprobs=logp, finish_reason="stop")
                records.append(record_from_completion(completion, example, index, prompt_id="synthetic", teacher_model="synthetic",
                                                      teacher_tokenizer="tiktoken:p50k_base"))
            out.write_shard(records)
    return root


def _shards(folder):
    return {p.name: p.read_bytes() for p in sorted((folder / "data").glob("part-*.parquet"))}


def _reference_only(monkeypatch):
    monkeypatch.setattr(align_store, "_samples", lambda *args: None)  # every chunk row by row


@pytest.mark.parametrize("config, setting, select", [
    (AlignConfig(), "corrected", "correct"),
    (AlignConfig(), "faithful", "all"),
    (AlignConfig(k=3, exact=ExactConfig(tail=True)), "corrected", "all"),
    (AlignConfig(exact=ExactConfig(renormalize=True)), "faithful", "correct"),
    (AlignConfig(mode="faithful", k=6), "faithful", "all"),
], ids=["exact", "exact-faithful-text", "tail-k3", "renormalize", "faithful-mode"])
def test_columnar_path_writes_the_reference_rows_byte_for_byte(store, tmp_path, monkeypatch, config, setting, select):
    kw = dict(setting=setting, select=select, chunk_size=8, shard_rows=12)
    fast = run_store_alignment(store, tmp_path / "fast", config, **kw)
    _reference_only(monkeypatch)
    reference = run_store_alignment(store, tmp_path / "reference", config, **kw)
    assert fast == reference and fast["sequences"] > 20
    assert _shards(tmp_path / "fast") == _shards(tmp_path / "reference")
    assert len(_shards(tmp_path / "fast")) > 1


def test_two_workers_write_the_same_shards(store, tmp_path):
    run_store_alignment(store, tmp_path / "one", AlignConfig(), select="all", chunk_size=8, shard_rows=12)
    run_store_alignment(store, tmp_path / "two", AlignConfig(), select="all", chunk_size=8, shard_rows=12, workers=2)
    assert _shards(tmp_path / "one") == _shards(tmp_path / "two")


def _broken_store(store, tmp_path, row: int, column: str, value):
    """A copy of `store` whose first shard has `value` in `column` at `row` (written by hand:
    the store's own writer refuses such rows)."""
    copy = tmp_path / "broken"
    shutil.copytree(store, copy)
    shard = sorted((copy / "data").glob("part-*.parquet"))[0]
    table = pq.read_table(shard)
    values = table.column(column).to_pylist()
    values[row] = value(values[row])
    table = table.set_column(table.schema.get_field_index(column), table.schema.field(column), pa.array(values, table.schema.field(column).type))
    pq.write_table(table, shard)
    _bless(copy, shard)
    return copy


def _bless(root, shard):
    """Enter a shard changed by hand in the store's manifest, as if the writer had written it."""
    import hashlib
    import json

    manifest = json.loads((root / "manifest.json").read_text())
    manifest["shards"][str(shard.relative_to(root))].update(bytes=shard.stat().st_size, sha256=hashlib.sha256(shard.read_bytes()).hexdigest())
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("column, value, field", [
    ("top_logprobs", lambda steps: [[0.5, *step[1:]] for step in steps], "topk"),        # a positive logprob
    ("tokens", lambda tokens: ["X", *tokens[1:]], "tokens"),                              # tokens do not spell the text
    ("top_tokens", lambda steps: [steps[0][:-1], *steps[1:]], "topk"),                   # ragged top-k (zip cuts it)
])
def test_unusual_rows_take_the_reference_path(store, tmp_path, monkeypatch, column, value, field):
    broken = _broken_store(store, tmp_path, 5, column, value)
    results = {}
    for name in ("fast", "reference"):
        if name == "reference":
            _reference_only(monkeypatch)
        out = tmp_path / name
        try:
            run_store_alignment(broken, out, AlignConfig(), select="all", chunk_size=4, shard_rows=4)
            results[name] = ("ok", _shards(out))
        except RecordError as err:
            results[name] = (str(err).replace(str(broken), "STORE"), _shards(out))
    assert results["fast"] == results["reference"]
    if field == "topk" and column == "top_tokens":
        assert results["fast"][0] == "ok"  # the authors' reader zips the two lists: the shorter one wins
    else:
        assert "line 6" in results["fast"][0] and repr(field) in results["fast"][0]
        kept = sum(pq.read_table(tmp_path / "fast" / "data" / name).num_rows for name in results["fast"][1])
        assert kept == 5  # the rows before the bad one are kept; nothing after it


def test_stored_k_is_the_per_position_rule():
    """Each position: entries sorted by -p (stable), cut at K, p rounded with `round(p, 6)`, padded."""
    rng = random.Random(0)
    for _ in range(500):
        k = rng.choice([1, 3, 5])
        entries = [[(rng.randrange(32000), rng.choice([1.0, 0.5, 0.25, 0.0, rng.random(), rng.random() ** 9]))
                    for _ in range(rng.choice([0, 1, 1, 2, 5, 7]))] for _ in range(rng.randrange(12))]
        ids, probs, mask = stored_k(entries, k, pad_id=0)
        for e, row_ids, row_probs, row_mask in zip(entries, ids.tolist(), probs.tolist(), mask.tolist()):
            ranked = sorted(e, key=lambda entry: -entry[1])[:k]
            pad = k - len(ranked)
            assert row_ids == [t for t, _ in ranked] + [0] * pad
            assert row_probs == [round(p, 6) for _, p in ranked] + [0.0] * pad
            assert row_mask == [1] * len(ranked) + [0] * pad


def test_round6_is_pythons_round():
    values = np.concatenate([np.random.default_rng(1).random(200_000), (np.arange(200_000) + 0.5) / 1e6,
                             [0.0, 1.0, 0.1234565, 2.5e-6, 999.9999995, 12345.6789125]])
    assert round6(values).tolist() == [round(v, 6) for v in values.tolist()]
