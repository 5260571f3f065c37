"""Fused linear + sparse top-K KL: the [N, V] logits never exist in full (Liger FLCE style).

Rows are processed in chunks: logits_c = h_c W^T (+ b) into one reused chunk buffer -> one kernel
launch computes the loss and writes d loss / d logits_c in place over that buffer -> grad_h_c =
g_c W (written straight into grad_h) and grad_W += g_c^T h_c (an fp32-output addmm into the
accumulator on CUDA: no [V, d] temporary per chunk). Only the gradients autograd asks for are
computed (frozen head: no grad_W; `no_grad`: loss only). The autograd backward only multiplies
the stored gradients by grad_output, on the device, and skips that when it is 1.

Dtypes: under bf16 autocast, fp32 hidden states and head (T5's) are cast to bf16 once and every
GEMM runs in bf16, as autocast would run `hidden @ weight.T` (calls with `out=` are not
autocast-eligible, so it is done here); grad_W accumulates in fp32 and the gradients come back in
the inputs' dtypes. fp16 is refused (FP16_REFUSED): the gradient exists before GradScaler's scale.
The chunk size comes from a bytes model (`default_chunk_size`).
Peak extra memory: one chunk of logits, grad_h [N, d], the grad_W accumulator [V, d] (fp32 unless
accum_dtype=None) and its cast to the weight dtype (plus the bf16 copies of W and h under autocast).
"""

from __future__ import annotations

import math

import torch

from .functional import flatten, pick_row_weight, resolve_backend
from .grad_output import apply_grad_output
from .reference import VARIANTS, check_block_v, check_inputs, check_values, row_scale, sparse_topk_kl_reference, valid_rows
from .sparse_kl_torch import loss_and_grad

DOUBLE_BACKWARD = (
    "fused_linear_sparse_topk_kl: double backward (create_graph=True) is not supported: the gradients "
    "are computed in the forward, so a Hessian-vector product would silently miss this loss. Compute "
    "the logits explicitly and use sparse_topk_kl(..., backend='reference') for higher-order gradients."
)


MAX_CHUNK_BYTES = 256 << 20  # a chunk of logits stays within this (the fused head's peak memory)
ACCUM_TRAFFIC_SHARE = 0.25  # per-chunk fixed traffic, spread over the chunk's rows, vs the traffic per row


