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
    # Resolve the data directory once, the way the harness does, so a relative setting (the
    # README's SPEC_DATA_DIR=../shared/data) keeps working in tests that change directory or
    # start subprocesses elsewhere.
    from harness.config import DataDirError, data_dir, setup_offline_tokenizers

    try:
        os.environ["SPEC_DATA_DIR"] = str(data_dir())
        setup_offline_tokenizers()
    except DataDirError:
        pass  # the data_dir fixture reports it, with the fix
    # Hypothesis: no example database, so a failure found once is not silently replayed forever
    # (and the suite's outcome never depends on what an earlier run stored in this checkout).
    try:
        from hypothesis import settings

        settings.register_profile("spec", database=None)
        settings.load_profile("spec")
    except ImportError:
        pass
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
    """The data directory exactly as the harness resolves it (absolute, checked)."""
    from harness.config import DataDirError, data_dir as resolve

    try:
        return resolve()
    except DataDirError as err:
        pytest.fail(f"{err} (the README's test command sets SPEC_DATA_DIR=../shared/data)")


@pytest.fixture(scope="session")
def noxfile():
    """The repository's noxfile as a module, loaded once (nox registers its sessions on import)."""
    import importlib.util
    import sys

    pytest.importorskip("nox")
    spec = importlib.util.spec_from_file_location("spec_noxfile", REPO_ROOT / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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
