"""Pure-PyTorch references: the oracle the Triton kernels are tested against, and the CPU path.

Two references live here:

* `sparse_topk_kl_reference` works on the sparse teacher (ids [N, K], probs [N, K]) with the same
  conventions as the kernel (padding, duplicate merging, valid rows, row weights, temperature,
  reductions, -inf logits); its gradient comes from autograd, so it checks the kernel's
  hand-written gradient independently.
* `authors_dense_kl` is Fu et al.'s formula on a dense [N, V] target, verbatim; with
  `dense_target_from_topk` it checks that the `faithful` closed form equals the authors' loss.

The input checks shared by every backend (`check_inputs`, `check_values`, `bool_mask`,
`check_block_v`) live here too, so both backends accept and reject exactly the same inputs.
"""

from __future__ import annotations

import torch

EPS = 1e-10  # the authors' epsilon, inside and outside the log
VARIANTS = ("corrected", "faithful")
REDUCTIONS = ("none", "sum", "mean")
MAX_K = 64
BLOCK_V_RANGE = (16, 65536)


def merged_topk(ids: torch.Tensor, probs: torch.Tensor, ignore_index: int):
    """Padding-masked probs, per-entry merged mass of its id, and first-occurrence flags.

    Duplicate ids in a row are treated as one entry whose mass is the sum (a scatter-add into the
    dense target). `merged[n, k]` is the total mass of id `ids[n, k]`; `first[n, k]` marks the first
    occurrence, so sums over `first` entries run over distinct ids.
    """
    keep = ids != ignore_index
    p = torch.where(keep, probs.to(torch.float64 if probs.dtype == torch.float64 else torch.float32), 0.0)
    same = (ids.unsqueeze(-1) == ids.unsqueeze(-2)) & keep.unsqueeze(-1) & keep.unsqueeze(-2)
    merged = (same * p.unsqueeze(-2)).sum(-1)
    k = ids.shape[-1]
    earlier = torch.ones(k, k, dtype=torch.bool, device=ids.device).tril(-1)
    first = keep & ~(same & earlier).any(-1)
    return p, merged, first


def valid_rows(ids: torch.Tensor, probs: torch.Tensor, mask: torch.Tensor | None, ignore_index: int) -> torch.Tensor:
    """[N] bool: the mask is true and the teacher mass over non-padding entries is > 0."""
    valid = torch.where(ids != ignore_index, probs.detach().float(), 0.0).sum(-1) > 0
    return valid if mask is None else valid & mask


def row_scale(valid: torch.Tensor, weight: torch.Tensor | None, reduction: str, dtype=torch.float32) -> torch.Tensor:
    """[N] d(reduced loss) / d(unweighted per-row loss), before grad_output.

    `none` and `sum`: w_i on valid rows, 0 elsewhere (w = 1 without weights). `mean`: the same
    divided by sum_i w_i over valid rows (the number of valid rows without weights; 1 when that
    sum is 0) -- PyTorch's weighted-mean convention. Device ops only: no host sync.
    """
    w = valid.to(dtype) if weight is None else torch.where(valid, weight.detach().to(dtype), 0.0)
    if reduction == "mean":
        total = w.sum()
        w = w / torch.where(total > 0, total, torch.ones_like(total))
    return w


