"""precision: tf32 switches TF32 on for CUDA matmuls and convolutions only, and restores them."""

from __future__ import annotations

import pytest
import torch

from harness.train import precision as prec
from harness.train.config import load_config


def _state():
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        return torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.mark.parametrize("precision,tf32", [("tf32", True), ("fp32", False), ("bf16", False)])
def test_cuda_switches_are_set_for_the_run_and_restored(precision, tf32):
    before = _state()
    with prec.matmul_precision(precision, "cuda"):  # the switches are process-wide flags: settable without a GPU
        inside = _state()
    assert _state() == before
    assert inside == (("tf32", "tf32") if tf32 else ("ieee", "ieee")) or inside == (tf32, tf32)
    with prec.matmul_precision(precision, "cpu"):
        assert _state() == before  # nothing to switch on a CPU


def test_descriptions_say_what_runs():
    assert "plain fp32" in prec.describe("tf32", "cpu")
    assert "TF32" in prec.describe("tf32", "cuda") and "IEEE" in prec.describe("fp32", "cuda")
    assert prec.accelerate_mixed_precision("tf32") == "no" and prec.accelerate_mixed_precision("bf16") == "bf16"


def test_preset_precisions():
    assert load_config("faithful-xl").precision == "fp32"  # as the authors ran it
    assert load_config("corrected-xl").precision == "bf16"
    assert load_config("cpu-tiny").precision == "fp32"  # bf16 on a CPU is slow
    assert load_config("faithful-xl", {"precision": "tf32"}).precision == "tf32"
