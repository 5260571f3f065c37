"""The grad_output rescale kernel (CPU: interpreter) against its PyTorch reference."""

from __future__ import annotations

import pytest
import torch

from kernels.grad_output import scale_rows_reference
from kernels.grad_scale import scale_rows_


def assert_one_ulp(got, want):
    eps = torch.finfo(want.dtype).eps  # one ulp of a normal x is at most eps * |x|
    assert ((got.double() - want.double()).abs() <= eps * want.double().abs()).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("factor", [(3.0, 1.0), (1.0, 4.0), (0.0, 1.0), (2.5, 2.5)])
def test_scale_rows_matches_reference(dtype, factor):
    # fp32 arithmetic then one rounding to the dtype on both sides, in place and out of place, on a
    # strided (row stride != width) 2-D view and on a 1-D tensor. The roundings may differ by one
    # unit in the last place (the interpreter truncates to bf16, torch rounds to nearest even).
    g = torch.Generator().manual_seed(0)
    num, den = torch.tensor([factor[0]]), torch.tensor([factor[1]])
    wide = (torch.randn(7, 5000, generator=g) * 3).to(dtype)
    for src in (wide[:, :4100], wide[0]):
        want = scale_rows_reference(src.clone(), num, den, out=torch.empty_like(src))
        got = scale_rows_(src.clone(), num, den, out=torch.empty_like(src))
        assert_one_ulp(got, want)
        buf = wide.clone()
        view = buf[:, :4100] if src.dim() == 2 else buf[0]
        scale_rows_(view, num, den)
        assert torch.equal(view, got)
        if src.dim() == 2:
            assert torch.equal(buf[:, 4100:], wide[:, 4100:])  # nothing outside the view is touched


def test_factor_one_in_place_leaves_the_buffer_and_out_of_place_copies():
    src = torch.randn(3, 50)
    one = torch.ones(1)
    before = src.clone()
    assert scale_rows_(src, one, one) is src and torch.equal(src, before)
    out = torch.full_like(src, float("nan"))
    scale_rows_(src, one, one, out=out)
    assert torch.equal(out, src)  # a separate output is always written


def test_scale_rows_rejects_unsupported_layouts():
    one = torch.ones(1)
    with pytest.raises(ValueError, match="unit last stride"):
        scale_rows_(torch.randn(8, 6).t(), one, one)


def test_persistent_grid_is_a_few_programs_per_sm():
    # A [16384, 32128] gradient is 131,072 tiles of 4096; the grid stays at 2 programs per SM, each
    # striding over its tiles (and returning at once when the factor is 1).
    from kernels.grad_scale import PROGRAMS_PER_SM, scale_launch

    meta_src = torch.empty(16384, 32128, dtype=torch.bfloat16, device="meta")
    grid, _, meta = scale_launch(meta_src, meta_src, torch.ones(1), torch.ones(1), sms=132, always=False)
    assert grid == (PROGRAMS_PER_SM * 132,) and meta["BLOCK"] == 4096
    small = torch.empty(3, 100, device="meta")
    assert scale_launch(small, small, torch.ones(1), torch.ones(1), sms=132, always=False)[0] == (3,)
    # More tiles than programs on the interpreter's 4 "SMs": every tile is still scaled.
    src = torch.randn(9, 9000)
    got = scale_rows_(src.clone(), torch.tensor([3.0]), torch.ones(1))
    assert torch.equal(got, (src * 3.0))
