"""The specialization loop on accelerate: one process, DDP, FSDP or DeepSpeed, the same code.

Order of work (cheap first): options, the formats' manifest, the records and the tokenizer guard
over every record, the run folder's resume settings (nothing is written before every check
passed), then the model. A step runs its `grad_accum` micro-batches,
dealt across processes (plan.deal); the loss scaling makes N processes compute the same update as
one (see the backward call). Checkpoints fall every `checkpoint_every_examples` training examples
(or at the interval `checkpoints_per_run` gives), at the first step boundary past the mark, and
each can be evaluated through an injected `evaluator` (the CLI passes the lm-eval one; this stage
does not import the eval stage). The main process alone writes the run's files: run.json (this
session's header: precision, device, cadence), metrics.jsonl, checkpoints, and done.json last.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.errors import ResumeError
from harness.mixing import COT_FORMATS
from harness.records import atomic_write
from harness.resume import claim
from harness.train import checkpoints as ck
from harness.train import precision as prec
from harness.train.config import LATER_DEFAULTS, RESUME_FREE, TrainConfig
from harness.train.metrics import append_metrics, read_metrics, write_metrics
from harness.train.data import (Collator, check_context, check_records, counts as record_counts, load_formats, model_positions,
                                open_formats)
from harness.train.plan import Cadence, check_counts, checkpoint_cadence, deal, epoch_micro_batches, slots_per_process, steps_of

RUN_FILE = "run.json"

# evaluator(model_dir, tasks, limits, batch_size, max_gen_toks) -> {task: score in percent}
Evaluator = Callable[[Path, list, dict, int, "int | None"], dict]


@dataclass
class TrainResult:
    run_dir: Path
    position: ck.Position
    losses: list[float]  # objective per optimizer step run in this call
    checkpoints: list[Path]
    already_complete: bool = False  # resumed over a finished run: nothing was done
    header: dict = field(default_factory=dict)  # this session's run.json


def reached_end(cfg: TrainConfig, pos: ck.Position) -> bool:
    """True when `cfg` trains no further from `pos`: all epochs run, or max_steps / max_examples met."""
    return bool(pos.epoch >= cfg.epochs or (cfg.max_steps and pos.global_step >= cfg.max_steps)
                or (cfg.max_examples and pos.examples >= cfg.max_examples))


def finished_position(run: Path) -> ck.Position | None:
    """The final position of a finished run: done.json present and its checkpoint present."""
    done = ck.read_done(run)
    if done is None or not (Path(run) / done["checkpoint"] / ck.STATE_FILE).is_file():
        return None
    return ck.Position(**done["position"])


def _settings(cfg: TrainConfig, formats_content: str) -> dict:
    """What a resumed run must share with the run it continues: the trajectory settings and the
    content of the formats (their manifest's id), not only their path."""
    kept = {k: v for k, v in cfg.to_dict().items() if k not in RESUME_FREE and not (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])}
    return {**kept, "formats_content": formats_content}


def _prepare_output(cfg: TrainConfig, resume: bool, formats_content: str) -> tuple[Path, bool]:
    run = Path(cfg.output_dir)
    has_ckpt = bool(ck.list_checkpoints(run))
    if has_ckpt and not resume:
        raise ResumeError(f"{run}: holds checkpoints of an earlier run; pass --resume to continue it, or choose another --output")
    resuming = claim(run, "train", _settings(cfg, formats_content), folder=True) and has_ckpt
    return run, resuming


def _scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int, micro_per_epoch: int):
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    # The authors' bug: num_training_steps = 10 x the micro-batch count, stepped per optimizer step.
    total = cfg.epochs * (micro_per_epoch if cfg.schedule_length == "authors_bug" else steps_per_epoch)
    if cfg.scheduler == "constant":
        return get_constant_schedule_with_warmup(optimizer, cfg.warmup_steps), total
    make = get_cosine_schedule_with_warmup if cfg.scheduler == "cosine" else get_linear_schedule_with_warmup
    return make(optimizer, cfg.warmup_steps, total), total


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    evaluator: Evaluator | None = None,
    progress: bool = True,
    accelerator=None,
) -> TrainResult:
    """Train `cfg` (resume=True: continue its run folder; over a finished run, return at once)."""
    cfg.check()
    formats = open_formats(cfg.formats_dir)  # a finished, undamaged formats output, before anything is written
    if resume:  # a finished run with these settings (checked by the claim) and no further limit: nothing to do
        end = finished_position(Path(cfg.output_dir))
        if end is not None and reached_end(cfg, end):
            claim(cfg.output_dir, "train", _settings(cfg, formats.content), folder=True)
            return TrainResult(Path(cfg.output_dir), end, [], [], already_complete=True)
    if accelerator is None:
        from accelerate import Accelerator

        # (no PartialState() before this: it would fix the distributed setup without reading
        # accelerate's environment, e.g. ACCELERATE_USE_CPU for a gloo run)
        accelerator = Accelerator(
            mixed_precision=prec.accelerate_mixed_precision(cfg.precision),
            log_with="tensorboard",
            project_dir=str(Path(cfg.output_dir) / "tensorboard"),
        )
    with prec.matmul_precision(cfg.precision, accelerator.device.type):
        return _train(cfg, formats, resume, evaluator, progress, accelerator)


