"""Pure-PyTorch references: the oracle the Triton kernels are tested against, and the CPU path.

Two references live here:

* `sparse_topk_kl_reference` works on the sparse teacher (ids [N, K], probs [N, K]) with the same
  conventions as the kernel (padding, duplicate merging, valid rows, temperature, reductions);
  its gradient comes from autograd, so it checks the kernel's hand-written gradient independently.
* `authors_dense_kl` is Fu et al.'s formula on a dense [N, V] target, verbatim; with
  `dense_target_from_topk` it checks that the `faithful` closed form equals the authors' loss.
"""

from __future__ import annotations

import torch

EPS = 1e-10  # the authors' epsilon, inside and outside the log
VARIANTS = ("corrected", "faithful")
REDUCTIONS = ("none", "sum", "mean")


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


def _reduce(per_row: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_row
    total = per_row.sum()
    if reduction == "sum":
        return total
    return total / valid.sum().clamp(min=1)


def sparse_topk_kl_reference(
    logits: torch.Tensor,
    ids: torch.Tensor,
    probs: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    ignore_index: int = -100,
    temperature: float = 1.0,
    reduction: str = "mean",
    variant: str = "corrected",
    compute_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Per-row KL(p_teacher || softmax(logits / T)) from a top-K teacher; differentiable.

    logits [N, V]; ids [N, K] (int, `ignore_index` = padding); probs [N, K]; mask [N] bool or None.
    A row is valid when its mask is true and its teacher mass (over non-padding entries) is > 0;
    invalid rows have loss 0 and gradient 0, and `mean` divides by the number of valid rows.
    See kernels/README.md for the two variants.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    x = logits.to(compute_dtype) / temperature
    p, merged, first = merged_topk(ids, probs.to(compute_dtype), ignore_index)
    p, merged = p.to(compute_dtype), merged.to(compute_dtype)
    mass = p.sum(-1)
    valid = mass > 0
    if mask is not None:
        valid = valid & mask.to(torch.bool)
    lse = torch.logsumexp(x, dim=-1, keepdim=True)
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
    per_row = torch.where(valid, per_row, 0.0)
    return _reduce(per_row, valid, reduction)


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


def check_inputs(logits, ids, probs, mask, ignore_index: int, temperature: float, validate: bool) -> None:
    """Host-side validation with clear errors; `validate` adds the value checks that sync the device."""
    if logits.dim() != 2:
        raise ValueError(f"logits must be [N, V], got shape {tuple(logits.shape)}")
    if logits.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"logits dtype must be float32/bfloat16/float16, got {logits.dtype}")
    n, v = logits.shape
    if ids.dim() != 2 or ids.shape[0] != n:
        raise ValueError(f"ids must be [N={n}, K], got shape {tuple(ids.shape)}")
    if ids.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"ids dtype must be int32/int64, got {ids.dtype}")
    if probs.shape != ids.shape:
        raise ValueError(f"probs shape {tuple(probs.shape)} must equal ids shape {tuple(ids.shape)}")
    if not probs.is_floating_point():
        raise TypeError(f"probs must be floating point, got {probs.dtype}")
    k = ids.shape[1]
    if not 1 <= k <= 64:
        raise ValueError(f"K must be in [1, 64], got {k}")
    if mask is not None and mask.shape != (n,):
        raise ValueError(f"mask must be [N={n}], got shape {tuple(mask.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    for name, t in (("ids", ids), ("probs", probs)) + ((("mask", mask),) if mask is not None else ()):
        if t.device != logits.device:
            raise ValueError(f"{name} is on {t.device}, logits on {logits.device}")
    if validate:
        check_values(ids, probs, v, ignore_index)


def check_values(ids: torch.Tensor, probs: torch.Tensor, vocab_size: int, ignore_index: int) -> None:
    """Id bounds and probs >= 0, finite (non-padding entries only). Syncs the device."""
    if ids.numel() == 0:
        return
    keep = ids != ignore_index
    if bool(((ids < 0) | (ids >= vocab_size))[keep].any()):
        raise ValueError(f"ids must lie in [0, {vocab_size}) or equal ignore_index={ignore_index}")
    pk = probs[keep]
    if not bool(torch.isfinite(pk).all()) or bool((pk < 0).any()):
        raise ValueError("probs must be finite and >= 0 on non-padding entries")
