"""Chat templates for decoder-only students (`chat_template: true`): the prompt is a user turn, the
target the assistant turn.

The user turn holds `encoder_input + prompt_separator` — the text the eval tasks render as their
prompt (e.g. `Q: …\\nLet's think step by step\\n`) — so training and `harness eval` with
lm-eval's `apply_chat_template` (which a checkpoint trained this way gets by default, through its
marker) show the model the same string. The prompt is rendered as text with the generation prompt
and encoded as lm-eval encodes it (special tokens added unless the text already starts with BOS).
The target is tokenized alone, exactly as without a template (so aligned `student_ids` still
match), and ends with the template's end-of-turn token (`<|im_end|>`, `<|eot_id|>`) when the
template closes the assistant turn with a special token, else with EOS.
"""

from __future__ import annotations

from harness.errors import UsageError


class ChatWrapping:
    def __init__(self, tokenizer):
        if not getattr(tokenizer, "chat_template", None):
            raise UsageError(f"chat_template: the student's tokenizer ({getattr(tokenizer, 'name_or_path', '?')}) has no chat template; "
                             "set chat_template: false")
        self.tok = tokenizer

    def _render(self, messages: list[dict], generation_prompt: bool) -> str:
        return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    def prompt_text(self, user: str) -> str:
        return self._render([{"role": "user", "content": user}], True)

    def prompt_ids(self, texts: list[str]) -> list[list[int]]:
        rendered = [self.prompt_text(t) for t in texts]
        bos = self.tok.bos_token
        # lm-eval's rule: no special tokens added when the rendered text already starts with BOS
        plain = [t for t in rendered if not (bos and t.startswith(bos))]
        if len(plain) not in (0, len(rendered)):
            return [self.tok(t, add_special_tokens=not (bos and t.startswith(bos)))["input_ids"] for t in rendered]
        return self.tok(rendered, add_special_tokens=bool(plain))["input_ids"]

    def end_id(self, user: str, target: str) -> int:
        """The token that ends the assistant turn, read from the template on one (prompt, target)
        pair; UsageError when the template does not put the target right after the generation
        prompt (then what the model is trained on is not what the template would show)."""
        prompt = self.prompt_text(user)
        full = self._render([{"role": "user", "content": user}, {"role": "assistant", "content": target}], False)
        if not full.startswith(prompt + target):
            raise UsageError(f"chat_template: the student's template does not render the assistant turn as the target right after "
                             f"its generation prompt (it renders {full[len(prompt):len(prompt) + 60]!r}…); set chat_template: false")
        suffix = full[len(prompt) + len(target):]
        ids = self.tok(suffix, add_special_tokens=False)["input_ids"] if suffix else []
        special = set(self.tok.all_special_ids) | {i for i, t in getattr(self.tok, "added_tokens_decoder", {}).items() if t.special}
        if ids and ids[0] in special:
            return int(ids[0])
        if self.tok.eos_token_id is None:
            raise UsageError("the student's tokenizer has no EOS token; the targets end with one")
        return int(self.tok.eos_token_id)
