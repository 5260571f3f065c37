"""`harness eval --batch-size`: a fixed size, `auto` or `auto:N`, refused early when malformed,
and a real `auto` run on CPU whose probe result lands in summary.json."""

from __future__ import annotations

import json
import time

import pytest

from harness.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    return (exited.value.code or 0), captured.out, captured.err


@pytest.mark.parametrize("value", ["0", "-1", "fast", "auto:x", "auto:0"])
def test_bad_batch_size_is_a_usage_error(capsys, tmp_path, value):
    started = time.monotonic()
    code, _, err = run_cli(capsys, "eval", "--model", "tiny-random-t5", f"--batch-size={value}", "--output-dir", str(tmp_path))
    assert code == 2 and time.monotonic() - started < 10  # before any model or lm-eval loads
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --batch-size: ") and "Traceback" not in err
    assert "positive integer, auto, or auto:N" in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args, names", [
    (["--max-batch-size", "0"], ["--max-batch-size", "> 0"]),
    (["--backend", "tpu"], ["--backend", "hf, vllm, auto"]),
])
def test_bad_max_batch_size_and_backend(capsys, tmp_path, args, names):
    code, _, err = run_cli(capsys, "eval", "--model", "tiny-random-t5", *args, "--output-dir", str(tmp_path))
    assert code == 2 and err.startswith("error: ") and all(n in err for n in names)


def test_auto_batch_size_probes_and_is_recorded(capsys, tmp_path):
    """lm-eval's probe really runs (at a small max_length: at 4,096 it would try 64 x 4,096 on CPU)."""
    code, out, err = run_cli(capsys, "eval", "--model", "tiny-random-t5", "--tasks", "svamp_cot_spec_zeroshot", "--limit", "2",
                             "--batch-size", "auto", "--max-batch-size", "2", "--max-length", "256", "--max-gen-toks", "8",
                             "--device", "cpu", "--output-dir", str(tmp_path), "--json")
    assert code == 0, err[-2000:]
    summary = json.loads(out)  # lm-eval's probe messages went to stderr, not into the JSON
    assert summary["tasks"]["svamp_cot_spec_zeroshot"]["n"] == 2
    assert summary["backend"] == "hf" and summary["batch_size"] == "auto"
    assert summary["batch_sizes"] == [2]  # the probe starts at --max-batch-size; 2 fits easily
    run_dir = next(tmp_path.glob("tiny-random-t5/*"))
    saved = json.loads((run_dir / "summary.json").read_text())
    config = saved["manifest"]["config"]
    assert (config["batch_size"], config["max_batch_size"], config["backend"]) == ("auto", 2, "hf")
    results = json.loads(next(run_dir.glob("results_*.json")).read_text())
    assert results["config"]["batch_size"] == "auto" and results["config"]["model_args"]["max_length"] == 256
    assert "svamp_cot_spec_zeroshot" in results["results"]
