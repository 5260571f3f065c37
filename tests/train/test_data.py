"""Bad training data fails before the model loads, naming the shard file, the record and the field."""

from __future__ import annotations

import math

import pytest
from train_testutil import tiny_config, write_formats

from harness.errors import DataError, UsageError
from harness.train.trainer import train


def _broken(tmp_path, tokenizer, edit, fmt="zero_shot_cot", **cfg):
    data = write_formats(tmp_path / "formats", tokenizer, {fmt: 12}, edit=edit)
    return tiny_config(data, tmp_path / "run", formats=[fmt], batch_sizes={fmt: 4}, **cfg)


def _set(row_index, **fields):
    def edit(fmt, rows):
        rows[row_index].update(fields)
    return edit


CASES = {
    "missing encoder_input": (_set(5, encoder_input=None), "record 5: field encoder_input is missing"),
    "missing topk_probs": (_set(2, topk_probs=None), "record 2: field topk_probs is missing"),
    "no aligned targets": (_set(7, student_ids=None, topk_ids=None, topk_probs=None, topk_mask=None), "record 7: field student_ids is missing"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_missing_fields(case, tmp_path, t5_tokenizer):
    edit, message = CASES[case]
    with pytest.raises(DataError, match=message) as err:
        train(_broken(tmp_path, t5_tokenizer, edit), progress=False)
    assert "zero_shot_cot-00000.parquet" in str(err.value)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # nothing started


def test_targets_longer_than_the_sequence(tmp_path, t5_tokenizer):
    def edit(fmt, rows):
        r = rows[3]
        r["topk_ids"] = r["topk_ids"] + [r["topk_ids"][-1]]
        r["topk_probs"] = r["topk_probs"] + [r["topk_probs"][-1]]
        r["topk_mask"] = r["topk_mask"] + [r["topk_mask"][-1]]

    with pytest.raises(DataError, match=r"record 3: field topk_ids has \d+ positions but the target has \d+ tokens"):
        train(_broken(tmp_path, t5_tokenizer, edit), progress=False)


def test_ids_outside_the_vocabulary(tmp_path, t5_tokenizer):
    def edit(fmt, rows):
        rows[4]["topk_ids"][1][2] = 40_000
        rows[4]["topk_mask"][1][2] = 1

    with pytest.raises(DataError, match="record 4: field topk_ids: id 40000 is outside the student's vocabulary"):
        train(_broken(tmp_path, t5_tokenizer, edit), progress=False)


def test_nan_probabilities(tmp_path, t5_tokenizer):
    def edit(fmt, rows):
        rows[6]["topk_probs"][0][1] = math.nan

    with pytest.raises(DataError, match="record 6: field topk_probs: nan is not a probability"):
        train(_broken(tmp_path, t5_tokenizer, edit), progress=False)


def test_tokenizer_guard_refuses_targets_aligned_to_other_ids(tmp_path, t5_tokenizer):
    def edit(fmt, rows):
        rows[8]["student_ids"] = [rows[8]["student_ids"][0] + 1] + rows[8]["student_ids"][1:]  # one id off

    with pytest.raises(DataError, match="record 8: field student_ids: the targets were aligned to other token ids"):
        train(_broken(tmp_path, t5_tokenizer, edit), progress=False)


def test_sample_matching_needs_no_aligned_targets(tmp_path, t5_tokenizer):
    cfg = _broken(tmp_path, t5_tokenizer, _set(7, student_ids=None, topk_ids=None, topk_probs=None, topk_mask=None),
                  loss="sample", max_steps=1)
    assert len(train(cfg, progress=False).losses) == 1


def test_too_few_records_for_one_step(tmp_path, t5_tokenizer):
    data = write_formats(tmp_path / "formats", t5_tokenizer, {"zero_shot_cot": 3})
    cfg = tiny_config(data, tmp_path / "run", formats=["zero_shot_cot"], batch_sizes={"zero_shot_cot": 4})
    with pytest.raises(UsageError, match="not enough records for one optimizer step"):
        train(cfg, progress=False)


def test_not_a_formats_folder(tmp_path):
    cfg = tiny_config(tmp_path / "nowhere", tmp_path / "run")
    with pytest.raises(UsageError, match="formats_dir: no such folder"):
        train(cfg, progress=False)
