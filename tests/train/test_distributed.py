"""Two processes (gloo, CPU) apply the same updates as one at the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in line]


@pytest.mark.parametrize("grad_accum", [3])  # 3 micro-batches over 2 processes: one padding slot
def test_two_processes_match_one(formats_dir, tmp_path, grad_accum):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "base": "corrected", "model": "tiny", "precision": "fp32", "formats_dir": str(formats_dir), "size": None,
        "batch_sizes": {"zero_shot_answer_only": 4, "zero_shot_cot": 4, "in_context_answer_only": 2, "in_context_cot": 2},
        "grad_accum": grad_accum, "max_steps": 4, "evaluate": False, "checkpoint_every_examples": 1000,
        "dropout": False,  # dropout masks depend on how micro-batches are laid out over processes
    }))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    one = subprocess.run([sys.executable, "-m", "harness", "train", "--config", str(config), "--output", str(tmp_path / "one"), "--quiet"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
                          "-m", "harness", "train", "--config", str(config), "--output", str(tmp_path / "two"), "--quiet"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "2 process(es)" in two.stdout + two.stderr
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == len(b) == 4
    # the first step starts from identical weights: only the all-reduce order differs
    assert b[0] == pytest.approx(a[0], rel=1e-6)
    assert b == pytest.approx(a, rel=1e-5)


def test_under_accelerate_launch_the_main_process_alone_writes_the_run_files(formats_dir, tmp_path):
    """2 gloo processes through `accelerate launch` (the launcher `reproduce` uses): run.json and
    done.json written once, no temporary file left, the header names both processes; a resume over
    the finished run returns at once on every process."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "base": "corrected", "model": "tiny", "precision": "tf32", "formats_dir": str(formats_dir), "size": None,
        "batch_sizes": {"zero_shot_answer_only": 4, "zero_shot_cot": 4, "in_context_answer_only": 2, "in_context_cot": 2},
        "grad_accum": 2, "max_steps": 3, "evaluate": False, "checkpoint_every_examples": None, "checkpoints_per_run": 2,
        "gradient_checkpointing": True,
    }))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
              "-m", "harness", "train", "--config", str(config), "--output", str(tmp_path / "run"), "--quiet"]
    first = subprocess.run(launch, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    run = tmp_path / "run"
    header = json.loads((run / "run.json").read_text())
    assert header["processes"] == 2 and header["distributed"] == "MULTI_CPU" and header["checkpointed_blocks"] > 0
    assert "plain fp32" in header["compute"]
    done = json.loads((run / "done.json").read_text())
    assert done["position"]["global_step"] == 3 and (run / done["checkpoint"] / "model").is_dir()
    assert not list(run.rglob(".*"))  # no temp file or half-renamed folder
    stamp = (run / "done.json").stat().st_mtime_ns
    launch[launch.index("--main_process_port") + 1] = str(_free_port())
    again = subprocess.run(launch + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("already complete") == 2  # each process returned before loading anything
    assert (run / "done.json").stat().st_mtime_ns == stamp
