"""`harness eval`: run spec tasks through lm-eval's `simple_evaluate` and write its files.

Each run gets its own folder, `output_dir/<model>/<UTC time>/`, named from the model's short name
(never a local path): lm-eval's `results_<date>.json` and `samples_<task>_<date>.jsonl` (written
by its own EvaluationTracker, so they match the `lm_eval` command's) and `summary.json` with the
headline numbers and the run manifest. Everything cheap is checked before the model loads.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import logging
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from harness.checksums import check_files
from harness.config import TASKS_DIR, data_dir
from harness.errors import UsageError, check_batch_size, check_choice, check_positive
from harness.eval import EvalSetupError
from harness.eval.backend import (BACKENDS, batch_arguments, check_backend_environment, choose_backend, model_arguments,
                                  recorded_probes)
from harness.eval.context import declared_positions, load_tokenizer, model_max_length, truncation_report, warnings_for
from harness.eval.summary import summarise
from harness.eval.tiny import model_label, read_marker, resolve_model
from harness.manifest import run_manifest
from harness.records import atomic_write

SEQ2SEQ_MAX_LENGTH = 4096
T5_MAX_NEW_TOKENS = 255  # the authors' generate(max_length=256) counts the decoder start token
PIPELINE_CHECK_NOTE = "PIPELINE CHECK: the model has random weights; these numbers test the plumbing and are not results."
SPLIT_MODES = ("faithful", "clean")
BASE_PROMPTS = ("original", "complex", "simple", "random", "direct")
DATA_PREFIXES = ("gsm8k/", "multiarith/", "asdiv/", "svamp/", "bbh/", "prompts/")
# Warnings lm-eval prints about things `harness eval` does on purpose (see `run`).
EXPECTED_WARNINGS = (
    "Custom kwargs can be passed",  # once per custom_dataset task: every spec task
    "overrides existing task",  # only when another checkout's tasks are installed: ours win
    "specified through cli, these settings will update",  # our T5 decode length
    "Please use `max_gen_toks` instead",  # idem: max_length is deliberate for seq2seq
)


@dataclass(frozen=True)
class EvalConfig:
    model: str
    tasks: list[str]
    limit: float | None = None
    # An int, "auto" (lm-eval probes the largest size that fits, once) or "auto:N" (re-probes N
    # times; generation probes once either way). None: 8 on hf, "auto" on vLLM.
    batch_size: int | str | None = None
    max_batch_size: int | None = None  # auto: where the probe starts (lm-eval's 64); vLLM: most sequences at once
    backend: str = "hf"  # hf | vllm | auto (see harness/eval/backend.py)
    device: str | None = None
    # Encoder context for seq2seq (T5) models. lm-eval would use T5's 512 and left-truncate; the
    # authors never truncated, and the longest spec prompt is 2,382 T5 tokens (8-shot complex).
    # None: SEQ2SEQ_MAX_LENGTH for encoder-decoder models, lm-eval's default for decoder-only ones.
    max_length: int | None = None
    max_gen_toks: int | None = None
    split_mode: str | None = None
    base_prompt: str | None = None
    output_dir: Path = Path("runs/eval")
    run_dir: Path | None = None  # write exactly here (reproduce's cells); None: OUTPUT_DIR/<model>/<UTC time>/
    seed: int = 0
    strict_data: bool = False  # fail (instead of warning) when data files differ from the manifest
    extra_model_args: dict = field(default_factory=dict)
    # lm-eval's apply_chat_template: the task's prompt as a user turn, generation as the assistant's.
    # None: as the model was trained (a checkpoint of `harness train` with chat_template: true
    # records it in its marker), else off.
    apply_chat_template: bool | None = None


# --- cheap checks, before anything loads --------------------------------------------------------


def spec_task_names(tasks_dir: Path = TASKS_DIR) -> set[str]:
    """Task and group names defined in tasks/*.yaml (read as text: no lm-eval import)."""
    names = set()
    for path in tasks_dir.glob("*.yaml"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith(("task: ", "group: ")):
                names.add(line.split(": ", 1)[1].strip())
    return names


def check_tasks(tasks: list[str], known_elsewhere: Callable[[str], bool] | None = None) -> None:
    if not tasks:
        raise UsageError("--tasks: no task given; see `python -m harness tasks list`")
    ours = spec_task_names()
    for task in tasks:
        if task in ours or (known_elsewhere is not None and known_elsewhere(task)):
            continue
        close = difflib.get_close_matches(task, sorted(ours), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see `python -m harness tasks list`"
        raise UsageError(f"--tasks: unknown task {task!r}; {hint}")


def check_device(device: str | None) -> str:
    """The torch device to use; a CUDA device that is not there is an error, not a silent CPU run."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    match = re.fullmatch(r"(cpu|mps|cuda)(?::(\d+))?", device)
    if not match:
        raise UsageError(f"--device: {device!r} is not a device; use cpu, cuda, cuda:N or mps")
    kind, index = match.group(1), match.group(2)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise EvalSetupError(f"--device {device}: no CUDA GPU is visible (torch.cuda.is_available() is False); use --device cpu")
        if index is not None and int(index) >= torch.cuda.device_count():
            raise EvalSetupError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise EvalSetupError(f"--device {device}: MPS is not available on this machine")
    return device


def check_output_dir(path: Path) -> None:
    """The output folder must be creatable and writable; found out now, not after generation."""
    if path.exists() and not path.is_dir():
        raise EvalSetupError(f"--output-dir {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise EvalSetupError(f"--output-dir {path}: cannot write there ({err.strerror or err})") from None


def check_options(cfg: EvalConfig) -> None:
    check_positive("--limit", cfg.limit)
    check_batch_size("--batch-size", cfg.batch_size)
    check_positive("--max-batch-size", cfg.max_batch_size)
    check_choice("--backend", cfg.backend, BACKENDS)
    check_positive("--max-length", cfg.max_length)
    check_positive("--max-gen-toks", cfg.max_gen_toks)
    if cfg.split_mode is not None:
        check_choice("--split-mode", cfg.split_mode, SPLIT_MODES)
    if cfg.base_prompt is not None:
        check_choice("--base-prompt", cfg.base_prompt, BASE_PROMPTS)


def check_model(model: str) -> tuple[str, bool, bool]:
    """(path or hub id, is pipeline check, is encoder-decoder); an unknown model is a clear error.

    Local folders and the Hugging Face cache are tried first (fast, silent); the Hub only after."""
    from transformers import AutoConfig

    path, pipeline_check = resolve_model(model)
    if Path(path).is_dir():
        try:
            config = AutoConfig.from_pretrained(path)
        except (OSError, ValueError):
            raise EvalSetupError(f"--model {model!r}: a local folder without a usable config.json (is it a Hugging Face model folder?)") from None
        return path, pipeline_check, bool(getattr(config, "is_encoder_decoder", False))
    if model.startswith(("/", ".", "~")):
        raise EvalSetupError(f"--model {model!r}: no such folder. Use a hub id (e.g. google/flan-t5-base), a local model folder, or `tiny`.")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError):
        if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1":
            raise EvalSetupError(f"--model {model!r}: not a local folder and not in the Hugging Face cache, and the Hub is off "
                                 f"(HF_HUB_OFFLINE=1); download it first or give a local folder.") from None
        config = _config_from_hub(model, path)
    return path, pipeline_check, bool(getattr(config, "is_encoder_decoder", False))


def _config_from_hub(model: str, path: str):
    from transformers import AutoConfig

    quiet = [logging.getLogger(name) for name in ("huggingface_hub", "transformers")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        text = str(err).strip()
        unreachable = any(word in text.lower() for word in ("connect", "resolve", "timed out", "network", "offline"))
        cause = "the Hugging Face Hub cannot be reached (no network?)" if unreachable else "no such model on the Hugging Face Hub"
        raise EvalSetupError(f"--model {model!r}: not a local folder, not in the Hugging Face cache, and {cause}.\n"
                             f"Check the id, or download the model and pass its folder.") from None
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


def check_data(root: Path, strict: bool, warn: Callable[[str], None]) -> dict[str, str]:
    """sha256 of the evaluation data against the manifest: a loud warning, or an error when strict."""
    status = check_files(root, DATA_PREFIXES)
    bad = {f: s for f, s in status.items() if s == "mismatch"}
    if bad:
        files = ", ".join(sorted(bad)[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        message = f"data files differ from the pinned manifest (sha256): {files} in {root}"
        if strict:
            raise EvalSetupError(message + "\n--strict-data is set; fix the files with `python -m harness data download`.")
        warn(f"WARNING: {message}; results may not be comparable (use --strict-data to stop instead).")
    return status


# --- the run -------------------------------------------------------------------------------------


class _DropExpected(logging.Filter):
    """Drop lm-eval warnings about choices `harness eval` makes on purpose (EXPECTED_WARNINGS)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in EXPECTED_WARNINGS)


def _quiet_libraries() -> None:
    for name in ("lm_eval", "lm_eval.api.task", "lm_eval.evaluator", "lm_eval.models.huggingface", "lm_eval.tasks._index", "lm_eval.tasks"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropExpected) for f in logger.filters):
            logger.addFilter(_DropExpected())
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" bars
    except ImportError:  # pragma: no cover
        pass


def _task_manager(metadata: dict | None, only_ours: bool = False):
    """lm-eval's TaskManager seeing our tasks once. `only_ours` (every task asked for is one of
    ours): index this repo's tasks/ alone, ~0.5 s instead of lm-eval's whole catalogue (~15K task
    files, tens of seconds on a small machine). Otherwise the catalogue too: our tasks from
    lm-eval's own folder when `harness tasks install` linked this checkout there, else through
    include_path."""
    from lm_eval.tasks import TaskManager

    from harness.eval.registration import status

    if only_ours:
        return TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
    installed = status()
    ours = installed["installed"] and installed["source"] == str(TASKS_DIR.resolve())
    return TaskManager(include_path=None if ours else str(TASKS_DIR), metadata=metadata)


def run_folder(cfg: EvalConfig) -> Path:
    if cfg.run_dir is not None:
        return Path(cfg.run_dir)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = Path(cfg.output_dir) / model_label(cfg.model)
    folder, i = base / stamp, 1
    while folder.exists():
        i += 1
        folder = base / f"{stamp}-{i}"
    return folder


def prepare(cfg: EvalConfig, warn: Callable[[str], None] = print) -> dict:
    """Every check that needs no model or lm-eval index; returns what `run` needs from them."""
    check_options(cfg)
    if _all_spec(cfg.tasks):  # other names are checked against lm-eval's index in `run`
        check_tasks(cfg.tasks)
    device = check_device(cfg.device)
    check_backend_environment(cfg.backend, device)
    check_output_dir(Path(cfg.run_dir) if cfg.run_dir is not None else Path(cfg.output_dir))
    root = data_dir()
    data_status = check_data(root, cfg.strict_data, warn)
    return {"device": device, "data_root": root, "data_status": data_status}


def _all_spec(tasks: list[str]) -> bool:
    ours = spec_task_names()
    return not tasks or all(t in ours for t in tasks)


def run(cfg: EvalConfig, warn: Callable[[str], None] = print) -> dict:
    import lm_eval
    from lm_eval.loggers import EvaluationTracker

    checked = prepare(cfg, warn)
    model_path, pipeline_check, seq2seq = check_model(cfg.model)  # before lm-eval indexes its ~10K task files
    backend = choose_backend(cfg.backend, seq2seq, checked["device"], warn=warn)
    chat, chat_from = chat_template_choice(cfg, model_path, seq2seq)
    check_context_option(cfg.max_length, model_path, seq2seq)
    _quiet_libraries()
    manager = _task_manager(_metadata(cfg) or None, only_ours=_all_spec(cfg.tasks))
    if not _all_spec(cfg.tasks):  # names from lm-eval's own catalogue: checked against its index
        known = set(manager.all_tasks)
        check_tasks(cfg.tasks, known_elsewhere=known.__contains__)
    max_length = cfg.max_length or (SEQ2SEQ_MAX_LENGTH if seq2seq else None)
    model_args = model_arguments(backend, model_path, max_length, cfg.seed, cfg.extra_model_args)
    batch = batch_arguments(backend, check_batch_size("--batch-size", cfg.batch_size), cfg.max_batch_size, checked["device"])
    gen_kwargs = {"max_gen_toks": cfg.max_gen_toks} if cfg.max_gen_toks else None
    if seq2seq:
        # lm-eval hands seq2seq `generate` max_length = encoder length + max_gen_toks, which bounds
        # the *decoder*: T5 could run on for ~2,000 tokens. The authors used max_length=256
        # (start token + 255 new tokens); pass exactly that.
        gen_kwargs = {"max_length": (cfg.max_gen_toks or T5_MAX_NEW_TOKENS) + 1}
    out_dir = run_folder(cfg)
    # A path ending in .json makes lm-eval write results_<date>.json / samples_<task>_<date>.jsonl
    # straight into our run folder instead of a folder named after the model path.
    tracker = EvaluationTracker(output_path=str(out_dir / "results.json"))
    # lm-eval print()s its batch-size probe: onto stderr with it, so stdout (`--json`) stays parseable.
    with recorded_probes(backend, batch["batch_size"]) as probed, contextlib.redirect_stdout(sys.stderr):
        results = lm_eval.simple_evaluate(
            model=backend,  # lm-eval's names: "hf", "vllm"
            model_args=model_args,
            tasks=cfg.tasks,
            limit=cfg.limit,
            **batch,
            task_manager=manager,
            log_samples=True,
            evaluation_tracker=tracker,
            gen_kwargs=gen_kwargs,
            apply_chat_template=chat,
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
    context = _context_report(samples, model_path, max_length, seq2seq)
    for line in warnings_for(context or {}):
        warn(line)
    summary = summarise(results)
    summary["model"] = cfg.model
    summary["chat_template"] = chat
    summary["chat_template_from"] = chat_from
    summary["context"] = context
    summary["pipeline_check"] = pipeline_check
    summary["backend"] = backend
    summary["batch_size"] = batch["batch_size"]  # as handed to lm-eval; the sizes `auto` picked follow
    summary["batch_sizes"] = probed or list(results.get("config", {}).get("batch_sizes") or [])
    if pipeline_check:
        summary["note"] = PIPELINE_CHECK_NOTE
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    mismatched = sorted(f for f, s in checked["data_status"].items() if s != "ok")
    summary["manifest"] = run_manifest(
        checked["data_root"], tuple(p.rstrip("/") for p in DATA_PREFIXES), config=config, model_args=model_args,
        data_not_matching_manifest=mismatched,
    )
    summary["output_dir"] = str(out_dir)
    with atomic_write(out_dir / "summary.json") as handle:
        json.dump(summary, handle, indent=1)
    return summary


def chat_template_choice(cfg: EvalConfig, model_path: str, seq2seq: bool) -> tuple[bool, str]:
    """(apply lm-eval's chat template, why): the option, else the model's marker (how it was trained)."""
    if cfg.apply_chat_template is not None:
        chat, source = bool(cfg.apply_chat_template), "option"
    else:
        marker = read_marker(model_path) if Path(model_path).is_dir() else None
        chat = bool(marker and marker.get("chat_template"))
        source = "model marker (trained with chat_template)" if chat else "default"
    if not chat:
        return False, source
    if seq2seq:
        raise EvalSetupError(f"apply_chat_template: {cfg.model!r} is an encoder-decoder model; chat templates are for decoder-only models")
    try:
        template = getattr(load_tokenizer(model_path), "chat_template", None)
    except (OSError, ValueError) as err:
        raise EvalSetupError(f"apply_chat_template: cannot load the tokenizer of {cfg.model!r} ({str(err).splitlines()[0]})") from None
    if not template:
        raise EvalSetupError(f"apply_chat_template: the tokenizer of {cfg.model!r} has no chat template ({source}); "
                             "set apply_chat_template to false")
    return True, source


def check_context_option(max_length: int | None, model_path: str, seq2seq: bool) -> None:
    """A decoder-only model cannot take more positions than it has (GPT-2's learned 1,024 would index past its table)."""
    if max_length is None or seq2seq:
        return
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError):
        return  # check_model read it already; nothing more to learn here
    positions = declared_positions(config)
    if positions and max_length > positions:
        raise EvalSetupError(f"--max-length {max_length}: the model has {positions} positions; use at most {positions} "
                             "(lm-eval keeps the last max_length - max_gen_toks prompt tokens)")


def _context_report(samples, model_path: str, max_length: int | None, seq2seq: bool) -> dict | None:
    """How many prompts lm-eval cut to fit (harness/eval/context.py); None without samples."""
    if not samples:
        return None
    from transformers import AutoConfig

    try:
        tokenizer = load_tokenizer(model_path)
        length = max_length or model_max_length(AutoConfig.from_pretrained(model_path), tokenizer)
    except (OSError, ValueError):
        return None
    return truncation_report(samples, tokenizer, int(length), seq2seq)


def _metadata(cfg: EvalConfig) -> dict:
    meta = {}
    if cfg.split_mode:
        meta["split_mode"] = cfg.split_mode
    if cfg.base_prompt:
        meta["base_prompt"] = cfg.base_prompt
    return meta

