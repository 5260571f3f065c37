"""What a plan costs before it runs: GPU-hours and disk per step, as labelled estimates.

No GPU measurement exists yet (scripts/gpu_check measures training steps and generation on the
real architectures; its promoted figures will replace these). Until then every figure here is an
ESTIMATE from a formula, printed with it:

- training FLOPs = 6 x (N_encoder x source tokens + N_decoder x target tokens) per example x
  examples (epochs x records), at a model FLOP utilisation `MFU` of the precision's dense peak;
- in-training evaluation = the checkpoints evaluated x the dev items x a generation's cost;
- generation = 255 decoder steps per batch of `GEN_BATCH` items, each step reading the decoder's
  bf16 weights at `HBM_BYTES_S` plus `STEP_OVERHEAD_S` per layer (HF generate's kernel launches:
  decoding is bound by memory and launches, not FLOPs), + the encoder's FLOPs over the prompt;
- disk = weights (4 bytes/param in fp32) per kept checkpoint + 12 bytes/param of optimizer state
  for the newest one.
"""

from __future__ import annotations

import json
from typing import Any

from harness.reproduce.profiles import PARAMS_B, SIZE_OF

PEAK_TFLOPS = {"fp32": 67.0, "tf32": 495.0, "bf16": 989.0, "fp16": 989.0}  # H100 SXM dense peaks (NVIDIA datasheet)
MFU = 0.40  # assumed model FLOP utilisation for training
HBM_BYTES_S = 1.5e12  # assumed effective bandwidth, about half an H100's 3.35 TB/s
STEP_OVERHEAD_S = 2.5e-4  # assumed per decoder layer and step (HF generate, eager kernels)
GEN_BATCH = 32
LAYERS = {"base": 12, "large": 24, "xl": 24, "xxl": 24}
SOURCE_TOKENS = {"in_context_cot": 1500, "in_context_answer_only": 450, "zero_shot_cot": 90, "zero_shot_answer_only": 90}  # T5 tokens, approx.
TARGET_TOKENS = {"in_context_cot": 110, "in_context_answer_only": 8, "zero_shot_cot": 110, "zero_shot_answer_only": 8}
PAPER_RECORDS = {"in_context_cot": 207_135, "zero_shot_cot": 207_135, "in_context_answer_only": 6_814, "zero_shot_answer_only": 6_814}
TEST_ITEMS = {"gsm8k": 1319, "multiarith": 400, "asdiv": 2305, "svamp": 1000, "mas_dev": 800, "gsm8k_dev": 200, "bbh": 6511}


def _records(job) -> dict[str, int]:
    stats = job.formats_dir / "stats.json"
    if stats.is_file():
        return dict(json.loads(stats.read_text()).get("records") or PAPER_RECORDS)
    return dict(PAPER_RECORDS)


def train_estimate(job, row: str, precision: str = "fp32", epochs: int = 10, checkpoints: int = 13) -> dict[str, Any]:
    n = PARAMS_B[SIZE_OF[row]] * 1e9
    records = _records(job)
    flops = sum(6 * (n / 2 * SOURCE_TOKENS[f] + n / 2 * TARGET_TOKENS[f]) * count for f, count in records.items()) * epochs
    hours = flops / (PEAK_TFLOPS[precision] * 1e12 * MFU) / 3600
    dev_items = TEST_ITEMS["gsm8k_dev"] + TEST_ITEMS["mas_dev"]
    eval_hours = checkpoints * dev_items * generation_seconds(row) / 3600
    disk_gb = n * (4 * checkpoints + 12) / 1e9
    return {"gpu_hours": hours + eval_hours, "train_hours": hours, "eval_hours": eval_hours, "disk_gb": disk_gb}


def generation_seconds(row: str, prompt_tokens: int = 1500, precision: str = "bf16") -> float:
    """Seconds per generated test item (ESTIMATE; see the module docstring)."""
    size = SIZE_OF[row]
    n = PARAMS_B[size] * 1e9
    step = 2 * n / 2 / HBM_BYTES_S + LAYERS[size] * STEP_OVERHEAD_S
    encoder = 2 * n / 2 * prompt_tokens / (PEAK_TFLOPS[precision] * 1e12 * MFU)
    return 255 * step / GEN_BATCH + encoder


def _hours(job, step) -> tuple[float, float]:
    """(GPU-hours, disk GB) of one step, ESTIMATES."""
    if step.stage == "train":
        row = step.rows[0]
        est = train_estimate(job, row, _precision(job, row))
        return est["gpu_hours"], est["disk_gb"]
    if step.stage == "eval":
        return _items(step) * generation_seconds(step.rows[0]) / 3600, 0.0
    return 0.0, 0.0


def _precision(job, row: str) -> str:
    return job.overrides.get("precision", "fp32" if job.p.presets[row].startswith("faithful") else "bf16")


def _items(step) -> int:
    items = 0
    for task in step.tasks:
        if task.startswith("bbh"):
            items += TEST_ITEMS["bbh"]
        elif task.startswith("mas"):
            items += TEST_ITEMS["mas_dev"] if task.endswith("dev") else sum(TEST_ITEMS[s] for s in ("multiarith", "asdiv", "svamp"))
        else:
            name = task.split("_cot")[0]
            items += TEST_ITEMS["gsm8k_dev"] if task.endswith("dev") else TEST_ITEMS.get(name, TEST_ITEMS["gsm8k"])
    return items


def total_cost(job) -> str:
    hours = disk = 0.0
    for step in job.steps():
        if not step.is_complete():
            h, d = _hours(job, step)
            hours, disk = hours + h, disk + d
    gpus = job.p.processes
    return (f"total ESTIMATE: {hours:,.0f} GPU-hours (~{hours / gpus:,.0f} h on {gpus} GPU(s)), {disk:,.0f} GB of checkpoints "
            "(formulas in harness/reproduce/costs.py; no GPU measurement yet)")


def step_cost(job, step) -> str:
    """One line: the step's estimated GPU-hours (and disk for training), or '' for CPU-only steps."""
    if job.p.name != "paper":
        return ""
    if step.stage == "train":
        row = step.rows[0]
        precision = _precision(job, row)
        est = train_estimate(job, row, precision)
        return (f"ESTIMATE {est['gpu_hours']:.0f} GPU-h ({est['train_hours']:.0f} training at {MFU:.0%} of the {precision} peak + "
                f"{est['eval_hours']:.1f} checkpoint evaluations), {est['disk_gb']:.0f} GB of checkpoints")
    if step.stage == "eval":
        hours, _ = _hours(job, step)
        return f"ESTIMATE {hours:.1f} GPU-h ({_items(step):,} items x 255 new tokens)"
    return ""
