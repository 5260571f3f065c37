"""Chat templates for decoder-only students: the prompt as a user turn, the target as the assistant
turn ended by the template's end of turn; refused where the template cannot do that."""

from __future__ import annotations

import json

import pytest
import torch
from train_testutil import tiny_config

from harness.errors import UsageError
from harness.train.chat import ChatWrapping
from harness.train.data import IGNORE, Collator, check_records, load_formats
from harness.train.trainer import train

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def chat_tokenizer(folder):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    return tok


@pytest.fixture(scope="module")
def chat_gpt2(tiny_gpt2, tmp_path_factory):
    """The tiny GPT-2 with ChatML turn markers added (embeddings resized) and a template."""
    from transformers import AutoModelForCausalLM

    from harness.model_marker import write_marker

    folder = tmp_path_factory.mktemp("chat-gpt2")
    tok = chat_tokenizer(tiny_gpt2)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    write_marker(folder, "test chat gpt2")
    return folder


def test_the_prompt_is_a_user_turn_and_the_target_ends_the_assistant_turn(gpt2_formats_dir, tiny_gpt2):
    tok = chat_tokenizer(tiny_gpt2)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    chat = ChatWrapping(tok)
    records = load_formats(gpt2_formats_dir, ["zero_shot_cot"])["zero_shot_cot"]
    row = records.table.slice(0, 1).to_pylist()[0]
    assert chat.end_id(row["encoder_input"] + "\n", row["decoder_target"]) == end
    collate = Collator(tok, seq2seq=False, chat=chat, end_id=end)
    targets = collate.target_ids(records.table.column("decoder_target").to_pylist())
    assert check_records(records, targets, need_targets=True, vocab_size=len(tok)) == 4  # the aligned ids still match
    batch = collate(records, [0, 1, 2], distribution=True)
    for i in range(3):
        row = records.table.slice(i, 1).to_pylist()[0]
        user = row["encoder_input"] + "\n"
        prompt = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
        assert collate.prompt_text(row["encoder_input"]) == prompt
        assert prompt.startswith("<|im_start|>user\n" + user) and prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
        p = tok(prompt)["input_ids"]
        t = tok(row["decoder_target"], add_special_tokens=False)["input_ids"]
        n = len(t) + 1
        assert batch.labels[i, :n].tolist() == t + [end] and (batch.labels[i, n:] == IGNORE).all()
        # inputs: the prompt then the target, right-aligned on the prompt column
        keep = batch.attention_mask[i].bool()
        assert batch.input_ids[i][keep].tolist() == p + t
        assert batch.input_ids[i, batch.prompt_width - len(p) : batch.prompt_width].tolist() == p
        # the end-of-turn row is one-hot for the teacher too
        assert batch.topk_ids[i, n - 1, 0] == end and batch.topk_probs[i, n - 1, 0] == 1.0


def test_a_tokenizer_without_a_template_is_refused(gpt2_tokenizer):
    with pytest.raises(UsageError, match="chat_template: the student's tokenizer .* has no chat template; set chat_template: false"):
        ChatWrapping(gpt2_tokenizer)


def test_a_template_that_rewrites_the_assistant_turn_is_refused(tiny_gpt2):
    tok = chat_tokenizer(tiny_gpt2)
    tok.chat_template = CHATML.replace("{{ m['content'] }}", "{% if m['role'] == 'assistant' %}<think></think>{% endif %}{{ m['content'] }}")
    with pytest.raises(UsageError, match=r"does not render the assistant turn as the target right after its generation prompt "
                                         r"\(it renders '<think></think>The answer"):
        ChatWrapping(tok).end_id("Q: 2 + 2?\n", "The answer is 4")


def test_a_template_that_ends_the_turn_with_plain_text_ends_the_target_with_eos(tiny_gpt2):
    tok = chat_tokenizer(tiny_gpt2)
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    assert ChatWrapping(tok).end_id("Q: 2 + 2?\n", "The answer is 4") == tok.eos_token_id


@pytest.mark.parametrize("changes, message", [
    ({"chat_template": True, "max_source_tokens": 512}, "chat_template, max_source_tokens: not together"),
    ({"chat_template": True, "model_type": "seq2seq"}, "chat_template: for decoder-only students"),
])
def test_config_refuses_chat_template_with(changes, message, tmp_path):
    with pytest.raises(UsageError, match=message):
        tiny_config(tmp_path, tmp_path / "run", **changes).check()


def test_a_t5_student_is_refused_before_the_model_loads(formats_dir, tmp_path, monkeypatch):
    import harness.train.student as student

    monkeypatch.setattr(student, "load_student", lambda *a, **k: pytest.fail("the model loaded"))
    with pytest.raises(UsageError, match="chat_template: for decoder-only students; this one is an encoder-decoder model"):
        train(tiny_config(formats_dir, tmp_path / "run", chat_template=True), progress=False)


def test_training_with_a_chat_template_marks_the_checkpoint_and_stops_generation_at_the_end_of_turn(chat_gpt2, gpt2_formats_dir, tmp_path):
    cfg = tiny_config(gpt2_formats_dir, tmp_path / "run", model=str(chat_gpt2), chat_template=True, formats=["zero_shot_cot"],
                      batch_sizes={"zero_shot_cot": 4}, max_steps=1)
    result = train(cfg, progress=False)
    assert len(result.losses) == 1 and torch.isfinite(torch.tensor(result.losses)).all()
    model_dir = result.checkpoints[-1] / "model"
    marker = json.loads((model_dir / "spec_harness_model.json").read_text())
    assert marker["chat_template"] is True and marker["pipeline_check"] is True
    end = chat_tokenizer(chat_gpt2).convert_tokens_to_ids("<|im_end|>")
    generation = json.loads((model_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [50256, end]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["chat_template"] is True
