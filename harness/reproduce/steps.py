"""The steps of a reproduction: each a stage's typed job, its output, how it is launched, and
whether it is already complete. Built from a profile without running anything, so the plan can be
printed, costed and compared between profiles before any work.

Launchers:
- `in-process`: teacher, align, formats run through their Python API in this process (output to a
  log file);
- `train`: `accelerate launch [--config_file ddp|fsdp] --num_processes N -m harness train --config
  RUN.config.json` (the profile's launcher; `python -m harness train` for the cpu profile);
- `eval`: `python -m harness eval --config CELLS.json`, one worker process per device, each
  evaluating its share of the cells (the paper profile's evaluation is data-parallel by cells).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.reproduce.profiles import DISTRIBUTED, SIZE_OF, Profile

ACCELERATE_CONFIGS = Path(__file__).resolve().parent.parent / "train" / "configs" / "accelerate"


@dataclass
class Model:
    """A model a cell evaluates: a fixed id/folder, or the checkpoint `rule` picks in a training run."""

    name: str  # hub id, folder, or `tiny`
    train_key: str | None = None  # the training step whose checkpoint this is
    rule: str | None = None  # last | gsm8k-dev | mas-dev
    given: bool = False  # a --checkpoint folder: no training run behind it

    @property
    def label(self) -> str:
        return self.name if self.train_key is None else f"{self.train_key} [{self.rule}]"


@dataclass
class Step:
    key: str  # unique and stable: names the step in logs, the plan, and the failure of a row
    stage: str  # teacher | align | formats | train | eval
    rows: tuple[str, ...]  # the table rows that need it: if it fails, they are "not run"
    output: Path
    launch: str  # how it runs, for the plan and the report
    job: Any = None  # the stage's typed config (eval: a list of EvalConfig; train: built when it runs)
    make_job: Callable[[], Any] | None = None  # build the job when the step runs (needs earlier outputs)
    is_complete: Callable[[], bool] = lambda: False
    model: Model | None = None  # eval: the model evaluated
    tasks: tuple[str, ...] = ()  # eval: the tasks, train: the tasks evaluated at each checkpoint
    limit: float | None = None
    split_mode: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # what the plan shows (preset, launcher config, …)

    def describe(self) -> str:
        if self.stage == "eval":
            extra = f" limit {self.limit:g}" if self.limit is not None else ""
            extra += f" split {self.split_mode}" if self.split_mode else ""
            return f"eval {self.model.label}: {', '.join(self.tasks)}{extra}"
        if self.stage == "train":
            return f"train {self.key.split(' ', 1)[1]} ({self.details.get('preset')}) via {self.launch}"
        return f"{self.stage} -> {self.output}"

    def graph(self) -> tuple:
        """The step with sizes and limits left out: what the paper and rehearsal profiles share."""
        model = None if self.model is None else (self.model.name if self.model.train_key is None else (self.model.train_key, self.model.rule))
        return (self.stage, self.rows, self.launch_kind, model, self.tasks, self.split_mode, self.details.get("preset"),
                self.details.get("distributed"))

    @property
    def launch_kind(self) -> str:
        return self.launch.split(":", 1)[0]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80]


def cell_dir(work: Path, model: str, tasks: tuple[str, ...], limit, split_mode, max_gen_toks) -> Path:
    """Where one evaluation writes: named by its model and a hash of what it measures."""
    key = json.dumps([model, list(tasks), limit, split_mode, max_gen_toks])
    return work / "evals" / slug(Path(model).name if "/" in model and Path(model).exists() else model) / hashlib.sha1(key.encode()).hexdigest()[:12]


# --- launch commands ------------------------------------------------------------------------------


def train_command(p: Profile, row: str, config_file: Path, run: Path, resume: bool, port: int) -> tuple[list[str], dict[str, str], str]:
    """(argv, extra environment, description) of one training run under the profile's launcher."""
    import sys

    args = ["-m", "harness", "train", "--config", str(config_file), "--output", str(run), "--quiet"] + (["--resume"] if resume else [])
    if p.launcher == "python":
        return [sys.executable, *args], {}, "python: 1 process"
    kind = DISTRIBUTED[SIZE_OF.get(row, "base")] if p.processes > 1 else "single"
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if kind != "single":
        cmd += ["--config_file", str(ACCELERATE_CONFIGS / f"{kind}.yaml")]
    cmd += ["--num_processes", str(p.processes), "--num_machines", "1", "--main_process_port", str(port), *args]
    env = {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"} if p.cpu else {}
    where = "CPU" if p.cpu else "GPU"
    return cmd, env, f"accelerate launch: {p.processes} {where} process(es), {kind if kind != 'single' else 'one process'}"


def eval_command(config_file: Path) -> list[str]:
    import sys

    return [sys.executable, "-m", "harness", "eval", "--config", str(config_file), "--json"]


def train_config_values(p: Profile, row: str, model: str, matching: str, only: str | None, formats: Path, run: Path,
                        eval_tasks: list[str], user_overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings a training run gets on top of its preset: the profile's, the run's, then the user's."""
    values = dict(p.train_overrides)
    limits = {task: p.curve_bbh_limit for task in eval_tasks if task.startswith("bbh")}
    values.update(model=model, loss=matching, formats_dir=str(formats), output_dir=str(run), eval_tasks=list(eval_tasks),
                  eval_limits={**values.get("eval_limits", {}), **limits})
    if p.max_gen_toks and "eval_max_gen_toks" not in values:
        values["eval_max_gen_toks"] = p.max_gen_toks
    if only:
        values["formats"] = [f"{only}_answer_only", f"{only}_cot"]
    values.update(user_overrides)
    return values


def is_train_complete(run: Path) -> bool:
    """A finished training run: the train stage's own completion marker (`train.job.is_complete`),
    else (older runs) a final checkpoint with its state and an evaluated metrics file."""
    try:
        from harness.train.job import is_complete
    except ImportError:  # pragma: no cover - the train stage's face is newer than some runs
        return (run / "done.json").is_file()
    return is_complete(run)


def eval_job(p: Profile, model: str, tasks: tuple[str, ...], limit, split_mode, run_dir: Path, device: str | None = None):
    from harness.eval.job import EvalConfig

    return EvalConfig(model=model, tasks=list(tasks), limit=limit, batch_size=p.batch_size, backend=p.backend, device=device,
                      max_gen_toks=p.max_gen_toks, split_mode=split_mode, run_dir=run_dir)
