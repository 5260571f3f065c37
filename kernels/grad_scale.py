"""Rescale a gradient that the forward already wrote, by grad_output, skipping the work on the device.

The single-pass losses write d loss / d logits for grad_output = 1 during the forward. The
backward must multiply by grad_output, which in the common case (`loss.backward()`) is exactly 1:
each program of `_scale_rows_kernel` loads the factor from device memory and touches its tile only
when the factor is not 1, so that case costs one launch and no traffic, and no host sync.
The PyTorch reference is `grad_output.scale_rows_reference`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _scale_rows_kernel(
    src_ptr, src_stride, dst_ptr, dst_stride, n_cols, num_ptr, den_ptr,
    ALWAYS: tl.constexpr, BLOCK: tl.constexpr,
):
    """dst[r, c] = src[r, c] * (num / den), computed in fp32; grid (rows, cdiv(n_cols, BLOCK)).

    num, den: fp32 scalars on the device. Unless ALWAYS (dst is a different buffer that must be
    written), a factor of exactly 1 leaves memory untouched. dst may be src (in place): each
    element is read and written by the same thread.
    """
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    f = tl.load(num_ptr) / tl.load(den_ptr)
    if ALWAYS:
        _scale_tile(src_ptr + row * src_stride, dst_ptr + row * dst_stride, cols, n_cols, f)
    else:
        if f != 1.0:
            _scale_tile(src_ptr + row * src_stride, dst_ptr + row * dst_stride, cols, n_cols, f)


@triton.jit
def _scale_tile(src_row, dst_row, cols, n_cols, f):
    x = tl.load(src_row + cols, mask=cols < n_cols).to(tl.float32)
    tl.store(dst_row + cols, (x * f).to(dst_row.dtype.element_ty), mask=cols < n_cols)


def _as_rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(1, -1) if t.dim() < 2 else t


def scale_rows_(src: torch.Tensor, num: torch.Tensor, den: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """`out` (default: `src`, in place) = src * num / den; skipped on the device when num == den and
    out is src. src: 1-D, or 2-D with unit last stride; num, den: fp32 [1] on src's device."""
    dst = src if out is None else out
    s2, d2 = _as_rows(src), _as_rows(dst)
    if src.numel() == 0:
        return dst
    if s2.dim() != 2 or s2.stride(-1) != 1 or d2.stride(-1) != 1 or s2.shape != d2.shape:
        raise ValueError("scale_rows_ takes 1-D tensors or 2-D tensors with unit last stride, src and out alike")
    rows, cols = s2.shape
    block = min(4096, triton.next_power_of_2(cols))
    _scale_rows_kernel[(rows, triton.cdiv(cols, block))](
        s2, s2.stride(0), d2, d2.stride(0), cols, num, den, ALWAYS=dst is not src, BLOCK=block, num_warps=4 if block <= 1024 else 8,
    )
    return dst
