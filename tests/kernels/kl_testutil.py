"""Input builders and per-dtype tolerances shared by the kernel tests (imported, not a conftest).

TRITON_INTERPRET=1 is set by tests/conftest.py before triton is imported; shapes are small
because the interpreter runs every program in Python.
"""

from __future__ import annotations

import math
import os

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Loss: the kernel accumulates in fp32 from the same (rounded) logits the fp64 oracle sees.
# Gradient: stored in the logits dtype, so one rounding of that dtype relative to the largest entry.
LOSS_TOL = {torch.float32: 2e-5, torch.bfloat16: 2e-5, torch.float16: 2e-5}
GRAD_RTOL = {torch.float32: 1e-5, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# Property tests compare with  |got - want| <= floor + relative part : drawn inputs can make a
# result ~0 by cancellation, where a purely relative tolerance fails on rounding noise alone.
# The kernels compute in fp32 whatever the logits dtype, so the floors are counted in fp32 ulps.
EPS32 = torch.finfo(torch.float32).eps
# ~2x the worst-case sum of the 3-4 roundings named below; a 5000-draw stress run used <= 0.12 of it.
FLOOR_ULPS = 8
LOG_EPS = -math.log(1e-10)  # the faithful variant's epsilon caps its log terms at ~23


def property_settings(max_examples: int) -> settings:
    """Settings for every hypothesis test here: no example database (runs never depend on earlier
    ones), no deadline (the interpreter is slow). KL_PROPERTY_EXAMPLES=N overrides max_examples
    for a stress run (e.g. 3000); the committed default stays small."""
    return settings(
        max_examples=int(os.environ.get("KL_PROPERTY_EXAMPLES") or max_examples),
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def logit_magnitude(logits: torch.Tensor, temperature: float) -> float:
    """max(1, max |z / T|) over the finite logits: the size of the values the kernel exponentiates."""
    finite = logits[torch.isfinite(logits)].double()
    return max(1.0, finite.abs().max().item() / temperature if finite.numel() else 0.0)


def grad_atol(logits: torch.Tensor, temperature: float, grad_scale: float) -> float:
    """Gradient floor. g_j = s/T (C q_j - c_j) with C, q_j, c_j in [0, 1], and q_j = exp(x_j - lse)
    carries an absolute error of a few fp32 ulps of max|x| (rounding of x = z/T and of lse), which
    survives when C q - c cancels (q ~ the teacher's one-hot): 8 eps32 |s/T| max(1, max|x|).
    Storing in the logits dtype is relative (GRAD_RTOL) except in its subnormal range, whose
    spacing (6e-8 for fp16) is added; `grad_scale` bounds |s| (grad_output / reduction)."""
    fi = torch.finfo(logits.dtype)
    compute = FLOOR_ULPS * EPS32 * abs(grad_scale) / temperature * logit_magnitude(logits, temperature)
    return compute + fi.smallest_normal * fi.eps


def loss_atol(logits: torch.Tensor, temperature: float, n_rows: int) -> float:
    """Loss floor (per row, summed over rows). Each row is a sum, weighted by teacher mass <= 1, of
    log terms no larger than |log q| <= 2 max|x| + log V (or the faithful epsilon's 23), each with a
    few fp32 ulps of error, and positive and negative terms may cancel."""
    mag = 2 * logit_magnitude(logits, temperature) + math.log(logits.shape[-1]) + LOG_EPS
    return FLOOR_ULPS * EPS32 * n_rows * mag


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


def assert_grad_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, atol: float = 0.0) -> float:
    """Max error <= atol + (rounding of `dtype`) * the largest gradient entry; returns error / tolerance.

    Fixed-input tests may leave atol at 0; property tests must pass a floor (see `grad_atol`).
    """
    got, want = got.double(), want.double()
    assert torch.isfinite(got).all(), "non-finite gradient"
    tol = atol + GRAD_RTOL[dtype] * want.abs().max().clamp(min=1e-12).item()
    err = (got - want).abs().max().item()
    assert err <= tol, f"max grad error {err:.3e} > {tol:.3e} (atol {atol:.3e})"
    return err / tol


def assert_loss_close(got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> float:
    """|got - want| <= atol + rtol |want| elementwise (as torch.testing); returns the worst error / tolerance."""
    got, want = got.double(), want.double()
    assert torch.isfinite(got).all() or torch.equal(got, want), "non-finite loss"
    err = (got - want).abs()
    tol = atol + rtol * want.abs()
    ratio = (err / tol).max().item() if err.numel() else 0.0
    assert ratio <= 1.0, f"max loss error {err.max().item():.3e}, error/tolerance {ratio:.3f} (atol {atol:.3e}, rtol {rtol:.1e})"
    return ratio


def make_weight(n, *, seed=0, zero_frac=0.2, high=2.0, device=DEVICE):
    """Per-row weights in [0, high) with about `zero_frac` exact zeros (rows the loss must drop)."""
    g = torch.Generator().manual_seed(seed + 1)
    w = torch.rand(n, generator=g) * high
    w[torch.rand(n, generator=g) < zero_frac] = 0.0
    return w.to(device)


# Ops that make the host wait for the device: reading a value back (item/bool/int/tolist go through
# _local_scalar_dense) and data-dependent output shapes (boolean indexing, nonzero, masked_select).
SYNC_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "equal", "unique")


class SyncCounter:
    """Counts host-syncing aten ops run inside `with SyncCounter() as c:` (c.count, c.ops).

    A boolean-mask index (`x[mask]`) is counted as one op (aten.index with a bool index), since
    its nonzero runs inside the kernel where a dispatch mode cannot see it."""

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = func._schema.name.split("::")[-1]
                bool_index = name == "index" and any(
                    isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else [])
                    if i is not None
                )
                if name in SYNC_OPS or bool_index:
                    counter.ops.append(name)
                return func(*args, **(kwargs or {}))

        self.ops = []
        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)

    @property
    def count(self) -> int:
        return len(self.ops)


