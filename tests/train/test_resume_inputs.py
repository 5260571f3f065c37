"""A resumed run continues only on the data it started with, and survives a torn metrics log (issue 21)."""

from __future__ import annotations

import json
import shutil

import pytest
from train_testutil import tiny_config, write_formats

from harness.errors import ResumeError
from harness.train.trainer import train

COUNTS = {"zero_shot_answer_only": 8, "zero_shot_cot": 8}
FORMATS = {"formats": list(COUNTS), "batch_sizes": {"zero_shot_answer_only": 4, "zero_shot_cot": 4}, "epochs": 4}


def test_resume_over_replaced_formats_content_is_refused(tmp_path, t5_tokenizer):
    data = write_formats(tmp_path / "formats", t5_tokenizer, COUNTS, seed=0)
    train(tiny_config(data, tmp_path / "run", max_steps=2, checkpoint_every_examples=8, **FORMATS), progress=False)
    shutil.rmtree(data)
    write_formats(data, t5_tokenizer, COUNTS, seed=1)  # the same path, other records
    with pytest.raises(ResumeError, match="formats_content"):
        train(tiny_config(data, tmp_path / "run", max_steps=4, checkpoint_every_examples=8, **FORMATS), resume=True, progress=False)


def test_a_torn_metrics_line_is_dropped_on_resume(tmp_path, t5_tokenizer):
    data = write_formats(tmp_path / "formats", t5_tokenizer, COUNTS)
    run = tmp_path / "run"
    train(tiny_config(data, run, max_steps=2, checkpoint_every_examples=8, **FORMATS), progress=False)
    with open(run / "metrics.jsonl", "a") as log:
        log.write('{"kind": "train", "step": 3, "exam')  # killed mid-append
    result = train(tiny_config(data, run, max_steps=4, checkpoint_every_examples=8, **FORMATS), resume=True, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert result.position.global_step == 4 and [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4]
