"""Which lm-eval model class runs `harness eval`, and the arguments it gets.

- `hf` (lm-eval's HFLM): every model, T5 included; a fixed batch size (default 8), or `auto`:
  lm-eval probes the largest batch that fits, halving from `max_batch_size` (default 64) on OOM.
  For generation it probes once (`auto:N` re-probes only loglikelihood requests), with inputs
  *and* targets `max_length` long (4,096 for T5 here), so for T5 it settles lower than the real
  prompts (at most 2,382 tokens) and 256-token outputs need. A smaller `max_length` tightens the
  probe, but lm-eval also left-truncates prompts to it, so the default stays at 4,096.
- `vllm` (lm-eval's VLLM class): decoder-only models only, needs the vllm package and a CUDA GPU;
  vLLM schedules its own batches, so the batch size defaults to `auto` (`max_batch_size` becomes
  vLLM's max_num_seqs).
- `auto`: vllm where all three hold and the device is plain `cuda` (no index), else hf.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from typing import Callable, Iterator

from harness.config import EVAL_BATCH_SIZE
from harness.eval import EvalSetupError

BACKENDS = ("hf", "vllm", "auto")
DEFAULT_BATCH_SIZE = {"hf": EVAL_BATCH_SIZE, "vllm": "auto"}


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def check_backend_environment(requested: str, device: str, has_vllm: bool | None = None) -> None:
    """`--backend vllm` needs the package and a CUDA device: found out before any model loads."""
    if requested != "vllm":
        return
    if not (vllm_installed() if has_vllm is None else has_vllm):
        raise EvalSetupError("--backend vllm: vLLM is not installed (pip install vllm); use --backend hf")
    if not device.startswith("cuda"):
        raise EvalSetupError(f"--backend vllm: vLLM needs a CUDA GPU and the device is {device}; use --backend hf")


def choose_backend(requested: str, seq2seq: bool, device: str, has_vllm: bool | None = None,
                   warn: Callable[[str], None] | None = None) -> str:
    """"hf" or "vllm" for a model (seq2seq: encoder-decoder) on `device`; see the module docstring."""
    has_vllm = vllm_installed() if has_vllm is None else has_vllm
    # auto keeps hf for a device index too: vLLM would take CUDA_VISIBLE_DEVICES, not cuda:N
    if requested == "hf" or (requested == "auto" and (seq2seq or not has_vllm or device != "cuda")):
        return "hf"
    if seq2seq:
        raise EvalSetupError("--backend vllm: vLLM serves decoder-only models and this is an encoder-decoder (T5) model; "
                             "run it with --backend hf")
    check_backend_environment("vllm", device, has_vllm)
    if ":" in device:
        (warn or _stderr)(f"WARNING: --device {device} is ignored by vLLM; choose its GPUs with CUDA_VISIBLE_DEVICES.")
    return "vllm"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def model_arguments(backend: str, pretrained: str, max_length: int | None, seed: int, extra: dict) -> dict:
    """lm-eval's model_args for `backend` (the HF-only `device` goes to simple_evaluate, never here)."""
    if backend == "vllm":
        args = {"pretrained": pretrained, "dtype": "auto", "seed": seed, **extra}
        if max_length:
            args["max_model_len"] = max_length
        return args
    args = {"pretrained": pretrained, **extra}
    if max_length:
        args["max_length"] = max_length
    return args


def batch_arguments(backend: str, batch_size: int | str | None, max_batch_size: int | None, device: str) -> dict:
    """simple_evaluate's batch_size, max_batch_size and device for `backend` (None: lm-eval's default)."""
    return {
        "batch_size": DEFAULT_BATCH_SIZE[backend] if batch_size is None else batch_size,
        "max_batch_size": max_batch_size,
        "device": None if backend == "vllm" else device,  # vLLM takes its GPUs from CUDA_VISIBLE_DEVICES
    }


@contextlib.contextmanager
def recorded_probes(backend: str, batch_size) -> Iterator[list[int]]:
    """The sizes lm-eval's `auto` probe picks. It prints them, but records them in its results
    (config.batch_sizes) only for loglikelihood requests, never for generation."""
    found: list[int] = []
    if backend != "hf" or not str(batch_size).startswith("auto"):
        yield found
        return
    from lm_eval.models.huggingface import HFLM

    original = HFLM._detect_batch_size

    def detect(self, *args, **kwargs):
        size = original(self, *args, **kwargs)
        found.append(int(size))
        return size

    HFLM._detect_batch_size = detect
    try:
        yield found
    finally:
        HFLM._detect_batch_size = original
