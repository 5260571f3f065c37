"""A decoder-only student through the same tasks, offline on the tiny random GPT-2: lm-eval's HF
causal backend, prompts longer than GPT-2's 1,024 positions (kept, left-truncated, counted), and
chat templates applied as the model was trained."""

from __future__ import annotations

import json
import shutil

import pytest

from harness.eval import EvalSetupError
from harness.eval.context import truncation_report
from harness.eval.run import EvalConfig, run

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def tiny_gpt2():
    from harness.tiny_gpt2 import build_tiny_gpt2

    return build_tiny_gpt2()


def _samples(summary, task):
    from pathlib import Path

    (path,) = Path(summary["output_dir"]).glob(f"samples_{task}_*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tiny_gpt2_is_gpt2_with_the_real_tokenizer(tiny_gpt2):
    from transformers import AutoConfig, AutoTokenizer

    from harness.eval.tiny import is_pipeline_check, resolve_model

    config = AutoConfig.from_pretrained(tiny_gpt2)
    assert config.model_type == "gpt2" and config.n_positions == 1024 and config.vocab_size == 50257
    assert AutoTokenizer.from_pretrained(tiny_gpt2)("The answer is 42.")["input_ids"] == [464, 3280, 318, 5433, 13]
    assert resolve_model("tiny-gpt2") == (str(tiny_gpt2), True) and is_pipeline_check(tiny_gpt2)


def test_long_prompts_are_left_truncated_by_lm_eval_and_counted(tmp_path, tiny_gpt2):
    """A BBH CoT prompt (~2,100 GPT-2 tokens) meets a 1,024-position student: lm-eval keeps the
    last 1,024 - max_gen_toks tokens, the run finishes, and summary.json says how many were cut."""
    warnings = []
    task = "bbh_cot_spec_geometric_shapes"
    summary = run(EvalConfig(model="tiny-gpt2", tasks=[task, "gsm8k_cot_spec_zeroshot"], limit=2, max_gen_toks=4, device="cpu",
                             output_dir=tmp_path), warn=warnings.append)
    assert summary["pipeline_check"] is True and summary["backend"] == "hf" and summary["chat_template"] is False
    context = summary["context"]
    assert context["max_length"] == 1024
    long = context["tasks"][task]
    assert long == {"prompts": 2, "truncated": 2, "longest_prompt": long["longest_prompt"], "prompt_limit": 1020}
    assert long["longest_prompt"] > 2000
    short = context["tasks"]["gsm8k_cot_spec_zeroshot"]
    assert short["truncated"] == 0 and short["longest_prompt"] < 200
    assert [w for w in warnings if "prompts are longer" in w] == [
        f"WARNING: 2 of 2 {task} prompts are longer than the 1020 tokens the model's context leaves them (max_length 1024); lm-eval "
        "kept their last 1020 tokens (the question and the latest demonstrations). summary.json: context."]
    for row in _samples(summary, task):  # the task's own prompt was kept (nothing rewritten), and generation ran
        assert row["arguments"]["gen_args_0"]["arg_0"] == row["doc"]["prompt"] and len(row["resps"][0]) == 1
    assert json.loads((tmp_path / "tiny-gpt2").glob("*/summary.json").__next__().read_text())["context"] == context


def test_truncation_report_counts_against_each_requests_generation_budget():
    class Chars:  # one token per character
        bos_token = None

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": list(text)}

    samples = {"t": [{"arguments": [("x" * 700, {"max_gen_toks": 256})]}, {"arguments": [("x" * 800, {"max_gen_toks": 256})]},
                     {"arguments": {"gen_args_0": {"arg_0": "x" * 800, "arg_1": {"max_gen_toks": 8}}}}]}
    report = truncation_report(samples, Chars(), 1024, seq2seq=False)
    assert report["tasks"]["t"] == {"prompts": 3, "truncated": 1, "longest_prompt": 800, "prompt_limit": 768}
    assert truncation_report(samples, Chars(), 1024, seq2seq=True)["tasks"]["t"]["truncated"] == 0  # the encoder takes max_length


def test_max_length_beyond_the_models_positions_is_refused(tmp_path, tiny_gpt2):
    with pytest.raises(EvalSetupError, match=r"^--max-length 2048: the model has 1024 positions; use at most 1024"):
        run(EvalConfig(model="tiny-gpt2", tasks=["gsm8k_cot_spec_zeroshot"], limit=1, max_length=2048, device="cpu", output_dir=tmp_path))
    assert not any(tmp_path.rglob("summary.json"))


def test_a_chat_template_on_a_model_without_one_is_refused(tmp_path, tiny_gpt2):
    with pytest.raises(EvalSetupError, match="apply_chat_template: the tokenizer of 'tiny-gpt2' has no chat template"):
        run(EvalConfig(model="tiny-gpt2", tasks=["gsm8k_cot_spec_zeroshot"], limit=1, apply_chat_template=True, device="cpu",
                       output_dir=tmp_path))


@pytest.fixture(scope="module")
def chat_checkpoint(tiny_gpt2, tmp_path_factory):
    """A model folder as `harness train` writes it with chat_template: true (marker included)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.model_marker import write_marker

    folder = tmp_path_factory.mktemp("chat") / "model"
    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    model.resize_token_embeddings(len(tok))
    model.generation_config.eos_token_id = [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    write_marker(folder, "specialized", pipeline_check=True, chat_template=True)
    return folder


def test_a_model_trained_with_a_chat_template_is_evaluated_with_the_same_prompt(tmp_path, chat_checkpoint):
    """The context lm-eval generates from is, character for character, the prompt the trainer built
    for the same question: the zero-shot CoT format's encoder input + separator, as a user turn."""
    from transformers import AutoTokenizer

    from harness.formats.render import render_record
    from harness.train.chat import ChatWrapping
    from harness.train.data import Collator

    task = "gsm8k_cot_spec_zeroshot"
    summary = run(EvalConfig(model=str(chat_checkpoint), tasks=[task], limit=2, max_gen_toks=4, device="cpu", output_dir=tmp_path),
                  warn=lambda m: None)
    assert summary["chat_template"] is True and summary["chat_template_from"] == "model marker (trained with chat_template)"
    assert summary["manifest"]["config"]["apply_chat_template"] is None  # what was asked; chat_template is what ran
    tok = AutoTokenizer.from_pretrained(chat_checkpoint)
    collate = Collator(tok, seq2seq=False, prompt_separator="\n", chat=ChatWrapping(tok))
    for row in _samples(summary, task):
        encoder_input, _ = render_record("zero_shot_cot", "corrected", row["doc"]["question"], "The answer is 1", [])
        context = row["arguments"]["gen_args_0"]["arg_0"]
        assert context == collate.prompt_text(encoder_input)
        assert context.startswith("<|im_start|>user\nQ: ") and context.endswith("<|im_end|>\n<|im_start|>assistant\n")
    # the option wins over the marker
    plain = run(EvalConfig(model=str(chat_checkpoint), tasks=[task], limit=1, max_gen_toks=4, device="cpu", output_dir=tmp_path,
                           apply_chat_template=False), warn=lambda m: None)
    assert plain["chat_template"] is False and plain["chat_template_from"] == "option"
    (row,) = _samples(plain, task)
    assert row["arguments"]["gen_args_0"]["arg_0"] == row["doc"]["prompt"]


def test_a_copied_checkpoint_keeps_its_chat_template(tmp_path, chat_checkpoint):
    from harness.eval.run import chat_template_choice

    copy = tmp_path / "renamed"
    shutil.copytree(chat_checkpoint, copy)
    assert chat_template_choice(EvalConfig(model=str(copy), tasks=[]), str(copy), seq2seq=False) == (
        True, "model marker (trained with chat_template)")
