"""Input builders and per-dtype tolerances shared by the kernel tests (imported, not a conftest).

TRITON_INTERPRET=1 is set by tests/conftest.py before triton is imported; shapes are small
because the interpreter runs every program in Python.
"""

from __future__ import annotations

import torch

# Loss: the kernel accumulates in fp32 from the same (rounded) logits the fp64 oracle sees.
# Gradient: stored in the logits dtype, so one rounding of that dtype relative to the largest entry.
LOSS_TOL = {torch.float32: 2e-5, torch.bfloat16: 2e-5, torch.float16: 2e-5}
GRAD_RTOL = {torch.float32: 1e-5, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def make_inputs(n, v, k, *, dtype=torch.float32, id_dtype=torch.int64, device=DEVICE, scale=4.0,
                pad_frac=0.2, dup=True, mass=0.9, mask_frac=0.2, empty_row=True, seed=0):
    """Random logits/ids/probs/mask with padding, duplicate ids, sub-unit mass and masked rows."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, v, generator=g) * scale).to(dtype)
    ids = torch.stack([torch.randperm(v, generator=g)[:k] for _ in range(n)])
    if dup and k > 1 and n > 1:
        ids[1, 1] = ids[1, 0]  # a duplicate pair
    pad = torch.rand(n, k, generator=g) < pad_frac
    ids = torch.where(pad, torch.full_like(ids, -100), ids)
    if empty_row and n > 2:
        ids[2, :] = -100  # a row whose K entries are all padding
    probs = torch.rand(n, k, generator=g)
    probs = probs / probs.sum(-1, keepdim=True) * mass
    mask = torch.rand(n, generator=g) >= mask_frac
    return (logits.to(device), ids.to(id_dtype).to(device), probs.to(device), mask.to(device))


def assert_grad_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    """Compare with a tolerance relative to the largest gradient entry (rounding of `dtype`)."""
    got, want = got.double(), want.double()
    assert torch.isfinite(got).all(), "non-finite gradient"
    tol = GRAD_RTOL[dtype] * want.abs().max().clamp(min=1e-12)
    err = (got - want).abs().max()
    assert err <= tol, f"max grad error {err:.3e} > {tol:.3e}"