DTYPES = [torch.float32, torch.bfloat16, torch.float16]
VARIANTS = st.sampled_from(["corrected", "faithful"])
# Hypothesis strategies (keyword arguments of `check_random_case`), shared by every backend's tests.
RANDOM_SHAPES = dict(
    n=st.integers(1, 9), v=st.integers(2, 600), k=st.integers(1, 9),
    temperature=st.floats(0.25, 4.0), variant=VARIANTS, seed=st.integers(0, 10**6), weighted=st.booleans(),
)
# Tiny vocabularies make q nearly one-hot on the teacher's ids, so C q - c cancels to ~0 and only
# the absolute floors keep the comparison meaningful.
SMALL_VOCAB = dict(
    n=st.integers(1, 4), v=st.integers(2, 8), k=st.integers(1, 8),
    temperature=st.floats(0.25, 4.0), variant=VARIANTS, seed=st.integers(0, 10**6),
    dtype=st.sampled_from(DTYPES), reduction=st.sampled_from(["none", "sum", "mean"]), weighted=st.booleans(),
)


def run_both(logits, ids, probs, mask, go=2.0, backend="triton", **kw):
    """Loss and logits-gradient from `backend` and from the fp64 oracle; the loss is scaled by
    `go` (a 'not last layer' grad_output != 1; per-row values in [0.5, 2] for reduction='none').
    Row weights, if any, come in `kw` as weight=."""
    from kernels import sparse_topk_kl, sparse_topk_kl_reference

    z1 = logits.clone().requires_grad_(True)
    z2 = logits.clone().requires_grad_(True)
    l1 = sparse_topk_kl(z1, ids, probs, mask, backend=backend, **kw)
    ref_kw = {k: v for k, v in kw.items() if k not in ("block_v", "inplace", "num_warps")}
    l2 = sparse_topk_kl_reference(z2, ids, probs, mask, compute_dtype=torch.float64, **ref_kw)
    w = torch.full_like(l1, go) if l1.dim() == 0 else torch.linspace(0.5, go, l1.numel(), device=l1.device)
    (l1 * w).sum().backward()
    (l2 * w.double()).sum().backward()
    return l1, l2, z1.grad, z2.grad


def check_random_case(n, v, k, temperature, variant, seed, *, dtype=torch.float32, reduction="sum", weighted=False,
                      backend="triton"):
    """`backend` vs the fp64 oracle on drawn inputs, with floors that hold for any draw."""
    k = min(k, v)
    logits, ids, probs, mask = make_inputs(n, v, k, dtype=dtype, seed=seed)
    weight = make_weight(n, seed=seed) if weighted else None
    w_max = max(1.0, weight.max().item()) if weighted else 1.0  # weights are drawn in [0, 2)
    go = 2.0  # run_both's grad_output: 2 for sum/mean, in [0.5, 2] per row for none
    l1, l2, g1, g2 = run_both(logits, ids, probs, mask, go=go, backend=backend, weight=weight, reduction=reduction,
                              variant=variant, temperature=temperature, block_v=128)
    # Loss: per-row floors times the row scale: none <= w_max each; sum <= n * w_max in all; mean
    # scales rows by w_i / sum(w) (they add to 1), so n * w_max bounds it too.
    rows = w_max if reduction == "none" else n * w_max
    assert_loss_close(l1, l2, atol=loss_atol(logits, temperature, rows), rtol=LOSS_TOL[dtype])
    # Gradient scale |s| = grad_output x row scale: <= go * w_max (mean: go * w_i / sum(w) <= go).
    assert_grad_close(g1, g2, dtype, atol=grad_atol(logits, temperature, go * w_max))
