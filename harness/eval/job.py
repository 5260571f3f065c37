"""The eval stage's Python face: `EvalConfig`, `run(config)`, `is_complete(run_dir)`, and config files.

    summary = run(EvalConfig(model="google/flan-t5-base", tasks=["gsm8k_cot_spec"], run_dir=Path("runs/x")))

`harness eval` (options or `--config FILE`) and `harness reproduce` (one config file per cell,
launched as `python -m harness eval --config FILE`, one process per device) call these.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

from harness.records import atomic_write

from harness.eval.run import EvalConfig, run as _run

SUMMARY = "summary.json"


def run(config: EvalConfig, warn: Callable[[str], None] = print) -> dict[str, Any]:
    return _run(config, warn=warn)


def is_complete(run_dir: str | Path) -> bool:
    """A run folder holding the summary `run` writes last."""
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        return False
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return False
    return True


def write_config(config: EvalConfig, path: str | Path) -> Path:
    values = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()}
    with atomic_write(path) as handle:
        json.dump(values, handle, indent=1)
        handle.write("\n")
    return Path(path)


def load_config(path: str | Path) -> EvalConfig:
    from harness.config_files import build, read_mapping

    return build(EvalConfig, read_mapping(path, "an eval config"), where=str(path))


def load_configs(path: str | Path) -> list[EvalConfig]:
    """One config (a mapping), or several: a JSON list of config files (an evaluation worker's share
    of a reproduction's cells, run one after another in one process)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.suffix == ".json" else None
    except (OSError, ValueError):
        data = None
    if isinstance(data, list):
        from harness.errors import UsageError

        if not all(isinstance(item, str) for item in data):
            raise UsageError(f"{path}: a list of eval config files is expected (paths as strings)")
        return [load_config(item) for item in data]
    return [load_config(path)]
