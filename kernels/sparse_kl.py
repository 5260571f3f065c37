"""Triton sparse top-K KL: soft-label cross-entropy, loss and gradient in one pass over the logits.

The gradient wrt logits z of every variant has the form  g_j = s/T * (C * q_j - c_j),  with
q = softmax(z/T), c_j a weight on the teacher ids (0 elsewhere), C = sum_j c_j and s the row's
scale (row weight, 1/denominator for `mean`, grad_output). One kernel does everything per row:

  1. online softmax over V tiles (the one HBM read of the logits) -> lse; K gathers -> loss, c, C;
  2. (WRITE_GRAD) a second pass over the same row writing s/T * C * q, then the K fix-ups.

The second pass reads the row again, but from registers (V <= one 16K tile) or from L2 (the
tile/warp heuristic keeps about one row per SM in flight), so forward+backward moves one read
and one write of [N, V] from HBM: the floor. The written gradient is for grad_output = 1; the autograd
backward rescales it only when grad_output differs (checked on the device, `grad_scale.py`).

`reduction="none"` with an unknown per-row grad_output keeps the two-kernel path: the forward
stores lse, C and c [N, K] (STORE_STATS) and `_sparse_kl_bwd_kernel` reads the logits again and
writes the gradient -- 2 reads + 1 write. Only there is the old cost paid.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch.autograd.graph import increment_version

from .grad_output import DOUBLE_BACKWARD, apply_grad_output
from .reference import MAX_K, REDUCTIONS, VARIANTS, check_block_v

VARIANT_CODE = {"corrected": 0, "faithful": 1}
ONE_TILE_MAX = 16384  # on GPU, rows up to this width are one tile held in registers (see tile_config)


@triton.jit
def _sparse_kl_fwd_kernel(
    logits_ptr, logits_stride,
    grad_ptr, grad_stride,
    ids_ptr, ids_stride,
    probs_ptr, probs_stride,
    mask_ptr, rw_ptr, denom_ptr,
    loss_ptr, lse_ptr, csum_ptr,
    coef_ptr, coef_stride,
    V, K, ignore_index, inv_t,
    HAS_MASK: tl.constexpr, HAS_RW: tl.constexpr, HAS_DENOM: tl.constexpr, VARIANT: tl.constexpr,
    WRITE_GRAD: tl.constexpr, STORE_STATS: tl.constexpr, ONE_TILE: tl.constexpr,
    BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One program per row: loss (and, with WRITE_GRAD, the gradient) of one row.

    Pointers: logits [N, V] (last stride 1, row stride `logits_stride`); grad [N, V] (may be the
    logits buffer itself: every logit this row needs is read before the barrier that precedes the
    first store); ids [N, K] int32/int64; probs [N, K] float; mask [N] int8 (if HAS_MASK);
    rw [N] fp32 row weights (if HAS_RW); denom [] fp32 = sum of valid row weights (if HAS_DENOM,
    `mean`). Outputs (fp32): loss [N] = s * per-row KL (0 where s = 0); with STORE_STATS also
    lse [N] (+inf on an all -inf row), csum [N] = C and coef [N, K] = c for the two-kernel backward.
    Constexprs: VARIANT (0 corrected, 1 faithful); ONE_TILE: V <= BLOCK_V, the row stays in
    registers between the two passes; BLOCK_K: next power of two >= K. Row offsets are int64.
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
    s = tl.where(valid, 1.0, 0.0)
    if HAS_RW:
        s = s * tl.load(rw_ptr + row)
    if HAS_DENOM:
        den = tl.load(denom_ptr)
        s = s / tl.where(den > 0.0, den, 1.0)
    active = s != 0.0

    # Online softmax (Milakov & Gimelshein) over the vocabulary, -inf safe.
    offs = tl.arange(0, BLOCK_V)
    if ONE_TILE:
        x = tl.load(z_row + offs, mask=offs < V, other=float("-inf")).to(tl.float32) * inv_t
        m = tl.max(x, axis=0)
        m_safe = tl.where(m == float("-inf"), 0.0, m)
        d = tl.sum(tl.exp(x - m_safe), axis=0)
    else:
        m = float("-inf")
        d = 0.0
        for start in range(0, V, BLOCK_V):
            cols = start + offs
            xt = tl.load(z_row + cols, mask=cols < V, other=float("-inf")).to(tl.float32) * inv_t
            m_new = tl.maximum(m, tl.max(xt, axis=0))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            d = d * tl.exp(m - m_safe) + tl.sum(tl.exp(xt - m_safe), axis=0)
            m = m_new
        m_safe = tl.where(m == float("-inf"), 0.0, m)
    lse = tl.where(d > 0.0, m_safe + tl.log(tl.where(d > 0.0, d, 1.0)), float("-inf"))  # -inf iff the row is all -inf
    lse_exp = tl.where(lse == float("-inf"), float("inf"), lse)  # exp(x - lse_exp) = 0 on an all -inf row

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
    csum = tl.sum(c, axis=0)
    tl.store(loss_ptr + row, s * tl.where(active, loss, 0.0))  # 0, not 0 * inf, on dropped rows
    if STORE_STATS:
        tl.store(coef_ptr + row * coef_stride + kk, c, mask=in_k)
        tl.store(csum_ptr + row, csum)
        tl.store(lse_ptr + row, lse_exp)

    if WRITE_GRAD:
        g_row = grad_ptr + row * grad_stride
        st = s * inv_t
        a = st * csum  # 0 on inactive rows: their gradient row is written as zeros
        tl.debug_barrier()  # in place: every read of this row (tiles, K gathers) precedes any store
        if ONE_TILE:
            tl.store(g_row + offs, (a * tl.exp(x - lse_exp)).to(grad_ptr.dtype.element_ty), mask=offs < V)
        else:
            for start in range(0, V, BLOCK_V):
                cols = start + offs
                xt = tl.load(z_row + cols, mask=cols < V, other=float("-inf")).to(tl.float32) * inv_t
                tl.store(g_row + cols, (a * tl.exp(xt - lse_exp)).to(grad_ptr.dtype.element_ty), mask=cols < V)
        tl.debug_barrier()  # the dense stores of this row land before the fix-ups overwrite K of them
        g_k = a * tl.exp(z_k - lse_exp) - st * c  # 0 on inactive rows (a = st = 0, exp <= 1)
        tl.store(g_row + ids, g_k.to(grad_ptr.dtype.element_ty), mask=c != 0.0)


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
    """Two-kernel path (reduction='none'): grad[j] = scale/T * (C softmax(z/T)_j - c_j) per row.

    Pointers: logits [N, V] and grad [N, V] (may be the same buffer: the K teacher logits are
    gathered, behind a barrier, before the dense pass, and each tile is read before it is
    overwritten); ids/coef [N, K]; lse (+inf on all -inf rows) / csum [N] fp32 from the forward;
    scale [N] fp32 with stride `scale_stride` (0 for a scalar). The dense pass writes C*q
    everywhere; after a barrier the K fix-up entries (c != 0) overwrite their columns.
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
    tl.debug_barrier()  # in place, other warps' dense stores below may hit these K columns

    offs = tl.arange(0, BLOCK_V)
    for start in range(0, V, BLOCK_V):
        cols = start + offs
        x = tl.load(z_row + cols, mask=cols < V, other=float("-inf")).to(tl.float32) * inv_t
        tl.store(g_row + cols, (a * tl.exp(x - lse)).to(grad_ptr.dtype.element_ty), mask=cols < V)

    tl.debug_barrier()
    g_k = a * tl.exp(z_k - lse) - scale * c
    tl.store(g_row + ids, g_k.to(grad_ptr.dtype.element_ty), mask=fix)


