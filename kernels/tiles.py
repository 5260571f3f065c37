"""Tiles: how one row of V logits is processed by the Triton loss kernels, chosen from sm_90 compiles.

`python -m kernels.compile_report` compiles every configuration this module ships for an H100 and
records registers, spills and blocks (rows) per SM in reports/kernels/sm90_compile.md;
`tests/kernels/test_compile_sm90.py` checks that each lands at the occupancy chosen here.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import triton

from .reference import check_block_v


class Tile(NamedTuple):
    """How one row is processed: `block_v`-wide tiles over `num_warps` warps; `resident`: the
    row is one tile kept in registers between the two passes (needs V <= block_v); `maxnreg`:
    a register cap per thread for ptxas (None: its own choice), which sets the rows per SM."""

    block_v: int
    num_warps: int
    resident: bool
    maxnreg: int | None = None

    def launch_meta(self) -> dict:
        return {"num_warps": self.num_warps} | ({} if self.maxnreg is None else {"maxnreg": self.maxnreg})


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# The GPU heuristic, chosen from sm_90 compiles (`python -m kernels.compile_report` writes
# reports/kernels/sm90_compile.md: registers, spills and blocks per SM of every shipped config).
RESIDENT_MAX = 16384  # rows up to this width are one register-resident tile
L2_BYTES_FOR_ROWS = 40 << 20  # of an H100's 50 MB L2: the rows in flight must still be there for the re-read
SMS = 132  # H100 / H200 SXM
# Re-read configurations by rows (programs) per SM, from the sm_90 compiles (no spills, bf16 and fp32 alike).
REREAD_BY_ROWS_PER_SM = {3: (8192, 16, 40), 2: (8192, 16, None), 1: (16384, 32, None)}


def rows_per_sm(V: int, elem: int) -> int:
    """2-3 rows in flight per SM where they fit in L2 together (bf16 at V = 32128: 3 x 132 x 64 KB
    = 25 MB), fewer where they would not (fp32 at 32128: 2; bf16 at 128K-152K: 1, 34-40 MB)."""
    return max(1, min(3, L2_BYTES_FOR_ROWS // max(1, SMS * V * elem)))


def tile_config(V: int, block_v: int | None = None, num_warps: int | None = None, *, resident: bool | None = None,
                elem: int = 2, interpreting: bool | None = None) -> Tile:
    """The tile for a row of V logits of `elem` bytes; block_v / num_warps / resident override it.

    GPU: V <= RESIDENT_MAX is one register-resident tile (4 warps per 2K: 2-12 rows per SM, no
    spills). Wider rows loop over tiles re-read from L2 (pass-1 loads are `evict_last`), with the
    rows per SM `rows_per_sm` asks for: 8K tiles on 16 warps capped at 40 registers (3 per SM), or
    uncapped (2 per SM), or 16K tiles on 32 warps (1 per SM). A resident 32K tile holds one row per
    SM at 127-255 registers (and spills at 4 warps). The interpreter pays per Python op, so it
    takes tiles up to 64K.
    """
    check_block_v(block_v)
    interpreting = _interpreting() if interpreting is None else interpreting
    fits = triton.next_power_of_2(V)
    maxnreg = None
    if interpreting:
        block_v = min(65536, fits) if block_v is None else block_v
    elif block_v is None and resident is not False and (fits <= RESIDENT_MAX or resident):
        block_v = fits
    elif block_v is None and num_warps is None and fits > 8192:
        block_v, num_warps, maxnreg = REREAD_BY_ROWS_PER_SM[rows_per_sm(V, elem)]
    elif block_v is None:
        block_v = min(8192, fits)
    if resident is None:
        resident = V <= block_v
    if resident and V > block_v:
        raise ValueError(f"resident=True needs V <= block_v, got V={V}, block_v={block_v}")
    if num_warps is None:
        num_warps = max(4, min(16, block_v // 512)) if resident else max(4, min(32, block_v // 512))
    if num_warps not in (1, 2, 4, 8, 16, 32):
        raise ValueError(f"num_warps must be a power of two in [1, 32], got {num_warps!r}")
    return Tile(block_v, num_warps, bool(resident), maxnreg)


def stream_tile(V: int, *, interpreting: bool | None = None) -> Tile:
    """The two-kernel backward reads each tile once (nothing to keep in L2): 8K tiles on 16 warps
    at 40 registers, 3 rows per SM (or one narrower tile for V < 8K)."""
    interpreting = _interpreting() if interpreting is None else interpreting
    if interpreting:
        return tile_config(V, resident=False, interpreting=True)
    fits = triton.next_power_of_2(V)
    return Tile(8192, 16, False, 40) if fits >= 8192 else Tile(fits, max(4, fits // 512), False)
