"""The CLI's error convention: a user or data error prints one to three lines naming what is wrong
(the file, record and field, or the option and its allowed values) and exits non-zero (2 for a
bad option); `--debug` shows the traceback. Every path below is checked for its exit code, the
lines printed and the name they give."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run `python -m harness ARGS` in-process; (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    code = exited.value.code
    return (0 if code is None else code), captured.out, captured.err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def assert_short_error(err: str, *names: str) -> None:
    lines = error_lines(err)
    assert 1 <= len(lines) <= 3, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in err, (name, err)


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.startswith("spec-harness ") and "git " in out


# --- eval: cheap checks come before any model or task loading --------------------------------


@pytest.mark.parametrize(
    "args, code, names",
    [
        (["--tasks", "gsm8k_cot_spek"], 2, ["--tasks", "gsm8k_cot_spek", "gsm8k_cot_spec"]),  # with a suggestion
        (["--limit", "0"], 2, ["--limit", "0", "> 0"]),
        (["--limit", "-3"], 2, ["--limit", "-3"]),
        (["--batch-size", "0"], 2, ["--batch-size"]),
        (["--split-mode", "weird"], 2, ["--split-mode", "weird", "faithful", "clean"]),
        (["--base-prompt", "fancy"], 2, ["--base-prompt", "fancy", "complex"]),
        (["--device", "gpu0"], 2, ["--device", "gpu0", "cuda:N"]),
    ],
)
def test_eval_bad_options(capsys, args, code, names):
    got, _, err = run_cli(capsys, "eval", "--model", "tiny", *args)
    assert got == code
    assert_short_error(err, *names)


def test_trainer_evaluator_passes_its_batch_size_through(monkeypatch, tmp_path):
    from harness.eval.training import evaluate_for_training
    from harness.eval import run as eval_run

    seen = []
    monkeypatch.setattr(eval_run, "run", lambda cfg, warn: seen.append(cfg) or {"tasks": {}})
    evaluate_for_training(tmp_path / "ckpt" / "model", ["gsm8k_cot_spec_dev", "bbh_cot_spec"], {"bbh_cot_spec": 1}, "auto", 64)
    assert [(c.tasks, c.limit, c.batch_size, c.backend) for c in seen] == [
        (["gsm8k_cot_spec_dev"], None, "auto", "hf"), (["bbh_cot_spec"], 1, "auto", "hf")]


def test_eval_cuda_without_gpu_is_an_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: the missing-device error cannot happen here")
    code, _, err = run_cli(capsys, "eval", "--model", "tiny", "--device", "cuda:0")
    assert code == 1
    assert_short_error(err, "--device cuda:0", "no CUDA GPU")


def test_eval_output_dir_that_is_a_file_fails_before_generation(capsys, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    started = time.monotonic()
    code, _, err = run_cli(capsys, "eval", "--model", "tiny", "--output-dir", str(target))
    assert code == 1 and time.monotonic() - started < 30
    assert_short_error(err, "--output-dir", str(target), "not a folder")


def test_eval_unknown_model(capsys, tmp_path):
    code, _, err = run_cli(capsys, "eval", "--model", str(tmp_path / "no-such-model"), "--limit", "1", "--output-dir", str(tmp_path / "out"))
    assert code == 1
    assert_short_error(err, "--model", "no-such-model", "no such folder")
    empty = tmp_path / "empty-model"
    empty.mkdir()
    code, _, err = run_cli(capsys, "eval", "--model", str(empty), "--limit", "1", "--output-dir", str(tmp_path / "out"))
    assert code == 1
    assert_short_error(err, "--model", "empty-model", "config.json")
    assert not any((tmp_path / "out").rglob("*.json"))  # nothing written


def test_eval_data_checksum_mismatch_warns_or_fails_when_strict(capsys, tmp_path, data_dir, monkeypatch):
    from harness.eval import run as eval_run

    copy = tmp_path / "data"
    copy.mkdir()
    for name in os.listdir(data_dir):
        (copy / name).symlink_to(data_dir / name)
    (copy / "svamp").unlink()
    (copy / "svamp").mkdir()
    (copy / "svamp" / "SVAMP.json").write_bytes((data_dir / "svamp" / "SVAMP.json").read_bytes() + b" ")
    monkeypatch.setenv("SPEC_DATA_DIR", str(copy))
    code, _, err = run_cli(capsys, "eval", "--model", "tiny", "--tasks", "svamp_cot_spec", "--strict-data", "--output-dir", str(tmp_path / "o"))
    assert code == 1
    assert_short_error(err, "svamp/SVAMP.json", "--strict-data")
    warnings = []
    cfg = eval_run.EvalConfig(model="tiny", tasks=["svamp_cot_spec"], output_dir=tmp_path / "o")
    status = eval_run.prepare(cfg, warn=warnings.append)
    assert status["data_status"]["svamp/SVAMP.json"] == "mismatch"
    assert len(warnings) == 1 and "svamp/SVAMP.json" in warnings[0] and "WARNING" in warnings[0]


def test_debug_shows_the_traceback(capsys):
    code, _, err = run_cli(capsys, "eval", "--model", "tiny", "--limit", "0", "--debug")
    assert code == 2 and "Traceback" in err and "UsageError" in err


# --- score -----------------------------------------------------------------------------------


def _jsonl(path: Path, rows: list, blank_lines: int = 0) -> Path:
    text = "\n" * blank_lines + "".join(json.dumps(r) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    return path


def test_score_empty_file(capsys, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for suite in ("bbh_cot", "gsm8k"):
        code, out, err = run_cli(capsys, "score", "--suite", suite, str(empty))
        assert code == 1 and out == ""
        assert_short_error(err, str(empty), "no generations")


def test_score_names_the_real_line_after_blank_lines(capsys, tmp_path):
    path = _jsonl(tmp_path / "g.jsonl", [{"task": "gsm8k", "prediction": "1", "target": "1"}, {"task": "gsm8k"}], blank_lines=3)
    code, _, err = run_cli(capsys, "score", "--suite", "gsm8k", str(path))
    assert code == 1
    assert_short_error(err, str(path), "line 5", "prediction")


def test_score_non_utf8_names_file_and_line(capsys, tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"task": "gsm8k", "prediction": "1", "target": "1"}\n{"task": "gsm8k", "prediction": "caf\xe9", "target": "1"}\n')
    code, _, err = run_cli(capsys, "score", "--suite", "gsm8k", str(path))
    assert code == 1
    assert_short_error(err, str(path), "line 2", "UTF-8")


def test_score_suite_that_does_not_match_the_file(capsys, tmp_path):
    path = _jsonl(tmp_path / "bbh.jsonl", [{"task": "date_understanding", "prediction": "So the answer is (A).", "target": "(A)"}])
    code, _, err = run_cli(capsys, "score", "--suite", "gsm8k", str(path))
    assert code == 1
    assert_short_error(err, "line 1", "date_understanding", "BBH subtask", "gsm8k")


def test_score_recorded_folder_with_the_other_protocol(capsys, data_dir):
    folder = data_dir / "bbh/code-davinci-002-outputs/code-davinci-002-direct"
    code, _, err = run_cli(capsys, "score", "--suite", "bbh_cot", "--rule", "bbh", str(folder))
    assert code == 2
    assert_short_error(err, "--suite bbh_cot", "answer-only", "bbh_ao")


@pytest.mark.parametrize(
    "args, names",
    [
        (["--suite", "gsm8k", "--rule", "bbh"], ["--rule bbh", "gsm8k"]),
        (["--suite", "gsm8k", "--rule", "lenient"], ["--rule", "lenient", "faithful, corrected, bbh"]),
        (["--suite", "mmlu"], ["--suite", "mmlu", "bbh_cot"]),
    ],
)
def test_score_bad_options(capsys, tmp_path, args, names):
    path = _jsonl(tmp_path / "g.jsonl", [{"task": "gsm8k", "prediction": "1", "target": "1"}])
    code, _, err = run_cli(capsys, "score", *args, str(path))
    assert code == 2
    assert_short_error(err, *names)


# --- data download ---------------------------------------------------------------------------


def test_data_download_unreachable_source(capsys, tmp_path, monkeypatch):
    from harness.data import download as D

    entry = next(e for e in D.manifest() if e.file == "svamp/SVAMP.json")
    unreachable = D.ManifestEntry(entry.file, (tmp_path / "nowhere" / "SVAMP.json").as_uri(), entry.sha256, entry.size)
    monkeypatch.setattr(D, "manifest", lambda: [unreachable])
    code, _, err = run_cli(capsys, "data", "download", "--data-dir", str(tmp_path / "data"))
    assert code == 1
    assert_short_error(err, "svamp/SVAMP.json", "nowhere", "SPEC_DATA_DIR")
    assert not (tmp_path / "data" / "svamp" / "SVAMP.json").exists()


def test_data_download_unknown_prefix(capsys, tmp_path):
    code, _, err = run_cli(capsys, "data", "download", "--data-dir", str(tmp_path), "--only", "nope/")
    assert code == 2
    assert_short_error(err, "--only", "nope/", "gsm8k/")


# --- align run -------------------------------------------------------------------------------


@pytest.fixture
def teacher_jsonl(tmp_path, capsys):
    path = tmp_path / "teacher.jsonl"
    code, _, err = run_cli(capsys, "align", "synth", str(path), "--n", "6")
    assert code == 0, err
    return path


@pytest.mark.parametrize(
    "args, names",
    [
        (["--workers", "-3"], ["--workers", "-3"]),
        (["--chunk-size", "0"], ["--chunk-size", "0"]),
        (["--mode", "fuzzy"], ["--mode", "fuzzy", "exact", "faithful"]),
        (["--k", "0"], ["--k", "0"]),
        (["--max-mismatch", "1.5"], ["--max-mismatch", "1.5"]),
    ],
)
def test_align_run_bad_options(capsys, tmp_path, teacher_jsonl, args, names):
    code, _, err = run_cli(capsys, "align", "run", str(teacher_jsonl), str(tmp_path / "out.jsonl"), *args)
    assert code == 2
    assert error_lines(err) and "Traceback" not in err
    for name in names:
        assert name in err, (name, err)
    assert not (tmp_path / "out.jsonl").exists()


def test_align_run_bad_row_names_file_line_and_field(capsys, tmp_path, teacher_jsonl):
    rows = teacher_jsonl.read_text(encoding="utf-8").splitlines()
    broken = json.loads(rows[2])
    broken["topk"] = broken["topk"][:-1]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(rows[:2] + [json.dumps(broken)] + rows[3:]) + "\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "align", "run", str(bad), str(tmp_path / "out.jsonl"), "--workers", "1", "--chunk-size", "1")
    assert code == 1
    assert_short_error(err, str(bad), "line 3", "topk")


def test_align_run_refuses_to_resume_with_other_settings(capsys, tmp_path, teacher_jsonl):
    out = tmp_path / "out.jsonl"
    code, _, err = run_cli(capsys, "align", "run", str(teacher_jsonl), str(out), "--mode", "exact", "--k", "5", "--workers", "1")
    assert code == 0, err
    before = out.read_bytes()
    code, _, err = run_cli(capsys, "align", "run", str(teacher_jsonl), str(out), "--mode", "faithful", "--k", "8", "--workers", "1")
    assert code == 1
    assert_short_error(err, str(out), "mode", "'exact' -> 'faithful'", "k: 5 -> 8", "start fresh")
    assert out.read_bytes() == before  # nothing appended
    code, _, err = run_cli(capsys, "align", "run", str(teacher_jsonl), str(out), "--mode", "exact", "--k", "5", "--workers", "1")
    assert code == 0 and out.read_bytes() == before  # same settings: resumes, nothing left to do


def test_align_run_refuses_an_output_it_did_not_write(capsys, tmp_path, teacher_jsonl):
    out = tmp_path / "foreign.jsonl"
    out.write_text('{"id": "x"}\n')
    code, _, err = run_cli(capsys, "align", "run", str(teacher_jsonl), str(out), "--workers", "1")
    assert code == 1
    assert_short_error(err, str(out), "no settings file")


def test_align_run_ctrl_c_is_one_message_and_resumes(tmp_path, teacher_jsonl):
    """A real SIGINT to a 2-process run: exit 130, a short message, no traceback; the rerun
    completes the file with no row lost or duplicated."""
    rows = teacher_jsonl.read_text(encoding="utf-8").splitlines()
    big = tmp_path / "big.jsonl"
    with open(big, "w", encoding="utf-8") as handle:
        for copy in range(700):  # ~4,200 samples: long enough to interrupt mid-run on 2 cores
            for line in rows:
                row = json.loads(line)
                row["id"] = f"{row['id']}#{copy}"
                handle.write(json.dumps(row) + "\n")
    total = len(rows) * 700
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "harness", "align", "run", str(big), str(out), "--workers", "2", "--chunk-size", "16"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not (out.exists() and out.stat().st_size > 0):
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail(f"the run ended before it could be interrupted: {proc.returncode}\n{proc.stderr.read()[-2000:]}")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "rerun the same command to resume" in err
    done = [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert 0 < len(done) < total and len(set(done)) == len(done)
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    ids = [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(ids) == total and len(set(ids)) == total


def test_align_run_refuses_a_regenerated_input(capsys, tmp_path, teacher_jsonl):
    out = tmp_path / "out.jsonl"
    assert run_cli(capsys, "align", "run", str(teacher_jsonl), str(out), "--workers", "1")[0] == 0
    assert run_cli(capsys, "align", "synth", str(teacher_jsonl), "--n", "6", "--seed", "7")[0] == 0  # same name, new data
    code, _, err = run_cli(capsys, "align", "run", str(teacher_jsonl), str(out), "--workers", "1")
    assert code == 1
    assert_short_error(err, str(out), "input_sha256")