@triton.jit
def _weight_sum_kernel(
    ids_ptr, ids_stride, probs_ptr, probs_stride, mask_ptr, rw_ptr, part_ptr,
    N, K, ignore_index,
    HAS_MASK: tl.constexpr, HAS_RW: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Program i: part[i] = sum of the row weights (1 without) over the valid rows of block i.

    Same validity rule as the main kernel (mask and teacher mass > 0). Partial sums, added by
    `weight_sum` in a fixed order, keep the `mean` divisor deterministic (no atomics).
    """
    pid = tl.program_id(0)
    rows = (pid * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    kk = tl.arange(0, BLOCK_K)
    in_n = rows < N
    m2 = in_n[:, None] & (kk[None, :] < K)
    ids = tl.load(ids_ptr + rows[:, None] * ids_stride + kk[None, :], mask=m2, other=ignore_index)
    keep = m2 & (ids != ignore_index)
    p = tl.load(probs_ptr + rows[:, None] * probs_stride + kk[None, :], mask=keep, other=0.0).to(tl.float32)
    valid = in_n & (tl.sum(tl.where(keep, p, 0.0), axis=1) > 0.0)
    if HAS_MASK:
        valid = valid & (tl.load(mask_ptr + rows, mask=in_n, other=0) != 0)
    w = tl.where(valid, 1.0, 0.0)
    if HAS_RW:
        w = w * tl.load(rw_ptr + rows, mask=in_n, other=0.0)
    tl.store(part_ptr + pid, tl.sum(w, axis=0))


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def tile_config(V: int, block_v: int | None = None, num_warps: int | None = None, *, interpreting: bool | None = None) -> tuple[int, int]:
    """(BLOCK_V, num_warps) for a row of V logits.

    GPU heuristic (a starting point; `python -m kernels.bench --tune` sweeps it on the device):
    tiles of up to 16K over up to 32 warps. V <= 16K is one tile, kept in registers between the
    two passes. A 32K tile does not fit: ptxas (sm_90) spills it to local memory at 16 or 32 warps,
    while 16K tiles over 32 warps take 49-61 registers and no stack, so wider rows loop over 16K
    tiles. At ~50 registers x 1024 threads one program fills an SM's register file, so ~#SMs rows
    are in flight and the gradient pass re-reads them from L2: 132 x 2 B x 32128 = 8 MB for bf16 at
    V = 32128, 40 MB at V = 151936, inside an H100's 50 MB (fp32 at V >= 128K exceeds it).
    The interpreter pays per Python op, so it takes tiles up to 64K.
    """
    check_block_v(block_v)
    interpreting = _interpreting() if interpreting is None else interpreting
    if block_v is None:
        block_v = min(65536 if interpreting else ONE_TILE_MAX, triton.next_power_of_2(V))
    if num_warps is None:
        num_warps = 4 if block_v <= 2048 else 8 if block_v <= 4096 else 16 if block_v <= 8192 else 32
    if num_warps not in (1, 2, 4, 8, 16, 32):
        raise ValueError(f"num_warps must be a power of two in [1, 32], got {num_warps!r}")
    return block_v, num_warps


def _block_k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise ValueError(f"K must be in [1, {MAX_K}], got {k}")
    return max(2, triton.next_power_of_2(k))


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _f32(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().to(torch.float32).contiguous()


def _i8(mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if mask is None else mask.to(torch.int8).contiguous()


def weight_sum(ids, probs, mask=None, row_weight=None, *, ignore_index=-100) -> torch.Tensor:
    """[] fp32 on the device: sum of the row weights (1 without) over valid rows. No host sync."""
    ids, probs = _rows(ids), _rows(probs)
    n, k = ids.shape
    if n == 0:
        return torch.zeros((), dtype=torch.float32, device=ids.device)
    mask_i8, rw = _i8(mask), _f32(row_weight)
    block_k = _block_k(k)
    block_n = max(16, 1024 // block_k)
    parts = torch.empty(triton.cdiv(n, block_n), dtype=torch.float32, device=ids.device)
    _weight_sum_kernel[(parts.numel(),)](
        ids, ids.stride(0), probs, probs.stride(0), mask_i8 if mask_i8 is not None else parts,
        rw if rw is not None else parts, parts, n, k, ignore_index,
        HAS_MASK=mask is not None, HAS_RW=row_weight is not None, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=4,
    )
    return parts.sum()


def sparse_kl_forward(
    logits, ids, probs, mask=None, row_weight=None, denom=None, *, grad_out=None, store_stats=False,
    ignore_index=-100, temperature=1.0, variant="corrected", block_v=None, num_warps=None,
):
    """Launch the forward kernel. Returns (loss [N], lse, csum, coef) -- the last three only with
    `store_stats` (else None). `grad_out` [N, V] (may be `logits`) receives the gradient of
    sum(loss) in the same pass. `row_weight` [N] and `denom` [] (the `mean` divisor) are folded
    into the scale: loss[i] = s_i * KL_i with s_i = valid_i * row_weight_i / denom."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    logits, ids, probs = _rows(logits), _rows(ids), _rows(probs)
    n, v = logits.shape
    k = ids.shape[1]
    dev = logits.device
    loss = torch.empty(n, dtype=torch.float32, device=dev)
    lse = csum = coef = None
    if store_stats:
        lse, csum = torch.empty_like(loss), torch.empty_like(loss)
        coef = torch.empty(n, k, dtype=torch.float32, device=dev)
    if n == 0:
        return loss, lse, csum, coef
    if grad_out is not None and (grad_out.shape != logits.shape or grad_out.stride(-1) != 1):
        raise ValueError("grad_out must be [N, V] with unit last stride")
    mask_i8, rw, den = _i8(mask), _f32(row_weight), _f32(denom)
    bv, nw = tile_config(v, block_v, num_warps)
    _sparse_kl_fwd_kernel[(n,)](
        logits, logits.stride(0),
        grad_out if grad_out is not None else logits, grad_out.stride(0) if grad_out is not None else 0,
        ids, ids.stride(0), probs, probs.stride(0),
        mask_i8 if mask_i8 is not None else loss, rw if rw is not None else loss, den if den is not None else loss,
        loss, lse if store_stats else loss, csum if store_stats else loss,
        coef if store_stats else loss, coef.stride(0) if store_stats else 0,
        v, k, ignore_index, 1.0 / temperature,
        HAS_MASK=mask is not None, HAS_RW=row_weight is not None, HAS_DENOM=denom is not None,
        VARIANT=VARIANT_CODE[variant], WRITE_GRAD=grad_out is not None, STORE_STATS=store_stats,
        ONE_TILE=v <= bv, BLOCK_V=bv, BLOCK_K=_block_k(k), num_warps=nw,
    )
    return loss, lse, csum, coef


def sparse_kl_backward(logits, ids, coef, lse, csum, scale, *, out=None, ignore_index=-100, temperature=1.0, block_v=None, num_warps=None):
    """Two-kernel backward; `scale` is fp32 [N] or [1]; `out` may be `logits` (in place)."""
    logits, ids = _rows(logits), _rows(ids)
    n, v = logits.shape
    k = ids.shape[1]
    grad = torch.empty_like(logits) if out is None else out
    if n == 0:
        return grad
    scale = scale.to(torch.float32).contiguous()
    bv, nw = tile_config(v, block_v, num_warps)
    _sparse_kl_bwd_kernel[(n,)](
        logits, logits.stride(0), grad, grad.stride(0), ids, ids.stride(0), coef, coef.stride(0),
        lse, csum, scale, 0 if scale.numel() == 1 else 1,
        v, k, ignore_index, 1.0 / temperature,
        BLOCK_V=bv, BLOCK_K=_block_k(k), num_warps=nw,
    )
    return grad


def can_write_in_place(logits: torch.Tensor) -> bool:
    """Unit last stride and non-overlapping rows: the kernel may overwrite the row it reads."""
    n, v = logits.shape
    return logits.stride(-1) == 1 and (n <= 1 or logits.stride(0) >= v)


class SparseTopKKLFunction(torch.autograd.Function):
    """Autograd wrapper.

    reduction 'sum'/'mean' (single pass): the forward writes the gradient for grad_output = 1,
    into the logits buffer (`inplace=True`; their version counter is bumped, so any autograd
    node that saved them raises the standard "modified by an inplace operation" error) or into a
    new buffer; the backward rescales it on the device only if grad_output != 1. Nothing is written
    when the logits need no gradient. reduction 'none' (two kernels): the forward stores lse, C and
    c; the backward writes the gradient (in place: into the logits, then bumps their version).
    Only logits receive a gradient; probs and weights are constants. Double backward is rejected.
    """

    @staticmethod
    def forward(ctx, logits, ids, probs, mask, row_weight, ignore_index, temperature, reduction, variant, inplace, block_v, num_warps, info):
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        kw = dict(ignore_index=ignore_index, temperature=temperature, variant=variant, block_v=block_v, num_warps=num_warps)
        ctx.cfg = (ignore_index, temperature, reduction, inplace, block_v, num_warps)
        ctx.calls = 0
        needs_grad = info.get("grad_enabled", True) and ctx.needs_input_grad[0]  # needs_input_grad ignores no_grad
        if reduction == "none":
            loss, lse, csum, coef = sparse_kl_forward(logits, ids, probs, mask, row_weight, store_stats=needs_grad, **kw)
            if needs_grad:
                ctx.save_for_backward(logits, ids, coef, lse, csum, _f32(row_weight))
            return loss
        denom = weight_sum(ids, probs, mask, row_weight, ignore_index=ignore_index) if reduction == "mean" else None
        if not needs_grad:
            loss, *_ = sparse_kl_forward(logits, ids, probs, mask, row_weight, denom, **kw)
            return loss.sum()
        rows = _rows(logits)  # a copy when the last stride is not 1: then it is ours to overwrite
        in_place = (inplace or rows is not logits) and can_write_in_place(rows)
        grad = rows if in_place else torch.empty_like(rows)
        loss, *_ = sparse_kl_forward(rows, ids, probs, mask, row_weight, denom, grad_out=grad, **kw)
        if in_place and rows is logits:
            increment_version(logits)
            info["overwritten"] = True
        ctx.save_for_backward(grad)
        return loss.sum()

    @staticmethod
    def backward(ctx, grad_output):
        if torch.is_grad_enabled():
            raise RuntimeError(DOUBLE_BACKWARD.format(name="sparse_topk_kl"))
        ignore_index, temperature, reduction, inplace, block_v, num_warps = ctx.cfg
        ctx.calls += 1
        if reduction != "none":
            (grad,) = ctx.saved_tensors
            (grad,) = apply_grad_output(ctx, [grad], grad_output, triton=True)
            return (grad.detach(),) + (None,) * 12  # a fresh alias: autograd may keep it as .grad without a copy
        logits, ids, coef, lse, csum, rw = ctx.saved_tensors
        row_scale = grad_output.detach().float().reshape(-1)
        if rw is not None:
            row_scale = row_scale * rw
        in_place = inplace and can_write_in_place(logits)
        grad = sparse_kl_backward(
            logits, ids, coef, lse, csum, row_scale, out=logits if in_place else None,
            ignore_index=ignore_index, temperature=temperature, block_v=block_v, num_warps=num_warps,
        )
        if in_place:
            increment_version(logits)  # a later unpack of these logits (retain_graph, another node) raises
        return (grad.detach(),) + (None,) * 12
