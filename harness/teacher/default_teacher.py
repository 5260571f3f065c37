"""The CPU default teacher: a small GPT-2-architecture LM with the real GPT-2 tokenizer, offline.

With no GPU, no model server and no hub, every teacher stage must still run end to end. This
builds (once, into the cache) a GPT-2 model (2 layers, n_embd 128, 2,048 positions) whose
tokenizer is the data directory's GPT-2 BPE (tokenizers/gpt2/encoder.json + vocab.bpe), so its
tokens are real GPT-2 tokens and alignment meets real byte-level BPE. Weights are a seeded random
init, or that init trained for `train_steps` steps on GSM8K train rationales ("<rationale>\\nThe
answer is N" + <|endoftext|>) so its distributions are peaked like an LM's rather than near-uniform
noise. Either way its samples are no result: the folder carries the harness's marker
(`spec_harness_model.json`, pipeline_check true) saying which it is, and `describe()` repeats it.

    teacher = default_teacher()                      # random init; seconds
    teacher = default_teacher(train_steps=300)       # ~3 s a step on 2 busy CPU cores (the 50k-token softmax)
    print(teacher.describe())

Tokenizer spec: "tiktoken:gpt2". Its ids are the model's (checked at build), and it spells a token
that splits a character the way HFTeacher does (the character goes to the token holding its last
byte). `hf-gpt2` / `hf:<folder>` (HFTokenizer) give it to the first token instead, so they
disagree on such tokens.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path

from harness.config import data_file, default_cache_dir
from harness.errors import DataError, check_positive
from harness.model_marker import save_model_folder
from harness.teacher.hf_backend import HFTeacher

VERSION = "default-teacher-gpt2-v2"  # bump when the architecture, the training recipe or the folder layout changes
TOKENIZER_SPEC = "tiktoken:gpt2"
N_POSITIONS = 4096  # the 8-shot prompt_complex.txt prompt (~2.3K GPT-2 tokens) + 256 new tokens fits
CHECK_TEXTS = ("Natalia sold 48/2 = 24 clips in May.\nThe answer is 72", "  naïve — 日本語 😀 <|endoftext|> x\n\n")


def default_teacher_dir(train_steps: int = 0, seed: int = 0, n_layer: int = 2, n_embd: int = 128) -> Path:
    """<SPEC_CACHE_DIR or ~/.cache/spec-harness>/models/<version>-L<layers>-E<width>-s<seed>[-t<steps>]."""
    root = os.environ.get("SPEC_CACHE_DIR")
    base = Path(root) if root else default_cache_dir().parent
    name = f"{VERSION}-L{n_layer}-E{n_embd}-s{seed}" + (f"-t{train_steps}" if train_steps else "")
    return base / "models" / name


def gpt2_tokenizer(data_dir=None):
    """The real GPT-2 tokenizer (GPT2TokenizerFast) from the data directory's vocab and merges files."""
    from transformers import GPT2TokenizerFast

    folder = data_file("tokenizers/gpt2", data_dir)
    vocab = json.loads((folder / "encoder.json").read_text(encoding="utf-8"))
    lines = (folder / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:]  # first line: "#version"
    tok = GPT2TokenizerFast(vocab=vocab, merges=[tuple(line.split()) for line in lines if line.strip()])
    tok.name_or_path = "gpt2"
    return tok


def check_tokenizer(tok, data_dir=None) -> None:
    """DataError unless `tok` gives tiktoken "gpt2" ids (the spec alignment loads) on sample texts."""
    from harness.config import setup_offline_tokenizers

    setup_offline_tokenizers(data_dir)
    import tiktoken

    encoding = tiktoken.get_encoding("gpt2")
    for text in CHECK_TEXTS:
        ours = tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        if ours != encoding.encode(text, disallowed_special=()):
            raise DataError(f"tokenizers/gpt2 does not reproduce tiktoken's gpt2 ids on {text[:30]!r}; "
                            "the vocab files are not GPT-2's (re-run `python -m harness data download`)")