def default_chunk_size(n: int, v: int, d: int, elem: int = 2, acc_elem: int = 4) -> int:
    """Rows per chunk from a bytes model (a power of two, at most n).

    Every chunk pays a fixed cost: the head W [V, d] is read by two GEMMs (logits, grad_h) and
    the grad_W accumulator is read and written by its addmm: F = V * d * (2 * elem + 2 * acc_elem)
    bytes. Every row pays ~5 * V * elem: its logits written, read by the kernel, the gradient
    written over them, then read by the two backward GEMMs. The chunk is the smallest power of two
    at which F / chunk <= ACCUM_TRAFFIC_SHARE of the per-row bytes, capped so a chunk's logits take
    at most MAX_CHUNK_BYTES. Flan-T5-XL (V = 32128, d = 2048, bf16, fp32 accumulator): the model
    asks for 16384 rows and the cap gives 4096 (256 MiB of logits; a 1024-row chunk would move
    ~8.4 GB of accumulator traffic per 16K rows, 4096 rows a quarter of that).
    """
    fixed = v * d * (2 * elem + 2 * acc_elem)
    per_row = 5 * v * elem
    want = max(1, math.ceil(fixed / (ACCUM_TRAFFIC_SHARE * per_row)))
    cap = max(1, MAX_CHUNK_BYTES // max(1, v * elem))
    rows = min(1 << (want - 1).bit_length(), 1 << (cap.bit_length() - 1))
    return max(1, min(n, rows))


FP16_REFUSED = (
    "fused_linear_sparse_topk_kl: fp16 hidden/weight are not supported: the gradient is computed in the "
    "forward, before GradScaler's loss scale is known, so its small entries (~1/(N*V)) would round to 0 in "
    "fp16. Use bf16, fp32 (fp16 autocast keeps fp32 here), or sparse_topk_kl on the logits (it scales fp16 "
    "gradients before rounding)."
)


def compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The GEMMs' dtype: bf16 under bf16 autocast (what autocast would give a matmul), else the
    inputs' dtype. fp16 autocast keeps the inputs' dtype (fp32): see FP16_REFUSED."""
    dev = hidden.device.type
    if hidden.dtype == torch.float32 and torch.is_autocast_enabled(dev) and torch.get_autocast_dtype(dev) == torch.bfloat16:
        return torch.bfloat16
    return hidden.dtype


_NO_OUT_DTYPE = set()  # devices where addmm(out_dtype=...) turned out to be unavailable


def accumulate_mm(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor, first: bool) -> None:
    """acc = a @ b (first) or acc += a @ b, in place, without an [acc]-sized temporary where possible.

    Same dtype: mm/addmm_ into acc. fp32 acc with bf16/fp16 operands on CUDA: addmm with
    out_dtype=float32 (cuBLAS accumulates and adds in fp32, writes acc). Elsewhere (CPU) the
    product is formed in the operand dtype and added (one temporary).
    """
    if acc.dtype == a.dtype:
        if first:
            torch.mm(a, b, out=acc)
        else:
            acc.addmm_(a, b)
        return
    if acc.is_cuda and acc.device not in _NO_OUT_DTYPE:
        try:
            torch.addmm(acc, a, b, out_dtype=acc.dtype, beta=0 if first else 1, out=acc)
            return
        except (RuntimeError, TypeError, NotImplementedError):
            _NO_OUT_DTYPE.add(acc.device)
    prod = a @ b
    if first:
        acc.copy_(prod)
    else:
        acc.add_(prod)


def _chunk_grad(logits, ids, probs, scale, ignore_index, temperature, variant, want_grad, backend):
    """Per-chunk (sum_i scale_i KL_i, its gradient wrt logits or None): the fast PyTorch path
    ("torch") or the reference and autograd ("reference"); `scale` [rows] already holds validity,
    row weights and the mean divisor."""
    kw = dict(weight=scale, ignore_index=ignore_index, temperature=temperature, reduction="sum", variant=variant)
    if backend == "torch":
        return loss_and_grad(logits, ids, probs, want_grad=want_grad, **kw)
    if not want_grad:
        with torch.no_grad():
            return sparse_topk_kl_reference(logits, ids, probs, **kw), None
    x = logits.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = sparse_topk_kl_reference(x, ids, probs, **kw)
        (g,) = torch.autograd.grad(loss, x)
    return loss.detach(), g.to(logits.dtype)


def fused_linear_sparse_kl_forward(
    hidden, weight, bias, ids, probs, mask, row_weight=None, *, ignore_index, temperature, reduction, variant,
    chunk_size, backend, block_v=None, num_warps=None, needs=(True, True, True), accum_dtype=torch.float32, cdtype=None,
):
    """Loss and (grad_hidden, grad_weight, grad_bias) for grad_output = 1; a gradient is None when
    `needs` (hidden, weight, bias) says it is not wanted. `cdtype`: the GEMMs' dtype (default the
    inputs'); the gradients come back in the inputs' dtypes."""
    cdtype = hidden.dtype if cdtype is None else cdtype
    b_dtype = None if bias is None else bias.dtype
    n, d = hidden.shape
    v = weight.shape[0]
    dev = hidden.device
    in_dtype, w_dtype = hidden.dtype, weight.dtype
    if cdtype != in_dtype:  # bf16 autocast: the GEMMs (and the logits chunk) in bf16, accumulators in fp32
        hidden, weight = hidden.to(cdtype), weight.to(cdtype)
        bias = None if bias is None else bias.to(cdtype)
    want_h, want_w, want_b = needs[0], needs[1], bool(needs[2]) and bias is not None
    want_any = want_h or want_w or want_b
    triton = backend == "triton"
    if triton:
        from .sparse_kl import sparse_kl_forward, weight_sum

        denom = weight_sum(ids, probs, mask, row_weight, ignore_index=ignore_index) if reduction == "mean" else None
    else:
        scale = row_scale(valid_rows(ids, probs, mask, ignore_index), row_weight, reduction)
    acc_dtype = w_dtype if accum_dtype is None else accum_dtype
    chunk = chunk_size or default_chunk_size(n, v, d, elem=hidden.element_size(), acc_elem=torch.finfo(acc_dtype).bits // 8)
    buf = torch.empty(min(chunk, n), v, dtype=hidden.dtype, device=dev)
    grad_h = torch.empty_like(hidden) if want_h else None
    grad_w = torch.empty(v, d, dtype=acc_dtype, device=dev) if want_w else None
    grad_b = torch.zeros(v, dtype=torch.float32, device=dev) if want_b else None
    total = torch.zeros((), dtype=torch.float32, device=dev)
    wt = weight.t()
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        h_c = hidden[sl]
        logits = buf[: h_c.shape[0]]
        if bias is None:
            torch.mm(h_c, wt, out=logits)
        else:
            torch.addmm(bias, h_c, wt, out=logits)
        m_c = None if mask is None else mask[sl]
        if triton:
            loss_c, *_ = sparse_kl_forward(
                logits, ids[sl], probs[sl], m_c, None if row_weight is None else row_weight[sl], denom,
                grad_out=logits if want_any else None, ignore_index=ignore_index, temperature=temperature,
                variant=variant, block_v=block_v, num_warps=num_warps,
            )
            total += loss_c.sum()
            g = logits
        else:
            loss_c, g = _chunk_grad(logits, ids[sl], probs[sl], scale[sl], ignore_index, temperature, variant, want_any, backend)
            total += loss_c
        if want_h:
            torch.mm(g, weight, out=grad_h[sl])
        if want_w:
            accumulate_mm(grad_w, g.t(), h_c, first=start == 0)
        if want_b:
            grad_b += g.sum(0, dtype=torch.float32)
    if want_w and n == 0:
        grad_w.zero_()
    if grad_h is not None and grad_h.dtype != in_dtype:
        grad_h = grad_h.to(in_dtype)
    if grad_w is not None and grad_w.dtype != w_dtype:
        grad_w = grad_w.to(w_dtype)
    if grad_b is not None:
        grad_b = grad_b.to(b_dtype)
    return total, grad_h, grad_w, grad_b


class FusedLinearSparseTopKKLFunction(torch.autograd.Function):
    """Gradients are computed in forward; backward scales them by the (scalar) grad_output.

    Only hidden, weight and bias receive gradients (those that require one); the teacher ids/probs
    and row weights are constants. Double backward is rejected.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, ids, probs, mask, row_weight, ignore_index, temperature, reduction, variant,
                chunk_size, backend, block_v, num_warps, accum_dtype, grad_enabled, cdtype):
        needs = tuple(grad_enabled and x for x in ctx.needs_input_grad[:3])  # needs_input_grad ignores no_grad
        with torch.autocast(hidden.device.type, enabled=False):  # the dtypes are decided here (cdtype), not per op
            loss, gh, gw, gb = fused_linear_sparse_kl_forward(
                hidden, weight, bias, ids, probs, mask, row_weight, ignore_index=ignore_index, temperature=temperature,
                reduction=reduction, variant=variant, chunk_size=chunk_size, backend=backend, block_v=block_v,
                num_warps=num_warps, needs=needs, accum_dtype=accum_dtype, cdtype=cdtype,
            )
        ctx.triton, ctx.calls = backend == "triton", 0
        ctx.save_for_backward(gh, gw, gb)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        if torch.is_grad_enabled():
            raise RuntimeError(DOUBLE_BACKWARD)
        ctx.calls += 1
        grads = apply_grad_output(ctx, list(ctx.saved_tensors), grad_out, triton=ctx.triton, name="fused_linear_sparse_topk_kl")
        return tuple(grads) + (None,) * 15


