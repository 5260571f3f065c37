"""The fast PyTorch path (`backend="torch"`, what `auto` runs on CPU) against the slow reference.

Values and gradients on drawn inputs (the same strategies as the kernel's property tests, more
examples since this path is cheap), the one-hot case against `F.cross_entropy`, higher-order and
repeated backward, and the promise behind its speed: one fused pass over [N, V] in the forward,
one in the backward, none for validation.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from kl_testutil import (
    DTYPES, LOSS_TOL, RANDOM_SHAPES, SMALL_VOCAB, assert_grad_close, check_random_case, make_inputs, make_weight,
    property_settings, run_both,
)

from kernels import fused_linear_sparse_topk_kl, sparse_topk_kl, sparse_topk_kl_reference
from kernels.sparse_kl_torch import DOUBLE_BACKWARD_MODIFIED


@property_settings(max_examples=150)
@given(**RANDOM_SHAPES, reduction=st.sampled_from(["none", "sum", "mean"]), dtype=st.sampled_from(DTYPES))
def test_random_shapes_match_the_reference(n, v, k, temperature, variant, seed, weighted, reduction, dtype):
    check_random_case(n, v, k, temperature, variant, seed, dtype=dtype, reduction=reduction, weighted=weighted, backend="torch")


@property_settings(max_examples=150)
@given(**SMALL_VOCAB)
def test_small_vocab_matches_the_reference(n, v, k, temperature, variant, seed, dtype, reduction, weighted):
    check_random_case(n, v, k, temperature, variant, seed, dtype=dtype, reduction=reduction, weighted=weighted, backend="torch")


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", ["corrected", "faithful"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_matches_reference(dtype, variant, reduction, weighted):
    # Padding, a duplicate id, masked and empty rows, zero weights, T != 1, grad_output != 1.
    logits, ids, probs, mask = make_inputs(37, 1271, 7, dtype=dtype, id_dtype=torch.int32 if variant == "faithful" else torch.int64)
    weight = make_weight(37) if weighted else None
    l1, l2, g1, g2 = run_both(logits, ids, probs, mask, backend="torch", weight=weight, reduction=reduction, variant=variant,
                              temperature=1.7)
    tol = LOSS_TOL[dtype] * (2 if weighted else 1)
    torch.testing.assert_close(l1.double(), l2, atol=tol, rtol=tol)
    assert_grad_close(g1, g2, dtype)
    assert g1.dtype == dtype and l1.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_one_hot_corrected_is_cross_entropy(dtype, reduction):
    # Sample matching as the trainer runs it: one-hot targets, padded positions masked out.
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(64, 3000, generator=g) * 3).to(dtype)
    labels = torch.randint(0, 3000, (64,), generator=g)
    labels[::7] = -100
    z1, z2 = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ours = sparse_topk_kl(z1, labels.clamp(min=0)[:, None], torch.ones(64, 1), labels != -100, reduction=reduction,
                          variant="corrected")
    ce = F.cross_entropy(z2.float(), labels, ignore_index=-100, reduction=reduction)
    ours.backward()
    ce.backward()
    torch.testing.assert_close(ours, ce, atol=0, rtol=2e-6)  # the same log_softmax; only the order of the sum differs
    torch.testing.assert_close(z1.grad.float(), z2.grad.float(), atol=1e-7 if dtype == torch.float32 else 0, rtol=0)


def test_neg_inf_conventions_match_the_reference():
    logits, ids, probs, mask = make_inputs(8, 64, 4, pad_frac=0.0, mask_frac=0.0)
    logits[0, 30:] = -math.inf  # a masked vocabulary tail
    ids[0] = torch.arange(4)
    logits[1, ids[1, 0]] = -math.inf  # zero student mass on a teacher token
    logits[4] = -math.inf  # an all -inf row
    logits[5] = -math.inf
    probs[5] = 0.0  # ... dropped for zero teacher mass
    weight = torch.ones(8)
    weight[1] = 0.0  # a zero weight drops the +inf row exactly
    for variant in ("corrected", "faithful"):
        for w in (None, weight):
            l1, l2, g1, g2 = run_both(logits, ids, probs, mask, backend="torch", variant=variant, reduction="none", weight=w)
            assert torch.equal(torch.isinf(l1), torch.isinf(l2.float())) and not torch.isnan(l1).any()
            fin = torch.isfinite(l2)
            torch.testing.assert_close(l1[fin].double(), l2[fin], atol=1e-5, rtol=1e-5)
            assert torch.isfinite(g1).all()
            assert_grad_close(g1, g2, torch.float32)
            assert torch.all(g1[0, 30:] == 0)


def test_probs_weights_are_constants_and_no_grad_saves_nothing():
    logits, ids, probs, mask = make_inputs(8, 100, 4)
    p, w = probs.clone().requires_grad_(True), make_weight(8).requires_grad_(True)
    z = logits.clone().requires_grad_(True)
    sparse_topk_kl(z, ids, p, mask, weight=w, backend="torch").backward()
    assert p.grad is None and w.grad is None and z.grad is not None
    with torch.no_grad():
        out = sparse_topk_kl(z, ids, probs, mask, backend="torch")
    assert out.grad_fn is None


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_retained_graph_and_double_backward(reduction):
    logits, ids, probs, mask = make_inputs(6, 40, 3)
    z = logits.double().float().requires_grad_(True)
    loss = sparse_topk_kl(z * 1.0, ids, probs, mask, reduction=reduction, backend="torch").sum()
    (g1,) = torch.autograd.grad(2 * loss, z, retain_graph=True)
    (g2,) = torch.autograd.grad(3 * loss, z, retain_graph=True)
    torch.testing.assert_close(g2, 1.5 * g1)
    # create_graph: the gradient is itself differentiable (the reference's autograd behind it).
    (g,) = torch.autograd.grad(loss, z, create_graph=True)
    u = torch.randn_like(z)
    (hvp,) = torch.autograd.grad((g * u).sum(), z)
    zr = z.detach().double().requires_grad_(True)
    ref = sparse_topk_kl_reference(zr, ids, probs, mask, reduction=reduction, compute_dtype=torch.float64).sum()
    (gr,) = torch.autograd.grad(ref, zr, create_graph=True)
    (hvp_ref,) = torch.autograd.grad((gr * u.double()).sum(), zr)
    torch.testing.assert_close(hvp.double(), hvp_ref, atol=1e-5, rtol=1e-4)


def test_double_backward_refuses_logits_modified_in_place():
    logits, ids, probs, mask = make_inputs(6, 40, 3)
    z = logits.clone().requires_grad_(True)
    x = z * 1.0
    loss = sparse_topk_kl(x, ids, probs, mask, backend="torch")
    with torch.no_grad():
        x.add_(1.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        torch.autograd.grad(loss, z, create_graph=True)
    assert "backend='reference'" in DOUBLE_BACKWARD_MODIFIED


class OpsOverLogits:
    """Names of the aten ops that read or write a tensor of at least `numel` elements (views excluded)."""

    VIEWS = {"select", "slice", "view", "t", "unsqueeze", "squeeze", "alias", "detach", "expand", "as_strided", "_unsafe_view",
             "reshape", "transpose"}

    def __init__(self, numel):
        self.numel, self.ops = numel, []

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        outer = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                name = func._schema.name.split("::")[-1]
                flat = list(args) + list((kwargs or {}).values()) + (list(out) if isinstance(out, (tuple, list)) else [out])
                big = any(isinstance(t, torch.Tensor) and t.numel() >= outer.numel for t in flat)
                if big and name not in outer.VIEWS:
                    outer.ops.append(name)
                return out

        self.mode = Mode()
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)


@pytest.mark.parametrize("k", [1, 5])
def test_one_pass_over_the_logits_each_way(k):
    # fp32, T = 1, reduction sum, unit weights: forward = log_softmax + the K-column gather, and
    # validation never reads the logits; backward = exp + the K-column scatter, plus a zero-fill of
    # the masked rows (their factor is 0; everywhere else it is exactly 1, so no rescale pass).
    logits, ids, probs, mask = make_inputs(16, 5000, k, pad_frac=0.0)
    z = logits.clone().requires_grad_(True)
    with OpsOverLogits(z.numel()) as fwd:
        loss = sparse_topk_kl(z, ids, probs, mask, reduction="sum", backend="torch", validate=True)
    with OpsOverLogits(z.numel()) as bwd:
        loss.backward()
    assert fwd.ops == ["_log_softmax", "gather"], fwd.ops
    assert sorted(bwd.ops) == sorted(["exp", "index_fill_", "scatter_add_"]), bwd.ops


@pytest.mark.parametrize("variant", ["corrected", "faithful"])
def test_fused_linear_cpu_path_is_the_torch_path(variant):
    _, ids, probs, mask = make_inputs(20, 300, 4)
    g = torch.Generator().manual_seed(7)
    h = torch.randn(20, 16, generator=g).requires_grad_(True)
    w = (torch.randn(300, 16, generator=g) / 4).requires_grad_(True)
    h2, w2 = h.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
    got = fused_linear_sparse_topk_kl(h, w, ids, probs, mask, variant=variant, chunk_size=6)  # auto -> torch on CPU
    want = sparse_topk_kl_reference(h2 @ w2.t(), ids, probs, mask, variant=variant)
    (2 * got).backward()
    (2 * want).backward()
    torch.testing.assert_close(got, want, atol=2e-6, rtol=2e-6)
    assert_grad_close(h.grad, h2.grad, torch.float32)
    assert_grad_close(w.grad, w2.grad, torch.float32)