def build_default_teacher(out_dir=None, *, train_steps: int = 0, seed: int = 0, n_layer: int = 2, n_embd: int = 128,
                          n_head: int = 4, data_dir=None, batch: int = 8, seq_len: int = 128, lr: float = 2e-3) -> Path:
    """Build (once) and return the model folder; the write is atomic (temp dir + rename)."""
    check_positive("train_steps", train_steps, allow_zero=True)
    out_dir = Path(out_dir or default_teacher_dir(train_steps, seed, n_layer, n_embd))
    if (out_dir / "config.json").exists():
        return out_dir
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = gpt2_tokenizer(data_dir)
    check_tokenizer(tok, data_dir)
    eos = tok.eos_token_id
    config = GPT2Config(vocab_size=len(tok), n_positions=N_POSITIONS, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                        bos_token_id=eos, eos_token_id=eos)
    with torch.random.fork_rng():  # the caller's global RNG is left as it was
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
        trained = _train(model, tok, train_steps, seed, data_dir, batch, seq_len, lr) if train_steps else None
    model.eval()
    arch = f"GPT-2 architecture, {n_layer} layers, n_embd {n_embd}, {n_head} heads, {N_POSITIONS} positions"
    if trained is None:
        weights = f"random init (seed {seed})"
    else:
        weights = (f"trained {train_steps} steps on GSM8K train rationales (batch {batch} x {seq_len} tokens, AdamW lr {lr:g}, "
                   f"init seed {seed}; loss {trained['first_loss']:.2f} -> {trained['final_loss']:.2f})")

    def save(folder: Path) -> None:
        model.save_pretrained(folder)
        tok.save_pretrained(folder)

    return save_model_folder(out_dir, save, VERSION, description=f"default teacher: {arch}, real GPT-2 tokenizer; {weights}",
                             weights="random" if trained is None else "trained", seed=seed, train_steps=train_steps,
                             training=trained, tokenizer=TOKENIZER_SPEC, tokenizer_files="tokenizers/gpt2 (encoder.json, vocab.bpe)")


def default_teacher(train_steps: int = 0, *, init_seed: int = 0, data_dir=None, out_dir=None, device: str = "cpu",
                    **teacher_options) -> HFTeacher:
    """The default teacher (built on first use): an HFTeacher over the cached folder, tokenizer spec
    "tiktoken:gpt2". `teacher_options` go to HFTeacher (seed, batch_size, targets, draws, logprobs)."""
    folder = build_default_teacher(out_dir, train_steps=train_steps, seed=init_seed, data_dir=data_dir)
    return HFTeacher(str(folder), tokenizer_spec=TOKENIZER_SPEC, device=device, **teacher_options)


def training_texts(data_dir=None) -> list[str]:
    """GSM8K train rationales as the default teacher learns them."""
    from harness.data import load

    return [f"{e.rationale.strip()}\nThe answer is {e.answer}" for e in load("gsm8k", "train", data_dir=data_dir) if e.rationale]


def _train(model, tok, steps: int, seed: int, data_dir, batch: int, seq_len: int, lr: float) -> dict:
    """Plain next-token training on random batches of rationales (+ EOS), on the model's device."""
    import torch

    texts = training_texts(data_dir)
    encoded = [ids[: seq_len - 1] + [tok.eos_token_id] for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses, start = [], time.monotonic()
    for _ in range(steps):
        rows = rng.sample(encoded, min(batch, len(encoded)))
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), tok.eos_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, row in enumerate(rows):
            ids[b, : len(row)] = labels[b, : len(row)] = torch.tensor(row)
            mask[b, : len(row)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    tail = losses[-min(10, len(losses)):]
    return {"steps": steps, "first_loss": losses[0], "final_loss": sum(tail) / len(tail),
            "uniform_loss": math.log(len(tok)), "seconds": round(time.monotonic() - start, 1), "texts": len(texts)}
