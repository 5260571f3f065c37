"""In-place safety and the autograd contract of the Triton path (CPU: interpreter).

The single-pass kernel writes the gradient during the forward, into the logits with inplace=True.
Every use that would read overwritten logits must fail loudly (autograd's version-counter error or
our own), repeated backward of a retained graph must stay correct, and double backward must be
refused, in the fused-linear path as well.
"""

from __future__ import annotations

import pytest
import torch
from kl_testutil import assert_grad_close, make_inputs, make_weight

from kernels import fused_linear_sparse_topk_kl, sparse_topk_kl, sparse_topk_kl_reference

INPLACE_ERROR = "modified by an inplace operation"


def inputs(n=12, v=500, k=5):
    return make_inputs(n, v, k)


def reference_grad(logits, ids, probs, mask, reduction="mean", weight=None):
    z = logits.clone().requires_grad_(True)
    sparse_topk_kl_reference(z, ids, probs, mask, weight=weight, reduction=reduction, compute_dtype=torch.float64).sum().backward()
    return z.grad


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_forward_writes_the_gradient_and_bumps_the_version(reduction):
    logits, ids, probs, mask = inputs()
    weight = make_weight(12)
    z = logits.clone().requires_grad_(True)
    version = z._version
    loss = sparse_topk_kl(z, ids, probs, mask, weight=weight, reduction=reduction, backend="triton", inplace=True)
    want = reference_grad(logits, ids, probs, mask, reduction, weight)
    assert z._version > version
    assert_grad_close(z.detach(), want, torch.float32)  # written by the forward, before any backward
    loss.backward()
    assert_grad_close(z.grad, want, torch.float32)
    assert z.grad.data_ptr() == z.data_ptr()  # .grad is the logits buffer itself: no [N, V] copy
    # inplace=False: a separate buffer, the logits untouched, the version unchanged.
    z = logits.clone().requires_grad_(True)
    sparse_topk_kl(z, ids, probs, mask, weight=weight, reduction=reduction, backend="triton").backward()
    assert torch.equal(z.detach(), logits) and z._version == 0
    assert_grad_close(z.grad, want, torch.float32)


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_nothing_is_written_when_no_gradient_is_needed(reduction):
    logits, ids, probs, mask = inputs()
    want = sparse_topk_kl(logits, ids, probs, mask, reduction=reduction, backend="triton")
    z = logits.clone().requires_grad_(True)
    with torch.no_grad():
        got = sparse_topk_kl(z, ids, probs, mask, reduction=reduction, backend="triton", inplace=True)
    assert torch.equal(z.detach(), logits) and z._version == 0
    assert torch.equal(got, want)
    frozen = logits.clone()
    got = sparse_topk_kl(frozen, ids, probs, mask, reduction=reduction, backend="triton", inplace=True)
    assert torch.equal(frozen, logits) and torch.equal(got, want) and not got.requires_grad
    with torch.inference_mode():  # inference tensors have no version counter: nothing may touch it
        z = logits.clone()
        got = sparse_topk_kl(z, ids, probs, mask, reduction=reduction, backend="triton", inplace=True)
    assert torch.equal(z, logits) and torch.equal(got, want)


@pytest.mark.parametrize("inplace", [False, True])
def test_retained_graph_backpropagates_correctly_again(inplace):
    # grad_outputs 2, 1, 5 through a non-leaf: the first rescales the stored gradient in place, the
    # later ones compute stored * (new / first) out of place.
    logits, ids, probs, mask = inputs()
    g = reference_grad(logits, ids, probs, mask)
    z = logits.clone().requires_grad_(True)
    loss = sparse_topk_kl(z * 1.0, ids, probs, mask, backend="triton", inplace=inplace)
    (2 * loss).backward(retain_graph=True)
    assert_grad_close(z.grad, 2 * g, torch.float32)
    loss.backward(retain_graph=True)
    assert_grad_close(z.grad, 3 * g, torch.float32)
    (again,) = torch.autograd.grad(5 * loss, z)
    assert_grad_close(again, 5 * g, torch.float32)


