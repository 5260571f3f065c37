"""`harness eval`: run spec tasks through lm-eval's `simple_evaluate` and write its files.

Writes, under `output_dir/<model>/`: lm-eval's `results_<date>.json` and `samples_<task>_<date>.jsonl`
(via its own EvaluationTracker, so the files match the `lm_eval` command's), plus `summary.json`
with the headline numbers and the run manifest.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.config import TASKS_DIR, data_dir
from harness.data.bbh import TASKS
from harness.eval.summary import bbh_means
from harness.eval.tiny import resolve_model
from harness.manifest import run_manifest
from harness.records import atomic_write

BBH_PREFIXES = ("bbh_cot_spec_", "bbh_ao_spec_faithful_", "bbh_ao_spec_")
SEQ2SEQ_MAX_LENGTH = 4096
T5_MAX_NEW_TOKENS = 255  # the authors' generate(max_length=256) counts the decoder start token
PIPELINE_CHECK_NOTE = "PIPELINE CHECK: the model has random weights; these numbers test the plumbing and are not results."


@dataclass
class EvalConfig:
    model: str
    tasks: list[str]
    limit: float | None = None
    batch_size: int = 8
    device: str | None = None
    # Encoder context for seq2seq (T5) models. lm-eval would use T5's 512 and left-truncate; the
    # authors never truncated, and the longest spec prompt is 2,382 T5 tokens (8-shot complex).
    # None: SEQ2SEQ_MAX_LENGTH for encoder-decoder models, lm-eval's default for decoder-only ones.
    max_length: int | None = None
    max_gen_toks: int | None = None
    split_mode: str | None = None
    base_prompt: str | None = None
    output_dir: Path = Path("runs/eval")
    seed: int = 0
    extra_model_args: dict = field(default_factory=dict)


def _metadata(cfg: EvalConfig) -> dict:
    meta = {}
    if cfg.split_mode:
        meta["split_mode"] = cfg.split_mode
    if cfg.base_prompt:
        meta["base_prompt"] = cfg.base_prompt
    return meta


def is_encoder_decoder(model_path: str) -> bool:
    from transformers import AutoConfig

    return bool(getattr(AutoConfig.from_pretrained(model_path), "is_encoder_decoder", False))


def bbh_subtask(task_name: str) -> tuple[str, str] | None:
    """'bbh_ao_spec_faithful_snarks' -> ('bbh_ao_spec_faithful', 'snarks'); None for other names."""
    for prefix in sorted(BBH_PREFIXES, key=len, reverse=True):
        if task_name.startswith(prefix) and task_name[len(prefix):] in TASKS:
            return prefix.rstrip("_"), task_name[len(prefix):]
    return None


def summarise(results: dict) -> dict:
    """Per-task accuracies (percent) for both rules, plus BBH 27/23 means per protocol."""
    rows = results.get("results", {})
    n_samples = results.get("n-samples", {})
    tasks = {}
    for name, metrics in rows.items():
        entry = {}
        for rule in ("acc_faithful", "acc_corrected"):
            value = metrics.get(f"{rule},none")
            if isinstance(value, (int, float)):
                entry[rule] = round(100 * value, 4)
        if entry:
            entry["n"] = n_samples.get(name, {}).get("effective")
            tasks[name] = entry
    out = {"tasks": tasks, "bbh": {}}
    for rule in ("acc_faithful", "acc_corrected"):
        per_protocol: dict[str, dict[str, tuple[float, int]]] = {}
        for name, entry in tasks.items():
            found = bbh_subtask(name)
            if found and rule in entry and entry.get("n"):
                per_protocol.setdefault(found[0], {})[found[1]] = (entry[rule], entry["n"])
        for protocol, per_task in per_protocol.items():
            out["bbh"].setdefault(protocol, {})[rule] = {**bbh_means(per_task), "subtasks": len(per_task)}
    return out


class _DropCustomDatasetHint(logging.Filter):
    """lm-eval warns "Custom kwargs can be passed to `--metadata`…" once per custom_dataset task
    (every spec task): 54 lines for one BBH protocol, and no information for our users."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed" not in record.getMessage()


def run(cfg: EvalConfig) -> dict:
    import lm_eval
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    import torch

    logging.getLogger("lm_eval.api.task").addFilter(_DropCustomDatasetHint())
    root = data_dir()
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model_path, pipeline_check = resolve_model(cfg.model)
    model_args = {"pretrained": model_path, **cfg.extra_model_args}
    seq2seq = is_encoder_decoder(model_path)
    max_length = cfg.max_length or (SEQ2SEQ_MAX_LENGTH if seq2seq else None)
    if max_length:
        model_args["max_length"] = max_length
    gen_kwargs = {"max_gen_toks": cfg.max_gen_toks} if cfg.max_gen_toks else None
    if seq2seq:
        # lm-eval hands seq2seq `generate` max_length = encoder length + max_gen_toks, which bounds
        # the *decoder*: T5 could run on for ~2,000 tokens. The authors used max_length=256
        # (start token + 255 new tokens); pass exactly that.
        gen_kwargs = {"max_length": (cfg.max_gen_toks or T5_MAX_NEW_TOKENS) + 1}
    manager = TaskManager(include_path=str(TASKS_DIR), metadata=_metadata(cfg) or None)
    safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "__", cfg.model)
    out_dir = Path(cfg.output_dir) / safe_name
    tracker = EvaluationTracker(output_path=str(out_dir))
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args=model_args,
        tasks=cfg.tasks,
        limit=cfg.limit,
        batch_size=cfg.batch_size,
        device=device,
        task_manager=manager,
        log_samples=True,
        evaluation_tracker=tracker,
        gen_kwargs=gen_kwargs,
        random_seed=cfg.seed,
        numpy_random_seed=cfg.seed,
        torch_random_seed=cfg.seed,
        fewshot_random_seed=cfg.seed,
    )
    if results is None:  # non-zero rank in a distributed run
        return {}
    samples = results.pop("samples", None)
    tracker.save_results_aggregated(results=results, samples=samples)
    for task_name in results.get("configs", {}):
        if samples and task_name in samples:
            tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    summary = summarise(results)
    summary["pipeline_check"] = pipeline_check
    if pipeline_check:
        summary["note"] = PIPELINE_CHECK_NOTE
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    summary["manifest"] = run_manifest(root, ("gsm8k", "multiarith", "asdiv", "svamp", "bbh", "prompts"), config=config, model_args=model_args)
    summary["output_dir"] = str(out_dir)
    with atomic_write(out_dir / "summary.json") as handle:
        json.dump(summary, handle, indent=1)
    return summary
