"""The train stage's Python face: `run(config)` and `is_complete(run_dir)`.

    result = run(load_config("faithful-xl", {"formats_dir": "runs/formats/authors"}), resume=True)
    if is_complete("runs/train/faithful-xl"): ...

`harness train` and `harness reproduce` call these. A finished run holds `done.json` (its final
position and checkpoint), written last by the main process; `run(..., resume=True)` over a
finished run with the same settings and limits returns at once (`already_complete`), and with
larger `max_steps` / `max_examples` trains on from its newest checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from harness.train.config import TrainConfig


def run(config: TrainConfig, *, resume: bool = False, evaluator=None, progress: bool = True):
    """Train `config` (trainer.train); returns a TrainResult. `evaluator(model_dir, tasks, limits,
    batch_size, max_gen_toks) -> {task: percent}` scores each checkpoint as it is written."""
    from harness.train.trainer import train

    return train(config, resume=resume, evaluator=evaluator, progress=progress)


def is_complete(run_dir: str | Path, config: TrainConfig | None = None) -> bool:
    """The run in `run_dir` finished: its done.json is there and so is the checkpoint it names.
    With `config`, also that `config`'s limits would train no further from there."""
    from harness.train.trainer import finished_position, reached_end

    end = finished_position(Path(run_dir))
    return end is not None and (config is None or reached_end(config, end))
