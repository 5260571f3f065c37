"""One behaviour across backends: every case runs on the Triton kernels (CPU: interpreter), the
fast PyTorch path and the reference, through the same public entry point, and must give the same
answer or the same error. Also the per-row weight semantics and the validation's single host sync."""

from __future__ import annotations

import math

import pytest
import torch
from kl_testutil import SyncCounter, assert_grad_close, make_inputs, make_weight

from kernels import FusedLinearSparseTopKKLLoss, SparseTopKKLLoss, fused_linear_sparse_topk_kl, sparse_topk_kl

BACKENDS = ["triton", "torch", "reference"]


def loss_and_grad(logits, ids, probs, mask=None, **kw):
    z = logits.clone().requires_grad_(True)
    loss = sparse_topk_kl(z, ids, probs, mask, **kw)
    loss.sum().backward()
    return loss.detach(), z.grad


@pytest.mark.parametrize("backend", BACKENDS)
def test_float_masks_are_rejected_and_integer_masks_mean_nonzero(backend):
    logits, ids, probs, mask = make_inputs(8, 100, 4)
    with pytest.raises(TypeError, match="mask must be a bool"):
        sparse_topk_kl(logits, ids, probs, mask.float() * 0.5, backend=backend)
    want = loss_and_grad(logits, ids, probs, mask, backend=backend, reduction="none")
    for as_int in (mask.to(torch.int64), mask.to(torch.uint8) * 3):
        got = loss_and_grad(logits, ids, probs, as_int, backend=backend, reduction="none")
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_probs_and_weights_are_constants(backend, reduction):
    logits, ids, probs, mask = make_inputs(8, 100, 4)
    p = probs.clone().requires_grad_(True)
    w = make_weight(8).requires_grad_(True)
    z = logits.clone().requires_grad_(True)
    sparse_topk_kl(z, ids, p, mask, weight=w, backend=backend, reduction=reduction).sum().backward()
    assert p.grad is None and w.grad is None and z.grad is not None


def neg_inf_case():
    logits, ids, probs, mask = make_inputs(8, 64, 4, pad_frac=0.0, mask_frac=0.0)
    logits[0, 30:] = -math.inf  # a masked vocabulary tail
    ids[0] = torch.arange(4)
    logits[1, ids[1, 0]] = -math.inf  # zero student mass on a teacher token
    logits[4] = -math.inf  # an all -inf row
    logits[5] = -math.inf  # an all -inf row that is dropped for zero teacher mass
    probs[5] = 0.0
    return logits, ids, probs, mask


