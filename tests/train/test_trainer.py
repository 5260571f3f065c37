"""The training loop on CPU: exact resume, checkpoint cadence in examples, overfitting, refusals."""

from __future__ import annotations

import json

import pytest

from harness.errors import ResumeError
from harness.train import checkpoints as ck
from harness.train.trainer import train

from train_testutil import tiny_config, write_formats


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_continues_the_identical_loss_trajectory(formats_dir, tmp_path):
    # corrected: dropout on, so the restored RNG state matters too
    straight = train(tiny_config(formats_dir, tmp_path / "a", max_steps=20, checkpoint_every_examples=30), progress=False)
    first = train(tiny_config(formats_dir, tmp_path / "b", max_steps=10, checkpoint_every_examples=30), progress=False)
    second = train(tiny_config(formats_dir, tmp_path / "b", max_steps=20, checkpoint_every_examples=30), resume=True, progress=False)
    assert len(straight.losses) == 20 and len(first.losses) == 10 and len(second.losses) == 10
    assert first.losses + second.losses == straight.losses  # bit for bit on CPU
    assert second.position == straight.position
    # the metrics log holds each step once, as if the run had never stopped
    steps = [r["step"] for r in _metrics(tmp_path / "b") if r["kind"] == "train"]
    assert steps == list(range(1, 21))


def test_checkpoints_fall_every_n_training_examples(formats_dir, tmp_path):
    result = train(tiny_config(formats_dir, tmp_path / "run", max_steps=12, checkpoint_every_examples=25), progress=False)
    marks = [ck.read_position(p).examples for p in result.checkpoints]
    rows = [r for r in _metrics(tmp_path / "run") if r["kind"] == "train"]
    examples = [r["examples"] for r in rows]
    # each checkpoint is the first step boundary at or past a multiple of 25 examples, plus the end
    expected = []
    mark = 25
    for e in examples:
        if e >= mark:
            expected.append(e)
            while mark <= e:
                mark += 25
    if expected[-1] != examples[-1]:
        expected.append(examples[-1])
    assert marks == expected
    assert [p.name for p in ck.list_checkpoints(tmp_path / "run")] == [ck.name_for(e) for e in expected]
    # only the newest keeps the optimizer state; every one keeps its model for evaluation
    assert [(p / "state").is_dir() for p in result.checkpoints] == [False] * (len(expected) - 1) + [True]
    assert all((p / "model" / "config.json").is_file() for p in result.checkpoints)
    assert not list((tmp_path / "run").glob(".tmp-*"))


def test_evaluator_runs_at_each_checkpoint_and_selection_reads_it(formats_dir, tmp_path):
    from harness.train.selection import select_checkpoints

    seen = []

    def evaluator(model_dir, tasks, limits, batch_size, max_gen_toks):
        seen.append((model_dir.parent.name, tuple(tasks), limits[tasks[0]]))
        k = len(seen)
        return {"gsm8k_cot_spec_dev": [10, 30, 20][k - 1], "mas_cot_spec_dev": [25, 5, 25][k - 1]}

    cfg = tiny_config(formats_dir, tmp_path / "run", max_steps=9, checkpoint_every_examples=20, evaluate=True,
                      eval_tasks=["gsm8k_cot_spec_dev", "mas_cot_spec_dev"], eval_limit=3)
    result = train(cfg, evaluator=evaluator, progress=False)
    assert [s[0] for s in seen] == [p.name for p in result.checkpoints] and len(seen) == 3
    assert seen[0][2] == 3
    chosen = select_checkpoints(tmp_path / "run")["choices"]
    assert chosen["gsm8k-dev"]["checkpoint"] == result.checkpoints[1].name
    assert chosen["mas-dev"]["checkpoint"] == result.checkpoints[0].name  # tie at 25: the earlier one


def test_a_tiny_t5_overfits_16_examples(tiny_t5, t5_tokenizer, tmp_path):
    data = write_formats(tmp_path / "formats", t5_tokenizer, {"zero_shot_cot": 16}, seed=3)
    cfg = tiny_config(data, tmp_path / "run", formats=["zero_shot_cot"], batch_sizes={"zero_shot_cot": 16}, grad_accum=1,
                      epochs=300, max_steps=150, lr=1e-2, warmup_steps=0, scheduler="constant", dropout=False,
                      loss="sample", max_grad_norm=None, checkpoint_every_examples=100_000)
    result = train(cfg, progress=False)
    assert result.losses[-1] < 0.1 * result.losses[0], (result.losses[0], result.losses[-1])


