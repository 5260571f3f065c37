"""Triton sparse top-K KL: soft-label cross-entropy with one online-softmax pass per row.

Memory traffic per row: the forward reads the logits once (online softmax -> lse, plus K gathers);
the backward reads them once more and writes the dense gradient (optionally in place, into the
logits buffer). That is 2 reads + 1 write of [N, V] for forward+backward, the same as Liger's
cross-entropy, and grad_output (scalar or per row) is folded into the backward write for free.

The gradient wrt logits z of every variant has the form  g_j = scale/T * (C * q_j - c_j),  with
q = softmax(z/T), c_j a weight on the teacher ids (0 elsewhere) and C = sum_j c_j. The forward
stores C and c [N, K] (merged over duplicate ids, on first occurrences only) so the backward is a
dense write followed by a K-entry fix-up.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .reference import REDUCTIONS, VARIANTS

VARIANT_CODE = {"corrected": 0, "faithful": 1}


@triton.jit
def _sparse_kl_fwd_kernel(
    logits_ptr, logits_stride,
    ids_ptr, ids_stride,
    probs_ptr, probs_stride,
    mask_ptr,
    loss_ptr, lse_ptr, csum_ptr, valid_ptr,
    coef_ptr, coef_stride,
    V, K, ignore_index, inv_t,
    HAS_MASK: tl.constexpr, VARIANT: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One program per row: online softmax over V, K gathers, per-row loss and gradient weights.

    Pointers: logits [N, V] (last stride 1, row stride `logits_stride`), ids [N, K] int32/int64,
    probs [N, K] float, mask [N] int8 (only read if HAS_MASK); outputs (fp32): loss [N], lse [N]
    (+inf where the row is all -inf, so exp(x - lse) = 0 in the backward), csum [N] = C,
    valid [N], coef [N, K] = c (0 on padding, duplicates after the first, and invalid rows).
    Constexprs: HAS_MASK, VARIANT (0 corrected, 1 faithful), BLOCK_V (vocab tile), BLOCK_K
    (next power of two >= K). Row offsets are int64 (row * stride overflows int32 past 2^31).
    """
    row = tl.program_id(0).to(tl.int64)
    z_row = logits_ptr + row * logits_stride

    kk = tl.arange(0, BLOCK_K)
    in_k = kk < K
    ids = tl.load(ids_ptr + row * ids_stride + kk, mask=in_k, other=ignore_index).to(tl.int64)
    keep = in_k & (ids != ignore_index)
    p = tl.load(probs_ptr + row * probs_stride + kk, mask=keep, other=0.0).to(tl.float32)
    p = tl.where(keep, p, 0.0)
    mass = tl.sum(p, axis=0)
    valid = mass > 0.0
    if HAS_MASK:
        valid = valid & (tl.load(mask_ptr + row) != 0)

    # Online softmax (Milakov & Gimelshein) over the vocabulary, -inf safe.
    offs = tl.arange(0, BLOCK_V)
    m = float("-inf")
    d = 0.0
    for start in range(0, V, BLOCK_V):
        cols = start + offs
        x = tl.load(z_row + cols, mask=cols < V, other=float("-inf")).to(tl.float32) * inv_t
        m_new = tl.maximum(m, tl.max(x, axis=0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        d = d * tl.exp(m - m_safe) + tl.sum(tl.exp(x - m_safe), axis=0)
        m = m_new
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    lse = tl.where(d > 0.0, m_safe + tl.log(tl.where(d > 0.0, d, 1.0)), float("-inf"))  # -inf iff the row is all -inf

    z_k = tl.load(z_row + ids, mask=keep, other=float("-inf")).to(tl.float32) * inv_t
    logq = tl.where(z_k == float("-inf"), float("-inf"), z_k - tl.where(lse == float("-inf"), 0.0, lse))
    q = tl.exp(logq)

    # Duplicate ids: merged[k] = total mass of ids[k]; first[k] marks its first occurrence.
    same = (ids[:, None] == ids[None, :]) & keep[:, None] & keep[None, :]
    merged = tl.sum(tl.where(same, p[None, :], 0.0), axis=1)
    earlier = kk[None, :] < kk[:, None]
    first = keep & (tl.sum((same & earlier).to(tl.int32), axis=1) == 0)

    if VARIANT == 0:
        # corrected: KL(p/s || q); gradient weights c = merged/s on first occurrences, C = 1.
        inv_s = tl.where(valid, 1.0 / tl.where(valid, mass, 1.0), 0.0)
        phat = p * inv_s
        mhat = merged * inv_s
        pos = phat > 0.0
        ent = tl.where(pos, phat * tl.log(tl.where(pos, mhat, 1.0)), 0.0)
        cross = phat * tl.where(pos, logq, 0.0)
        loss = tl.sum(ent - cross, axis=0)
        c = tl.where(first, mhat, 0.0)
    else:
        # faithful: sum over distinct ids of P log(P / (q + eps) + eps); exact gradient weights
        # c = P * P / (P + eps (q + eps)) * q / (q + eps)  (see kernels/README.md).
        use = first & (merged > 0.0)
        pm = tl.where(use, merged, 1.0)
        term = pm * tl.log(pm / (q + 1e-10) + 1e-10)
        loss = tl.sum(tl.where(use, term, 0.0), axis=0)
        c = tl.where(use, pm * (pm / (pm + 1e-10 * (q + 1e-10))) * (q / (q + 1e-10)), 0.0)

    c = tl.where(valid, c, 0.0)
    loss = tl.where(valid, loss, 0.0)
    tl.store(coef_ptr + row * coef_stride + kk, c, mask=in_k)
    tl.store(csum_ptr + row, tl.sum(c, axis=0))
    tl.store(loss_ptr + row, loss)
    tl.store(lse_ptr + row, tl.where(lse == float("-inf"), float("inf"), lse))
    tl.store(valid_ptr + row, valid.to(tl.float32))


@triton.jit
def _sparse_kl_bwd_kernel(
    logits_ptr, logits_stride,
    grad_ptr, grad_stride,
    ids_ptr, ids_stride,
    coef_ptr, coef_stride,
    lse_ptr, csum_ptr,
    scale_ptr, scale_stride,
    V, K, ignore_index, inv_t,
    BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One program per row: grad[j] = scale/T * (C softmax(z/T)_j - c_j), written for every j.

    Pointers: logits [N, V] and grad [N, V] (may be the same buffer: each tile is read before it is
    overwritten, and the K teacher logits are gathered, behind a barrier, before the dense pass), ids/coef [N, K],
    lse/csum [N] fp32 from the forward, scale [N] fp32 with stride `scale_stride` (0 for a scalar
    grad_output). Constexprs: BLOCK_V, BLOCK_K. The dense pass writes C*q everywhere; after a block
    barrier the K fix-up entries (first occurrences with c != 0) overwrite their columns.
    """
    row = tl.program_id(0).to(tl.int64)
    z_row = logits_ptr + row * logits_stride
    g_row = grad_ptr + row * grad_stride
    lse = tl.load(lse_ptr + row)
    csum = tl.load(csum_ptr + row)
    scale = tl.load(scale_ptr + row * scale_stride) * inv_t
    a = scale * csum

    kk = tl.arange(0, BLOCK_K)
    in_k = kk < K
    ids = tl.load(ids_ptr + row * ids_stride + kk, mask=in_k, other=ignore_index).to(tl.int64)
    c = tl.load(coef_ptr + row * coef_stride + kk, mask=in_k, other=0.0)
    fix = in_k & (c != 0.0)
    z_k = tl.load(z_row + ids, mask=fix, other=float("-inf")).to(tl.float32) * inv_t
    # In place, other warps' dense stores below may hit these K columns: gather first, then sync.
    tl.debug_barrier()

    offs = tl.arange(0, BLOCK_V)
    for start in range(0, V, BLOCK_V):
        cols = start + offs
        x = tl.load(z_row + cols, mask=cols < V, other=float("-inf")).to(tl.float32) * inv_t
        g = a * tl.exp(x - lse)
        tl.store(g_row + cols, g.to(grad_ptr.dtype.element_ty), mask=cols < V)

    tl.debug_barrier()  # dense stores of this row are visible before the fix-up overwrites K of them
    g_k = a * tl.exp(z_k - lse) - scale * c
    tl.store(g_row + ids, g_k.to(grad_ptr.dtype.element_ty), mask=fix)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _block_v(V: int, block_v: int | None) -> int:
    if block_v is not None:
        if block_v & (block_v - 1):
            raise ValueError(f"block_v must be a power of two, got {block_v}")
        return block_v
    # The interpreter pays per Python op, so wide tiles are faster there; on GPU a tile of 4K
    # fp32 values over 8-16 warps keeps registers in check (Liger caps at 32K with 32 warps).
    cap = 65536 if _interpreting() else 4096
    return min(cap, triton.next_power_of_2(V))


def _num_warps(block_v: int) -> int:
    return 4 if block_v <= 1024 else (8 if block_v <= 4096 else 16)


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def sparse_kl_forward(logits, ids, probs, mask=None, *, ignore_index=-100, temperature=1.0, variant="corrected", block_v=None):
    """Launch the forward kernel. Returns (loss [N], lse [N], csum [N], valid [N], coef [N, K]), all fp32."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    logits, ids, probs = _rows(logits), _rows(ids), _rows(probs)
    n, v = logits.shape
    k = ids.shape[1]
    dev = logits.device
    loss = torch.empty(n, dtype=torch.float32, device=dev)
    lse, csum, valid = torch.empty_like(loss), torch.empty_like(loss), torch.empty_like(loss)
    coef = torch.empty(n, k, dtype=torch.float32, device=dev)
    if n == 0:
        return loss, lse, csum, valid, coef
    mask_i8 = mask.to(torch.int8).contiguous() if mask is not None else loss  # dummy pointer if no mask
    bv = _block_v(v, block_v)
    _sparse_kl_fwd_kernel[(n,)](
        logits, logits.stride(0), ids, ids.stride(0), probs, probs.stride(0), mask_i8,
        loss, lse, csum, valid, coef, coef.stride(0),
        v, k, ignore_index, 1.0 / temperature,
        HAS_MASK=mask is not None, VARIANT=VARIANT_CODE[variant],
        BLOCK_V=bv, BLOCK_K=max(2, triton.next_power_of_2(k)), num_warps=_num_warps(bv),
    )
    return loss, lse, csum, valid, coef


def sparse_kl_backward(logits, ids, coef, lse, csum, scale, *, out=None, ignore_index=-100, temperature=1.0, block_v=None):
    """Launch the backward kernel; `scale` is fp32 [N] or [1]; `out` may be `logits` (in place)."""
    logits, ids = _rows(logits), _rows(ids)
    n, v = logits.shape
    k = ids.shape[1]
    grad = torch.empty_like(logits) if out is None else out
    if n == 0:
        return grad
    scale = scale.to(torch.float32).contiguous()
    bv = _block_v(v, block_v)
    _sparse_kl_bwd_kernel[(n,)](
        logits, logits.stride(0), grad, grad.stride(0), ids, ids.stride(0), coef, coef.stride(0),
        lse, csum, scale, 0 if scale.numel() == 1 else 1,
        v, k, ignore_index, 1.0 / temperature,
        BLOCK_V=bv, BLOCK_K=max(2, triton.next_power_of_2(k)), num_warps=_num_warps(bv),
    )
    return grad


def reduce_loss(loss: torch.Tensor, valid: torch.Tensor, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduced loss and the per-row scale (d reduced / d per-row loss) used by the backward."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if reduction == "none":
        return loss, torch.ones(1, dtype=torch.float32, device=loss.device)
    if reduction == "sum":
        return loss.sum(), torch.ones(1, dtype=torch.float32, device=loss.device)
    denom = valid.sum().clamp(min=1.0)
    return loss.sum() / denom, (1.0 / denom).reshape(1)


class SparseTopKKLFunction(torch.autograd.Function):
    """Autograd wrapper: forward stores lse and gradient weights; backward writes the dense gradient.

    With `inplace=True` the gradient overwrites the logits buffer in backward (no [N, V] allocation);
    the caller must not read those logits afterwards (another loss on the same logits, logging...).
    Only logits receive a gradient; teacher probs are treated as constants.
    """

    @staticmethod
    def forward(ctx, logits, ids, probs, mask, ignore_index, temperature, reduction, variant, inplace, block_v):
        loss, lse, csum, valid, coef = sparse_kl_forward(
            logits, ids, probs, mask, ignore_index=ignore_index, temperature=temperature, variant=variant, block_v=block_v
        )
        out, scale = reduce_loss(loss, valid, reduction)
        ctx.save_for_backward(logits, ids, coef, lse, csum, scale)
        ctx.cfg = (ignore_index, temperature, reduction, inplace, block_v)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        logits, ids, coef, lse, csum, scale = ctx.saved_tensors
        ignore_index, temperature, reduction, inplace, block_v = ctx.cfg
        row_scale = grad_out.float().reshape(-1) * scale  # [N] for reduction='none', else [1]
        in_place = inplace and logits.stride(-1) == 1  # a non-contiguous input was copied, so no alias
        grad = sparse_kl_backward(
            logits, ids, coef, lse, csum, row_scale, out=logits if in_place else None,
            ignore_index=ignore_index, temperature=temperature, block_v=block_v,
        )
        return grad, None, None, None, None, None, None, None, None, None
