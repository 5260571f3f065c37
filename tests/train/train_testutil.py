"""Helpers for the trainer tests: a formats output written straight to Parquet, a tiny config."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_records(tokenizer, n: int, fmt: str, seed: int = 0, k: int = 4) -> list[dict]:
    """n records of `fmt`; CoT ones carry top-k whose first entry is the target token."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a, b = int(rng.integers(2, 50)), int(rng.integers(2, 50))
        question = f"Tom has {a} apples and buys {b} more. How many apples does he have?"
        cot = fmt.endswith("cot")
        target = f"Tom has {a} + {b} = {a + b} apples. The answer is {a + b}" if cot else f"The answer is {a + b}"
        prefix = "Q: 3 cats and 4 dogs. How many pets?\nA: The answer is 7\n\n" if fmt.startswith("in_context") else ""
        row = {"format": fmt, "setting": "corrected", "question_id": f"test/{i}", "sample_index": 0,
               "encoder_input": f"{prefix}Q: {question}\n" + ("Let's think step by step" if cot else "A:"),
               "decoder_target": target, "gold_answer": str(a + b), "demo_ids": [],
               "student_ids": None, "topk_ids": None, "topk_probs": None, "topk_mask": None,
               "teacher_model": "test", "seed": 0}
        if cot:
            ids = tokenizer(target, add_special_tokens=False)["input_ids"]
            top = rng.integers(3, 32000, size=(len(ids), k))
            top[:, 0] = ids
            probs = rng.dirichlet(np.ones(k), size=len(ids)) * 0.9
            mask = np.ones((len(ids), k), dtype=np.int8)
            mask[:, -1] = rng.integers(0, 2, size=len(ids))  # some padding entries
            row.update(student_ids=ids, topk_ids=top.tolist(), topk_probs=probs.astype(np.float32).tolist(), topk_mask=mask.tolist())
        out.append(row)
    return out


def write_formats(folder: Path, tokenizer, counts: dict[str, int], seed: int = 0, edit=None) -> Path:
    """A formats output (shards + settings.json) like `harness formats build` writes."""
    import pyarrow as pa

    from harness import handoff
    from harness.formats.build import schema
    from harness.schemas import FORMATS

    with handoff.OutputFolder(folder, FORMATS) as out:  # the formats stage's own writer: shards, settings, a sealed manifest
        out.open("formats.build", {"setting": "corrected", "test": True})
        for fmt, n in counts.items():
            rows = make_records(tokenizer, n, fmt, seed)
            if edit:
                edit(fmt, rows)
            out.write_shard(pa.Table.from_pylist(rows, schema=schema()), path=folder / f"{fmt}-00000.parquet")
        out.seal()
    return folder


def tiny_config(formats_dir: Path, output: Path, **changes):
    from harness.train.config import load_config

    values = dict(
        model="tiny", formats_dir=str(formats_dir), output_dir=str(output), size=None, precision="fp32",
        batch_sizes={"zero_shot_answer_only": 4, "zero_shot_cot": 4, "in_context_answer_only": 2, "in_context_cot": 2},
        grad_accum=2, epochs=1, checkpoint_every_examples=1000, evaluate=False,
    )
    values.update(changes)
    return load_config("corrected", values)
