"""Where things live: the data directory, the task folder, the cache.

Every data file is read through `data_dir()`, so the same code runs against the staged copy
(CI: SPEC_DATA_DIR=../shared/data) or a cache filled by `python -m harness data download`.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import DataError

REPO_ROOT = Path(__file__).resolve().parent.parent
TASKS_DIR = REPO_ROOT / "tasks"
ENV_DATA_DIR = "SPEC_DATA_DIR"
EVAL_BATCH_SIZE = 8  # generation batch of `harness eval` on transformers, and of checkpoint evals while training


class DataDirError(DataError, RuntimeError):
    """The data directory is missing or does not hold what was asked for."""


def default_cache_dir() -> Path:
    """Where `harness data download` puts files when SPEC_DATA_DIR is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spec-harness" / "data"


def data_dir(override: str | os.PathLike | None = None, must_exist: bool = True) -> Path:
    """The data directory, absolute: the argument, else $SPEC_DATA_DIR, else the download cache.

    The one place a data directory setting is read and resolved (a relative SPEC_DATA_DIR is taken
    from the current directory). `must_exist=False` is for `data download`, which creates it.
    """
    if override is not None:
        path = Path(override)
    elif os.environ.get(ENV_DATA_DIR):
        path = Path(os.environ[ENV_DATA_DIR])
    else:
        path = default_cache_dir()
    path = path.expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise DataDirError(f"data directory {path} is a file, not a folder. Set {ENV_DATA_DIR} to the folder holding the data "
                           f"(e.g. {ENV_DATA_DIR}=../shared/data).")
    if must_exist and not path.is_dir():
        raise DataDirError(
            f"data directory {path} does not exist. Set {ENV_DATA_DIR} to a folder holding the data "
            f"(e.g. {ENV_DATA_DIR}=../shared/data) or run `python -m harness data download`."
        )
    return path


def data_file(relpath: str, override: str | os.PathLike | None = None) -> Path:
    """One file inside the data directory, with an error that says how to get it."""
    root = data_dir(override)
    path = root / relpath
    if not path.exists():
        raise DataDirError(
            f"{relpath} not found in data directory {root}. "
            f"Run `python -m harness data download` or point {ENV_DATA_DIR} at a complete copy."
        )
    return path


def setup_offline_tokenizers(override: str | os.PathLike | None = None) -> None:
    """Point tiktoken at the data directory's cache so encodings load with no network.

    Must run before the first `tiktoken.get_encoding`; it does not override a user's setting.
    """
    cache = data_dir(override) / "tokenizers" / "tiktoken_cache"
    if cache.is_dir():
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache))
