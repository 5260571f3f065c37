"""`python -m harness train …`: short errors with the option or file named, and a run end to end."""

from __future__ import annotations

import json

import pytest
from train_testutil import write_formats

from harness.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out = capsys.readouterr()
    return (exited.value.code or 0), out.out, out.err


def short_error(err: str, *names: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for name in names:
        assert name in err, (name, err)


def test_config_is_required_and_presets_listed(capsys):
    code, _, err = run_cli(capsys, "train")
    assert code == 2
    short_error(err, "--config", "faithful-xl")


def test_unknown_setting_in_set(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--config", "cpu-tiny", "--set", "learning_rate=1")
    assert code == 2
    short_error(err, "--set", "learning_rate")


def test_bad_choice_names_the_allowed_values(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--config", "cpu-tiny", "--formats", str(tmp_path), "--set", "loss=kl")
    assert code == 2
    short_error(err, "loss", "distribution")


@pytest.mark.parametrize("value", ["0", "fast", "auto:0"])
def test_bad_eval_batch_size_in_set(capsys, tmp_path, value):
    code, _, err = run_cli(capsys, "train", "--config", "cpu-tiny", "--formats", str(tmp_path), "--set", f"eval_batch_size={value}")
    assert code == 2
    short_error(err, "eval_batch_size", "auto:N")


def test_data_error_names_file_record_field(capsys, tmp_path, t5_tokenizer):
    def edit(fmt, rows):
        rows[2]["topk_probs"][0][0] = 2.5

    data = write_formats(tmp_path / "f", t5_tokenizer, {"zero_shot_cot": 8}, edit=edit)
    code, _, err = run_cli(capsys, "train", "--config", "cpu-tiny", "--formats", str(data), "--output", str(tmp_path / "run"),
                           "--set", "formats=[zero_shot_cot]", "--set", "batch_sizes={zero_shot_cot: 4}", "--no-eval", "--quiet")
    assert code == 1
    short_error(err, "zero_shot_cot-00000.parquet", "record 2", "topk_probs")


def test_train_then_select(capsys, tmp_path, formats_dir):
    code, out, _ = run_cli(capsys, "train", "--config", "cpu-tiny", "--formats", str(formats_dir), "--output", str(tmp_path / "run"),
                           "--set", "max_steps=3", "--set", "precision=fp32", "--no-eval", "--quiet")
    assert code == 0 and "3 steps" in out
    code, out, _ = run_cli(capsys, "train", "select", str(tmp_path / "run"))
    assert code == 0
    assert json.loads((tmp_path / "run" / "selection.json").read_text())["choices"]["gsm8k-dev"]["checkpoint"] is None


def test_resume_of_a_finished_run_then_select_and_prune(capsys, tmp_path, formats_dir):
    from harness.train import checkpoints as ck

    args = ("train", "--config", "cpu-tiny", "--formats", str(formats_dir), "--output", str(tmp_path / "run"),
            "--set", "max_steps=3", "--set", "checkpoint_every_examples=1", "--no-eval", "--quiet")
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "3 steps" in out
    names = [p.name for p in ck.list_checkpoints(tmp_path / "run")]
    assert len(names) == 3
    code, out, _ = run_cli(capsys, *args, "--resume")
    assert code == 0 and "already complete" in out
    code, out, _ = run_cli(capsys, "train", "select", str(tmp_path / "run"))
    assert code == 0 and f"last: {names[-1]} of 1 candidate(s)" in out and "mas-dev: None of 0 candidate(s)" in out
    code, out, _ = run_cli(capsys, "train", "prune", str(tmp_path / "run"), "--keep", names[0])
    assert code == 0 and "removed those of 1 checkpoint(s)" in out
    assert [ck.has_weights(tmp_path / "run" / n) for n in names] == [True, False, True]  # the newest resumable stays
    code, _, err = run_cli(capsys, "train", "prune", str(tmp_path / "run"), "--keep", "checkpoint-1")
    assert code == 2
    short_error(err, "--keep", "checkpoint-1")
