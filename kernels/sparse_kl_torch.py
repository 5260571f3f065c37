"""Sparse top-K KL in plain PyTorch ops with a hand-written gradient: the fast path off the GPU.

`backend="torch"` (and `backend="auto"` wherever the Triton kernels do not run, i.e. on CPU) uses
this module; `reference.sparse_topk_kl_reference` stays the slow, obvious oracle it is tested
against (`tests/kernels/test_sparse_kl_torch.py`). Same semantics to fp32 round-off: padding,
duplicate ids merged by summing, valid rows, row weights, reductions, temperature, both variants,
-inf logits (kernels/README.md).

Cost per call (why it runs at cross-entropy speed): the forward is one fused `log_softmax` over
[N, V] (the very op `F.cross_entropy` runs) and K gathers; everything else works on [N, K] arrays.
The backward is `exp` of the saved log-probabilities (one pass), a row rescale only where a row's
factor is not exactly 1 (masked rows are zero-filled instead; on CPU this is decided on the host),
and a K-column scatter of the teacher terms. Input validation never reads the logits.
"""

from __future__ import annotations

import torch

from .reference import EPS, REDUCTIONS, VARIANTS, bool_mask, merged_topk, row_scale, sparse_topk_kl_reference, valid_rows

DOUBLE_BACKWARD_MODIFIED = (
    "sparse_topk_kl (backend='torch'): double backward needs the logits as they were in the forward, "
    "but they were modified in place since; use backend='reference' for higher-order gradients."
)


def check_options(reduction: str, variant: str) -> None:
    """The reference's own option checks, with its messages."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _scaled_fp32(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """x = logits / T in fp32; the logits themselves when they are fp32 and T = 1 (no copy)."""
    if temperature == 1.0:
        return logits.to(torch.float32)
    if logits.dtype == torch.float32:
        return logits / temperature
    return logits.to(torch.float32).div_(temperature)


def row_terms(logq, ids, probs, mask, weight, *, ignore_index, reduction, variant):
    """Per-row loss (already times the row scale) and the gradient weights, from [N, K] arrays.

    logq [N, K] fp32: log softmax(x) at the (padding-safe) teacher ids, -inf on all -inf rows.
    Returns (per_row [N], scale [N], c [N, K], csum [N]): the gradient of sum(per_row) wrt x is
    scale * (csum * softmax(x) - scatter(c)).
    """
    p, merged, first = merged_topk(ids, probs.detach(), ignore_index)
    p, merged = p.float(), merged.float()
    valid = valid_rows(ids, probs, bool_mask(mask), ignore_index)
    if variant == "corrected":
        inv = torch.where(valid, 1.0 / torch.where(valid, p.sum(-1), 1.0), 0.0).unsqueeze(-1)
        phat, mhat = p * inv, merged * inv
        pos = phat > 0
        ent = torch.where(pos, phat * torch.log(torch.where(pos, mhat, 1.0)), 0.0)
        per_row = (ent - torch.where(pos, phat * logq, 0.0)).sum(-1)
        c = torch.where(first, mhat, 0.0)
        csum = valid.to(torch.float32)  # sum of the renormalised teacher over distinct ids: exactly 1
    else:
        q = logq.exp()
        use = first & (merged > 0)
        pm = torch.where(use, merged, 1.0)
        per_row = torch.where(use, pm * torch.log(pm / (q + EPS) + EPS), 0.0).sum(-1)
        c = torch.where(use & valid.unsqueeze(-1), pm * (pm / (pm + EPS * (q + EPS))) * (q / (q + EPS)), 0.0)
        csum = c.sum(-1)
    scale = row_scale(valid, weight, reduction)
    per_row = torch.where(scale != 0, per_row * scale, 0.0)
    return per_row, scale, c, csum


def forward_parts(logits, ids, probs, mask, weight, *, ignore_index, temperature, reduction, variant):
    """(per_row [N], log_softmax [N, V] fp32, dead [N], safe_ids [N, K], scale, c, csum)."""
    logp = torch.log_softmax(_scaled_fp32(logits, temperature), dim=-1)
    safe_ids = torch.where(ids == ignore_index, 0, ids).long()
    logq = logp.gather(-1, safe_ids)
    # An all -inf row has no softmax: log_softmax gives NaN on every entry of such a row (and only
    # there, for logits without NaN/+inf), so one column tells. Its q is 0 (reference and kernel).
    dead = torch.isnan(logp[:, 0])
    logq = torch.where(dead.unsqueeze(-1), float("-inf"), logq)
    per_row, scale, c, csum = row_terms(logq, ids, probs, mask, weight, ignore_index=ignore_index, reduction=reduction, variant=variant)
    return per_row, logp, dead, safe_ids, scale, c, csum


def gradient(logp, dead, safe_ids, c, csum, row_factor, dtype):
    """d loss / d logits = row_factor * (csum * softmax - scatter(c)), in `dtype`.

    row_factor [N] fp32 = row scale * grad_output / T. `logp` is not modified.
    """
    a = row_factor * csum
    g = torch.exp(logp)
    if g.device.type == "cpu":  # host checks cost nothing here; they skip whole passes
        if bool(dead.any()):
            g.masked_fill_(dead.unsqueeze(-1), 0.0)
        if not bool((a == 1).all()):
            if bool(((a == 0) | (a == 1)).all()):
                g.index_fill_(0, torch.nonzero(a == 0).squeeze(-1), 0.0)
            else:
                g.mul_(a.unsqueeze(-1))
    else:
        g.masked_fill_(dead.unsqueeze(-1), 0.0)
        g.mul_(a.unsqueeze(-1))
    g.scatter_add_(-1, safe_ids, -(row_factor.unsqueeze(-1) * c))
    return g if g.dtype == dtype else g.to(dtype)


def loss_and_grad(logits, ids, probs, mask=None, weight=None, *, ignore_index=-100, temperature=1.0,
                  reduction="sum", variant="corrected", want_grad=True):
    """(reduced loss, d loss / d logits or None) for grad_output = 1, without autograd.

    The fused-linear function's per-chunk step off the GPU."""
    check_options(reduction, variant)
    per_row, logp, dead, safe_ids, scale, c, csum = forward_parts(
        logits, ids, probs, mask, weight, ignore_index=ignore_index, temperature=temperature, reduction=reduction, variant=variant
    )
    loss = per_row if reduction == "none" else per_row.sum()
    if not want_grad:
        return loss, None
    return loss, gradient(logp, dead, safe_ids, c, csum, scale / temperature, logits.dtype)


