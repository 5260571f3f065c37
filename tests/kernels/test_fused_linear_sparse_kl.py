"""Fused linear + sparse top-K KL against eager matmul + the reference (CPU: interpreter)."""

from __future__ import annotations

import pytest
import torch
from kl_testutil import GRAD_RTOL, assert_grad_close, make_inputs, make_weight

from kernels import FusedLinearSparseTopKKLLoss, fused_linear_sparse_topk_kl, sparse_topk_kl_reference
from kernels.fused_linear_sparse_kl import accumulate_mm, default_chunk_size


def eager(hidden, weight, bias, ids, probs, mask, **kw):
    logits = hidden @ weight.t() if bias is None else hidden @ weight.t() + bias
    rw = kw.pop("row_weight", None)
    kw.pop("accum_dtype", None)
    return sparse_topk_kl_reference(logits, ids, probs, mask, weight=rw, **kw)


def grads_both(n, d, v, k, *, dtype=torch.float32, with_bias=True, chunk_size=None, backend="triton", go=2.0, device="cpu", **kw):
    _, ids, probs, mask = make_inputs(n, v, k, device=device)
    g = torch.Generator().manual_seed(1)
    h = torch.randn(n, d, generator=g).to(device, dtype)
    w = (torch.randn(v, d, generator=g) / d**0.5).to(device, dtype)
    b = torch.randn(v, generator=g).to(device, dtype) if with_bias else None
    leaves = [[t.clone().requires_grad_(True) if t is not None else None for t in (h, w, b)] for _ in range(2)]
    l1 = fused_linear_sparse_topk_kl(leaves[0][0], leaves[0][1], ids, probs, mask, leaves[0][2], chunk_size=chunk_size, backend=backend, block_v=256, **kw)
    l2 = eager(leaves[1][0], leaves[1][1], leaves[1][2], ids, probs, mask, **kw)
    (go * l1).backward()
    (go * l2).backward()
    return l1, l2, leaves