def fused_linear_sparse_topk_kl(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    ids: torch.Tensor,
    probs: torch.Tensor,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    row_weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    temperature: float = 1.0,
    reduction: str = "mean",
    variant: str = "corrected",
    chunk_size: int | None = None,
    backend: str = "auto",
    validate: bool = True,
    block_v: int | None = None,
    num_warps: int | None = None,
    accum_dtype: torch.dtype | None = torch.float32,
) -> torch.Tensor:
    """Sparse top-K KL of softmax((hidden @ weight.T + bias) / T), without materialising [N, V].

    hidden [..., d]; weight [V, d] (the LM head); bias [V] or None; ids/probs [..., K]; mask [...]
    or None; row_weight [...] per-row float weights (the `weight=` of `sparse_topk_kl`) or None.
    reduction: 'sum' or 'mean' (a per-row 'none' would need per-row grad_output inside grad_W).
    accum_dtype: dtype of the grad_W accumulator across chunks (fp32 by default; None accumulates
    in place in weight.dtype: no fp32 [V, d] buffer, one rounding per chunk); grad_b always sums in
    fp32. Same semantics as `kernels.sparse_topk_kl` otherwise.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean' for the fused-linear loss, got {reduction!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    check_block_v(block_v)
    d = hidden.shape[-1]
    if weight.dim() != 2 or weight.shape[1] != d:
        raise ValueError(f"weight must be [V, d={d}], got {tuple(weight.shape)}")
    if weight.dtype != hidden.dtype:
        raise TypeError(f"hidden ({hidden.dtype}) and weight ({weight.dtype}) dtypes must match")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must be [V={weight.shape[0]}], got {tuple(bias.shape)}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if accum_dtype not in (None, torch.float32, weight.dtype):
        raise ValueError(f"accum_dtype must be None, torch.float32 or the weight dtype, got {accum_dtype}")
    # flatten() checks ids/probs/mask/row_weight shapes against a meta [..., V] stand-in for the logits.
    meta = torch.empty(*hidden.shape[:-1], weight.shape[0], dtype=hidden.dtype, device="meta")
    _, ids2, probs2, mask2, rw2 = flatten(meta, ids, probs, mask, row_weight)
    h = hidden.reshape(-1, d)
    _check(h, weight, ids2, probs2, mask2, rw2, ignore_index, temperature, validate)
    chosen = resolve_backend(hidden.device, backend)
    cdtype = compute_dtype(hidden)
    if cdtype == torch.float16:
        raise TypeError(FP16_REFUSED)
    return FusedLinearSparseTopKKLFunction.apply(
        h, weight, bias, ids2, probs2, mask2, rw2, ignore_index, temperature, reduction, variant, chunk_size, chosen,
        block_v, num_warps, accum_dtype, torch.is_grad_enabled(), cdtype,
    )


def _check(h, weight, ids, probs, mask, row_weight, ignore_index, temperature, validate):
    """check_inputs on a [N, V] meta-device view, so no logits-sized tensor is created."""
    meta = torch.empty(h.shape[0], weight.shape[0], dtype=h.dtype, device="meta")
    on_meta = [None if t is None else t.to("meta") for t in (ids, probs, mask, row_weight)]
    check_inputs(meta, *on_meta[:3], ignore_index, temperature, False, weight=on_meta[3])
    for name, t in (("ids", ids), ("probs", probs), ("mask", mask), ("row_weight", row_weight), ("weight", weight)):
        if t is not None and t.device != h.device:
            raise ValueError(f"{name} is on {t.device}, hidden on {h.device}")
    if validate:
        check_values(ids, probs, weight.shape[0], ignore_index, row_weight)


class FusedLinearSparseTopKKLLoss(torch.nn.Module):
    """nn.Module form; pass the LM head's weight (and bias) at call time, like Liger's FLCE."""

    def __init__(self, *, ignore_index=-100, temperature=1.0, reduction="mean", variant="corrected", chunk_size=None,
                 backend="auto", validate=True, block_v=None, num_warps=None, accum_dtype=torch.float32):
        super().__init__()
        check_block_v(block_v)
        self.kw = dict(
            ignore_index=ignore_index, temperature=temperature, reduction=reduction, variant=variant,
            chunk_size=chunk_size, backend=backend, validate=validate, block_v=block_v, num_warps=num_warps,
            accum_dtype=accum_dtype,
        )

    def forward(self, hidden, weight, ids, probs, mask=None, bias=None, row_weight=None):
        return fused_linear_sparse_topk_kl(hidden, weight, ids, probs, mask, bias, row_weight=row_weight, **self.kw)
