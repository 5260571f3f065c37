"""Public entry points and the dispatch rule.

backend="auto": CUDA tensors and an importable Triton -> the Triton kernels; anything else (CPU)
-> "torch", the fast PyTorch path (`sparse_kl_torch.py`: one log_softmax, a closed-form
gradient). backend="triton" forces the kernels (on CPU this needs TRITON_INTERPRET=1 set before
triton is first imported; the tests do that). backend="torch" forces the fast PyTorch path on any
device. backend="reference" forces the slow, obvious reference (autograd), the tests' oracle.
Every backend goes through the same input checks, so they accept and reject the same inputs.
"""

from __future__ import annotations

import importlib.util
import os

import torch

from .reference import MAX_K, bool_mask, check_block_v, check_inputs, sparse_topk_kl_reference
from .sparse_kl_torch import sparse_topk_kl_torch

BACKENDS = ("auto", "triton", "torch", "reference")
OVERWRITTEN = "_sparse_topk_kl_overwritten"  # attribute left on logits whose buffer now holds a gradient

REUSED = (
    "sparse_topk_kl: these logits were overwritten with their gradient by an earlier inplace=True "
    "call (the forward writes it); compute every other loss on them first, or use inplace=False."
)


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def resolve_backend(device: torch.device, backend: str) -> str:
    """`backend` for tensors on `device`: "triton", "torch" or "reference"; a clear error when
    Triton is asked for where it cannot run."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "torch"
    if backend != "triton":
        return backend
    if not triton_available():
        raise RuntimeError("backend='triton' but triton is not installed")
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("backend='triton' on CPU tensors needs TRITON_INTERPRET=1 set before triton is imported")
    return "triton"


def use_triton(device: torch.device, backend: str) -> bool:
    return resolve_backend(device, backend) == "triton"


def shares_buffer(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def pick_row_weight(weight, row_weight, *, name="weight"):
    """`weight` and `row_weight` are two names for the per-row weight; at most one may be given."""
    if weight is not None and row_weight is not None:
        raise ValueError(f"pass the per-row weight once: {name}= or row_weight=, not both")
    return row_weight if weight is None else weight


def flatten(logits, ids, probs, mask, weight):
    """[..., V] -> [N, V] (and the rest alike), with clear errors before any reshape can fail."""
    lead = logits.shape[:-1]
    if logits.dim() < 1:
        raise ValueError("logits must have a vocabulary dimension")
    if ids.dim() < 1 or not 1 <= ids.shape[-1] <= MAX_K:
        raise ValueError(f"K (the teacher's top-k width, last dim of ids) must be in [1, {MAX_K}], got shape {tuple(ids.shape)}")
    if ids.shape[:-1] != lead:
        raise ValueError(f"ids leading dims {tuple(ids.shape[:-1])} must equal logits leading dims {tuple(lead)}")
    if probs.shape != ids.shape:
        raise ValueError(f"probs shape {tuple(probs.shape)} must equal ids shape {tuple(ids.shape)}")
    for name, t in (("mask", mask), ("weight", weight)):
        if t is not None and t.shape != lead:
            raise ValueError(f"{name} shape {tuple(t.shape)} must equal logits leading dims {tuple(lead)}")
    v, k = logits.shape[-1], ids.shape[-1]
    flat_mask = None if mask is None else bool_mask(mask).reshape(-1)
    flat_w = None if weight is None else weight.reshape(-1)
    return logits.reshape(-1, v), ids.reshape(-1, k), probs.reshape(-1, k), flat_mask, flat_w


def sparse_topk_kl(
    logits: torch.Tensor,
    ids: torch.Tensor,
    probs: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    weight: torch.Tensor | None = None,
    row_weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    temperature: float = 1.0,
    reduction: str = "mean",
    variant: str = "corrected",
    inplace: bool = False,
    backend: str = "auto",
    validate: bool = True,
    block_v: int | None = None,
    num_warps: int | None = None,
) -> torch.Tensor:
    """KL(p_teacher || softmax(logits / T)) from a top-K teacher, per position.

    logits [..., V] fp32/bf16/fp16; ids [..., K] int32/int64 (`ignore_index` = padding); probs [..., K];
    mask [...] bool or integer (nonzero = kept; float masks are rejected) or None; weight [...]
    float per-row weights (`row_weight` is the same argument under the fused-linear name) or None.
    reduction: 'none' ([...] per row: w * KL, 0 on invalid rows), 'sum' (sum of w * KL) or 'mean'
    (sum of w * KL / sum of w over valid rows; the number of valid rows without weights). A row is
    valid when its mask is true and its teacher mass is > 0. variant: 'corrected' (renormalised
    teacher) or 'faithful' (Fu et al.'s formula). No T^2 factor. probs and weight are constants.
    inplace=True lets the Triton backend write the gradient into the logits buffer (in the forward
    for sum/mean); their autograd version is bumped, and reusing them in this function raises.
    validate=True checks ids, probs and weight values (one device sync). block_v / num_warps
    override the Triton tile heuristic. backend: "auto" (Triton on CUDA, else "torch"), "triton",
    "torch" (fast PyTorch ops, closed-form gradient) or "reference" (the slow autograd oracle).
    """
    weight = pick_row_weight(weight, row_weight)
    marker = getattr(logits, OVERWRITTEN, None)  # only set on tensors we wrote into (never inference tensors)
    if marker is not None and marker == logits._version:
        raise RuntimeError(REUSED)
    check_block_v(block_v)
    lead = logits.shape[:-1]
    flat = flatten(logits, ids, probs, mask, weight)
    check_inputs(*flat[:4], ignore_index, temperature, validate, weight=flat[4])
    chosen = resolve_backend(logits.device, backend)
    if chosen == "triton":
        from .sparse_kl import KLOptions, SparseTopKKLFunction

        info = {"grad_enabled": torch.is_grad_enabled()}
        opts = KLOptions(ignore_index, temperature, reduction, variant, inplace, block_v, num_warps)
        out = SparseTopKKLFunction.apply(*flat, opts, info)
        # Mark the caller's tensor only if its buffer is the one written: a reshape that had to
        # copy (non-viewable [..., V] logits) leaves the caller's logits untouched.
        if info.get("overwritten") and shares_buffer(flat[0], logits):
            setattr(logits, OVERWRITTEN, logits._version)
    elif chosen == "torch":
        z, i, p, m, w = flat
        out = sparse_topk_kl_torch(z, i, p, m, weight=w, ignore_index=ignore_index, temperature=temperature,
                                   reduction=reduction, variant=variant)
    else:
        z, i, p, m, w = flat
        out = sparse_topk_kl_reference(
            z, i, p, m, weight=w, ignore_index=ignore_index, temperature=temperature, reduction=reduction, variant=variant
        )
    return out.reshape(lead) if reduction == "none" else out


class SparseTopKKLLoss(torch.nn.Module):
    """nn.Module form of `sparse_topk_kl`; options are fixed at construction, weights per call."""

    def __init__(self, *, ignore_index=-100, temperature=1.0, reduction="mean", variant="corrected", inplace=False,
                 backend="auto", validate=True, block_v=None, num_warps=None):
        super().__init__()
        check_block_v(block_v)
        self.kw = dict(
            ignore_index=ignore_index, temperature=temperature, reduction=reduction, variant=variant,
            inplace=inplace, backend=backend, validate=validate, block_v=block_v, num_warps=num_warps,
        )

    def forward(self, logits, ids, probs, mask=None, weight=None):
        return sparse_topk_kl(logits, ids, probs, mask, weight=weight, **self.kw)
