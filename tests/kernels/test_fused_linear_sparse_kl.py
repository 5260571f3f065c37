"""Fused linear + sparse top-K KL against eager matmul + the reference (CPU: interpreter)."""

from __future__ import annotations

import pytest
import torch
from kl_testutil import GRAD_RTOL, assert_grad_close, make_inputs

from kernels import FusedLinearSparseTopKKLLoss, fused_linear_sparse_topk_kl, sparse_topk_kl_reference
from kernels.fused_linear_sparse_kl import default_chunk_size


def eager(hidden, weight, bias, ids, probs, mask, **kw):
    logits = hidden @ weight.t() if bias is None else hidden @ weight.t() + bias
    return sparse_topk_kl_reference(logits, ids, probs, mask, **kw)


def grads_both(n, d, v, k, *, dtype=torch.float32, with_bias=True, chunk_size=None, backend="triton", weight=2.0, device="cpu", **kw):
    _, ids, probs, mask = make_inputs(n, v, k, device=device)
    g = torch.Generator().manual_seed(1)
    h = torch.randn(n, d, generator=g).to(device, dtype)
    w = (torch.randn(v, d, generator=g) / d**0.5).to(device, dtype)
    b = torch.randn(v, generator=g).to(device, dtype) if with_bias else None
    leaves = [[t.clone().requires_grad_(True) if t is not None else None for t in (h, w, b)] for _ in range(2)]
    l1 = fused_linear_sparse_topk_kl(leaves[0][0], leaves[0][1], ids, probs, mask, leaves[0][2], chunk_size=chunk_size, backend=backend, block_v=256, **kw)
    l2 = eager(leaves[1][0], leaves[1][1], leaves[1][2], ids, probs, mask, **kw)
    (weight * l1).backward()
    (weight * l2).backward()
    return l1, l2, leaves


@pytest.mark.parametrize("backend", ["triton", "reference"])
@pytest.mark.parametrize("variant", ["corrected", "faithful"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("chunk_size", [None, 7, 64])
def test_matches_eager(backend, variant, reduction, chunk_size):
    l1, l2, (a, b) = grads_both(37, 24, 555, 5, chunk_size=chunk_size, backend=backend, variant=variant, reduction=reduction, temperature=1.3)
    torch.testing.assert_close(l1, l2, atol=2e-5, rtol=2e-5)
    for got, want in zip(a, b):
        assert_grad_close(got.grad, want.grad, torch.float32)


def test_without_bias():
    l1, l2, (a, b) = grads_both(20, 16, 300, 4, with_bias=False, chunk_size=8)
    torch.testing.assert_close(l1, l2, atol=2e-5, rtol=2e-5)
    assert a[2] is None
    for got, want in zip(a[:2], b[:2]):
        assert_grad_close(got.grad, want.grad, torch.float32)


def test_bf16():
    # Eager here also rounds the logits to bf16, so the two see the same logits up to matmul order;
    # gradients are summed over rows in bf16 matmuls, hence a few bf16 ulps of the largest entry.
    l1, l2, (a, b) = grads_both(32, 32, 400, 5, dtype=torch.bfloat16, chunk_size=16)
    torch.testing.assert_close(l1, l2.float(), atol=2e-2, rtol=2e-2)
    for got, want in zip(a, b):
        assert got.grad.dtype == torch.bfloat16
        err = (got.grad.float() - want.grad.float()).abs().max()
        assert err <= 4 * GRAD_RTOL[torch.bfloat16] * want.grad.float().abs().max()


def test_module_and_errors():
    _, ids, probs, mask = make_inputs(6, 100, 3)
    h, w = torch.randn(2, 3, 8), torch.randn(100, 8)
    loss = FusedLinearSparseTopKKLLoss(backend="triton")(h, w, ids.view(2, 3, 3), probs.view(2, 3, 3), mask.view(2, 3))
    want = eager(h.reshape(6, 8), w, None, ids, probs, mask)
    torch.testing.assert_close(loss, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="'sum' or 'mean'"):
        fused_linear_sparse_topk_kl(h, w, ids.view(2, 3, 3), probs.view(2, 3, 3), reduction="none")
    with pytest.raises(ValueError, match="weight must be"):
        fused_linear_sparse_topk_kl(h, w[:, :4], ids.view(2, 3, 3), probs.view(2, 3, 3))
    with pytest.raises(ValueError, match="ids must lie"):
        fused_linear_sparse_topk_kl(h, w, ids.view(2, 3, 3).clamp(min=0) + 100, probs.view(2, 3, 3))


def test_default_chunk_size_follows_liger_heuristic():
    # Liger's documented example: BT=16384, V=32000, H=4096 -> chunk 2048.
    assert default_chunk_size(16384, 32000, 4096) == 2048
    assert default_chunk_size(3, 32000, 4096) == 1  # ceil(3 / 8) = 1
    assert default_chunk_size(16384, 100, 4096) == 16384


@pytest.mark.gpu
def test_gpu_matches_eager_bf16():
    l1, l2, (a, b) = grads_both(2048, 512, 32128, 5, dtype=torch.bfloat16, device="cuda")
    torch.testing.assert_close(l1, l2.float(), atol=2e-2, rtol=2e-2)
    for got, want in zip(a, b):
        err = (got.grad.float() - want.grad.float()).abs().max()
        assert err <= 4 * GRAD_RTOL[torch.bfloat16] * want.grad.float().abs().max()


@pytest.mark.gpu
def test_gpu_peak_memory_vs_eager():
    # Target (issue 4): at N=16K, d=2048, V=32128, bf16 the fused peak is <= 20% of eager's.
    n, d, v = 16384, 2048, 32128
    _, ids, probs, mask = make_inputs(n, 8, 5, device="cuda")
    ids = torch.randint(0, v, (n, 5), device="cuda")

    def peak(fn):
        h = torch.randn(n, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        w = torch.randn(v, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn(h, w).backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base

    fused = peak(lambda h, w: fused_linear_sparse_topk_kl(h, w, ids, probs, mask, validate=False))
    ref = peak(lambda h, w: eager(h, w, None, ids, probs, mask))
    assert fused <= 0.2 * ref, f"fused peak {fused / 2**20:.0f} MiB vs eager {ref / 2**20:.0f} MiB"
