"""Rescale a gradient that the forward already wrote, by grad_output, skipping the work on the device.

The single-pass losses write d loss / d logits for grad_output = 1 during the forward. The
backward must multiply by grad_output, which in the common case (`loss.backward()`) is exactly 1.

Why a launch at all: grad_output is a device tensor, so the host cannot see that it is 1 without a
sync (which would stall the pipeline for far longer than a kernel), and autograd's default ones
cannot be told apart from a user's ones by the tensor's properties. So the check runs on the device,
in a *persistent* kernel: a small grid (a few programs per SM) strides over the tiles, and each
program reads the factor once and returns when it is 1. `loss.backward()` then costs one launch of
~#SMs tiny programs (a few microseconds, no memory traffic) instead of one program per tile
(131,072 for a [16384, 32128] gradient). The PyTorch reference is `grad_output.scale_rows_reference`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

PROGRAMS_PER_SM = 2


@triton.jit
def _scale_rows_kernel(
    src_ptr, src_stride, dst_ptr, dst_stride, n_rows, n_cols, num_ptr, den_ptr,
    ALWAYS: tl.constexpr, BLOCK: tl.constexpr,
):
    """dst[r, c] = src[r, c] * (num / den), in fp32; a grid of P programs strides over the
    rows x cdiv(n_cols, BLOCK) tiles (tile t -> program t % P).

    num, den: fp32 scalars on the device. Unless ALWAYS (dst is a different buffer that must be
    written), a factor of exactly 1 returns at once. dst may be src (in place): each element is
    read and written by the same thread.
    """
    f = tl.load(num_ptr) / tl.load(den_ptr)
    if ALWAYS:
        _scale_tiles(src_ptr, src_stride, dst_ptr, dst_stride, n_rows, n_cols, f, BLOCK)
    else:
        if f != 1.0:
            _scale_tiles(src_ptr, src_stride, dst_ptr, dst_stride, n_rows, n_cols, f, BLOCK)


@triton.jit
def _scale_tiles(src_ptr, src_stride, dst_ptr, dst_stride, n_rows, n_cols, f, BLOCK: tl.constexpr):
    col_blocks = tl.cdiv(n_cols, BLOCK)
    for t in range(tl.program_id(0), n_rows * col_blocks, tl.num_programs(0)):
        row = (t // col_blocks).to(tl.int64)
        cols = (t % col_blocks).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(src_ptr + row * src_stride + cols, mask=cols < n_cols, eviction_policy="evict_first").to(tl.float32)
        tl.store(dst_ptr + row * dst_stride + cols, (x * f).to(dst_ptr.dtype.element_ty), mask=cols < n_cols,
                 eviction_policy="evict_first")


def _as_rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(1, -1) if t.dim() < 2 else t


_SMS: dict = {}


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (cached); 4 elsewhere (the interpreter)."""
    if device.type != "cuda":
        return 4
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _SMS:
        _SMS[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SMS[idx]


def scale_launch(src2, dst2, num, den, *, sms: int, always: bool):
    """(grid, args, meta) of `_scale_rows_kernel` for 2-D src/dst (shared with the compile report)."""
    rows, cols = src2.shape
    block = min(4096, triton.next_power_of_2(cols))
    tiles = rows * triton.cdiv(cols, block)
    grid = (max(1, min(tiles, PROGRAMS_PER_SM * sms)),)
    args = (src2, src2.stride(0), dst2, dst2.stride(0), rows, cols, num, den)
    return grid, args, dict(ALWAYS=always, BLOCK=block, num_warps=4 if block <= 1024 else 8)


def scale_rows_(src: torch.Tensor, num: torch.Tensor, den: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """`out` (default: `src`, in place) = src * num / den; skipped on the device when num == den and
    out is src. src: 1-D, or 2-D with unit last stride; num, den: fp32 [1] on src's device."""
    dst = src if out is None else out
    s2, d2 = _as_rows(src), _as_rows(dst)
    if src.numel() == 0:
        return dst
    if s2.dim() != 2 or s2.stride(-1) != 1 or d2.stride(-1) != 1 or s2.shape != d2.shape:
        raise ValueError("scale_rows_ takes 1-D tensors or 2-D tensors with unit last stride, src and out alike")
    grid, args, meta = scale_launch(s2, d2, num, den, sms=sm_count(src.device), always=dst is not src)
    _scale_rows_kernel[grid](*args, **meta)
    return dst