def _train(cfg: TrainConfig, formats, resume: bool, evaluator, progress: bool, accelerator) -> TrainResult:
    import torch
    from accelerate.utils import set_seed
    from transformers import AutoConfig, AutoTokenizer

    from harness.train.losses import DistillationObjective
    from harness.train.student import enable_gradient_checkpointing, load_student, resolve

    with accelerator.main_process_first():  # one process builds `tiny`; the others then find it
        path, _ = resolve(cfg.model, cfg.seed)
    records = load_formats(cfg.formats_dir, cfg.formats, formats)
    n = record_counts(records)
    batch_sizes, grad_accum = cfg.batch_plan()
    check_counts(n, batch_sizes, grad_accum)

    # The tokenizer guard, before any weights load.
    tokenizer = AutoTokenizer.from_pretrained(path)
    model_config = AutoConfig.from_pretrained(path)
    seq2seq = bool(getattr(model_config, "is_encoder_decoder", False)) if cfg.model_type == "auto" else cfg.model_type == "seq2seq"
    collate = _collator(cfg, tokenizer, seq2seq, records)
    positions = None if seq2seq else model_positions(model_config)
    distribution = cfg.loss == "distribution"
    target_lengths: dict[str, list[int]] = {}
    for fmt, recs in records.items():
        if recs.table is None:
            continue
        ids = collate.target_ids(recs.table.column("decoder_target").to_pylist())
        check_records(recs, ids, need_targets=distribution, vocab_size=int(model_config.vocab_size),
                      tokenizer_name=f"{cfg.model}'s")
        if positions:
            check_context(recs, collate, ids, positions)
        recs.keep_target_ids(ids)  # the collator's targets: not tokenized again
        target_lengths[fmt] = [len(x) + 1 for x in ids]  # + EOS
    with accelerator.main_process_first():  # every check passed: now the run folder is claimed (one process first)
        run, resuming = _prepare_output(cfg, resume, formats.content)

    procs, rank = accelerator.num_processes, accelerator.process_index
    slots = slots_per_process(grad_accum, procs)
    accelerator.gradient_accumulation_steps = slots
    set_seed(cfg.seed)
    student = load_student(cfg.model, cfg.model_type, dropout=cfg.dropout, seed=cfg.seed)
    if collate.eos != tokenizer.eos_token_id:  # a chat template's end of turn ends the targets: generation stops there too
        _stop_at(student.model, collate.eos)
    blocks = enable_gradient_checkpointing(student.model) if cfg.gradient_checkpointing else 0
    fused = cfg.head == "fused" or (cfg.head == "auto" and accelerator.device.type == "cuda" and student.fused_ok()
                                    and accelerator.distributed_type.value in ("NO", "MULTI_GPU"))
    # faithful: teacher mass on <pad> is dropped, as the authors' target builder did (not when pad is EOS)
    pad_id = tokenizer.pad_token_id if cfg.variant == "faithful" and tokenizer.pad_token_id not in (None, collate.eos) else None
    objective = DistillationObjective(student.model, seq2seq=seq2seq, variant=cfg.variant, fused=fused, pad_id=pad_id)
    optimizer = torch.optim.AdamW(student.model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    plan0 = epoch_micro_batches(n, batch_sizes, grad_accum, mix=cfg.mix, mix_mode=cfg.mix_mode, mix_weights=cfg.mix_weights,
                                mix_by=cfg.mix_by, seed=cfg.seed, epoch=0)
    steps_per_epoch = len(plan0) // grad_accum
    scheduler, schedule_total = _scheduler(cfg, optimizer, steps_per_epoch, len(plan0))
    objective, optimizer = accelerator.prepare(objective, optimizer)
    accelerator.register_for_checkpointing(scheduler)

    epoch_examples = sum(len(mb.indices) for mb in plan0[: steps_per_epoch * grad_accum])
    cadence, planned = checkpoint_cadence(epoch_examples, steps_per_epoch, epochs=cfg.epochs, every_examples=cfg.checkpoint_every_examples,
                                          per_run=cfg.checkpoints_per_run, max_steps=cfg.max_steps, max_examples=cfg.max_examples)
    pos = ck.Position(next_checkpoint=cadence.next_mark(0))
    latest = None
    if accelerator.is_main_process:
        run.mkdir(parents=True, exist_ok=True)
        ck.clear_temp(run)
    if resuming:
        latest = ck.latest_resumable(run)
        if latest is None:
            raise ResumeError(f"{run}: no checkpoint with its optimizer state left to resume from")
        accelerator.load_state(str(latest / "state"))
        pos = ck.read_position(latest)
        cadence = _stored_cadence(latest) or cadence  # the cadence the run started with, whatever the limits now
        if accelerator.is_main_process:  # drop what was logged after that checkpoint (it will be redone)
            ck.clear_done(run)  # a finished run trained further: unfinished again until its new end
            kept = {p.name for p in ck.list_checkpoints(run)}
            write_metrics(run, [r for r in read_metrics(run)
                                 if (r["kind"] == "train" and r["examples"] <= pos.examples) or (r["kind"] == "eval" and r["checkpoint"] in kept)])
    elif accelerator.is_main_process:
        write_metrics(run, [])
        (run / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    header = _header(cfg, accelerator, student, fused=fused, blocks=blocks, pad_id=pad_id, cadence=cadence, planned=planned,
                     resumed_from=latest.name if latest is not None else None)
    if accelerator.is_main_process:
        with atomic_write(run / RUN_FILE) as f:
            json.dump(header, f, indent=1)
            f.write("\n")
    accelerator.init_trackers("train", config={k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
                                               for k, v in _settings(cfg, formats.content).items()})

    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    losses: list[float] = []
    written: list[Path] = []
    bar = _Progress(total_steps, pos.global_step, enabled=progress and accelerator.is_main_process)
    if accelerator.is_main_process:
        accelerator.print(f"train: {student.path} ({'seq2seq' if seq2seq else 'causal'}{', chat template' if cfg.chat_template else ''}, "
                          f"{'fused head' if fused else 'logits'}), "
                          f"loss {cfg.loss}/{cfg.variant}, {procs} process(es) x {slots} micro-batch slot(s), grad_accum {grad_accum}, "
                          f"{steps_per_epoch} steps/epoch, schedule length {schedule_total}")
        accelerator.print(f"train: precision {cfg.precision} ({header['compute']}), gradient checkpointing "
                          f"{f'on ({blocks} blocks)' if blocks else 'off'}, {header['cadence']}")

    def stop() -> bool:
        return bool((cfg.max_steps and pos.global_step >= cfg.max_steps) or (cfg.max_examples and pos.examples >= cfg.max_examples))

    finished = False
    with bar:
        for epoch in range(pos.epoch, cfg.epochs):
            plan = plan0 if epoch == 0 else epoch_micro_batches(
                n, batch_sizes, grad_accum, mix=cfg.mix, mix_mode=cfg.mix_mode, mix_weights=cfg.mix_weights,
                mix_by=cfg.mix_by, seed=cfg.seed, epoch=epoch)
            steps = steps_of(plan, grad_accum)
            for step_index in range(pos.step_in_epoch if epoch == pos.epoch else 0, len(steps)):
                if stop():
                    finished = True
                    break
                step = steps[step_index]
                step_tokens = sum(target_lengths[mb.format][i] for mb in step for i in mb.indices)
                step_examples = sum(len(mb.indices) for mb in step)
                local = torch.zeros(3, dtype=torch.float64, device=accelerator.device)  # objective, loss sum, rows
                for slot in deal(step, rank, procs):
                    batch = collate(records[slot.micro_batch.format], slot.micro_batch.indices,
                                    distribution and slot.micro_batch.format in COT_FORMATS)
                    with accelerator.accumulate(objective):
                        loss_sum, rows = objective(**_to_device(batch, accelerator.device))
                        weight = slot.weight * cfg.format_weights.get(batch.format, 1.0)
                        if cfg.normalization == "micro_batch_mean":  # theirs: token mean per micro-batch, / grad_accum
                            part = loss_sum / rows.clamp(min=1) / grad_accum * weight
                        else:  # token-weighted: every target token of the step weighs the same
                            part = loss_sum / step_tokens * weight
                        # accelerate divides by the slots, DDP/FSDP/ZeRO average over processes: undo both,
                        # so P processes apply exactly the update one process would.
                        accelerator.backward(part * slots * procs)
                        if accelerator.sync_gradients and cfg.max_grad_norm:
                            accelerator.clip_grad_norm_(objective.parameters(), cfg.max_grad_norm)
                    local += torch.stack([part.detach().double(), loss_sum.detach().double() * slot.weight,
                                          rows.detach().double() * slot.weight])
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                total = accelerator.reduce(local, "sum")
                pos.global_step += 1
                pos.epoch, pos.step_in_epoch = (epoch, step_index + 1) if step_index + 1 < len(steps) else (epoch + 1, 0)
                pos.examples += step_examples
                pos.tokens += step_tokens
                step_loss, token_loss = float(total[0]), float(total[1] / total[2].clamp(min=1))
                losses.append(step_loss)
                lr = scheduler.get_last_lr()[0]
                bar.update(pos, step_loss, step_examples, step_tokens)
                if accelerator.is_main_process and pos.global_step % cfg.log_every_steps == 0:
                    append_metrics(run, [{"kind": "train", "step": pos.global_step, "epoch": epoch, "examples": pos.examples,
                                           "tokens": pos.tokens, "loss": step_loss, "token_loss": token_loss, "lr": lr}])
                accelerator.log({"train/loss": step_loss, "train/token_loss": token_loss, "train/lr": lr}, step=pos.examples)
                if pos.examples >= pos.next_checkpoint:
                    pos.next_checkpoint = cadence.next_mark(pos.examples)
                    written.append(_checkpoint(accelerator, objective, student, run, pos, cfg, evaluator, header))
            if finished:
                break
    if pos.examples and not (run / ck.name_for(pos.examples)).exists():  # the end of the run is always kept
        written.append(_checkpoint(accelerator, objective, student, run, pos, cfg, evaluator, header))
    accelerator.wait_for_everyone()
    accelerator.end_training()  # (ends the process group too: no collective after this)
    if accelerator.is_main_process:  # last: the run is finished for these limits
        ck.write_done(run, pos, {"evaluated": bool(evaluator is not None and cfg.evaluate and cfg.eval_tasks),
                                 "time": _now(), "run": header})
    return TrainResult(run, pos, losses, written, header=header)


def _collator(cfg: TrainConfig, tokenizer, seq2seq: bool, records) -> Collator:
    """The micro-batch builder; with `chat_template`, the template's end of turn read from the first record."""
    chat = end_id = None
    if cfg.chat_template:
        from harness.train.chat import ChatWrapping

        if seq2seq:
            from harness.errors import UsageError

            raise UsageError("chat_template: for decoder-only students; this one is an encoder-decoder model")
        chat = ChatWrapping(tokenizer)
        first = next((r.table for r in records.values() if r.table is not None and r.table.num_rows), None)
        if first is not None:
            end_id = chat.end_id(first.column("encoder_input")[0].as_py() + cfg.prompt_separator, first.column("decoder_target")[0].as_py())
    return Collator(tokenizer, seq2seq=seq2seq, prompt_separator=cfg.prompt_separator, max_source_tokens=cfg.max_source_tokens,
                    chat=chat, end_id=end_id)


def _stop_at(model, token_id: int) -> None:
    """Add `token_id` to the model's generation EOS ids (saved with every checkpoint)."""
    config = model.generation_config
    current = config.eos_token_id
    ids = [] if current is None else list(current) if isinstance(current, (list, tuple)) else [current]
    if token_id not in ids:
        config.eos_token_id = ids + [token_id]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _stored_cadence(checkpoint: Path) -> Cadence | None:
    marks = (json.loads((checkpoint / ck.STATE_FILE).read_text()).get("run") or {}).get("checkpoint_marks")
    return Cadence(**marks) if marks else None


def _header(cfg: TrainConfig, accelerator, student, *, fused: bool, blocks: int, pad_id, cadence: Cadence, planned: int,
            resumed_from: str | None) -> dict:
    """What this session ran with, beyond the config: run.json, each checkpoint's trainer_state."""
    import accelerate
    import torch
    import transformers

    device = accelerator.device
    where = f"checkpoints_per_run {cadence.count} over {planned} planned examples" if cfg.checkpoints_per_run else "checkpoint_every_examples"
    return {
        "precision": cfg.precision,
        "compute": prec.describe(cfg.precision, device.type),
        "mixed_precision": str(accelerator.mixed_precision),
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "checkpointed_blocks": blocks,
        "checkpoint_interval": round(cadence.interval, 1),  # examples between checkpoints (marks at ceil(k x span / count))
        "checkpoint_marks": {"span": cadence.span, "count": cadence.count},
        "checkpoints_per_run": cfg.checkpoints_per_run,
        "planned_examples": planned,
        "cadence": f"a checkpoint every {round(cadence.interval, 1):g} examples ({where}) and at the end",
        "head": "fused" if fused else "logits",
        "chat_template": cfg.chat_template,
        "pad_mass_dropped_id": pad_id,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "processes": accelerator.num_processes,
        "distributed": accelerator.distributed_type.value,
        "model": student.path,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "accelerate": accelerate.__version__},
        "started": _now(),
        "resumed_from": resumed_from,
    }


def _to_device(batch, device) -> dict:
    import torch

    out = {}
    for name in ("input_ids", "attention_mask", "labels", "decoder_input_ids", "position_ids", "topk_ids", "topk_probs"):
        value = getattr(batch, name)
        if value is not None:
            out[name] = value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
    out["prompt_width"] = batch.prompt_width
    return out


def _checkpoint(accelerator, objective, student, run: Path, pos: ck.Position, cfg: TrainConfig, evaluator, header: dict) -> Path:
    import shutil

    tmp = ck.temp_folder(run, pos.examples)
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "state"))
    state = accelerator.get_state_dict(objective)
    prefix = "student."
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)} if state else None
    inner = accelerator.unwrap_model(objective).student
    inner.save_pretrained(tmp / "model", is_main_process=accelerator.is_main_process, save_function=accelerator.save, state_dict=weights)
    final = run / ck.name_for(pos.examples)
    if accelerator.is_main_process:
        student.tokenizer.save_pretrained(tmp / "model")
        from harness.model_marker import write_marker

        write_marker(tmp / "model", "specialized", pipeline_check=student.pipeline_check, base=cfg.model,
                     examples=pos.examples, loss=cfg.loss, variant=cfg.variant, chat_template=cfg.chat_template)
        final = ck.finish(run, tmp, pos, {"config": cfg.to_dict(), "time": _now(), "run": header})
        ck.prune(run, cfg.keep_checkpoints)
    accelerator.wait_for_everyone()
    if evaluator is not None and cfg.evaluate and cfg.eval_tasks:
        if accelerator.is_main_process:
            evaluate_checkpoint(final, cfg, evaluator)
        accelerator.wait_for_everyone()
    return final


