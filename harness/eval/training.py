"""The trainer's evaluator: lm-eval on a checkpoint's model, one number per task.

The train stage calls an `evaluator(model_dir, tasks, limits, batch_size, max_gen_toks)` it is given
(it never imports this stage); the CLI hands it this one.
"""

from __future__ import annotations

from pathlib import Path

from harness.eval.summary import primary_score


def evaluate_for_training(model_dir: Path, tasks: list, limits: dict, batch_size: int | str, max_gen_toks: int | None = None) -> dict:
    """Scores (percent, `summary.primary_score`) of `model_dir` on `tasks`, grouped by their --limit;
    summaries go to the checkpoint's `eval/` folder."""
    from harness.eval.run import EvalConfig, run

    groups: dict = {}
    for task in tasks:
        groups.setdefault(limits.get(task), []).append(task)
    scores = {}
    for limit, group in groups.items():
        cfg = EvalConfig(model=str(model_dir), tasks=group, limit=limit, batch_size=batch_size, max_gen_toks=max_gen_toks,
                         output_dir=Path(model_dir).parent / "eval")
        summary = run(cfg, warn=lambda message: None)
        scores.update({task: primary_score(summary, task) for task in group})
    return scores
