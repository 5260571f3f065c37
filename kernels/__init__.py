"""Fused sparse top-K KL loss kernels (Triton) with PyTorch references; imports only torch/triton.

Triton is imported lazily: `import kernels` works without it, and the Triton-only names
(`SparseTopKKLFunction`) are resolved on first access.
"""

from .functional import SparseTopKKLLoss, sparse_topk_kl
from .fused_linear_sparse_kl import FusedLinearSparseTopKKLLoss, fused_linear_sparse_topk_kl
from .reference import authors_dense_kl, dense_target_from_topk, sparse_topk_kl_reference

__all__ = [
    "FusedLinearSparseTopKKLLoss",
    "SparseTopKKLFunction",
    "SparseTopKKLLoss",
    "authors_dense_kl",
    "dense_target_from_topk",
    "fused_linear_sparse_topk_kl",
    "sparse_topk_kl",
    "sparse_topk_kl_reference",
]


def __getattr__(name):
    if name == "SparseTopKKLFunction":
        from .sparse_kl import SparseTopKKLFunction

        return SparseTopKKLFunction
    raise AttributeError(f"module 'kernels' has no attribute {name!r}")
