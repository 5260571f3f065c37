"""Training settings: one dataclass with every default declared once; presets are YAML deltas.

A preset (`harness/train/configs/<name>.yaml`, or any YAML/JSON path) may name a `base:` preset
and then sets only what differs, as nanoGPT's config files do. `faithful-*` presets reproduce the
authors' recipe (bugs included, documented in docs/training.md); `corrected-*` presets fix them.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.config import EVAL_BATCH_SIZE
from harness.config_files import coerce, parse_override, read_mapping  # noqa: F401 (parse_override: part of this module's API)
from harness.errors import UsageError, check_batch_size, check_choice, check_positive
from harness.mixing import BATCH_SIZES, FORMATS

CONFIG_DIR = Path(__file__).parent / "configs"

LOSSES = ("sample", "distribution")
VARIANTS = ("faithful", "corrected")
NORMALIZATIONS = ("micro_batch_mean", "token_weighted")
SCHEDULERS = ("cosine", "linear", "constant")
SCHEDULE_LENGTHS = ("authors_bug", "actual")
MIXES = ("authors", "weighted")
MIX_MODES = ("fully_random", "keep_together")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")  # harness/train/precision.py says what each means
MODEL_TYPES = ("auto", "seq2seq", "causal")
HEADS = ("auto", "logits", "fused")
SIZES = tuple(BATCH_SIZES)


@dataclass(frozen=True)
class TrainConfig:
    # --- student -------------------------------------------------------------------------------
    model: str = "tiny"  # hub id, local folder, or `tiny` (a random T5 with the real tokenizer, built locally)
    model_type: str = "auto"  # auto: from the model's config (encoder-decoder -> seq2seq)
    prompt_separator: str = "\n"  # causal students: text between the encoder input and the target (ends the prompt)
    chat_template: bool = False  # causal students: the prompt as a user turn, the target as the assistant turn (train.chat)
    # --- data ----------------------------------------------------------------------------------
    formats_dir: str = ""  # output of `harness formats build` / `formats import-authors`
    formats: list[str] = field(default_factory=lambda: list(FORMATS))
    max_source_tokens: int | None = None  # None: no truncation (the authors never truncated)
    # --- batches (per format micro-batch sizes, accumulation) -----------------------------------
    size: str | None = "250m"  # the authors' micro-batch sizes and grad_accum for this size
    batch_sizes: dict[str, int] = field(default_factory=dict)  # per-format overrides of `size`
    grad_accum: int | None = None  # None: the size's (250m 3, 780m 20, 3b 30, 11b 20)
    mix: str = "authors"  # authors: their implicit mix; weighted: format drawn by `mix_weights`
    mix_mode: str = "fully_random"  # authors mix: shuffle micro-batches across steps, or keep a step's together
    mix_weights: dict[str, float] = field(default_factory=dict)  # weighted mix: share per format
    mix_by: str = "examples"  # weighted mix: weights are shares of examples or of micro-batches
    # --- loss ----------------------------------------------------------------------------------
    loss: str = "distribution"  # sample: token cross-entropy; distribution: top-k KL on CoT records
    variant: str = "faithful"  # KL variant (kernels/README.md): faithful (their formula) or corrected
    normalization: str = "micro_batch_mean"  # their per-micro-batch token mean, or token-weighted over the step
    format_weights: dict[str, float] = field(default_factory=dict)  # loss weight per format (default 1)
    head: str = "auto"  # auto: fused linear+KL on CUDA when the head is a plain Linear, else logits
    # --- optimisation ----------------------------------------------------------------------------
    lr: float = 5e-4
    weight_decay: float = 0.01  # torch AdamW's default, which the authors got implicitly
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    scheduler: str = "cosine"
    warmup_steps: int = 10
    schedule_length: str = "authors_bug"  # authors_bug: 10 x micro-batches (never decays); actual: the real step count
    max_grad_norm: float | None = None  # None: no clipping (the authors')
    dropout: bool = False  # False: the model stays in eval mode during training, as theirs did
    precision: str = "fp32"  # fp32 | tf32 (fp32 weights, TF32 matmuls on CUDA; plain fp32 on CPU) | bf16 | fp16 (autocast, fp32 weights)
    gradient_checkpointing: bool = False  # recompute each block's activations in backward: less memory, ~1/3 more compute
    epochs: int = 10
    max_examples: int | None = None  # stop after this many training examples (at a step boundary)
    max_steps: int | None = None  # stop after this many optimizer steps
    seed: int = 0  # data order (their np.random.seed(0)), model init of `tiny`, dropout
    # --- checkpoints and evaluation -------------------------------------------------------------
    checkpoint_every_examples: int | None = 10_000  # the paper's Fig. 3 cadence; null when checkpoints_per_run is set
    checkpoints_per_run: int | None = None  # about this many checkpoints, evenly spaced over the run's training examples
                                            # (the authors evaluated ~13: 10K…130K micro-batches at 3B); set one of the two
    keep_checkpoints: int | None = None  # None: keep all (model selection needs them)
    eval_tasks: list[str] = field(default_factory=lambda: ["gsm8k_cot_spec_dev", "mas_cot_spec_dev", "bbh_ao_spec", "bbh_cot_spec"])
    eval_limits: dict[str, float] = field(default_factory=dict)  # per task --limit
    eval_limit: float | None = None  # default --limit for tasks not in eval_limits
    eval_batch_size: int | str = EVAL_BATCH_SIZE  # or "auto" / "auto:N": lm-eval probes the largest that fits (see `harness eval --batch-size`)
    eval_max_gen_toks: int | None = None  # None: the tasks' 256 new tokens (the authors'); smaller for quick CPU checks
    evaluate: bool = True  # evaluate each checkpoint as it is written
    log_every_steps: int = 1
    output_dir: str = "runs/train"

    def batch_plan(self) -> tuple[dict[str, int], int]:
        """(micro-batch size per enabled format, grad_accum), `size` defaults with overrides."""
        from harness.train.plan import size_defaults

        sizes, accum = size_defaults(self.size)
        sizes.update(self.batch_sizes)
        accum = self.grad_accum or accum
        missing = [f for f in self.formats if f not in sizes]
        if missing:
            raise UsageError(f"batch_sizes: no micro-batch size for {', '.join(missing)} (set `size` to one of {', '.join(SIZES)} or give batch_sizes)")
        return {f: int(sizes[f]) for f in self.formats}, int(accum or 1)

    def check(self) -> None:
        """Cheap checks of every option, before anything loads."""
        if not self.formats_dir:
            raise UsageError("formats_dir: not set (the output folder of `harness formats build`)")
        check_choice("model_type", self.model_type, MODEL_TYPES)
        if self.chat_template and self.model_type == "seq2seq":
            raise UsageError("chat_template: for decoder-only students (model_type causal or auto); set chat_template: false")
        if self.chat_template and self.max_source_tokens is not None:
            raise UsageError("chat_template, max_source_tokens: not together (truncation would cut the template's turn markers); "
                             "set max_source_tokens: null")
        if not self.formats:
            raise UsageError(f"formats: empty; give some of {', '.join(FORMATS)}")
        for f in self.formats:
            check_choice("formats", f, FORMATS)
        if self.size is not None:
            check_choice("size", self.size, SIZES)
        for name, allowed in (("mix", MIXES), ("mix_mode", MIX_MODES), ("loss", LOSSES), ("variant", VARIANTS),
                              ("normalization", NORMALIZATIONS), ("scheduler", SCHEDULERS),
                              ("schedule_length", SCHEDULE_LENGTHS), ("precision", PRECISIONS), ("head", HEADS),
                              ("mix_by", ("examples", "micro_batches"))):
            check_choice(name, getattr(self, name), allowed)
        for name, table in (("batch_sizes", self.batch_sizes), ("format_weights", self.format_weights), ("mix_weights", self.mix_weights)):
            for f, value in table.items():
                check_choice(f"{name} key", f, FORMATS)
                check_positive(f"{name}.{f}", value, allow_zero=name != "batch_sizes")
        if self.mix == "weighted" and not any(self.mix_weights.get(f, 0) > 0 for f in self.formats):
            raise UsageError("mix_weights: the weighted mix needs a positive weight for at least one enabled format")
        check_positive("lr", self.lr)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_positive("warmup_steps", self.warmup_steps, allow_zero=True)
        check_positive("epochs", self.epochs)
        if (self.checkpoint_every_examples is None) == (self.checkpoints_per_run is None):
            raise UsageError("checkpoint_every_examples, checkpoints_per_run: set exactly one (the other to null), e.g. "
                             "--set checkpoints_per_run=13 --set checkpoint_every_examples=null")
        check_positive("log_every_steps", self.log_every_steps)
        check_batch_size("eval_batch_size", self.eval_batch_size)
        for name in ("max_examples", "max_steps", "max_grad_norm", "grad_accum", "keep_checkpoints", "max_source_tokens", "eval_limit",
                     "eval_max_gen_toks", "checkpoint_every_examples", "checkpoints_per_run"):
            value = getattr(self, name)
            if value is not None:
                check_positive(name, value)
        self.batch_plan()

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out


FIELD_NAMES = {f.name for f in fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)
# Settings that may change when a run resumes: they do not alter the trajectory.
# Settings added after runs were made: left out of a run's resume settings while at these defaults,
# so a run started before they existed still resumes.
LATER_DEFAULTS = {"chat_template": False}
RESUME_FREE = {"evaluate", "eval_tasks", "eval_limits", "eval_limit", "eval_batch_size", "eval_max_gen_toks", "log_every_steps",
               "max_examples", "max_steps", "keep_checkpoints", "output_dir", "gradient_checkpointing"}


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _read(source: str | Path) -> tuple[dict[str, Any], Path]:
    path = Path(source)
    if not path.exists() and (not path.suffix or (CONFIG_DIR / f"{source}.yaml").is_file()):  # a dotted name: qwen2.5-0.5b
        path = CONFIG_DIR / f"{source}.yaml"
    if not path.is_file():
        raise UsageError(f"--config: no such file or preset {str(source)!r}; presets: {', '.join(preset_names())}")
    return read_mapping(path, "a training config"), path


def _setting(key: str, value: Any, where: str) -> Any:
    if key not in FIELD_NAMES:
        raise UsageError(f"{where}: unknown setting {key!r}; known: {', '.join(sorted(FIELD_NAMES))}")
    return coerce(key, value, _HINTS[key], where)


def load_config(source: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A preset name or file, its `base:` chain, then `overrides` (e.g. from `--set key=value`);
    each value checked against its annotation (`harness.config_files`)."""
    chain: list[tuple[dict[str, Any], Path]] = []
    seen: set[Path] = set()
    data, path = _read(source)
    while True:
        if path.resolve() in seen:
            raise UsageError(f"{path}: `base:` chain loops back to {path.name}")
        seen.add(path.resolve())
        chain.append((data, path))
        base = data.get("base")
        if base is None:
            break
        data, path = _read(base if Path(str(base)).suffix else str(base))
    values: dict[str, Any] = {}
    for data, path in reversed(chain):
        values.update({key: _setting(key, value, str(path)) for key, value in data.items() if key != "base"})
    values.update({key: _setting(key, value, "--set") for key, value in (overrides or {}).items()})
    return TrainConfig(**values)


def write_config(cfg: TrainConfig, path: str | Path) -> Path:
    """A config file `load_config` reads back to an equal config (how reproduce hands a run to
    `harness train --config` under a launcher)."""
    from harness.records import atomic_write

    with atomic_write(path) as handle:
        json.dump(cfg.to_dict(), handle, indent=1)
        handle.write("\n")
    return Path(path)