def test_retained_graph_after_a_leaf_accumulated_into_the_buffer_raises():
    # A leaf's .grad may alias the stored gradient (autograd steals it: no copy). Accumulating a
    # second backward into that .grad modifies the stored buffer; a third backward must then
    # raise autograd's error instead of returning a silently wrong gradient.
    logits, ids, probs, mask = inputs()
    g = reference_grad(logits, ids, probs, mask)
    z = logits.clone().requires_grad_(True)
    loss = sparse_topk_kl(z, ids, probs, mask, backend="triton")
    loss.backward(retain_graph=True)
    loss.backward(retain_graph=True)
    assert_grad_close(z.grad, 2 * g, torch.float32)
    with pytest.raises(RuntimeError, match=INPLACE_ERROR):
        loss.backward()


def test_retained_graph_after_a_zero_grad_output_is_refused():
    logits, ids, probs, mask = inputs()
    z = logits.clone().requires_grad_(True)
    loss = sparse_topk_kl(z * 1.0, ids, probs, mask, backend="triton")
    (0 * loss).backward(retain_graph=True)
    assert torch.all(z.grad == 0)
    with pytest.raises(RuntimeError, match="grad_output = 0"):
        loss.backward()


@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_a_term_that_saved_the_logits_before_raises(reduction):
    # A z-loss built before the in-place KL saved the logits; its backward must not read gradients.
    logits, ids, probs, mask = inputs()
    z = logits.clone().requires_grad_(True)
    x = z * 1.0
    z_loss = torch.logsumexp(x, -1).pow(2).mean()
    kl = sparse_topk_kl(x, ids, probs, mask, reduction=reduction, backend="triton", inplace=True).sum()
    with pytest.raises(RuntimeError, match=INPLACE_ERROR):
        (z_loss + kl).backward()


def test_two_kernel_inplace_second_backward_raises():
    logits, ids, probs, mask = inputs()
    z = logits.clone().requires_grad_(True)
    loss = sparse_topk_kl(z * 1.0, ids, probs, mask, reduction="none", backend="triton", inplace=True).sum()
    loss.backward(retain_graph=True)
    assert_grad_close(z.grad, reference_grad(logits, ids, probs, mask, "none"), torch.float32)
    with pytest.raises(RuntimeError, match=INPLACE_ERROR):
        loss.backward()


def test_two_kernel_inplace_after_a_later_term_is_correct():
    # reduction='none' writes in the backward, which runs after the backward of terms built later:
    # a z-loss computed after the KL reads the intact logits, and both gradients are right.
    logits, ids, probs, mask = inputs()
    z = logits.clone().requires_grad_(True)
    x = z * 1.0
    kl = sparse_topk_kl(x, ids, probs, mask, reduction="none", backend="triton", inplace=True).sum()
    z_loss = torch.logsumexp(x, -1).pow(2).mean()
    (z_loss + kl).backward()
    zr = logits.clone().requires_grad_(True)
    want = sparse_topk_kl_reference(zr, ids, probs, mask, reduction="sum", compute_dtype=torch.float64)
    (torch.logsumexp(zr, -1).pow(2).mean() + want).backward()
    assert_grad_close(z.grad, zr.grad, torch.float32)


def test_reusing_overwritten_logits_raises():
    logits, ids, probs, mask = inputs()
    z = logits.clone().requires_grad_(True)
    sparse_topk_kl(z, ids, probs, mask, backend="triton", inplace=True)
    with pytest.raises(RuntimeError, match="overwritten with their gradient"):
        sparse_topk_kl(z, ids, probs, mask, backend="triton")
    with torch.no_grad():
        z.copy_(logits)  # new values (a new version): usable again
    sparse_topk_kl(z, ids, probs, mask, backend="triton", inplace=True)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_double_backward_is_refused(reduction):
    logits, ids, probs, mask = inputs()
    z = logits.clone().requires_grad_(True)
    loss = sparse_topk_kl(z, ids, probs, mask, reduction=reduction, backend="triton").sum()
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, z, create_graph=True)


