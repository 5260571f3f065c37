"""Fused linear + sparse top-K KL: the [N, V] logits never exist in full (Liger FLCE style).

Rows are processed in chunks: logits_c = h_c W^T (+ b) -> forward kernel (loss, lse, weights) ->
backward kernel writes d loss / d logits_c in place into logits_c -> grad_h_c = g_c W and
grad_W += g_c^T h_c (fp32 accumulator). The gradient is computed during the forward; the autograd
backward only multiplies the stored gradients by grad_output. Peak extra memory is one chunk of
logits plus grad_h [N, d] and an fp32 grad_W [V, d].
"""

from __future__ import annotations

import math

import torch

from .functional import use_triton
from .reference import VARIANTS, check_inputs, check_values, sparse_topk_kl_reference


def default_chunk_size(n: int, v: int, d: int) -> int:
    """Liger's heuristic: chunk rows so a logits chunk is about the size of the hidden states."""
    inc = max(1, math.ceil(v / d))
    return max(1, min(n, 1 << max(0, math.ceil(math.log2(max(1, math.ceil(n / inc)))))))


def _chunk_grad_reference(logits, ids, probs, mask, scale, ignore_index, temperature, variant):
    """Per-chunk (loss sum, d(scale * loss sum)/d logits) through the reference and autograd."""
    x = logits.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = sparse_topk_kl_reference(
            x, ids, probs, mask, ignore_index=ignore_index, temperature=temperature, reduction="sum", variant=variant
        )
        (g,) = torch.autograd.grad(loss * scale, x)
    return loss.detach(), g.to(logits.dtype)


def _chunk_grad_triton(logits, ids, probs, mask, scale, ignore_index, temperature, variant, block_v):
    from .sparse_kl import sparse_kl_backward, sparse_kl_forward

    loss, lse, csum, _, coef = sparse_kl_forward(
        logits, ids, probs, mask, ignore_index=ignore_index, temperature=temperature, variant=variant, block_v=block_v
    )
    g = sparse_kl_backward(
        logits, ids, coef, lse, csum, scale, out=logits, ignore_index=ignore_index, temperature=temperature, block_v=block_v
    )
    return loss.sum(), g


def fused_linear_sparse_kl_forward(
    hidden, weight, bias, ids, probs, mask, *, ignore_index, temperature, reduction, variant, chunk_size, triton, block_v=None
):
    """Loss and (grad_hidden, grad_weight, grad_bias) for grad_output = 1."""
    n, d = hidden.shape
    v = weight.shape[0]
    keep = ids != ignore_index
    valid = torch.where(keep, probs.float(), 0.0).sum(-1) > 0
    if mask is not None:
        valid = valid & mask
    if reduction == "mean":
        scale = (1.0 / valid.sum().clamp(min=1).float()).reshape(1)
    else:
        scale = torch.ones(1, dtype=torch.float32, device=hidden.device)
    chunk = chunk_size or default_chunk_size(n, v, d)
    grad_h = torch.empty_like(hidden)
    grad_w = torch.zeros(v, d, dtype=torch.float32, device=hidden.device)
    grad_b = torch.zeros(v, dtype=torch.float32, device=hidden.device) if bias is not None else None
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        h_c = hidden[sl]
        logits = h_c @ weight.t() if bias is None else torch.addmm(bias, h_c, weight.t())
        m_c = None if mask is None else mask[sl]
        if triton:
            loss_c, g = _chunk_grad_triton(logits, ids[sl], probs[sl], m_c, scale, ignore_index, temperature, variant, block_v)
        else:
            loss_c, g = _chunk_grad_reference(logits, ids[sl], probs[sl], m_c, scale, ignore_index, temperature, variant)
        total += loss_c
        grad_h[sl] = g @ weight
        if grad_w.dtype == g.dtype:
            grad_w.addmm_(g.t(), h_c)
        else:
            grad_w += g.t() @ h_c
        if grad_b is not None:
            grad_b += g.sum(0, dtype=torch.float32)
        del logits, g
    loss = total * scale.reshape(())
    grad_b = None if grad_b is None else grad_b.to(bias.dtype)
    return loss, grad_h, grad_w.to(weight.dtype), grad_b