class SparseTopKKLTorchFunction(torch.autograd.Function):
    """Forward: one log_softmax, saved for the backward (fp32 [N, V], as cross-entropy saves its
    own). Backward: the gradient in closed form, for any grad_output (scalar or per row), any
    number of times (retain_graph); double backward recomputes through the reference's autograd.
    Only logits receive a gradient; probs and weights are constants."""

    @staticmethod
    def forward(ctx, logits, ids, probs, mask, weight, ignore_index, temperature, reduction, variant, grad_enabled):
        check_options(reduction, variant)
        per_row, logp, dead, safe_ids, scale, c, csum = forward_parts(
            logits, ids, probs, mask, weight, ignore_index=ignore_index, temperature=temperature, reduction=reduction,
            variant=variant,
        )
        if grad_enabled and ctx.needs_input_grad[0]:  # needs_input_grad ignores no_grad
            ctx.save_for_backward(logp, dead, safe_ids, scale, c, csum)
            # Kept for a double backward only (recomputed through the reference), with its version.
            ctx.inputs = (logits, logits._version, ids, probs, mask, weight)
        ctx.cfg = (ignore_index, temperature, reduction, variant, logits.dtype)
        return per_row if reduction == "none" else per_row.sum()

    @staticmethod
    def backward(ctx, grad_output):
        ignore_index, temperature, reduction, variant, dtype = ctx.cfg
        if torch.is_grad_enabled():
            return (_double_backward(ctx, grad_output),) + (None,) * 9
        logp, dead, safe_ids, scale, c, csum = ctx.saved_tensors
        factor = scale * (grad_output.detach().to(torch.float32) / temperature)
        return (gradient(logp, dead, safe_ids, c, csum, factor, dtype),) + (None,) * 9


def _double_backward(ctx, grad_output):
    """create_graph=True: the reference's autograd gradient, itself differentiable."""
    ignore_index, temperature, reduction, variant, _ = ctx.cfg
    logits, version, ids, probs, mask, weight = ctx.inputs
    if logits._version != version:
        raise RuntimeError(DOUBLE_BACKWARD_MODIFIED)
    loss = sparse_topk_kl_reference(logits, ids, probs, mask, weight=weight, ignore_index=ignore_index,
                                    temperature=temperature, reduction=reduction, variant=variant)
    (g,) = torch.autograd.grad(loss, logits, grad_output, create_graph=True)
    return g


def sparse_topk_kl_torch(logits, ids, probs, mask=None, *, weight=None, ignore_index=-100, temperature=1.0,
                         reduction="mean", variant="corrected"):
    """The fast PyTorch path on flat inputs (logits [N, V], ids/probs [N, K], mask/weight [N])."""
    return SparseTopKKLTorchFunction.apply(
        logits, ids, probs, mask, weight, ignore_index, temperature, reduction, variant, torch.is_grad_enabled()
    )
