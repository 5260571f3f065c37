"""grad_output handling for losses whose gradient is computed in the forward (single pass, fused linear).

The forward stores the gradient for grad_output = 1. `apply_grad_output` turns it into the gradient
for the actual grad_output:

* first backward (Triton path): scaled in place, skipped on the device when grad_output == 1, so
  `loss.backward()` costs one empty launch and no host sync;
* a later backward of the same graph (`retain_graph=True`): the stored buffer now holds the
  gradient times the first grad_output, and may be aliased by a leaf's `.grad`, so the result is
  written out of place, as stored * (grad_output / first grad_output). That rare path syncs once
  to refuse a first grad_output of 0 (it zeroed the stored gradient: nothing left to rescale).
  If the buffer was modified meanwhile through such an alias (a gradient accumulated into it),
  autograd's version check raises its standard "modified by an inplace operation" error.

The reference path (no Triton; imported only when asked for) returns the stored gradient itself
when grad_output == 1 (a host sync, harmless on CPU) and a scaled copy otherwise.
"""

from __future__ import annotations

import torch

DOUBLE_BACKWARD = (
    "{name}: double backward (create_graph=True) is not supported by the Triton backend: its "
    "gradient is computed by hand, so a Hessian-vector product would silently miss this loss. "
    "Use backend='reference' (autograd) for higher-order gradients."
)
ZEROED = (
    "{name}: this graph was back-propagated before with grad_output = 0, which zeroed the gradient "
    "stored by its forward, so a second backward (retain_graph=True) cannot be computed. Run the "
    "forward again instead."
)


def scale_rows_reference(src: torch.Tensor, num: torch.Tensor, den: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """PyTorch form of `grad_scale.scale_rows_`: src * num / den computed in fp32, stored in the
    output's dtype, into `out` or (default) in place."""
    f = (num.float() / den.float()).reshape(())
    dst = src if out is None else out
    return dst.copy_((src.float() * f).to(dst.dtype))


def apply_grad_output(ctx, tensors, grad_output: torch.Tensor, *, triton: bool, name: str = "sparse_topk_kl"):
    """The stored gradients (None entries pass through) times the scalar grad_output; ctx.calls
    counts the backward calls of this graph node (1 on the first).

    The reference path never modifies the stored tensors (it returns them as they are when
    grad_output is 1, else a scaled copy), so it needs no bookkeeping."""
    go = grad_output.detach().to(torch.float32).reshape(1).clone()
    one = torch.ones(1, dtype=torch.float32, device=go.device)
    if not triton:
        if bool(go == 1):
            return list(tensors)
        return [None if t is None else scale_rows_reference(t, go, one, out=torch.empty_like(t)) for t in tensors]
    from .grad_scale import scale_rows_

    if ctx.calls == 1:
        ctx.applied = go
        return [None if t is None else scale_rows_(t, go, one) for t in tensors]
    prev = ctx.applied
    if float(prev.item()) == 0.0:
        raise RuntimeError(ZEROED.format(name=name))
    return [None if t is None else scale_rows_(t, go, prev, out=torch.empty_like(t, memory_format=torch.contiguous_format)) for t in tensors]
