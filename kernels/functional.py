"""Public entry points and the dispatch rule.

backend="auto": CUDA tensors and an importable Triton -> the Triton kernels; anything else -> the
PyTorch reference. backend="triton" forces the kernels (on CPU this needs TRITON_INTERPRET=1 set
before triton is first imported; the tests do that). backend="reference" forces the reference.
"""

from __future__ import annotations

import importlib.util
import os

import torch

from .reference import check_inputs, sparse_topk_kl_reference

BACKENDS = ("auto", "triton", "reference")


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def use_triton(device: torch.device, backend: str) -> bool:
    """Resolve `backend` for tensors on `device`; raise a clear error when Triton cannot run there."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return False
    if backend == "auto":
        return device.type == "cuda" and triton_available()
    if not triton_available():
        raise RuntimeError("backend='triton' but triton is not installed")
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("backend='triton' on CPU tensors needs TRITON_INTERPRET=1 set before triton is imported")
    return True


def _flatten(logits, ids, probs, mask):
    v, k = logits.shape[-1], ids.shape[-1]
    if ids.shape[:-1] != logits.shape[:-1]:
        raise ValueError(f"ids leading dims {tuple(ids.shape[:-1])} must equal logits leading dims {tuple(logits.shape[:-1])}")
    if mask is not None and mask.shape != logits.shape[:-1]:
        raise ValueError(f"mask shape {tuple(mask.shape)} must equal logits leading dims {tuple(logits.shape[:-1])}")
    flat_mask = None if mask is None else mask.reshape(-1)
    return logits.reshape(-1, v), ids.reshape(-1, k), probs.reshape(-1, probs.shape[-1]), flat_mask


def sparse_topk_kl(
    logits: torch.Tensor,
    ids: torch.Tensor,
    probs: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    ignore_index: int = -100,
    temperature: float = 1.0,
    reduction: str = "mean",
    variant: str = "corrected",
    inplace: bool = False,
    backend: str = "auto",
    validate: bool = True,
    block_v: int | None = None,
) -> torch.Tensor:
    """KL(p_teacher || softmax(logits / T)) from a top-K teacher, per position.

    logits [..., V] fp32/bf16/fp16; ids [..., K] int32/int64 (`ignore_index` = padding); probs [..., K];
    mask [...] bool (False = excluded) or None. reduction: 'none' ([...] per row, 0 on invalid rows),
    'sum', or 'mean' over valid rows (mask true and teacher mass > 0). variant: 'corrected'
    (renormalised teacher) or 'faithful' (Fu et al.'s formula). No T^2 factor is applied.
    inplace=True lets the Triton backward write the gradient into the logits buffer.
    validate=True checks id bounds and probs on the host (a device sync).
    """
    lead = logits.shape[:-1]
    flat = _flatten(logits, ids, probs, mask)
    if use_triton(logits.device, backend):
        from .sparse_kl import SparseTopKKLFunction

        check_inputs(*flat, ignore_index, temperature, validate)
        out = SparseTopKKLFunction.apply(*flat, ignore_index, temperature, reduction, variant, inplace, block_v)
    else:
        check_inputs(*flat, ignore_index, temperature, validate)
        out = sparse_topk_kl_reference(
            *flat, ignore_index=ignore_index, temperature=temperature, reduction=reduction, variant=variant
        )
    return out.reshape(lead) if reduction == "none" else out


class SparseTopKKLLoss(torch.nn.Module):
    """nn.Module form of `sparse_topk_kl`; options are fixed at construction."""

    def __init__(self, *, ignore_index=-100, temperature=1.0, reduction="mean", variant="corrected", inplace=False, backend="auto"):
        super().__init__()
        self.kw = dict(
            ignore_index=ignore_index, temperature=temperature, reduction=reduction,
            variant=variant, inplace=inplace, backend=backend,
        )

    def forward(self, logits, ids, probs, mask=None):
        return sparse_topk_kl(logits, ids, probs, mask, **self.kw)