def test_refuses_an_existing_run_without_resume_and_other_settings_with_it(formats_dir, tmp_path):
    train(tiny_config(formats_dir, tmp_path / "run", max_steps=2), progress=False)
    with pytest.raises(ResumeError, match="--resume"):
        train(tiny_config(formats_dir, tmp_path / "run", max_steps=2), progress=False)
    with pytest.raises(ResumeError, match="lr"):
        train(tiny_config(formats_dir, tmp_path / "run", max_steps=4, lr=1e-3), resume=True, progress=False)


@pytest.mark.parametrize("preset,training_mode", [("faithful", False), ("corrected", True)])
def test_dropout_switch(formats_dir, tmp_path, preset, training_mode, monkeypatch):
    """faithful leaves the model in eval mode (dropout off, as the authors' never-called train());
    corrected trains with dropout on."""
    from harness.train import student as student_module
    from harness.train.config import load_config

    seen = []
    real = student_module.load_student

    def spy(*args, **kwargs):
        s = real(*args, **kwargs)
        seen.append(s.model.training)
        return s

    monkeypatch.setattr("harness.train.student.load_student", spy)
    base = tiny_config(formats_dir, tmp_path / "run", max_steps=1)
    cfg = load_config(preset, {k: v for k, v in base.to_dict().items() if k not in ("dropout", "variant", "normalization", "schedule_length",
                                                                                     "max_grad_norm", "warmup_steps", "epochs")})
    train(cfg, progress=False)
    assert seen == [training_mode]


def test_a_gpt2_student_is_distilled_evaluated_and_selected(gpt2_formats_dir, tmp_path):
    """The cpu-tiny-gpt2 preset by distribution matching, each checkpoint scored by the real lm-eval
    evaluator (the one the CLI hands the trainer), then `train select` reading metrics.jsonl."""
    from harness.eval.training import evaluate_for_training
    from harness.train.config import load_config
    from harness.train.selection import select_checkpoints

    cfg = load_config("cpu-tiny-gpt2", {
        "formats_dir": str(gpt2_formats_dir), "output_dir": str(tmp_path / "run"), "max_steps": 4, "checkpoint_every_examples": 20,
        "eval_limit": 1, "eval_max_gen_toks": 4})
    result = train(cfg, evaluator=evaluate_for_training, progress=False)
    assert result.header["head"] == "logits" and len(result.checkpoints) >= 2
    scored = {(r["checkpoint"], r["task"]) for r in _metrics(tmp_path / "run") if r["kind"] == "eval"}
    assert scored == {(p.name, t) for p in result.checkpoints for t in ("gsm8k_cot_spec_dev", "mas_cot_spec_dev")}
    summaries = sorted(result.checkpoints[0].glob("eval/*/*/summary.json"))
    assert summaries and all(json.loads(s.read_text())["pipeline_check"] is True for s in summaries)
    assert all(json.loads(s.read_text())["context"]["max_length"] == 1024 for s in summaries)
    choices = select_checkpoints(tmp_path / "run")["choices"]
    assert choices["mas-dev"]["candidates"] == len(result.checkpoints) and choices["last"]["checkpoint"] == result.checkpoints[-1].name


def test_a_tiny_gpt2_fits_its_teachers_distributions(gpt2_tokenizer, tmp_path):
    """Distribution matching on the causal path learns: the KL to 8 examples' teacher top-k falls."""
    data = write_formats(tmp_path / "formats", gpt2_tokenizer, {"zero_shot_cot": 8}, seed=5)
    cfg = tiny_config(data, tmp_path / "run", model="tiny-gpt2", formats=["zero_shot_cot"], batch_sizes={"zero_shot_cot": 8},
                      grad_accum=1, epochs=100, max_steps=40, lr=1e-2, warmup_steps=0, scheduler="constant", dropout=False,
                      max_grad_norm=None, checkpoint_every_examples=100_000)
    losses = train(cfg, progress=False).losses
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


def test_a_gpt2_student_resumes_exactly_with_its_tied_head(gpt2_formats_dir, tmp_path):
    """GPT-2 ties its head to the embeddings (accelerate saves the shared tensor once): resuming
    still continues the identical trajectory."""
    kw = dict(model="tiny-gpt2", checkpoint_every_examples=16, dropout=True)
    straight = train(tiny_config(gpt2_formats_dir, tmp_path / "a", max_steps=4, **kw), progress=False)
    first = train(tiny_config(gpt2_formats_dir, tmp_path / "b", max_steps=2, **kw), progress=False)
    second = train(tiny_config(gpt2_formats_dir, tmp_path / "b", max_steps=4, **kw), resume=True, progress=False)
    assert len(straight.losses) == 4 and first.losses + second.losses == straight.losses
