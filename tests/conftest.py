"""Shared fixtures: the data directory, seeding, and the `gpu` marker's skip reason."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"


def pytest_configure(config):
    # Tests read the real data from SPEC_DATA_DIR; CI points it at ../shared/data.
    if not os.environ.get("SPEC_DATA_DIR") and DEFAULT_DATA.is_dir():
        os.environ["SPEC_DATA_DIR"] = str(DEFAULT_DATA)
    cache = Path(os.environ.get("SPEC_DATA_DIR", "")) / "tokenizers" / "tiktoken_cache"
    if cache.is_dir():
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # Triton kernels run in the interpreter on CPU; the flag must be set before the first
    # `import triton` anywhere in the process, so it is set here, at session start.
    try:
        import torch

        if not torch.cuda.is_available():
            os.environ.setdefault("TRITON_INTERPRET", "1")
    except ImportError:
        pass


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = os.environ.get("SPEC_DATA_DIR")
    if not path or not Path(path).is_dir():
        pytest.fail("SPEC_DATA_DIR is not set to the data directory (CI sets it to ../shared/data)")
    return Path(path)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    try:
        import numpy as np

        np.random.seed(0)
    except ImportError:
        pass
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:
        pass


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
