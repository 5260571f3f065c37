"""Reading third-party pickles without letting them run code: core, so every stage can use it.

    from harness.safe_pickle import load_pickle
    data = load_pickle("processed_data/zero_shot_chain_of_thought.pkl")

Unpickling can call any importable function (a pickle that names `os.system` runs a shell
command while it loads). The authors' released pickles (authors-code-protocol.md §1.2-1.3) only
hold plain data, so `RestrictedUnpickler` resolves no global except the builtins containers and
scalars and `collections.OrderedDict`; anything else (numpy scalars and arrays included) stops the
load before it is built, and `load_pickle` reports it as a DataError naming the file.

Used by the teacher stage (the Codex pickles) and the formats stage (the final training pickles).
"""

from __future__ import annotations

import builtins
import collections
import os
import pickle
from pathlib import Path
from typing import Any

from harness.errors import DataError


class RestrictedUnpickler(pickle.Unpickler):
    """Builds only plain data: builtins containers/str/int/float/bool and collections.OrderedDict."""

    ALLOWED = {("builtins", name) for name in ("list", "tuple", "dict", "set", "frozenset", "str", "int", "float", "bool")} | {
        ("collections", "OrderedDict")
    }

    def find_class(self, module: str, name: str):
        if module == "__builtin__":  # protocols 0-2 (fix_imports) name the builtins the Python 2 way
            module = "builtins"
        if (module, name) in self.ALLOWED:
            return getattr(builtins if module == "builtins" else collections, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only builtins containers/str/int/float and collections.OrderedDict are allowed")


def load_pickle(path: str | os.PathLike) -> Any:
    """Unpickle `path` with RestrictedUnpickler; any failure is a DataError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return RestrictedUnpickler(handle).load()
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: cannot be read as the authors' pickle: {err}") from None
