"""Bad training data fails before the model loads, naming the shard file, the record and the field."""

from __future__ import annotations

import math
import re

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


# --- decoder-only students ------------------------------------------------------------------------


def test_guard_refuses_t5_aligned_targets_for_a_gpt2_student_before_the_model_loads(tmp_path, formats_dir, monkeypatch):
    """T5-aligned formats (student_ids are T5 ids) given to the tiny GPT-2: one line naming the
    shard, the record and the field, and no weights loaded."""
    import harness.train.student as student

    monkeypatch.setattr(student, "load_student", lambda *a, **k: pytest.fail("the model loaded before the guard refused"))
    cfg = tiny_config(formats_dir, tmp_path / "run", model="tiny-gpt2")
    with pytest.raises(DataError) as err:
        train(cfg, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert re.search(r"-00000\.parquet: record 0: field student_ids: the targets were aligned to other token ids than the training "
                     r"tokenizer gives .*align with tiny-gpt2's tokenizer$", message), message
    assert not (tmp_path / "run").exists()  # nothing written


def test_gpt2_student_trains_on_targets_aligned_to_its_tokenizer(tmp_path, gpt2_formats_dir):
    cfg = tiny_config(gpt2_formats_dir, tmp_path / "run", model="tiny-gpt2", formats=["zero_shot_cot"],
                      batch_sizes={"zero_shot_cot": 4}, max_steps=2)
    result = train(cfg, progress=False)
    assert len(result.losses) == 2 and all(math.isfinite(x) for x in result.losses)
    assert result.header["head"] == "logits" and result.header["chat_template"] is False


def _long_prompt(row_index, words):
    def edit(fmt, rows):
        rows[row_index]["encoder_input"] = "word " * words + rows[row_index]["encoder_input"]
    return edit


def test_prompt_and_target_beyond_the_students_positions_are_refused(tmp_path, gpt2_tokenizer, monkeypatch):
    import harness.train.student as student

    data = write_formats(tmp_path / "formats", gpt2_tokenizer, {"zero_shot_cot": 12}, edit=_long_prompt(6, 1100))
    cfg = tiny_config(data, tmp_path / "run", model="tiny-gpt2", formats=["zero_shot_cot"], batch_sizes={"zero_shot_cot": 4})
    monkeypatch.setattr(student, "load_student", lambda *a, **k: pytest.fail("the model loaded before the check"))
    with pytest.raises(DataError, match=r"zero_shot_cot-00000\.parquet: record 6: field encoder_input: the prompt \(11\d\d tokens\) "
                                        r"and the target \(\d+\) need \d+ positions, the student has 1024; set max_source_tokens"):
        train(cfg, progress=False)


def test_max_source_tokens_keeps_the_prompts_last_tokens(tmp_path, gpt2_tokenizer):
    data = write_formats(tmp_path / "formats", gpt2_tokenizer, {"zero_shot_cot": 12}, edit=_long_prompt(2, 1100))
    cfg = tiny_config(data, tmp_path / "run", model="tiny-gpt2", formats=["zero_shot_cot"], batch_sizes={"zero_shot_cot": 4},
                      max_source_tokens=700, epochs=3, max_steps=3)
    assert len(train(cfg, progress=False).losses) == 3
    from harness.train.data import Collator, load_formats

    records = load_formats(data, ["zero_shot_cot"])["zero_shot_cot"]
    batch = Collator(gpt2_tokenizer, seq2seq=False, max_source_tokens=700)(records, [2], distribution=True)
    assert batch.prompt_width == 700 and batch.input_ids.shape[1] < 1024
    question = records.table.column("encoder_input")[2].as_py()
    assert gpt2_tokenizer.decode(batch.input_ids[0, :700]).endswith(question[-40:] + "\n")  # the end of the prompt is kept


def test_gpt2_prompt_then_target_ids_are_the_ids_of_the_joined_text(gpt2_formats_dir, gpt2_tokenizer):
    """The target is tokenized alone; with the default "\\n" separator that is exactly how GPT-2's BPE
    splits the joined text, so the student learns the tokenization it generates with."""
    from harness.train.data import Collator, load_formats

    records = load_formats(gpt2_formats_dir, ["zero_shot_cot", "in_context_cot", "zero_shot_answer_only"])
    for sep, joined_equal in (("\n", True), (" ", False)):
        collate = Collator(gpt2_tokenizer, seq2seq=False, prompt_separator=sep)
        same = []
        for recs in records.values():
            for prompt, target in zip(recs.table.column("encoder_input").to_pylist(), recs.table.column("decoder_target").to_pylist()):
                split = collate.source_ids([prompt])[0] + collate.target_ids([target])[0]
                same.append(split == gpt2_tokenizer(prompt + sep + target)["input_ids"])
        assert all(same) if joined_equal else not any(same)