@pytest.mark.parametrize("variant", ["corrected", "faithful"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_neg_inf_rows_agree_and_never_give_nan(variant, reduction):
    logits, ids, probs, mask = neg_inf_case()
    results = {b: loss_and_grad(logits, ids, probs, mask, backend=b, variant=variant, reduction=reduction, block_v=16) for b in BACKENDS}
    l_r, g_r = results["reference"]
    for loss, grad in results.values():
        assert not torch.isnan(loss).any() and torch.isfinite(grad).all()
        torch.testing.assert_close(loss, l_r, atol=1e-5, rtol=1e-5)  # +inf (corrected) where the true KL is infinite
        assert_grad_close(grad, g_r, torch.float32)
        if reduction == "none":
            assert (loss[4] == math.inf) == (variant == "corrected")
            assert loss[5] == 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "change, error",
    [
        (lambda a: {**a, "ids": a["ids"][:, :0], "probs": a["probs"][:, :0]}, r"K \(the teacher's top-k width"),
        (lambda a: {**a, "ids": torch.zeros(4, 65, dtype=torch.int64), "probs": torch.zeros(4, 65)}, r"must be in \[1, 64\]"),
        (lambda a: {**a, "block_v": 0}, "block_v must be"),
        (lambda a: {**a, "block_v": 48}, "block_v must be"),
        (lambda a: {**a, "block_v": 8}, "block_v must be"),
        (lambda a: {**a, "block_v": 1 << 17}, "block_v must be"),
        (lambda a: {**a, "weight": torch.ones(3)}, "weight shape"),
        (lambda a: {**a, "weight": torch.ones(4, dtype=torch.int64)}, "weight must be floating point"),
        (lambda a: {**a, "weight": torch.tensor([1.0, -1.0, 1.0, 1.0])}, "weight must be finite and >= 0"),
        (lambda a: {**a, "weight": torch.tensor([1.0, math.nan, 1.0, 1.0])}, "weight must be finite and >= 0"),
        (lambda a: {**a, "weight": torch.ones(4), "row_weight": torch.ones(4)}, "not both"),
        (lambda a: {**a, "mask": a["mask"].float()}, "mask must be a bool"),
    ],
)
def test_errors_are_the_same_on_both_backends(backend, change, error):
    logits, ids, probs, mask = make_inputs(4, 50, 5)
    args = change(dict(logits=logits, ids=ids, probs=probs, mask=mask, backend=backend))
    with pytest.raises((ValueError, TypeError), match=error):
        sparse_topk_kl(args.pop("logits"), args.pop("ids"), args.pop("probs"), args.pop("mask"), **args)


@pytest.mark.parametrize("backend", BACKENDS)
def test_weight_semantics(backend):
    # none: w_i * KL_i; sum: their sum; mean: the sum over the summed weight of the valid rows.
    # A zero weight drops a row exactly, even where its KL is +inf; row_weight= is the same argument.
    logits, ids, probs, mask = make_inputs(10, 120, 4, pad_frac=0.0)
    logits[5, ids[5, 0]] = -math.inf  # KL = +inf on row 5 (corrected) ...
    weight = make_weight(10, zero_frac=0.0)
    weight[5] = 0.0  # ... which its zero weight removes
    kw = dict(backend=backend, block_v=64)
    plain = sparse_topk_kl(logits, ids, probs, mask, reduction="none", **kw)
    assert plain[5] == math.inf or not mask[5]
    none = sparse_topk_kl(logits, ids, probs, mask, weight=weight, reduction="none", **kw)
    keep = weight > 0
    torch.testing.assert_close(none[keep], weight[keep] * plain[keep])
    assert none[5] == 0
    total = sparse_topk_kl(logits, ids, probs, mask, weight=weight, reduction="sum", **kw)
    torch.testing.assert_close(total, none.sum())
    valid = mask & (probs.sum(-1) > 0)
    mean = sparse_topk_kl(logits, ids, probs, mask, weight=weight, reduction="mean", **kw)
    torch.testing.assert_close(mean, none.sum() / weight[valid].sum())
    alias = sparse_topk_kl(logits, ids, probs, mask, row_weight=weight, reduction="mean", **kw)
    assert torch.equal(alias, mean)
    _, grad = loss_and_grad(logits, ids, probs, mask, weight=weight, reduction="mean", **kw)
    assert torch.isfinite(grad).all() and torch.all(grad[5] == 0)
    zero = sparse_topk_kl(logits, ids, probs, mask, weight=torch.zeros(10), reduction="mean", **kw)
    assert zero.item() == 0.0  # no valid weight at all: 0, not 0/0


@pytest.mark.parametrize("backend", BACKENDS)
def test_validation_syncs_the_host_at_most_once(backend):
    logits, ids, probs, mask = make_inputs(8, 100, 5)
    weight = make_weight(8)
    for validate, most in ((True, 1), (False, 0)):
        z = logits.clone().requires_grad_(True)
        with SyncCounter() as syncs:
            loss = sparse_topk_kl(z, ids, probs, mask, weight=weight, validate=validate, backend=backend)
        assert syncs.count == most, syncs.ops
        with SyncCounter() as syncs:
            loss.backward()
        # The Triton backward never syncs; the CPU paths read small values on the host (free there).
        assert syncs.count == 0 or backend != "triton", syncs.ops
    with SyncCounter() as syncs:
        SparseTopKKLLoss(validate=False, backend=backend)(logits, ids, probs, mask, weight)
    assert syncs.count == 0, syncs.ops
    bad = ids.clone()
    bad[0, 0] = 100
    with pytest.raises(ValueError, match="ids must lie"):
        SparseTopKKLLoss(backend=backend)(logits, bad, probs, mask)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_linear_module_takes_validate_and_row_weights(backend):
    _, ids, probs, mask = make_inputs(6, 100, 3)
    g = torch.Generator().manual_seed(2)
    h, w = torch.randn(6, 8, generator=g), torch.randn(100, 8, generator=g)
    rw = make_weight(6)
    with SyncCounter() as syncs:
        got = FusedLinearSparseTopKKLLoss(validate=False, backend=backend, chunk_size=4)(h, w, ids, probs, mask, row_weight=rw)
    assert syncs.count == 0, syncs.ops
    want = sparse_topk_kl(h @ w.t(), ids, probs, mask, weight=rw, backend="reference")
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match="mask must be a bool"):
        fused_linear_sparse_topk_kl(h, w, ids, probs, mask.float(), backend=backend)
    with pytest.raises(ValueError, match="weight must be finite"):
        fused_linear_sparse_topk_kl(h, w, ids, probs, mask, row_weight=-rw - 1, backend=backend)