class FusedLinearSparseTopKKLFunction(torch.autograd.Function):
    """Gradients are computed in forward; backward scales them by the (scalar) grad_output.

    Only hidden, weight and bias receive gradients; the teacher ids/probs are constants.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, ids, probs, mask, ignore_index, temperature, reduction, variant, chunk_size, triton, block_v):
        loss, gh, gw, gb = fused_linear_sparse_kl_forward(
            hidden, weight, bias, ids, probs, mask, ignore_index=ignore_index, temperature=temperature,
            reduction=reduction, variant=variant, chunk_size=chunk_size, triton=triton, block_v=block_v,
        )
        ctx.save_for_backward(gh, gw, gb)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        gh, gw, gb = ctx.saved_tensors
        if not torch.equal(grad_out, torch.ones_like(grad_out)):  # skip two [.., d] copies when it is 1
            go = grad_out.float()
            gh = (gh * go).to(gh.dtype)
            gw = (gw * go).to(gw.dtype)
            gb = None if gb is None else (gb * go).to(gb.dtype)
        return gh, gw, gb, None, None, None, None, None, None, None, None, None, None


def fused_linear_sparse_topk_kl(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    ids: torch.Tensor,
    probs: torch.Tensor,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    ignore_index: int = -100,
    temperature: float = 1.0,
    reduction: str = "mean",
    variant: str = "corrected",
    chunk_size: int | None = None,
    backend: str = "auto",
    validate: bool = True,
    block_v: int | None = None,
) -> torch.Tensor:
    """Sparse top-K KL of softmax((hidden @ weight.T + bias) / T), without materialising [N, V].

    hidden [..., d]; weight [V, d]; bias [V] or None; ids/probs [..., K]; mask [...] or None.
    reduction: 'sum' or 'mean' (a per-row 'none' would need per-row grad_output inside grad_W).
    Same semantics as `kernels.sparse_topk_kl`; the gradient is computed chunk by chunk in forward.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean' for the fused-linear loss, got {reduction!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    d = hidden.shape[-1]
    if weight.dim() != 2 or weight.shape[1] != d:
        raise ValueError(f"weight must be [V, d={d}], got {tuple(weight.shape)}")
    if weight.dtype != hidden.dtype:
        raise TypeError(f"hidden ({hidden.dtype}) and weight ({weight.dtype}) dtypes must match")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must be [V={weight.shape[0]}], got {tuple(bias.shape)}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    h = hidden.reshape(-1, d)
    k = ids.shape[-1]
    ids2, probs2 = ids.reshape(-1, k), probs.reshape(-1, k)
    mask2 = None if mask is None else mask.reshape(-1).to(torch.bool)
    if ids2.shape[0] != h.shape[0]:
        raise ValueError(f"ids leading dims {tuple(ids.shape[:-1])} must match hidden {tuple(hidden.shape[:-1])}")
    _check(h, weight, ids2, probs2, mask2, ignore_index, temperature, validate)
    triton = use_triton(hidden.device, backend)
    return FusedLinearSparseTopKKLFunction.apply(
        h, weight, bias, ids2, probs2, mask2, ignore_index, temperature, reduction, variant, chunk_size, triton, block_v
    )


def _check(h, weight, ids, probs, mask, ignore_index, temperature, validate):
    """check_inputs on a [N, V] meta-device view, so no logits-sized tensor is created."""
    meta = torch.empty(h.shape[0], weight.shape[0], dtype=h.dtype, device="meta")
    check_inputs(meta, ids.to("meta"), probs.to("meta"), None if mask is None else mask.to("meta"), ignore_index, temperature, False)
    if validate:
        check_values(ids, probs, weight.shape[0], ignore_index)


class FusedLinearSparseTopKKLLoss(torch.nn.Module):
    """nn.Module form; pass the LM head's weight (and bias) at call time, like Liger's FLCE."""

    def __init__(self, *, ignore_index=-100, temperature=1.0, reduction="mean", variant="corrected", chunk_size=None, backend="auto"):
        super().__init__()
        self.kw = dict(
            ignore_index=ignore_index, temperature=temperature, reduction=reduction,
            variant=variant, chunk_size=chunk_size, backend=backend,
        )

    def forward(self, hidden, weight, ids, probs, mask=None, bias=None):
        return fused_linear_sparse_topk_kl(hidden, weight, ids, probs, mask, bias, **self.kw)
