"""The train stage's Python face: completion marker, resuming a finished run, precision and
gradient checkpointing recorded (and equal losses on CPU), checkpoints per run."""

from __future__ import annotations

import json

import pytest

from harness.errors import ResumeError
from harness.train import checkpoints as ck
from harness.train import job

from train_testutil import tiny_config, write_formats


def _train_rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in line]


@pytest.fixture(scope="module")
def baseline(formats_dir, tmp_path_factory):
    """fp32, no gradient checkpointing, dropout off (the authors' mode), 3 steps."""
    run = tmp_path_factory.mktemp("baseline") / "run"
    return job.run(tiny_config(formats_dir, run, max_steps=3, dropout=False), progress=False)


def test_a_finished_run_is_marked_and_resuming_it_does_nothing(formats_dir, baseline, monkeypatch):
    run = baseline.run_dir
    done = json.loads((run / ck.DONE_FILE).read_text())
    assert done["checkpoint"] == ck.name_for(baseline.position.examples) and done["position"]["global_step"] == 3
    assert done["run"]["precision"] == "fp32" and done["evaluated"] is False
    assert job.is_complete(run) and not job.is_complete(run.parent / "nothing")
    header = json.loads((run / "run.json").read_text())
    assert header["processes"] == 1 and header["gradient_checkpointing"] is False and header["resumed_from"] is None
    state = json.loads((run / ck.name_for(baseline.position.examples) / ck.STATE_FILE).read_text())
    assert state["run"]["precision"] == "fp32" and state["config"]["precision"] == "fp32"

    def no_model(*args, **kwargs):
        raise AssertionError("a finished run loaded its model again")

    monkeypatch.setattr("harness.train.student.load_student", no_model)
    again = job.run(tiny_config(formats_dir, run, max_steps=3, dropout=False), resume=True, progress=False)
    assert again.already_complete and again.position == baseline.position and again.losses == []
    with pytest.raises(ResumeError, match="lr"):  # other settings are still refused
        job.run(tiny_config(formats_dir, run, max_steps=3, dropout=False, lr=1e-3), resume=True, progress=False)


def test_gradient_checkpointing_gives_the_same_losses(formats_dir, baseline, tmp_path):
    run = tmp_path / "run"
    result = job.run(tiny_config(formats_dir, run, max_steps=3, dropout=False, gradient_checkpointing=True), progress=False)
    assert result.losses == pytest.approx(baseline.losses, rel=1e-6, abs=1e-7)
    header = json.loads((run / "run.json").read_text())
    assert header["gradient_checkpointing"] is True and header["checkpointed_blocks"] > 0


def test_tf32_on_cpu_is_fp32_and_says_so(formats_dir, baseline, tmp_path):
    run = tmp_path / "run"
    result = job.run(tiny_config(formats_dir, run, max_steps=3, dropout=False, precision="tf32"), progress=False)
    assert result.losses == baseline.losses  # bit for bit: the CPU has no TF32
    header = json.loads((run / "run.json").read_text())
    assert header["precision"] == "tf32" and "plain fp32" in header["compute"] and header["mixed_precision"] == "no"
    assert json.loads((run / "config.json").read_text())["precision"] == "tf32"


def test_a_finished_run_given_more_steps_trains_on(formats_dir, tmp_path):
    run = tmp_path / "run"
    job.run(tiny_config(formats_dir, run, max_steps=2), progress=False)
    assert job.is_complete(run) and not job.is_complete(run, tiny_config(formats_dir, run, max_steps=4))
    more = job.run(tiny_config(formats_dir, run, max_steps=4), resume=True, progress=False)
    assert not more.already_complete and len(more.losses) == 2 and more.position.global_step == 4
    assert json.loads((run / ck.DONE_FILE).read_text())["position"]["global_step"] == 4
    assert [r["step"] for r in _train_rows(run)] == [1, 2, 3, 4]
    assert json.loads((run / "run.json").read_text())["resumed_from"] == ck.name_for(ck.read_position(ck.list_checkpoints(run)[0]).examples)


def test_checkpoints_per_run_spaces_that_many_and_records_the_interval(tiny_t5, t5_tokenizer, tmp_path):
    data = write_formats(tmp_path / "formats", t5_tokenizer, {"zero_shot_cot": 40})
    run = tmp_path / "run"
    cfg = tiny_config(data, run, formats=["zero_shot_cot"], batch_sizes={"zero_shot_cot": 4}, grad_accum=2, epochs=2,
                      checkpoint_every_examples=None, checkpoints_per_run=3)
    result = job.run(cfg, progress=False)
    # 40 records, 8 per step: 5 steps an epoch, 80 examples in all; marks at ceil(k x 80 / 3) = 27, 54, 80
    assert [ck.read_position(p).examples for p in result.checkpoints] == [32, 56, 80]
    header = json.loads((run / "run.json").read_text())
    assert header["planned_examples"] == 80 and header["checkpoint_marks"] == {"span": 80, "count": 3}
    assert header["checkpoint_interval"] == pytest.approx(26.7)
    assert json.loads((result.checkpoints[0] / ck.STATE_FILE).read_text())["run"]["checkpoint_marks"] == {"span": 80, "count": 3}
    assert job.is_complete(run)