def sparse_topk_kl_reference(
    logits: torch.Tensor,
    ids: torch.Tensor,
    probs: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    temperature: float = 1.0,
    reduction: str = "mean",
    variant: str = "corrected",
    compute_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Per-row KL(p_teacher || softmax(logits / T)) from a top-K teacher; differentiable in logits.

    logits [N, V]; ids [N, K] (int, `ignore_index` = padding); probs [N, K]; mask [N] bool/integer
    or None; weight [N] float or None. A row is valid when its mask is true and its teacher mass
    (over non-padding entries) is > 0; invalid rows have loss 0 and gradient 0. The per-row loss is
    multiplied by its weight (a zero weight gives exactly 0, even where the KL is +inf); `mean`
    divides by the summed weight of the valid rows. probs and weight are constants (no gradient).
    A row whose logits are all -inf has q = 0 everywhere, as in the kernel (no NaN).
    See kernels/README.md for the two variants.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    mask = bool_mask(mask)
    probs = probs.detach()
    x = logits.to(compute_dtype) / temperature
    p, merged, first = merged_topk(ids, probs.to(compute_dtype), ignore_index)
    p, merged = p.to(compute_dtype), merged.to(compute_dtype)
    mass = p.sum(-1)
    valid = valid_rows(ids, probs, mask, ignore_index)
    # An all -inf row has no softmax; its lse is taken over zeros (the `where` passes no gradient
    # there), so the teacher ids get log q = -inf, q = 0, exactly the kernel's convention.
    dead = torch.isneginf(x).all(-1, keepdim=True)
    lse = torch.logsumexp(torch.where(dead, 0.0, x), dim=-1, keepdim=True)
    safe_ids = torch.where(ids == ignore_index, 0, ids).long()
    logq = x.gather(-1, safe_ids) - lse  # [N, K]
    if variant == "corrected":
        inv = torch.where(valid, 1.0 / torch.where(valid, mass, 1.0), 0.0).unsqueeze(-1)
        phat, mhat = p * inv, merged * inv
        # sum_k phat_k log Phat_k runs over distinct ids (duplicates share Phat), which is the entropy term.
        ent = torch.where(phat > 0, phat * torch.log(torch.where(phat > 0, mhat, 1.0)), 0.0)
        cross = torch.where(phat > 0, phat * logq, 0.0)
        per_row = (ent - cross).sum(-1)
    else:
        q = logq.exp()
        term = merged * torch.log(merged / (q + EPS) + EPS)
        per_row = torch.where(first & (merged > 0), term, 0.0).sum(-1)
    scale = row_scale(valid, weight, reduction, compute_dtype)
    per_row = torch.where(scale != 0, per_row * scale, 0.0)
    return per_row if reduction == "none" else per_row.sum()


def dense_target_from_topk(ids: torch.Tensor, probs: torch.Tensor, vocab_size: int, ignore_index: int = -100) -> torch.Tensor:
    """The authors' dense [N, V] target (duplicates summed, padding dropped, no renormalisation)."""
    keep = ids != ignore_index
    target = torch.zeros(ids.shape[0], vocab_size, dtype=torch.float32, device=ids.device)
    target.scatter_add_(1, torch.where(keep, ids, 0).long(), torch.where(keep, probs.float(), 0.0))
    return target


def authors_dense_kl(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """Fu et al.'s `kl_divergence`: sum_v p0 * log(p0 / (p1 + 1e-10) + 1e-10), p1 = softmax(logits).

    Masked mean over rows with denominator = mask sum, as in train_distill_simple.py (no temperature).
    """
    p1 = torch.softmax(logits.float(), dim=-1)
    per_row = (target * torch.log(target / (p1 + EPS) + EPS)).sum(-1)
    if mask is None:
        mask = torch.ones(per_row.shape, dtype=torch.bool, device=per_row.device)
    per_row = per_row * mask
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    return per_row.sum() / mask.sum().clamp(min=1)


def eager_sparse_kl(logits, ids, probs, mask=None, temperature: float = 1.0) -> torch.Tensor:
    """The plain eager baseline (log_softmax + gather, renormalised teacher, no duplicate handling).

    Used by the benchmarks and `torch.compile`; it assumes no padding/duplicates in `ids`.
    """
    logq = torch.log_softmax(logits.float() / temperature, dim=-1).gather(-1, ids.long())
    p = probs.float()
    p = p / p.sum(-1, keepdim=True)
    per_row = (p * (torch.log(p.clamp_min(1e-30)) - logq)).sum(-1)
    if mask is None:
        return per_row.mean()
    return (per_row * mask).sum() / mask.sum().clamp(min=1)


def bool_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """The row mask as bool: bool as is, integers as `!= 0`; floats are rejected (use `weight=`)."""
    if mask is None or mask.dtype == torch.bool:
        return mask
    if mask.is_floating_point() or mask.is_complex():
        raise TypeError(
            f"mask must be a bool (or integer 0/1) tensor, got {mask.dtype}; pass per-row float weights as weight="
        )
    return mask != 0


def check_block_v(block_v: int | None) -> None:
    """block_v: None (heuristic) or a power of two in BLOCK_V_RANGE; checked on every backend."""
    if block_v is None:
        return
    lo, hi = BLOCK_V_RANGE
    if isinstance(block_v, bool) or not isinstance(block_v, int) or not lo <= block_v <= hi or block_v & (block_v - 1):
        raise ValueError(f"block_v must be None or a power of two in [{lo}, {hi}], got {block_v!r}")


def check_inputs(logits, ids, probs, mask, ignore_index: int, temperature: float, validate: bool, weight=None) -> None:
    """Shape/dtype/device checks with clear errors; `validate` adds the value checks (one device sync)."""
    if logits.dim() != 2:
        raise ValueError(f"logits must be [N, V], got shape {tuple(logits.shape)}")
    if logits.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"logits dtype must be float32/bfloat16/float16, got {logits.dtype}")
    n, v = logits.shape
    if v < 1:
        raise ValueError("logits must have a non-empty vocabulary dimension (V >= 1)")
    if ids.dim() != 2 or ids.shape[0] != n:
        raise ValueError(f"ids must be [N={n}, K], got shape {tuple(ids.shape)}")
    if ids.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"ids dtype must be int32/int64, got {ids.dtype}")
    k = ids.shape[1]
    if not 1 <= k <= MAX_K:
        raise ValueError(f"K (the teacher's top-k width, last dim of ids) must be in [1, {MAX_K}], got {k}")
    if probs.shape != ids.shape:
        raise ValueError(f"probs shape {tuple(probs.shape)} must equal ids shape {tuple(ids.shape)}")
    if not probs.is_floating_point():
        raise TypeError(f"probs must be floating point, got {probs.dtype}")
    if mask is not None and mask.shape != (n,):
        raise ValueError(f"mask must be [N={n}], got shape {tuple(mask.shape)}")
    bool_mask(mask)
    if weight is not None:
        if weight.shape != (n,):
            raise ValueError(f"weight must be [N={n}] (shaped like mask), got shape {tuple(weight.shape)}")
        if not weight.is_floating_point():
            raise TypeError(f"weight must be floating point, got {weight.dtype}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    others = (("ids", ids), ("probs", probs), ("mask", mask), ("weight", weight))
    for name, t in others:
        if t is not None and t.device != logits.device:
            raise ValueError(f"{name} is on {t.device}, logits on {logits.device}")
    if validate:
        check_values(ids, probs, v, ignore_index, weight)


def check_values(ids: torch.Tensor, probs: torch.Tensor, vocab_size: int, ignore_index: int, weight: torch.Tensor | None = None) -> None:
    """Id bounds, probs finite and >= 0 (non-padding entries), weight finite and >= 0.

    All checks are reduced on the device into one small integer, read back once: one host sync.
    """
    if ids.numel() == 0:
        return
    keep = ids != ignore_index
    bad_ids = (keep & ((ids < 0) | (ids >= vocab_size))).any()
    bad_probs = (keep & ~(torch.isfinite(probs) & (probs >= 0))).any()
    code = bad_ids.to(torch.int32) + 2 * bad_probs.to(torch.int32)
    if weight is not None and weight.numel():
        code = code + 4 * (~(torch.isfinite(weight) & (weight >= 0))).any().to(torch.int32)
    code = int(code.item())  # the one sync
    if code & 1:
        raise ValueError(f"ids must lie in [0, {vocab_size}) or equal ignore_index={ignore_index}")
    if code & 2:
        raise ValueError("probs must be finite and >= 0 on non-padding entries")
    if code & 4:
        raise ValueError("weight must be finite and >= 0")
