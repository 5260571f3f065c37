"""Profiles: which models, data, limits and launchers a reproduction uses.

- `paper`: google/flan-t5-{base,large,xl,xxl} (and t5-{base,large,3b} for Table 2) from the Hub,
  the faithful presets, full data and test sets; training through `accelerate launch` on every
  visible GPU (DDP for base/large, FSDP full-shard for XL/XXL), evaluation spread over the GPUs.
- `rehearsal`: the paper profile's own plan, step for step, on CPU: the same hub ids (tiny random
  models of the same family in a local Hugging Face cache), the same launcher with 2 CPU processes
  (gloo), only sizes and limits shrunk. It proves the paper path runs; its numbers mean nothing.
- `cpu`: the quick pipeline check of the README's main command: a tiny random T5 stands in for
  flan-t5-base, the CPU default teacher scores gold rationales, one process, small slices.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from harness.config import EVAL_BATCH_SIZE
from harness.errors import check_choice

TABLES = ("table1", "table2", "table3", "figures")
PROFILES = ("auto", "cpu", "rehearsal", "paper")
SELECT_RULES = ("mas-dev", "gsm8k-dev", "last")  # Table 1's specialized checkpoint; the paper recommends M-A-S dev (§4.3)
SETTINGS = ("faithful", "corrected")
DEV_TASKS = ("gsm8k_cot_spec_dev", "mas_cot_spec_dev")
CURVE_BBH_TASKS = ("bbh_ao_spec", "bbh_cot_spec")  # Fig. 3's BBH panels: a slice evaluated at every checkpoint
FIG4_TASKS = {"gsm8k_cot_spec_dev": "in_context", "gsm8k_cot_spec_zeroshot_dev": "zero_shot"}  # GSM8K dev, tested two ways

HUB_IDS = {
    "flan-t5-base": "google/flan-t5-base", "flan-t5-large": "google/flan-t5-large",
    "flan-t5-xl": "google/flan-t5-xl", "flan-t5-xxl": "google/flan-t5-xxl",
    "t5-base": "google-t5/t5-base", "t5-large": "google-t5/t5-large", "t5-3b": "google-t5/t5-3b",
}
SIZE_OF = {"flan-t5-base": "base", "flan-t5-large": "large", "flan-t5-xl": "xl", "flan-t5-xxl": "xxl",
           "t5-base": "base", "t5-large": "large", "t5-3b": "xl"}
# accelerate configs (harness/train/configs/accelerate/): DDP where a replica fits a GPU, FSDP full-shard above.
DISTRIBUTED = {"base": "ddp", "large": "ddp", "xl": "fsdp", "xxl": "fsdp"}
PARAMS_B = {"base": 0.248, "large": 0.783, "xl": 2.85, "xxl": 11.1}  # billions (Flan-T5 v1.1 sizes)


@dataclass(frozen=True)
class Profile:
    name: str
    models: dict[str, str]  # table row stem -> model (hub id, or `tiny`)
    presets: dict[str, str]  # table row stem -> training preset
    eval_limit: float | None  # --limit per math task (None: full test sets)
    bbh_limit: float | None  # --limit per BBH subtask
    curve_bbh_limit: float  # BBH items per subtask in each checkpoint evaluation (Fig. 3)
    teacher_limit: int | None  # GSM8K train questions the teacher covers (None: all 7,473)
    train_overrides: dict[str, Any] = field(default_factory=dict)  # sizes shrunk (cpu, rehearsal)
    max_gen_toks: int | None = None  # None: the tasks' 256 (the authors')
    batch_size: int | str = EVAL_BATCH_SIZE
    backend: str = "hf"
    launcher: str = "accelerate"  # accelerate: `accelerate launch`; python: one plain process
    processes: int = 1  # training processes, and evaluation workers
    cpu: bool = False  # CPU processes (gloo): ACCELERATE_USE_CPU=1 for the launcher
    hub_offline: bool = False  # every model is local: keep the Hub off for the child processes
    pipeline_check: bool = False
    select: str = "mas-dev"

    @property
    def rows(self) -> list[str]:
        return list(self.models)


def paper(gpus: int = 1) -> Profile:
    return Profile(
        "paper", models=dict(HUB_IDS), presets={row: f"faithful-{SIZE_OF[row]}" for row in HUB_IDS},
        eval_limit=None, bbh_limit=None, curve_bbh_limit=10, teacher_limit=None,
        train_overrides={"eval_batch_size": "auto", "checkpoints_per_run": 13},
        batch_size="auto", backend="auto", launcher="accelerate", processes=max(1, gpus),
    )


def rehearsal() -> Profile:
    """The paper profile with sizes and limits shrunk, on 2 CPU processes; nothing else changes."""
    return dataclasses.replace(
        paper(2), name="rehearsal", eval_limit=2, bbh_limit=1, curve_bbh_limit=1, teacher_limit=24,
        train_overrides={"eval_batch_size": 4, "checkpoints_per_run": 2, "epochs": 1, "size": None, "grad_accum": 2,
                         "batch_sizes": {"zero_shot_answer_only": 4, "zero_shot_cot": 4, "in_context_answer_only": 2, "in_context_cot": 2},
                         "eval_limit": 2, "eval_max_gen_toks": 16, "warmup_steps": 1},
        max_gen_toks=16, batch_size=4, backend="hf", processes=2, cpu=True, hub_offline=True, pipeline_check=True,
    )


def cpu() -> Profile:
    return Profile(
        "cpu", models={"flan-t5-base": "tiny"}, presets={"flan-t5-base": "cpu-tiny"},
        eval_limit=5, bbh_limit=1, curve_bbh_limit=1, teacher_limit=60, max_gen_toks=64,  # random weights never stop: 64 new tokens
        train_overrides={"epochs": 2, "checkpoint_every_examples": 150, "eval_limit": 5, "eval_max_gen_toks": 64},
        launcher="python", processes=1, cpu=True, hub_offline=True, pipeline_check=True, select="last",
    )


def profile(name: str, gpus: int | None = None) -> Profile:
    check_choice("--profile", name, PROFILES[1:])
    if name == "cpu":
        return cpu()
    if name == "rehearsal":
        return rehearsal()
    return paper(gpus if gpus else max(1, gpu_count()))


def gpu_count() -> int:
    """CUDA GPUs visible here. `SPEC_GPU_COUNT` overrides the detection (tests simulate a GPU node);
    otherwise torch if it is installed with CUDA, else `nvidia-smi -L`."""
    forced = os.environ.get("SPEC_GPU_COUNT")
    if forced is not None:
        return int(forced) if forced.strip().isdigit() else 0
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count()
    except ImportError:
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            return 0
        return sum(1 for line in out.splitlines() if line.startswith("GPU "))
    return 0


def pick_profile(name: str) -> str:
    check_choice("--profile", name, PROFILES)
    if name != "auto":
        return name
    return "paper" if gpu_count() else "cpu"
