"""The table runner: its plan per profile, and a half-finished run resumed without redoing work.

Stage commands are replaced by a fake that writes what each real command would leave behind, so
the orchestration logic (what is skipped, what is rerun, which cells come out) runs in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.reproduce import Reproduction, profile


class FakeStages:
    """Records stage commands and fakes their outputs; can fail once at a chosen stage."""

    def __init__(self, fail_at: str | None = None):
        self.calls: list[list[str]] = []
        self.fail_at = fail_at

    def __call__(self, job: Reproduction, args: list[str], done: bool, what: str) -> None:
        job.planned.append(("done: " if done else "") + " ".join(args))
        if done:
            return
        if self.fail_at and what.startswith(self.fail_at):
            self.fail_at = None
            raise UsageError(f"reproduce: {what} failed (exit 1)")
        self.calls.append(args)
        cmd = args[0]
        opt = lambda name: args[args.index(name) + 1]  # noqa: E731
        if cmd == "teacher":
            out = Path(opt("--output")); out.mkdir(parents=True, exist_ok=True); (out / "stats.json").write_text("{}")
        elif cmd == "formats":
            out = Path(opt("--output")); out.mkdir(parents=True, exist_ok=True); (out / "stats.json").write_text("{}")
        elif cmd == "train":
            run = Path(opt("--output"))
            sets = dict(a.split("=", 1) for a in args[1:] if "=" in a and not a.startswith("-"))
            eval_tasks = json.loads(sets["eval_tasks"])
            for examples, dev in ((150, (10.0, 20.0)), (300, (30.0, 10.0))):
                ckpt = run / f"checkpoint-{examples:09d}"
                (ckpt / "model").mkdir(parents=True, exist_ok=True)
                (ckpt / "trainer_state.json").write_text(json.dumps({"examples": examples}))
                (ckpt / "eval" / "model" / "t").mkdir(parents=True, exist_ok=True)
                (ckpt / "eval" / "model" / "t" / "summary.json").write_text(json.dumps(
                    {"tasks": {t: {"acc_faithful": dev[0], "n": 5} for t in eval_tasks}, "manifest": {"config": {"limit": 5}}}))
                with open(run / "metrics.jsonl", "a") as f:
                    for task, value in zip(("gsm8k_cot_spec_dev", "mas_cot_spec_dev"), dev):
                        f.write(json.dumps({"kind": "eval", "checkpoint": ckpt.name, "examples": examples, "task": task, "value": value}) + "\n")
            (run / "config.json").write_text("{}")
        elif cmd == "eval":
            tasks = opt("--tasks").split(",")
            folder = Path(opt("--output-dir")) / "m" / "t"
            folder.mkdir(parents=True, exist_ok=True)
            summary = {"model": opt("--model"), "tasks": {}, "bbh": {}, "manifest": {"config": {"limit": 5}}}
            for task in tasks:
                if task.startswith("bbh"):
                    summary["bbh"][task] = {"acc_faithful": {"mean_27": 12.0, "mean_23": 12.0}}
                    for sub in ("date_understanding", "snarks"):
                        summary["tasks"][f"{task}_{sub}"] = {"acc_faithful": 12.0, "n": 1}
                else:
                    summary["tasks"][task] = {"acc_faithful": 20.0, "n": 5}
                    if task.startswith("mas"):
                        for member in ("multiarith", "asdiv", "svamp"):
                            summary["tasks"][task.replace("mas", member, 1)] = {"acc_faithful": 20.0, "n": 5}
            (folder / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def fake(monkeypatch):
    stages = FakeStages()
    monkeypatch.setattr(Reproduction, "_run", lambda self, args, done, what: stages(self, args, done, what))
    return stages


def _job(tmp_path, table="table1", name="cpu", **kw):
    return Reproduction(table, profile(name), tmp_path / "work", tmp_path / "reports", Path("../shared/data"), log=lambda m: None, **kw)


def test_table1_cpu_chain_then_a_rerun_does_nothing(tmp_path, fake):
    cells = _job(tmp_path).table1()
    kinds = [c[0] for c in fake.calls]
    assert kinds[:4] == ["teacher", "align", "formats", "train"]
    assert kinds.count("eval") == 4  # two models x (math limit, BBH limit)
    assert {(c["row"], c["column"]) for c in cells} == {(r, col) for r in ("flan-t5-base", "flan-t5-base specialized")
                                                       for col in ("gsm8k", "multiarith", "asdiv", "svamp", "bbh_ao", "bbh_cot")}
    before = len(fake.calls)
    again = _job(tmp_path).table1()
    assert len(fake.calls) == before  # everything cached or complete
    assert again == cells


def test_a_run_killed_half_way_resumes_where_it_stopped(tmp_path, monkeypatch):
    stages = FakeStages(fail_at="train")
    monkeypatch.setattr(Reproduction, "_run", lambda self, args, done, what: stages(self, args, done, what))
    with pytest.raises(UsageError, match="train flan-t5-base"):
        _job(tmp_path).table1()
    assert [c[0] for c in stages.calls] == ["teacher", "align", "formats"]
    _job(tmp_path).table1()
    assert [c[0] for c in stages.calls][3:5] == ["train", "eval"]  # teacher, align, formats not redone
    assert [c[0] for c in stages.calls].count("teacher") == 1


def test_table3_uses_the_checkpoint_each_dev_set_selects(tmp_path, fake):
    cells = _job(tmp_path, "table3").table3()
    models = {c["row"]: c["model"] for c in cells}
    assert models["flan-t5-base gsm8k-dev"].endswith("checkpoint-000000300/model")
    assert models["flan-t5-base mas-dev"].endswith("checkpoint-000000150/model")
    assert {c["protocol"]["selection"] for c in cells} == {"gsm8k_dev", "mas_dev"}


def test_paper_profile_plan_uses_the_hub_models_and_faithful_presets(tmp_path):
    job = _job(tmp_path, "table1", "paper", dry_run=True)
    job.run()
    plan = "\n".join(job.planned)
    for size in ("base", "large", "xl", "xxl"):
        assert f"--config faithful-{size}" in plan and f"--model google/flan-t5-{size}" in plan
    assert "--limit" not in plan and "teacher sample" in plan
    evals = [line for line in job.planned if line.startswith("python -m harness eval ")]
    trains = [line for line in job.planned if line.startswith("python -m harness train ")]
    assert evals and all(line.endswith("--batch-size auto --backend auto") for line in evals)
    assert trains and all('--set eval_batch_size="auto"' in line for line in trains)


def test_cpu_profile_commands_keep_batch_size_8_and_no_backend_flag(tmp_path, fake):
    _job(tmp_path).table1()
    evals = [c for c in fake.calls if c[0] == "eval"]
    assert evals and all(c[c.index("--batch-size") + 1] == "8" and "--backend" not in c for c in evals)
    assert not any("eval_batch_size" in a for c in fake.calls for a in c)


def test_given_checkpoints_are_evaluated_instead_of_trained(tmp_path):
    job = _job(tmp_path, "table1", "paper", dry_run=True, checkpoints={"flan-t5-xl": Path("/models/xl-spec")},
               authors_formats=Path("/data/processed"))
    job.run()
    plan = "\n".join(job.planned)
    assert "--model /models/xl-spec" in plan and "faithful-xl" not in plan
    assert "formats import-authors /data/processed" in plan and "teacher sample" not in plan


def test_unknown_table_is_refused(tmp_path):
    with pytest.raises(UsageError, match="table"):
        _job(tmp_path, "table9")


def test_figures_trains_sample_matching_and_format_only_runs(tmp_path, fake):
    job = _job(tmp_path, "figures")
    curves, fig4 = job.curves(), job.fig4_points()
    runs = [c[c.index("--output") + 1] for c in fake.calls if c[0] == "train"]
    assert [Path(r).name for r in runs] == ["flan-t5-base-distribution", "flan-t5-base-sample",
                                            "flan-t5-base-distribution-in_context", "flan-t5-base-distribution-zero_shot"]
    in_context_run = next(c for c in fake.calls if c[0] == "train" and c[c.index("--output") + 1].endswith("in_context"))
    assert '--set' in in_context_run and 'formats=["in_context_answer_only", "in_context_cot"]' in in_context_run
    assert {c["matching"] for c in curves} == {"distribution", "sample"} and {c["task"] for c in curves} == {"gsm8k", "mas"}
    assert {(p["train_format"], p["test_format"]) for p in fig4} == {(a, b) for a in ("in_context", "zero_shot") for b in ("in_context", "zero_shot")}
    assert sorted({p["examples"] for p in fig4}) == [0, 150, 300]  # the start model, then each checkpoint
    assert sorted({c["examples"] for c in curves}) == [0, 150, 300]