@pytest.mark.parametrize("backend", ["triton", "torch", "reference"])
@pytest.mark.parametrize("variant", ["corrected", "faithful"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("chunk_size", [None, 7, 64])
def test_matches_eager(backend, variant, reduction, chunk_size):
    l1, l2, (a, b) = grads_both(37, 24, 555, 5, chunk_size=chunk_size, backend=backend, variant=variant, reduction=reduction, temperature=1.3)
    torch.testing.assert_close(l1, l2, atol=2e-5, rtol=2e-5)
    for got, want in zip(a, b):
        assert_grad_close(got.grad, want.grad, torch.float32)


@pytest.mark.parametrize("backend", ["triton", "torch", "reference"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_row_weights_match_eager(backend, reduction):
    rw = make_weight(37)
    l1, l2, (a, b) = grads_both(37, 24, 555, 5, chunk_size=8, backend=backend, reduction=reduction, row_weight=rw)
    torch.testing.assert_close(l1, l2, atol=4e-5, rtol=4e-5)
    for got, want in zip(a, b):
        assert_grad_close(got.grad, want.grad, torch.float32)


def count_matmuls(fn):
    """Calls of aten mm/addmm/addmm_ (forward logits, grad_h, grad_W per chunk) inside fn()."""
    from torch.utils._python_dispatch import TorchDispatchMode

    names = []

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func._schema.name.split("::")[-1] in ("mm", "addmm", "addmm_"):
                names.append(func._schema.name)
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return len(names)


@pytest.mark.parametrize("backend", ["triton", "torch", "reference"])
def test_only_requested_gradients_are_computed(backend):
    # 3 chunks: logits mm per chunk, plus grad_h and grad_W matmuls only when those are wanted.
    _, ids, probs, mask = make_inputs(12, 200, 4)
    g = torch.Generator().manual_seed(4)
    h0, w0 = torch.randn(12, 16, generator=g), torch.randn(200, 16, generator=g) / 4
    want = fused_linear_sparse_topk_kl(h0, w0, ids, probs, mask, backend="reference", chunk_size=4)
    cases = [((True, True), 9), ((True, False), 6), ((False, True), 6), ((False, False), 3)]
    for (h_grad, w_grad), calls in cases:
        h, w = h0.clone().requires_grad_(h_grad), w0.clone().requires_grad_(w_grad)
        out = []
        assert count_matmuls(lambda: out.append(fused_linear_sparse_topk_kl(h, w, ids, probs, mask, backend=backend, chunk_size=4))) == calls
        torch.testing.assert_close(out[0].detach(), want, atol=1e-6, rtol=1e-6)
        if h_grad or w_grad:
            out[0].backward()
        assert (h.grad is not None) == h_grad and (w.grad is not None) == w_grad
    h, w = h0.clone().requires_grad_(True), w0.clone().requires_grad_(True)
    with torch.no_grad():
        assert count_matmuls(lambda: fused_linear_sparse_topk_kl(h, w, ids, probs, mask, backend=backend, chunk_size=4)) == 3


def test_accumulate_mm_without_a_weight_sized_temporary_on_cpu_fallback():
    # fp32 accumulator, bf16 operands (the CPU fallback forms the product, CUDA uses out_dtype):
    # same as accumulating the fp32 products of the bf16 values, up to fp32 rounding.
    g = torch.Generator().manual_seed(5)
    acc = torch.empty(30, 8)
    parts = [(torch.randn(30, 16, generator=g).bfloat16(), torch.randn(16, 8, generator=g).bfloat16()) for _ in range(3)]
    for i, (a, b) in enumerate(parts):
        accumulate_mm(acc, a, b, first=i == 0)
    want = sum(a.float() @ b.float() for a, b in parts)
    # CPU rounds each product to bf16 (unit roundoff 2^-8) before the fp32 add: |error| <= 2^-8 sum |a||b|.
    bound = sum(a.float().abs() @ b.float().abs() for a, b in parts) * 2.0**-8 + 1e-5
    assert ((acc - want).abs() <= bound).all()
    same = torch.empty(30, 8)
    parts32 = [(a.float(), b.float()) for a, b in parts]
    for i, (a, b) in enumerate(parts32):
        accumulate_mm(same, a, b, first=i == 0)
    torch.testing.assert_close(same, want, atol=1e-5, rtol=1e-5)


def test_bf16_accumulation_in_place_when_fp32_is_not_asked():
    # accum_dtype=None: grad_W accumulated in bf16 in place, one rounding per chunk (4 chunks).
    l1, l2, (a, b) = grads_both(32, 32, 400, 5, dtype=torch.bfloat16, chunk_size=8, accum_dtype=None)
    assert a[1].grad.dtype == torch.bfloat16
    err = (a[1].grad.float() - b[1].grad.float()).abs().max()
    assert err <= 8 * GRAD_RTOL[torch.bfloat16] * b[1].grad.float().abs().max()
    with pytest.raises(ValueError, match="accum_dtype"):
        fused_linear_sparse_topk_kl(a[0], a[1], *make_inputs(32, 400, 5)[1:3], accum_dtype=torch.float16)


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


def test_default_chunk_size_from_the_bytes_model():
    # Flan-T5-XL's head (V=32128, d=2048, bf16, fp32 accumulator): the traffic model asks for 16K
    # rows, the 256 MiB cap on a logits chunk gives 4096; V=151936 caps at 512; never more than N.
    assert default_chunk_size(16384, 32128, 2048, elem=2, acc_elem=4) == 4096
    assert default_chunk_size(16384, 151936, 2048, elem=2, acc_elem=4) == 512
    assert default_chunk_size(1000, 32128, 2048) == 1000
    assert default_chunk_size(16384, 32128, 64, elem=4, acc_elem=4) == 256  # small d: small fixed cost per chunk
    for n, v, d in ((1, 10, 1), (7, 555, 24), (10**6, 262144, 8192)):
        c = default_chunk_size(n, v, d)
        assert 1 <= c <= n and (c == n or c & (c - 1) == 0)


def matmul_dtypes(fn):
    """dtypes of the mm/addmm operands (first two tensors) run inside fn()."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func._schema.name.split("::")[-1] in ("mm", "addmm", "addmm_"):
                seen.append(tuple(a.dtype for a in args if isinstance(a, torch.Tensor))[-2:])
            return func(*args, **(kwargs or {}))

    with Spy():
        out = fn()
    return seen, out


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_bf16_autocast_runs_the_gemms_in_bf16(backend):
    # fp32 hidden states and head under bf16 autocast (T5's decoder output and lm_head): the GEMMs
    # run in bf16 as autocast would run a matmul (`out=` calls are not autocast-eligible, so this is
    # done by hand), gradients come back in fp32, and the result matches eager under autocast.
    _, ids, probs, mask = make_inputs(24, 300, 4)
    g = torch.Generator().manual_seed(8)
    h0, w0 = torch.randn(24, 32, generator=g), torch.randn(300, 32, generator=g) / 6
    h, w = h0.clone().requires_grad_(True), w0.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        seen, loss = matmul_dtypes(lambda: fused_linear_sparse_topk_kl(h, w, ids, probs, mask, backend=backend, chunk_size=8))
    assert seen and all(d == (torch.bfloat16, torch.bfloat16) for d in seen), seen
    loss.backward()
    assert h.grad.dtype == torch.float32 and w.grad.dtype == torch.float32
    h2, w2 = h0.clone().requires_grad_(True), w0.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = h2 @ w2.t()
    assert logits.dtype == torch.bfloat16
    want = sparse_topk_kl_reference(logits, ids, probs, mask)
    want.backward()
    torch.testing.assert_close(loss, want, atol=2e-2, rtol=2e-2)
    for got, ref in ((h.grad, h2.grad), (w.grad, w2.grad)):
        assert (got - ref).abs().max() <= 4 * GRAD_RTOL[torch.bfloat16] * ref.abs().max()


def test_fp16_is_refused_and_fp16_autocast_stays_fp32():
    _, ids, probs, mask = make_inputs(8, 100, 3)
    h, w = torch.randn(8, 16), torch.randn(100, 16)
    with pytest.raises(TypeError, match="fp16 hidden/weight are not supported"):
        fused_linear_sparse_topk_kl(h.half(), w.half(), ids, probs, mask, backend="torch")
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            seen, _ = matmul_dtypes(lambda: fused_linear_sparse_topk_kl(h, w, ids, probs, mask, backend="torch", chunk_size=4))
    except RuntimeError as e:  # an older CPU autocast without fp16
        pytest.skip(f"CPU autocast has no fp16 here: {e}")
    assert seen and all(d == (torch.float32, torch.float32) for d in seen), seen


@pytest.mark.gpu
@pytest.mark.parametrize("accum_dtype", [torch.float32, None])
def test_gpu_matches_eager_bf16(accum_dtype):
    from kernels import fused_linear_sparse_kl

    rw = make_weight(2048, device="cuda")
    l1, l2, (a, b) = grads_both(2048, 512, 32128, 5, dtype=torch.bfloat16, device="cuda", chunk_size=512, row_weight=rw, accum_dtype=accum_dtype)
    torch.testing.assert_close(l1, l2.float(), atol=2e-2, rtol=2e-2)
    for got, want in zip(a, b):
        err = (got.grad.float() - want.grad.float()).abs().max()
        assert err <= 4 * GRAD_RTOL[torch.bfloat16] * want.grad.float().abs().max()
    assert not fused_linear_sparse_kl._NO_OUT_DTYPE, "addmm(out_dtype=float32) fell back to a temporary"


@pytest.mark.gpu
def test_gpu_peak_memory_vs_eager():
    # Target (issues 4, 11): at N=16K, d=2048, V=32128, bf16 the fused peak is <= 20% of eager's.
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


@pytest.mark.gpu
def test_gpu_bf16_autocast_fp32_inputs():
    # T5 on CUDA under bf16 autocast: fp32 decoder output and head, bf16 GEMMs (out_dtype fp32 for grad_W).
    from kernels import fused_linear_sparse_kl

    _, ids, probs, mask = make_inputs(2048, 8, 5, device="cuda")
    ids = torch.randint(0, 32128, (2048, 5), device="cuda")
    h = torch.randn(2048, 512, device="cuda", requires_grad=True)
    w = (torch.randn(32128, 512, device="cuda") / 512**0.5).requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        seen, loss = matmul_dtypes(lambda: fused_linear_sparse_topk_kl(h, w, ids, probs, mask, chunk_size=512))
    assert all(d == (torch.bfloat16, torch.bfloat16) for d in seen), seen
    loss.backward()
    h2, w2 = h.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        want = sparse_topk_kl_reference(h2 @ w2.t(), ids, probs, mask)
    want.backward()
    torch.testing.assert_close(loss, want, atol=2e-2, rtol=2e-2)
    for got, ref in ((h.grad, h2.grad), (w.grad, w2.grad)):
        assert got.dtype == torch.float32
        assert (got - ref).abs().max() <= 4 * GRAD_RTOL[torch.bfloat16] * ref.abs().max()
    assert not fused_linear_sparse_kl._NO_OUT_DTYPE
