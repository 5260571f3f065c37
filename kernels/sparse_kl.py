"""Triton sparse top-K KL: soft-label cross-entropy, loss and gradient in one pass over the logits.

The gradient wrt logits z of every variant has the form  g_j = s/T * (C * q_j - c_j),  with
q = softmax(z/T), c_j a weight on the teacher ids (0 elsewhere), C = sum_j c_j and s the row's
scale (row weight, 1/denominator for `mean`, grad_output). One kernel does everything per row:

  1. the K teacher logits are gathered first (their latency hides behind the pass over V), then an
     online softmax over V tiles (the one HBM read of the logits) -> lse, loss, c, C;
  2. (a gradient buffer is given) a second pass over the same row writing s/T * C * q, then the K
     fix-ups.

The second pass reads the row again, but from registers (`resident`: the row is one tile held in
registers between the passes) or from L2 (pass-1 loads carry `evict_last`, and the tile/warp
heuristic keeps ~2-3 rows per SM in flight, so the row is still there), so forward+backward moves
one read and one write of [N, V] from HBM: the floor. Gradient stores and last reads stream
(`evict_first`). The written gradient is for grad_output = 1; the autograd backward rescales it
only when grad_output differs (checked on the device, `grad_scale.py`).

Two kernels (the forward stores lse, C and c [N, K]; `_sparse_kl_bwd_kernel` reads the logits
again and writes the gradient for the actual grad_output -- 2 reads + 1 write) serve
`reduction="none"` (each row's grad_output is unknown until the backward) and fp16 logits (a
gradient rounded to fp16 before GradScaler's loss scale would underflow: entries ~1/(N*V)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch.autograd.graph import increment_version

from .grad_output import DOUBLE_BACKWARD, apply_grad_output
from .reference import MAX_K, REDUCTIONS, VARIANTS
from .tiles import Tile, stream_tile, tile_config

VARIANT_CODE = {"corrected": 0, "faithful": 1}


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
    VARIANT: tl.constexpr, RESIDENT: tl.constexpr, PASS1_EVICT: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One program per row: loss (and, with a gradient buffer, the gradient) of one row.

    Pointers: logits [N, V] (last stride 1, row stride `logits_stride`); grad [N, V] or None (may
    be the logits buffer itself: every logit this row needs is read before the barrier that
    precedes the first store); ids [N, K] int32/int64; probs [N, K] float; mask [N] int8 or None;
    rw [N] fp32 row weights or None; denom [] fp32 = sum of valid row weights (`mean`) or None.
    Outputs (fp32): loss [N] = s * per-row KL (0 where s = 0); unless lse is None also
    lse [N] (+inf on an all -inf row), csum [N] = C and coef [N, K] = c for the two-kernel backward.
    Constexprs: VARIANT (0 corrected, 1 faithful); RESIDENT: V <= BLOCK_V and the row stays in
    registers between the two passes (else each tile is re-read, from L2); PASS1_EVICT: the
    first pass's eviction policy ("evict_last" when a re-read follows, else "evict_first");
    BLOCK_K: next power of two >= K. Row offsets are int64. A None pointer compiles its branch away.
    """
    row = tl.program_id(0).to(tl.int64)
    z_row = logits_ptr + row * logits_stride

    kk = tl.arange(0, BLOCK_K)
    in_k = kk < K
    ids = tl.load(ids_ptr + row * ids_stride + kk, mask=in_k, other=ignore_index).to(tl.int64)
    keep = in_k & (ids != ignore_index)
    # Gathered before the loop over V: the K scattered loads overlap the streaming pass.
    z_k = tl.load(z_row + ids, mask=keep, other=float("-inf")).to(tl.float32) * inv_t
    p = tl.load(probs_ptr + row * probs_stride + kk, mask=keep, other=0.0).to(tl.float32)
    p = tl.where(keep, p, 0.0)
    mass = tl.sum(p, axis=0)
    valid = mass > 0.0
    if mask_ptr is not None:
        valid = valid & (tl.load(mask_ptr + row) != 0)
    s = tl.where(valid, 1.0, 0.0)
    if rw_ptr is not None:
        s = s * tl.load(rw_ptr + row)
    if denom_ptr is not None:
        den = tl.load(denom_ptr)
        s = s / tl.where(den > 0.0, den, 1.0)
    active = s != 0.0

    # Online softmax (Milakov & Gimelshein) over the vocabulary, -inf safe.
    offs = tl.arange(0, BLOCK_V)
    if RESIDENT:
        x = tl.load(z_row + offs, mask=offs < V, other=float("-inf"), eviction_policy=PASS1_EVICT).to(tl.float32) * inv_t
        m = tl.max(x, axis=0)
        m_safe = tl.where(m == float("-inf"), 0.0, m)
        e = tl.exp(x - m_safe)  # kept for the gradient: q = e / d, no second exp
        d = tl.sum(e, axis=0)
    else:
        m = float("-inf")
        d = 0.0
        for start in range(0, V, BLOCK_V):
            cols = start + offs
            xt = tl.load(z_row + cols, mask=cols < V, other=float("-inf"), eviction_policy=PASS1_EVICT).to(tl.float32) * inv_t
            m_new = tl.maximum(m, tl.max(xt, axis=0))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            d = d * tl.exp(m - m_safe) + tl.sum(tl.exp(xt - m_safe), axis=0)
            m = m_new
        m_safe = tl.where(m == float("-inf"), 0.0, m)
    lse = tl.where(d > 0.0, m_safe + tl.log(tl.where(d > 0.0, d, 1.0)), float("-inf"))  # -inf iff the row is all -inf
    lse_exp = tl.where(lse == float("-inf"), float("inf"), lse)  # exp(x - lse_exp) = 0 on an all -inf row

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
    if lse_ptr is not None:
        tl.store(coef_ptr + row * coef_stride + kk, c, mask=in_k)
        tl.store(csum_ptr + row, csum)
        tl.store(lse_ptr + row, lse_exp)

    if grad_ptr is not None:
        g_row = grad_ptr + row * grad_stride
        st = s * inv_t
        a = st * csum  # 0 on inactive rows: their gradient row is written as zeros
        tl.debug_barrier()  # in place: every read of this row (tiles, K gathers) precedes any store
        if RESIDENT:
            f = tl.where(d > 0.0, a / tl.where(d > 0.0, d, 1.0), 0.0)
            tl.store(g_row + offs, (f * e).to(grad_ptr.dtype.element_ty), mask=offs < V, eviction_policy="evict_first")
        else:
            for start in range(0, V, BLOCK_V):
                cols = start + offs
                xt = tl.load(z_row + cols, mask=cols < V, other=float("-inf"), eviction_policy="evict_first").to(tl.float32) * inv_t
                g = a * tl.exp(xt - lse_exp)
                tl.store(g_row + cols, g.to(grad_ptr.dtype.element_ty), mask=cols < V, eviction_policy="evict_first")
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
    """Two-kernel path: grad[j] = scale/T * (C softmax(z/T)_j - c_j) per row.

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
        x = tl.load(z_row + cols, mask=cols < V, other=float("-inf"), eviction_policy="evict_first").to(tl.float32) * inv_t
        tl.store(g_row + cols, (a * tl.exp(x - lse)).to(grad_ptr.dtype.element_ty), mask=cols < V, eviction_policy="evict_first")

    tl.debug_barrier()
    g_k = a * tl.exp(z_k - lse) - scale * c
    tl.store(g_row + ids, g_k.to(grad_ptr.dtype.element_ty), mask=fix)


@triton.jit
def _weight_sum_kernel(
    ids_ptr, ids_stride, probs_ptr, probs_stride, mask_ptr, rw_ptr, part_ptr,
    N, K, ignore_index,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Program i: part[i] = sum of the row weights (1 without) over the valid rows of block i.

    Same validity rule as the main kernel (mask and teacher mass > 0); mask / rw may be None.
    Partial sums, added by `weight_sum` in a fixed order, keep the `mean` divisor deterministic
    (no atomics).
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
    if mask_ptr is not None:
        valid = valid & (tl.load(mask_ptr + rows, mask=in_n, other=0) != 0)
    w = tl.where(valid, 1.0, 0.0)
    if rw_ptr is not None:
        w = w * tl.load(rw_ptr + rows, mask=in_n, other=0.0)
    tl.store(part_ptr + pid, tl.sum(w, axis=0))


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


def weight_sum_launch(ids, probs, mask_i8, rw, parts, *, ignore_index):
    """(grid, args, meta) of `_weight_sum_kernel` (shared with the sm_90 compile report)."""
    n, k = ids.shape
    block_k = _block_k(k)
    block_n = max(16, 1024 // block_k)
    args = (ids, ids.stride(0), probs, probs.stride(0), mask_i8, rw, parts, n, k, ignore_index)
    return (triton.cdiv(n, block_n),), args, dict(BLOCK_N=block_n, BLOCK_K=block_k, num_warps=4)


def weight_sum(ids, probs, mask=None, row_weight=None, *, ignore_index=-100) -> torch.Tensor:
    """[] fp32 on the device: sum of the row weights (1 without) over valid rows. No host sync."""
    ids, probs = _rows(ids), _rows(probs)
    n, k = ids.shape
    if n == 0:
        return torch.zeros((), dtype=torch.float32, device=ids.device)
    block_n = max(16, 1024 // _block_k(k))
    parts = torch.empty(triton.cdiv(n, block_n), dtype=torch.float32, device=ids.device)
    grid, args, meta = weight_sum_launch(ids, probs, _i8(mask), _f32(row_weight), parts, ignore_index=ignore_index)
    _weight_sum_kernel[grid](*args, **meta)
    return parts.sum()


def fwd_launch(logits, ids, probs, mask_i8, rw, denom, loss, grad, stats, *, ignore_index, temperature, variant, tile: Tile):
    """(grid, args, meta) of `_sparse_kl_fwd_kernel`; `stats` = (lse, csum, coef) or None.
    Unused pointers are None (compiled away). Shared with the sm_90 compile report, so it
    compiles the specializations that actually run."""
    n, v = logits.shape
    lse, csum, coef = stats if stats is not None else (None, None, None)
    args = (
        logits, logits.stride(0), grad, grad.stride(0) if grad is not None else 0, ids, ids.stride(0), probs, probs.stride(0),
        mask_i8, rw, denom, loss, lse, csum, coef, coef.stride(0) if coef is not None else 0,
        v, ids.shape[1], ignore_index, 1.0 / temperature,
    )
    reread = grad is not None and not tile.resident
    meta = dict(VARIANT=VARIANT_CODE[variant], RESIDENT=tile.resident, PASS1_EVICT="evict_last" if reread else "evict_first",
                BLOCK_V=tile.block_v, BLOCK_K=_block_k(ids.shape[1]), **tile.launch_meta())
    return (n,), args, meta


def sparse_kl_forward(
    logits, ids, probs, mask=None, row_weight=None, denom=None, *, grad_out=None, store_stats=False,
    ignore_index=-100, temperature=1.0, variant="corrected", block_v=None, num_warps=None, resident=None, tile=None,
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
    stats = None
    if store_stats:
        stats = (torch.empty_like(loss), torch.empty_like(loss), torch.empty(n, k, dtype=torch.float32, device=dev))
    if n == 0:
        return (loss,) + (stats if stats else (None, None, None))
    if grad_out is not None and (grad_out.shape != logits.shape or grad_out.stride(-1) != 1):
        raise ValueError("grad_out must be [N, V] with unit last stride")
    tile = tile if tile is not None else tile_config(v, block_v, num_warps, resident=resident, elem=logits.element_size())
    if tile.resident and v > tile.block_v:
        raise ValueError(f"a resident tile needs V <= block_v, got V={v}, block_v={tile.block_v}")
    grid, args, meta = fwd_launch(logits, ids, probs, _i8(mask), _f32(row_weight), _f32(denom), loss, grad_out, stats,
                                  ignore_index=ignore_index, temperature=temperature, variant=variant, tile=tile)
    _sparse_kl_fwd_kernel[grid](*args, **meta)
    return (loss,) + (stats if stats else (None, None, None))


def bwd_launch(logits, grad, ids, coef, lse, csum, scale, *, ignore_index, temperature, tile: Tile):
    """(grid, args, meta) of `_sparse_kl_bwd_kernel` (shared with the sm_90 compile report)."""
    n, v = logits.shape
    args = (logits, logits.stride(0), grad, grad.stride(0), ids, ids.stride(0), coef, coef.stride(0), lse, csum,
            scale, 0 if scale.numel() == 1 else 1, v, ids.shape[1], ignore_index, 1.0 / temperature)
    # The backward streams each tile once (no re-read), so it takes the re-read tiles.
    return (n,), args, dict(BLOCK_V=tile.block_v, BLOCK_K=_block_k(ids.shape[1]), **tile.launch_meta())


def sparse_kl_backward(logits, ids, coef, lse, csum, scale, *, out=None, ignore_index=-100, temperature=1.0, block_v=None,
                       num_warps=None):
    """Two-kernel backward; `scale` is fp32 [N] or [1]; `out` may be `logits` (in place)."""
    logits, ids = _rows(logits), _rows(ids)
    n, v = logits.shape
    grad = torch.empty_like(logits) if out is None else out
    if n == 0:
        return grad
    tile = stream_tile(v) if block_v is None and num_warps is None else tile_config(v, block_v, num_warps, resident=False)
    grid, args, meta = bwd_launch(logits, grad, ids, coef, lse, csum, scale.to(torch.float32).contiguous(),
                                  ignore_index=ignore_index, temperature=temperature, tile=tile)
    _sparse_kl_bwd_kernel[grid](*args, **meta)
    return grad


def can_write_in_place(logits: torch.Tensor) -> bool:
    """Unit last stride and non-overlapping rows: the kernel may overwrite the row it reads."""
    n, v = logits.shape
    return logits.stride(-1) == 1 and (n <= 1 or logits.stride(0) >= v)


@dataclass(frozen=True)
class KLOptions:
    """The non-tensor arguments of `SparseTopKKLFunction` (one autograd input, one None back)."""

    ignore_index: int = -100
    temperature: float = 1.0
    reduction: str = "mean"
    variant: str = "corrected"
    inplace: bool = False
    block_v: int | None = None
    num_warps: int | None = None
    tile: Tile | None = None  # the whole single-pass tile (the benchmark's --tune); overrides block_v / num_warps

    def kernel_kw(self) -> dict:
        return dict(ignore_index=self.ignore_index, temperature=self.temperature, block_v=self.block_v, num_warps=self.num_warps)


class SparseTopKKLFunction(torch.autograd.Function):
    """Autograd wrapper: apply(logits, ids, probs, mask, row_weight, KLOptions, info).

    Single pass (reduction 'sum'/'mean', bf16/fp32 logits): the forward writes the gradient for
    grad_output = 1, into the logits buffer (`inplace=True`; their version counter is bumped, so
    any autograd node that saved them raises the standard "modified by an inplace operation"
    error) or into a new buffer; the backward rescales it on the device only if grad_output != 1.
    Two kernels (reduction 'none'; fp16 logits, where the gradient must be scaled by
    grad_output -- GradScaler's loss scale -- before it is rounded to fp16): the forward stores
    lse, C and c; the backward writes the gradient (in place: into the logits, then bumps their
    version). Nothing is written when the logits need no gradient. Only logits receive a
    gradient; probs and weights are constants. Double backward is rejected.
    """

    @staticmethod
    def forward(ctx, logits, ids, probs, mask, row_weight, opts: KLOptions, info: dict):
        if opts.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {opts.reduction!r}")
        kw = dict(opts.kernel_kw(), variant=opts.variant)
        ctx.opts, ctx.calls = opts, 0
        needs_grad = info.get("grad_enabled", True) and ctx.needs_input_grad[0]  # needs_input_grad ignores no_grad
        denom = weight_sum(ids, probs, mask, row_weight, ignore_index=opts.ignore_index) if opts.reduction == "mean" else None
        reduce = (lambda t: t) if opts.reduction == "none" else (lambda t: t.sum())
        if not needs_grad:
            loss, *_ = sparse_kl_forward(logits, ids, probs, mask, row_weight, denom, **kw)
            return reduce(loss)
        ctx.two_kernels = opts.reduction == "none" or logits.dtype == torch.float16
        if ctx.two_kernels:
            loss, lse, csum, coef = sparse_kl_forward(logits, ids, probs, mask, row_weight, denom, store_stats=True, **kw)
            ctx.save_for_backward(logits, ids, coef, lse, csum, _f32(row_weight), denom)
            return reduce(loss)
        rows = _rows(logits)  # a copy when the last stride is not 1: then it is ours to overwrite
        in_place = (opts.inplace or rows is not logits) and can_write_in_place(rows)
        grad = rows if in_place else torch.empty_like(rows)
        loss, *_ = sparse_kl_forward(rows, ids, probs, mask, row_weight, denom, grad_out=grad, tile=opts.tile, **kw)
        if in_place and rows is logits:
            increment_version(logits)
            info["overwritten"] = True
        ctx.save_for_backward(grad)
        return loss.sum()

    @staticmethod
    def backward(ctx, grad_output):
        if torch.is_grad_enabled():
            raise RuntimeError(DOUBLE_BACKWARD.format(name="sparse_topk_kl"))
        opts = ctx.opts
        ctx.calls += 1
        nones = (None,) * 6
        if not ctx.two_kernels:
            (grad,) = ctx.saved_tensors
            (grad,) = apply_grad_output(ctx, [grad], grad_output, triton=True)
            return (grad.detach(),) + nones  # a fresh alias: autograd may keep it as .grad without a copy
        logits, ids, coef, lse, csum, rw, denom = ctx.saved_tensors
        scale = grad_output.detach().float().reshape(-1)  # [N] for 'none', [1] otherwise
        if rw is not None:
            scale = scale * rw
        if denom is not None:
            scale = scale / torch.where(denom > 0, denom, torch.ones_like(denom))
        in_place = opts.inplace and can_write_in_place(logits)
        grad = sparse_kl_backward(logits, ids, coef, lse, csum, scale, out=logits if in_place else None, **opts.kernel_kw())
        if in_place:
            increment_version(logits)  # a later unpack of these logits (retain_graph, another node) raises
        return (grad.detach(),) + nones
