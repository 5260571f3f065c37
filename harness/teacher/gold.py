"""The `gold` teacher: GSM8K's human rationales as one-hot targets; no model involved.

Each GSM8K question gets one sample (sample_index 0): its gold rationale, calculator notes
removed, then a line "The answer is N", the way the authors render a gold CoT demo (the text
before "####" without `<<…>>`, a newline, "The answer is" and the text after "####").
The text is tokenized with a tokenizer spec (default "t5", the student's own SentencePiece);
every position's top list is the token itself with log-probability 0.0 (`targets="onehot"`).

    from harness.teacher.gold import build_gold_store
    build_gold_store("runs/teacher/gold-t5")              # all 7,473 train questions, resumable

Tokenizers come from the core tokenizer layer (`harness.tokenizers.load_tokenizer`: "t5",
"spm:<model file>", "tiktoken:<encoding>", "hf:<path>", …). Stored tokens are the text each
token covers (a T5 piece "▁The" after a newline is stored as "\\nThe"), so they spell `text`;
`token_ids` hold the tokenizer's ids.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, Sequence

from harness.errors import DataError
from harness.records import Example

from harness.teacher.record import TeacherRecord, grade
from harness.teacher.store import TeacherStore

JOB = "teacher-gold"
PROMPT_ID = "gold"
TEACHER_MODEL = "gold"
TEXT_FORMAT = "rationale lines + '\\nThe answer is {final}' (v1)"


class SurfaceTokenizer(Protocol):
    """What gold needs from a tokenizer: ids and each token's character span in the text
    (`harness.tokenizers` tokenizers qualify)."""

    def encode(self, text: str) -> Any: ...  # .ids, .starts, .ends


def gold_text(example: Example) -> str:
    """The gold CoT: rationale (calculator notes removed), then "The answer is {final}".

    `final` is the text after "####" as GSM8K writes it (the authors' demo renderer uses it raw).
    """
    if example.rationale is None or "####" not in example.gold_raw:
        raise DataError(f"{example.id}: no gold rationale ('####' answer) to build a gold CoT from")
    final = example.gold_raw.rsplit("####", 1)[1].strip()
    return f"{example.rationale.strip()}\nThe answer is {final}"


# ------------------------------------------------------------------------------------ tokenizers


def load_surface_tokenizer(spec: str) -> SurfaceTokenizer:
    """A tokenizer from a spec (`harness.tokenizers.load_tokenizer`: t5, spm:, tiktoken:, hf:…)."""
    from harness.tokenizers import load_tokenizer

    return load_tokenizer(spec)


def surface_tokens(text: str, tokenized: Any) -> list[str]:
    """The text each token covers, tiled so they spell `text` exactly.

    A gap the tokenizer skipped (whitespace SentencePiece folds away) joins the next token; a
    trailing gap joins the last one. Overlapping spans are clipped.
    """
    out: list[str] = []
    pos = 0
    for start, end in zip(tokenized.starts, tokenized.ends):
        end = max(end, pos)
        out.append(text[pos:end])
        pos = end
    if pos < len(text):
        if not out:
            raise DataError(f"tokenizer produced no tokens for a non-empty text ({text[:40]!r}…)")
        out[-1] += text[pos:]
    return out


# ------------------------------------------------------------------------------------ the teacher


def gold_record(example: Example, tokenizer: SurfaceTokenizer, tokenizer_spec: str) -> TeacherRecord:
    text = gold_text(example)
    tokenized = tokenizer.encode(text)
    tokens = surface_tokens(text, tokenized)
    ids = [int(i) for i in tokenized.ids]
    answer, correct, faithful = grade(text, example)
    return TeacherRecord(
        question_id=example.id,
        sample_index=0,
        prompt_id=PROMPT_ID,
        question=example.question,
        gold=example.answer,
        text=text,
        raw_text=None,
        teacher_model=TEACHER_MODEL,
        teacher_tokenizer=tokenizer_spec,
        targets="onehot",
        framing="none",
        tokens=tokens,
        token_ids=ids,
        token_logprobs=[0.0] * len(tokens),
        top_tokens=[[t] for t in tokens],
        top_ids=[[i] for i in ids],
        top_logprobs=[[0.0] for _ in tokens],
        finish_reason=None,
        answer=answer,
        correct=correct,
        correct_faithful=faithful,
    )


def gold_settings(tokenizer_spec: str, split: str, mode: str) -> dict[str, Any]:
    return {
        "teacher": {"model": TEACHER_MODEL, "tokenizer": tokenizer_spec, "prompt_id": PROMPT_ID, "text_format": TEXT_FORMAT},
        "sampling": {"method": "none (human rationale, one-hot)", "samples_per_question": 1},
        "source": {"set": "gsm8k", "split": split, "mode": mode},
    }


def build_gold_store(
    root: str | os.PathLike,
    tokenizer_spec: str = "t5",
    *,
    split: str = "train",
    mode: str = "faithful",
    limit: int | None = None,
    shard_size: int = 2000,
    tokenizer: SurfaceTokenizer | None = None,
    examples: Sequence[Example] | None = None,
    data_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write the gold teacher's store (resumable; `limit` takes the first n questions and may
    grow on a rerun). Returns {"store", "written", "skipped", "total"}."""
    from harness.data import load

    if examples is None:
        examples = load("gsm8k", split, mode=mode, data_dir=data_dir)
    if limit is not None:
        examples = examples[:limit]
    if tokenizer is None:
        tokenizer = load_surface_tokenizer(tokenizer_spec)
    written = 0
    with TeacherStore.open(Path(root), JOB, gold_settings(tokenizer_spec, split, mode)) as store:
        done = store.done_keys()
        todo = [e for e in examples if (e.id, 0) not in done]
        for start in range(0, len(todo), shard_size):
            store.write_shard(gold_record(e, tokenizer, tokenizer_spec) for e in todo[start : start + shard_size])
            written += len(todo[start : start + shard_size])
        store.write_stats()
    return {"store": str(root), "written": written, "skipped": len(examples) - len(todo), "total": len(examples)}