def test_reference_backend_supports_double_backward():
    # The message points there: autograd's Hessian-vector product, checked against finite differences.
    logits, ids, probs, mask = make_inputs(4, 30, 3)
    z = logits.double().requires_grad_(True)
    kl = sparse_topk_kl_reference(z, ids, probs, mask, compute_dtype=torch.float64)
    (g,) = torch.autograd.grad(kl, z, create_graph=True)
    u = torch.randn_like(z)
    (hvp,) = torch.autograd.grad((g * u).sum(), z)
    h = 1e-6
    gp = torch.autograd.grad(sparse_topk_kl_reference(z + h * u, ids, probs, mask, compute_dtype=torch.float64), z)[0]
    gm = torch.autograd.grad(sparse_topk_kl_reference(z - h * u, ids, probs, mask, compute_dtype=torch.float64), z)[0]
    torch.testing.assert_close(hvp, (gp - gm) / (2 * h), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", ["triton", "torch", "reference"])
def test_fused_linear_refuses_double_backward_and_reruns_a_retained_graph(backend):
    _, ids, probs, mask = make_inputs(10, 200, 4)
    g = torch.Generator().manual_seed(3)
    h = torch.randn(10, 16, generator=g).requires_grad_(True)
    w = (torch.randn(200, 16, generator=g) / 4).requires_grad_(True)
    loss = fused_linear_sparse_topk_kl(h, w, ids, probs, mask, backend=backend, chunk_size=4)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, h, create_graph=True)
    loss = fused_linear_sparse_topk_kl(h, w, ids, probs, mask, backend=backend, chunk_size=4)
    (g1,) = torch.autograd.grad(2 * loss, h, retain_graph=True)
    (g2,) = torch.autograd.grad(3 * loss, h)
    torch.testing.assert_close(g2, 1.5 * g1, atol=1e-7, rtol=1e-6)


def test_reshape_that_copies_does_not_mark_the_callers_logits():
    # [B, T, V] logits that cannot be viewed as [N, V] (a transposed batch): flatten copies them,
    # the kernel writes into the copy, so the caller's tensor is untouched and stays usable.
    logits, ids, probs, mask = inputs(n=12)
    z = logits.view(3, 4, 500).transpose(0, 1).contiguous().transpose(0, 1).requires_grad_(False).clone()
    z = z.transpose(0, 1).contiguous().transpose(0, 1)  # [3, 4, 500] with a batch stride < the row stride
    assert not z.is_contiguous()
    x = z.clone().transpose(0, 1).contiguous().transpose(0, 1).requires_grad_(True)
    kw = dict(backend="triton", inplace=True)
    first = sparse_topk_kl(x, ids.view(3, 4, 5), probs.view(3, 4, 5), mask.view(3, 4), **kw)
    assert torch.equal(x.detach(), z)  # the copy took the gradient, not the caller's buffer
    again = sparse_topk_kl(x, ids.view(3, 4, 5), probs.view(3, 4, 5), mask.view(3, 4), **kw)  # no false "overwritten"
    torch.testing.assert_close(again, first)
    # A reshape that is a view: the caller's buffer is written, and reuse is refused.
    y = logits.clone().view(3, 4, 500).requires_grad_(True)
    sparse_topk_kl(y, ids.view(3, 4, 5), probs.view(3, 4, 5), mask.view(3, 4), **kw)
    with pytest.raises(RuntimeError, match="overwritten with their gradient"):
        sparse_topk_kl(y, ids.view(3, 4, 5), probs.view(3, 4, 5), mask.view(3, 4), **kw)


@pytest.mark.parametrize("inplace", [False, True])
def test_fp16_gradient_is_scaled_before_it_is_rounded(inplace):
    # GradScaler multiplies the loss by 2^16 before backward. With fp16 logits the gradient is
    # written in the backward, already scaled, so entries of a mean over rows (~q/N) that fp16
    # cannot hold before the scale survive; rounding first would flush them to 0.
    reduction = "mean"
    n, v = 64, 3000
    logits, ids, probs, mask = make_inputs(n, v, 5, dtype=torch.float16, scale=6.0, mask_frac=0.0)
    scale = 2.0**16
    z = logits.clone().requires_grad_(True)
    (scale * sparse_topk_kl(z, ids, probs, mask, reduction=reduction, backend="triton", inplace=inplace)).backward()
    zr = logits.clone().double().requires_grad_(True)
    (scale * sparse_topk_kl_reference(zr, ids, probs, mask, reduction=reduction, compute_dtype=torch.float64)).backward()
    want, got = zr.grad, z.grad.double()
    tiny_before = want.abs() / scale < torch.finfo(torch.float16).smallest_normal * 2**-10  # below fp16's subnormals
    sizable = want.abs() > 1e-3  # representable after the scale
    assert (tiny_before & sizable).sum() > 100  # the case exists in this draw
    rel = ((got - want).abs() / want.abs())[sizable]
    assert rel.max() <= 2e-3, rel.max()
