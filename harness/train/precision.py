"""What `precision` means on the device a run uses, set once and recorded.

  fp32  fp32 weights and math; on CUDA matmuls and convolutions are held to IEEE fp32 (cuDNN's
        default would allow TF32 in convolutions). The authors' setting.
  tf32  fp32 weights; on CUDA (Ampere and later) matmuls and convolutions round their inputs to
        TF32 (10-bit mantissa) and run on the tensor cores. The CPU has no TF32: there it is plain fp32.
  bf16, fp16  fp32 weights and optimizer, autocast to the half type (accelerate's mixed precision).

The CUDA switches are process-wide; `matmul_precision` sets them for the run and restores them.
"""

from __future__ import annotations

import contextlib

ACCELERATE_MIXED = {"fp32": "no", "tf32": "no", "bf16": "bf16", "fp16": "fp16"}


def accelerate_mixed_precision(precision: str) -> str:
    return ACCELERATE_MIXED[precision]


def describe(precision: str, device_type: str) -> str:
    """One line for the run's header and run.json."""
    if precision in ("bf16", "fp16"):
        return f"{precision} autocast, fp32 weights and optimizer"
    if device_type != "cuda":
        return "fp32" if precision == "fp32" else f"on {device_type} plain fp32: TF32 exists on CUDA only"
    return "fp32 (IEEE matmuls and convolutions)" if precision == "fp32" else "fp32 weights, TF32 matmuls and convolutions"


def _get():
    import torch

    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9: the switches by name
        return ("new", matmul.fp32_precision, conv.conv.fp32_precision)
    return ("legacy", matmul.allow_tf32, conv.allow_tf32)


def _set(state) -> None:
    import torch

    kind, a, b = state
    if kind == "new":
        torch.backends.cuda.matmul.fp32_precision = a
        torch.backends.cudnn.conv.fp32_precision = b
    else:
        torch.backends.cuda.matmul.allow_tf32 = a
        torch.backends.cudnn.allow_tf32 = b


@contextlib.contextmanager
def matmul_precision(precision: str, device_type: str):
    """On CUDA: TF32 on for `tf32`, off (IEEE fp32) otherwise, for the duration; elsewhere nothing."""
    if device_type != "cuda":
        yield
        return
    before = _get()
    tf32 = precision == "tf32"
    _set(("new", "tf32" if tf32 else "ieee", "tf32" if tf32 else "ieee") if before[0] == "new" else ("legacy", tf32, tf32))
    try:
        yield
    finally:
        _set(before)
