"""Prompts against the model's context: what lm-eval cut, recorded in summary.json.

lm-eval's HF (and vLLM) generation keeps a prompt's *last* tokens when it does not fit: a
decoder-only model gets `max_length - max_gen_toks` prompt tokens (GPT-2: 1,024 - 256 = 768),
an encoder-decoder model `max_length` (4,096 here for T5). The spec prompts are long (an 8-shot
`complex` GSM8K prompt is ~2,300 GPT-2 tokens, some BBH CoT prompts ~2,100), so a 1,024-position
student sees the question and the latest demonstrations only. `harness eval` keeps the task's own
prompt and lm-eval's left truncation (the question always survives; refusing would leave such
students no numbers at all), and says how many prompts were cut: per task in summary.json
(`context`) and as a warning. Models with a longer context (RoPE students: 32K and more) are never cut.
"""

from __future__ import annotations

from typing import Any

DEFAULT_MAX_LENGTH = 2048  # lm-eval's, when neither the config nor the tokenizer names one
DEFAULT_GEN_TOKS = 256  # lm-eval's HFLM max_gen_toks; the spec tasks ask for 256 too


def model_max_length(config, tokenizer=None) -> int:
    """The context lm-eval's HFLM takes when `max_length` is not given (its own resolver where it has one)."""
    try:
        from lm_eval.models.utils import resolve_max_length

        return int(resolve_max_length(config, tokenizer, default=DEFAULT_MAX_LENGTH))
    except ImportError:  # older lm-eval: the same order of attributes
        for name in ("n_positions", "max_position_embeddings", "n_ctx"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return DEFAULT_MAX_LENGTH


def declared_positions(config) -> int | None:
    """The positions a decoder-only config declares (GPT-2 n_positions, RoPE max_position_embeddings)."""
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _contexts(sample: dict) -> list[tuple[str, dict]]:
    """(context, generation kwargs) of a sample, in memory (tuples) or as lm-eval saves it (gen_args_i)."""
    args = sample.get("arguments") or []
    if isinstance(args, dict):
        args = [(a.get("arg_0"), a.get("arg_1")) for a in args.values()]
    return [(a[0], a[1] if len(a) > 1 and isinstance(a[1], dict) else {}) for a in args if a and isinstance(a[0], str)]


def _length(tokenizer, text: str) -> int:
    bos = getattr(tokenizer, "bos_token", None)
    # lm-eval's rule: no special tokens added to a prompt that already starts with BOS (a chat template's)
    return len(tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"])


def truncation_report(samples: dict[str, list[dict]], tokenizer, max_length: int, seq2seq: bool) -> dict[str, Any]:
    """{"max_length", "tasks": {task: {"prompts", "truncated", "longest_prompt", "prompt_limit"}}}."""
    tasks = {}
    for task, rows in sorted(samples.items()):
        lengths, limits = [], []
        for row in rows:
            for context, kwargs in _contexts(row):
                gen = int(kwargs.get("max_gen_toks") or DEFAULT_GEN_TOKS)
                limits.append(max_length if seq2seq else max_length - gen)
                lengths.append(_length(tokenizer, context))
        if lengths:
            tasks[task] = {"prompts": len(lengths), "truncated": sum(n > lim for n, lim in zip(lengths, limits)),
                           "longest_prompt": max(lengths), "prompt_limit": min(limits)}
    return {"max_length": max_length, "kept": "the last prompt_limit tokens (lm-eval's left truncation)", "tasks": tasks}


def warnings_for(report: dict[str, Any]) -> list[str]:
    out = []
    for task, row in report.get("tasks", {}).items():
        if row["truncated"]:
            out.append(f"WARNING: {row['truncated']} of {row['prompts']} {task} prompts are longer than the {row['prompt_limit']} tokens "
                       f"the model's context leaves them (max_length {report['max_length']}); lm-eval kept their last "
                       f"{row['prompt_limit']} tokens (the question and the latest demonstrations). summary.json: context.")
    return out


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)
