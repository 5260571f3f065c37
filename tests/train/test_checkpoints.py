"""Retention: pruning removes weights only, keeps what the tables use and the newest resumable
checkpoint; the completion marker."""

from __future__ import annotations

import json

import pytest

from harness.errors import DataError, UsageError
from harness.train import checkpoints as ck


def _run(tmp_path, marks=(10, 20, 30, 40), state_on=(40,)):
    """A run folder laid out as the trainer leaves it: model/, eval/ and trainer_state.json in each
    checkpoint, state/ on the newest."""
    run = tmp_path / "run"
    for m in marks:
        folder = run / ck.name_for(m)
        (folder / "model").mkdir(parents=True)
        (folder / "model" / "model.safetensors").write_bytes(b"w" * 1000)
        (folder / "eval").mkdir()
        (folder / "eval" / "summary.json").write_text("{}")
        if m in state_on:
            (folder / "state").mkdir()
            (folder / "state" / "optimizer.bin").write_bytes(b"s" * 500)
        (folder / ck.STATE_FILE).write_text(json.dumps(ck.Position(examples=m).to_dict()))
    (run / "metrics.jsonl").write_text(json.dumps({"kind": "eval", "checkpoint": ck.name_for(10), "examples": 10, "task": "t", "value": 1}) + "\n")
    return run


def test_prune_keeps_the_named_and_the_resumable_and_every_summary(tmp_path):
    run = _run(tmp_path)
    metrics = (run / "metrics.jsonl").read_text()
    out = ck.prune_weights(run, [ck.name_for(20), str(run / ck.name_for(10))])
    assert out["kept"] == [ck.name_for(10), ck.name_for(20), ck.name_for(40)]
    assert out["removed"] == [ck.name_for(30)] and out["freed_bytes"] == 1000
    assert [ck.has_weights(p) for p in ck.list_checkpoints(run)] == [True, True, False, True]
    assert ck.latest_resumable(run).name == ck.name_for(40)
    for p in ck.list_checkpoints(run):  # every checkpoint still lists, with its position and summaries
        assert (p / "eval" / "summary.json").is_file() and ck.read_position(p).examples > 0
    assert (run / "metrics.jsonl").read_text() == metrics
    assert not list(run.rglob("*.deleting"))
    again = ck.prune_weights(run, [ck.name_for(20), ck.name_for(10)])  # idempotent
    assert again["removed"] == [] and again["freed_bytes"] == 0


def test_prune_drops_the_resumable_only_when_told(tmp_path):
    run = _run(tmp_path)
    out = ck.prune_weights(run, [ck.name_for(10)], keep_resumable=False)
    assert out["kept"] == [ck.name_for(10)] and len(out["removed"]) == 3 and out["freed_bytes"] == 3 * 1000 + 500
    assert ck.latest_resumable(run) is None and [ck.has_weights(p) for p in ck.list_checkpoints(run)] == [True, False, False, False]


def test_prune_checks_every_name_before_deleting(tmp_path):
    run = _run(tmp_path)
    with pytest.raises(UsageError, match="no checkpoint 'checkpoint-000000099'"):
        ck.prune_weights(run, [ck.name_for(10), ck.name_for(99)])
    assert all(ck.has_weights(p) for p in ck.list_checkpoints(run))
    ck.prune_weights(run, [])
    with pytest.raises(UsageError, match="no weights left"):
        ck.prune_weights(run, [ck.name_for(20)])
    with pytest.raises(UsageError, match="no checkpoints"):
        ck.prune_weights(tmp_path / "empty", [])


def test_keep_checkpoints_drops_old_weights_but_not_summaries(tmp_path):
    run = _run(tmp_path, state_on=(30, 40))
    ck.prune(run, 2)
    found = ck.list_checkpoints(run)
    assert len(found) == 4 and all((p / "eval" / "summary.json").is_file() for p in found)
    assert [ck.has_weights(p) for p in found] == [False, False, True, True]
    assert [(p / "state").is_dir() for p in found] == [False, False, False, True]


def test_done_marker_round_trip_and_a_damaged_one_is_named(tmp_path):
    pos = ck.Position(epoch=1, global_step=7, examples=56)
    ck.write_done(tmp_path, pos, {"evaluated": False})
    done = ck.read_done(tmp_path)
    assert done["checkpoint"] == ck.name_for(56) and ck.Position(**done["position"]) == pos and done["evaluated"] is False
    (tmp_path / ck.DONE_FILE).write_text("{")
    with pytest.raises(DataError, match="done.json"):
        ck.read_done(tmp_path)
    ck.clear_done(tmp_path)
    assert ck.read_done(tmp_path) is None
