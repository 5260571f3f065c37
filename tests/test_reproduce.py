"""The table runner's plan and its checks: the rehearsal plans the paper profile's steps exactly
(sizes and limits aside), teacher data and models are checked before any work, nox picks the
CUDA lock and the paper profile on a GPU node. The rehearsal itself runs in tests/test_rehearsal.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.reproduce import Reproduction, _waves, pick_profile, profile

ROOT = Path(__file__).resolve().parent.parent


def _job(tmp_path, table="table1", name="cpu", **kw):
    prof = profile(name, 8) if name == "paper" else profile(name)
    return Reproduction(table, prof, tmp_path / "work", tmp_path / "reports", Path("../shared/data"), **kw)


@pytest.mark.parametrize("table", ["table1", "table2", "table3", "figures"])
def test_the_rehearsal_plans_the_paper_profiles_steps(tmp_path, table):
    folder = tmp_path / "pickles"
    folder.mkdir()
    paper = _job(tmp_path, table, "paper", authors_formats=folder)
    rehearsal = _job(tmp_path, table, "rehearsal", authors_formats=folder)
    assert paper.graph() == rehearsal.graph()
    stages = [g[0] for g in paper.graph()]
    assert stages[0] == "formats" and "train" in stages and "eval" in stages
    # ... and only sizes, limits and the process count differ
    assert [s.limit for s in paper.steps() if s.stage == "eval"] == [None] * stages.count("eval")
    assert all(s.limit is not None for s in rehearsal.steps() if s.stage == "eval")


def test_paper_training_uses_the_faithful_presets_and_the_launcher_per_size(tmp_path):
    job = _job(tmp_path, "table1", "paper", authors_formats=tmp_path)
    trains = {s.rows[0]: s for s in job.steps() if s.stage == "train"}
    assert {row: s.details["preset"] for row, s in trains.items()} == {f"flan-t5-{size}": f"faithful-{size}" for size in ("base", "large", "xl", "xxl")}
    assert trains["flan-t5-base"].launch == "accelerate launch: 8 GPU process(es), ddp"
    assert trains["flan-t5-xxl"].launch == "accelerate launch: 8 GPU process(es), fsdp"
    models = {s.model.name for s in job.steps() if s.stage == "eval" and s.model.train_key is None}
    assert models == {f"google/flan-t5-{size}" for size in ("base", "large", "xl", "xxl")}
    one_gpu = Reproduction("table1", profile("paper", 1), tmp_path / "w", tmp_path / "r", Path("."), authors_formats=tmp_path)
    assert {s.launch for s in one_gpu.steps() if s.stage == "train"} == {"accelerate launch: 1 GPU process(es), one process"}


def test_training_configs_are_built_through_the_train_stage(tmp_path):
    job = _job(tmp_path, "table1", "paper", authors_formats=tmp_path, overrides={"precision": "tf32"})
    step = next(s for s in job.steps() if s.key == "train flan-t5-xl distribution")
    config = step.make_job()
    assert config.model == "google/flan-t5-xl" and config.loss == "distribution" and config.variant == "faithful"
    assert config.precision == "tf32"  # --set reaches every run
    assert config.eval_tasks == ["gsm8k_cot_spec_dev", "mas_cot_spec_dev", "bbh_ao_spec", "bbh_cot_spec"]
    assert config.eval_limits == {"bbh_ao_spec": 10, "bbh_cot_spec": 10}  # the BBH slice of Fig. 3
    assert config.formats_dir == str(tmp_path / "work" / "formats")


def test_specialized_rows_evaluate_the_checkpoint_the_rule_picks(tmp_path):
    job = _job(tmp_path, "table1", "paper", authors_formats=tmp_path)
    spec = [s for s in job.steps() if s.stage == "eval" and s.model.train_key is not None]
    assert spec and {s.model.rule for s in spec} == {"mas-dev"}
    job = _job(tmp_path, "table1", "paper", authors_formats=tmp_path, select="gsm8k-dev")
    assert {s.model.rule for s in job.steps() if s.stage == "eval" and s.model.train_key} == {"gsm8k-dev"}
    table3 = _job(tmp_path, "table3", "paper", authors_formats=tmp_path)
    assert {s.model.rule for s in table3.steps() if s.stage == "eval"} == {"gsm8k-dev", "mas-dev"}


def test_asdiv_and_svamp_are_also_scored_on_their_clean_split(tmp_path):
    job = _job(tmp_path, "table1", "paper", authors_formats=tmp_path)
    clean = [s for s in job.steps() if s.split_mode == "clean"]
    assert clean and all(s.tasks == ("asdiv_cot_spec", "svamp_cot_spec") for s in clean)


def test_given_checkpoints_are_evaluated_instead_of_trained(tmp_path):
    job = _job(tmp_path, "table1", "paper", authors_formats=tmp_path, checkpoints={"flan-t5-xl": tmp_path / "xl-spec"})
    assert "train flan-t5-xl distribution" not in [s.key for s in job.steps()]
    assert str(tmp_path / "xl-spec") in {s.model.name for s in job.steps() if s.stage == "eval"}


def test_teacher_data_must_be_named_outside_the_cpu_profile(tmp_path):
    with pytest.raises(UsageError, match="--authors-formats DIR .* or --teacher-config FILE"):
        _job(tmp_path, "table1", "paper").check()
    default = tmp_path / "teacher.yaml"
    default.write_text("teacher:\n  kind: default\n")
    with pytest.raises(UsageError, match="pipeline-check teacher"):
        _job(tmp_path, "table1", "rehearsal", teacher_config=default).check()


def test_missing_models_are_named_with_the_command_that_fetches_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(UsageError) as err:
        _job(tmp_path, "table1", "paper", authors_formats=tmp_path).check()
    message = str(err.value)
    assert "google/flan-t5-base" in message and "google/flan-t5-xxl" in message
    assert "python -m harness models download --profile paper --table table1" in message
    assert len(message.splitlines()) <= 3


def test_cpu_profile_plan(tmp_path):
    job = _job(tmp_path)
    assert [s.stage for s in job.steps()][:3] == ["teacher", "align", "formats"]
    train = next(s for s in job.steps() if s.stage == "train")
    assert train.launch == "python: 1 process" and train.make_job().model == "tiny"


def test_eval_steps_run_in_waves_between_training_runs(tmp_path):
    steps = _job(tmp_path, "table1", "paper", authors_formats=tmp_path).row_steps("flan-t5-base")
    assert [[s.stage for s in wave] for wave in _waves(steps)] == [["eval"] * 3, ["train"], ["eval"] * 3]


def test_unknown_table_and_profile_are_refused(tmp_path):
    with pytest.raises(UsageError, match="table"):
        _job(tmp_path, "table9")
    with pytest.raises(UsageError, match="--profile"):
        pick_profile("gpu")


def test_auto_picks_paper_on_a_gpu_node(monkeypatch):
    monkeypatch.setenv("SPEC_GPU_COUNT", "8")
    assert pick_profile("auto") == "paper" and profile("paper").processes == 8
    monkeypatch.setenv("SPEC_GPU_COUNT", "0")
    assert pick_profile("auto") == "cpu"


class _Session:
    def __init__(self, *posargs):
        self.posargs, self.installs, self.runs, self.name = list(posargs), [], [], "reproduce-table1"

    def install(self, *args):
        self.installs.append(args)

    def run(self, *args, env=None, **kw):
        self.runs.append((args, env))


@pytest.mark.parametrize("gpus, lock", [("8", "containers/requirements-cuda.lock"), ("0", "containers/requirements-cpu.lock")])
def test_nox_installs_the_cuda_lock_on_a_gpu_node_and_leaves_the_hub_alone(monkeypatch, noxfile, gpus, lock):
    nox_module = noxfile
    monkeypatch.setenv("SPEC_GPU_COUNT", gpus)
    session = _Session()
    nox_module._reproduce(session, "table1")
    assert any(lock in args for args in session.installs)
    (args, env), = session.runs
    assert args[:4] == ("python", "-m", "harness", "reproduce") and "HF_HUB_OFFLINE" not in env