def evaluate_checkpoint(folder: Path, cfg: TrainConfig, evaluator: Evaluator) -> list[dict]:
    """Evaluate one checkpoint's model on the configured tasks; append the scores to metrics.jsonl."""
    pos = ck.read_position(folder)
    limits = {t: cfg.eval_limits.get(t, cfg.eval_limit) for t in cfg.eval_tasks}
    scores = evaluator(folder / "model", list(cfg.eval_tasks), limits, cfg.eval_batch_size, cfg.eval_max_gen_toks)
    rows = [{"kind": "eval", "checkpoint": folder.name, "examples": pos.examples, "step": pos.global_step, "task": task,
             "value": value, "limit": limits.get(task)} for task, value in scores.items()]
    append_metrics(folder.parent, rows)
    return rows


class _Progress:
    """A rich bar with loss, examples/s, tokens/s and ETA (main process only)."""

    def __init__(self, total: int, done: int, enabled: bool):
        self.enabled = enabled
        self.total, self.start_done = total, done
        self.t0 = time.perf_counter()
        self.examples = self.tokens = 0
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                     TimeRemainingColumn())
            self.task = self.progress.add_task("train", total=total, completed=done, info="")

    def __enter__(self):
        if self.enabled:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.progress.__exit__(*exc)

    def update(self, pos: ck.Position, loss: float, examples: int, tokens: int) -> None:
        if not self.enabled:
            return
        self.examples += examples
        self.tokens += tokens
        dt = max(time.perf_counter() - self.t0, 1e-9)
        info = f"loss {loss:.4f} | {self.examples / dt:.1f} ex/s | {self.tokens / dt:.0f} tok/s | {pos.examples} examples"
        self.progress.update(self.task, completed=pos.global_step, info=info)

