"""Training throughput: `python -m harness.train.bench` -> reports/train/bench-<device>.json + README.md.

Full optimizer steps (forward, backward, AdamW) of one Flan-T5 architecture (random weights built
from its config; dropout off everywhere, as in the authors' runs) on one seeded synthetic batch,
side by side in one process:

  ours-sample        DistillationObjective, one-hot targets (= token cross-entropy)
  ours-distribution  DistillationObjective, the teacher's top-k (variant faithful); both as the
                     trainer runs them: bf16 autocast and the fused linear+KL head on CUDA,
                     fp32 and the logits path on CPU (`--head` overrides)
  authors            fp32, no autocast; the dense [B, T, V] target built on the host every step
                     their way (one-hot pad everywhere, a Python loop writing each position's
                     {token id: prob} dict, one-hot EOS), then `.to(device)`; their KL, masked mean
  hf-trainer         transformers.Seq2SeqTrainer, cross-entropy on `labels`, bf16 on CUDA, the
                     same AdamW (adamw_torch, lr 5e-4, wd 0.01), no clipping, no saving/eval/logging

Step time is the median over the timed steps (the first `--warmup` steps are dropped; for the
Trainer a callback times on_step_begin -> on_step_end, which leaves out its data loader);
tokens/s counts the batch's target tokens (EOS included, padding not). Peak memory is CUDA's
max_memory_allocated, reset per provider (weights + optimizer state + activations); on CPU it is
null. A provider that runs out of GPU memory is recorded as such and the others still run.
The GPU targets (issue 9) are checked on the GPU run, never by timed tests.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.errors import HarnessError, UsageError
from harness.records import atomic_write

PROVIDERS = ("ours-sample", "ours-distribution", "authors", "hf-trainer")
VOCAB, PAD, EOS = 32128, 0, 1
# name: (d_model, d_ff, layers (encoder = decoder), heads, d_kv), default (batch, source_len, target_len)
ARCHS = {
    "tiny": ((64, 128, 2, 4, 16), (4, 64, 64)),  # harness.tiny_t5's architecture
    "flan-t5-base": ((768, 2048, 12, 12, 64), (16, 256, 256)),
    "flan-t5-large": ((1024, 2816, 24, 16, 64), (8, 256, 256)),
    "flan-t5-xl": ((2048, 5120, 24, 32, 64), (4, 256, 256)),
}
GPU_COMMAND = "python -m harness.train.bench --arch flan-t5-xl --device cuda"
CPU_MEMORY = "null on CPU: torch counts only CUDA allocations, and the process RSS high-water mark cannot be reset between providers"
TARGETS = {"ours_distribution_vs_authors": 2.0, "ours_sample_vs_hf_trainer": 1.2, "distribution_over_sample_step_time": 1.10}


def t5_config(arch: str):
    from transformers import T5Config

    (d, ff, layers, heads, kv), _ = ARCHS[arch]
    return T5Config(vocab_size=VOCAB, d_model=d, d_ff=ff, num_layers=layers, num_decoder_layers=layers, num_heads=heads, d_kv=kv,
                    feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
                    decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=EOS)


def synthetic_batch(b: int, s: int, t: int, k: int, seed: int):
    """The one batch every provider trains on: a harness.train.data.Batch with top-k targets (the
    target token first, then other ids; one-hot EOS; IGNORE padding), and the authors' per-position
    dicts {id: prob} for the tokens before EOS (first occurrence wins, as in their alignment)."""
    import torch

    from harness.train.data import IGNORE, Batch

    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(2, VOCAB - 128, (b, s), generator=g)
    input_ids[:, -1] = EOS
    lengths = torch.randint(max(2, (3 * t) // 4), t + 1, (b,), generator=g)
    labels = torch.randint(3, VOCAB - 128, (b, t), generator=g)
    cols = torch.arange(t)
    labels[cols.expand(b, t) == (lengths - 1)[:, None]] = EOS
    labels[cols.expand(b, t) >= lengths[:, None]] = IGNORE
    decoder_input_ids = torch.cat([torch.full((b, 1), PAD), labels[:, :-1].clamp(min=PAD)], 1)
    span = VOCAB - 131  # ids 3 .. VOCAB-129; the others step away from the target: k distinct ids per position
    stride = torch.randint(1, max(2, span // k), (b, t, 1), generator=g)
    ids = 3 + (labels.clamp(min=3).unsqueeze(-1) - 3 + stride * torch.arange(k)) % span
    e = -torch.log(torch.rand((b, t, k), generator=g).clamp(min=1e-12))
    probs = e / e.sum(-1, keepdim=True) * 0.9  # Dirichlet(1) draws; mass < 1, like theirs
    dicts = []
    for i in range(b):
        n = int(lengths[i]) - 1
        ids[i, n], probs[i, n] = IGNORE, 0.0
        ids[i, n, 0], probs[i, n, 0] = EOS, 1.0
        ids[i, n + 1:], probs[i, n + 1:] = IGNORE, 0.0
        rows = []
        for pos in range(n):
            d: dict[int, float] = {}
            for tok, p in zip(ids[i, pos].tolist(), probs[i, pos].tolist()):
                d.setdefault(tok, p)
            rows.append(d)
        dicts.append(rows)
    batch = Batch("zero_shot_cot", input_ids, torch.ones_like(input_ids), labels, decoder_input_ids=decoder_input_ids,
                  topk_ids=ids, topk_probs=probs, examples=b, tokens=int(lengths.sum()))
    return batch, dicts


def _model(cfg, device, seed: int):
    import torch
    from transformers import T5ForConditionalGeneration

    torch.manual_seed(seed)
    with torch.device(device):
        model = T5ForConditionalGeneration(cfg)
    return model.train(False)  # dropout is 0 anyway; the authors never called train()


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _adamw(model):
    import torch

    return torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)


def _timed_loop(step, n: int, device) -> list[float]:
    times = []
    for _ in range(n):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def run_ours(cfg, batch, device, n: int, seed: int, distribution: bool, fused: bool) -> list[float]:
    import torch

    from harness.train.losses import DistillationObjective

    model = _model(cfg, device, seed)
    objective = DistillationObjective(model, seq2seq=True, variant="faithful", fused=fused, pad_id=0)  # T5's <pad>, as the trainer
    opt = _adamw(model)
    names = ("input_ids", "attention_mask", "labels", "decoder_input_ids") + (("topk_ids", "topk_probs") if distribution else ())

    def step():
        inputs = {k: getattr(batch, k).to(device, non_blocking=True) for k in names}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss_sum, rows = objective(**inputs)
        (loss_sum / rows.clamp(min=1)).backward()  # the trainer's micro_batch_mean, grad_accum 1
        opt.step()
        opt.zero_grad(set_to_none=True)

    return _timed_loop(step, n, device)


def authors_target(dicts, b: int, t: int):
    """Their dense target, built on the host per batch (authors-code-protocol.md §3)."""
    import torch

    target = torch.zeros(b, t, VOCAB)
    for i, rows in enumerate(dicts):
        for pos in range(t):
            target[i, pos, PAD] = 1.0
        for pos, d in enumerate(rows):
            for tok, p in d.items():
                target[i, pos, tok] = p
            target[i, pos, PAD] = 0.0
        target[i, len(rows), PAD] = 0.0
        target[i, len(rows), EOS] = 1.0
    return target


def run_authors(cfg, batch, dicts, device, n: int, seed: int) -> list[float]:
    from kernels.reference import authors_dense_kl

    from harness.train.data import IGNORE

    model = _model(cfg, device, seed)
    opt = _adamw(model)
    b, t = batch.labels.shape

    def step():
        target = authors_target(dicts, b, t).to(device)
        mask = (batch.labels != IGNORE).to(device)
        logits = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                       decoder_input_ids=batch.decoder_input_ids.to(device), decoder_attention_mask=mask.long()).logits
        loss = authors_dense_kl(logits.reshape(-1, VOCAB), target.reshape(-1, VOCAB), mask.reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return _timed_loop(step, n, device)


def run_hf_trainer(cfg, batch, device, n: int, seed: int) -> list[float]:
    import torch
    from transformers import PrinterCallback, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

    b = batch.labels.shape[0]

    class Rows(torch.utils.data.Dataset):  # the same batch, row by row, in order
        def __len__(self):
            return b * n

        def __getitem__(self, i):
            return {"input_ids": batch.input_ids[i % b], "attention_mask": batch.attention_mask[i % b], "labels": batch.labels[i % b]}

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            _sync(device)
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            _sync(device)
            times.append(time.perf_counter() - self.t0)

    model = _model(cfg, device, seed)
    with tempfile.TemporaryDirectory() as tmp:
        args = Seq2SeqTrainingArguments(
            output_dir=tmp, per_device_train_batch_size=b, gradient_accumulation_steps=1, max_steps=n,
            learning_rate=5e-4, weight_decay=0.01, optim="adamw_torch", lr_scheduler_type="constant", max_grad_norm=0.0,
            bf16=device.type == "cuda", use_cpu=device.type == "cpu", report_to=[], save_strategy="no", eval_strategy="no",
            logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0, dataloader_pin_memory=device.type == "cuda",
            train_sampling_strategy="sequential", seed=seed)
        trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=Rows(), callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict to stdout
        trainer.train()
        del trainer
    return times


def device_slug(device) -> str:
    import platform

    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu-{platform.machine()}"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def check_options(a: argparse.Namespace) -> None:
    import torch

    for name in ("batch", "source_len", "steps"):
        if getattr(a, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')}: {getattr(a, name)} is not allowed; it must be > 0")
    if a.target_len < 2:
        raise UsageError(f"--target-len: {a.target_len} is not allowed; it must be >= 2 (target tokens plus EOS)")
    if a.warmup < 0:
        raise UsageError(f"--warmup: {a.warmup} is not allowed; it must be >= 0")
    if not 1 <= a.k <= 64:
        raise UsageError(f"--k: {a.k} is not allowed; the teacher's top-k width must be in 1..64")
    unknown = [p for p in a.providers if p not in PROVIDERS]
    if unknown or not a.providers:
        raise UsageError(f"--providers: {','.join(unknown) or '(none)'} is not allowed; choose from {', '.join(PROVIDERS)}")
    if a.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here; use --device cpu (ratios only, tiny models)")
    if Path(a.out).exists() and not Path(a.out).is_dir():
        raise UsageError(f"--out: {a.out} exists and is not a folder")


def bench(a: argparse.Namespace) -> dict:
    import torch

    from harness.manifest import run_manifest

    check_options(a)
    device = torch.device(a.device)
    fused = a.head == "fused" or (a.head == "auto" and device.type == "cuda")
    cfg = t5_config(a.arch)
    batch, dicts = synthetic_batch(a.batch, a.source_len, a.target_len, a.k, a.seed)
    n = a.warmup + a.steps
    results = {}
    for name in a.providers:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        row = {"precision": "fp32" if name == "authors" or device.type == "cpu" else "bf16 autocast (fp32 weights)",
               "loss": {"ours-sample": "one-hot top-k KL (= cross-entropy)", "ours-distribution": "sparse top-k KL (faithful)",
                        "authors": "dense KL, target built on the host", "hf-trainer": "T5 cross-entropy (labels)"}[name],
               "head": ("fused linear+KL" if fused else "logits") if name.startswith("ours") else "logits"}
        try:
            if name.startswith("ours"):
                times = run_ours(cfg, batch, device, n, a.seed, name == "ours-distribution", fused)
            elif name == "authors":
                times = run_authors(cfg, batch, dicts, device, n, a.seed)
            else:
                times = run_hf_trainer(cfg, batch, device, n, a.seed)
        except torch.cuda.OutOfMemoryError as e:
            results[name] = {**row, "status": "out of memory", "error": str(e).splitlines()[0]}
            continue
        timed = times[a.warmup:] if len(times) > a.warmup else times
        median = statistics.median(timed)
        qs = statistics.quantiles(timed, n=5, method="inclusive") if len(timed) > 1 else [median] * 4
        row.update(status="ok", median_ms=median * 1e3, p20_ms=qs[0] * 1e3, p80_ms=qs[3] * 1e3,
                   tokens_per_s=batch.tokens / median, step_ms=[x * 1e3 for x in times], timed_steps=len(timed),
                   peak_memory_bytes=int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None)
        results[name] = row
    gc.collect()

    def tps(p):
        r = results.get(p)
        return r["tokens_per_s"] if r and r["status"] == "ok" else None

    def ratio(x, y):
        return x / y if x and y else None

    ratios = {"ours_distribution_vs_authors": ratio(tps("ours-distribution"), tps("authors")),
              "ours_sample_vs_hf_trainer": ratio(tps("ours-sample"), tps("hf-trainer")),
              "distribution_over_sample_step_time": ratio(tps("ours-sample"), tps("ours-distribution"))}
    met = {k: (None if v is None or device.type != "cuda" else (v <= TARGETS[k] if k.startswith("distribution") else v >= TARGETS[k]))
           for k, v in ratios.items()}
    return {
        "job": "train.bench",
        "manifest": run_manifest(torch_threads=torch.get_num_threads()),
        "device": device.type, "device_slug": device_slug(device),
        "settings": {"arch": a.arch, "arch_config": dict(zip(("d_model", "d_ff", "layers", "heads", "d_kv"), ARCHS[a.arch][0]),
                                                         vocab=VOCAB, activation="gated-gelu", tied=False, dropout=0.0),
                     "batch": a.batch, "source_len": a.source_len, "target_len": a.target_len, "k": a.k, "steps": a.steps,
                     "warmup": a.warmup, "seed": a.seed, "target_tokens_per_step": batch.tokens,
                     "optimizer": "torch AdamW lr 5e-4 wd 0.01, no clipping (hf-trainer: optim=adamw_torch, max_grad_norm=0)"},
        "providers": results,
        "ratios": ratios, "targets": TARGETS, "targets_met": met,
        "peak_memory_note": None if device.type == "cuda" else CPU_MEMORY,
    }


def _fmt(x, spec=".1f", none="–"):
    return none if x is None else format(x, spec)


def render(reports: list[dict]) -> str:
    lines = ["# Training throughput benchmark (issue 9, item 8)", "",
             "Written by `python -m harness.train.bench` (module docstring: what each provider runs); one section per "
             "`bench-<device>.json` next to this page. Every number in a section comes from one run, side by side.", ""]
    if not any(r["device"] == "cuda" for r in reports):
        lines += [f"**GPU numbers pending: run `{GPU_COMMAND}`** on a GPU (H100/H200); it writes `bench-<gpu>.json` "
                  "and this page. No GPU was available in the session that built this.", ""]
    for r in reports:
        s, m = r["settings"], r["manifest"]
        lines += [f"## {m['device']} — {s['arch']}", "",
                  f"Batch {s['batch']}, source {s['source_len']}, target {s['target_len']} ({s['target_tokens_per_step']} target "
                  f"tokens/step), top-k {s['k']}, {s['steps']} timed steps after {s['warmup']} warmup; {s['optimizer']}. "
                  f"Commit `{m['git_commit']}`, torch {m['packages'].get('torch')}, transformers {m['packages'].get('transformers')}, "
                  f"{m['created']}.", "",
                  "| provider | precision | loss | head | ms/step (median) | p20–p80 ms | target tokens/s | peak memory (GiB) |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, p in r["providers"].items():
            if p["status"] != "ok":
                lines.append(f"| {name} | {p['precision']} | {p['loss']} | {p['head']} | {p['status']} | | | |")
                continue
            mem = None if p["peak_memory_bytes"] is None else p["peak_memory_bytes"] / 2**30
            lines.append(f"| {name} | {p['precision']} | {p['loss']} | {p['head']} | {_fmt(p['median_ms'])} | "
                         f"{_fmt(p['p20_ms'])}–{_fmt(p['p80_ms'])} | {_fmt(p['tokens_per_s'], ',.0f')} | {_fmt(mem, '.2f', 'n/a')} |")
        names = {"ours_distribution_vs_authors": ("ours-distribution vs authors (tokens/s)", ">= 2x"),
                 "ours_sample_vs_hf_trainer": ("ours-sample vs hf-trainer (tokens/s)", ">= 1.2x"),
                 "distribution_over_sample_step_time": ("distribution / sample step time", "<= 1.10")}
        lines += ["", "| ratio | value | GPU target | met |", "|---|---|---|---|"]
        for key, (label, target) in names.items():
            met = r["targets_met"][key]
            lines.append(f"| {label} | {_fmt(r['ratios'][key], '.2f')} | {target} | {'n/a' if met is None else ('yes' if met else 'NO')} |")
        lines.append("")
        if r["device"] != "cuda":
            lines += [f"CPU run: a tiny model on a few shared cores; these ratios say little about GPU throughput (no Triton kernel, "
                      f"no bf16, no fused head; the dense target and the [B, T, V] logits weigh differently), and on a "
                      f"shared machine they move by tens of percent from run to run. Peak memory: {r['peak_memory_note']}. "
                      f"The GPU numbers: `{GPU_COMMAND}`.", ""]
    return "\n".join(lines)


def write_reports(report: dict, out: Path) -> Path:
    path = out / f"bench-{report['device_slug']}.json"
    with atomic_write(path) as f:
        json.dump(report, f, indent=1)
    reports = []
    for p in sorted(out.glob("bench-*.json")):
        try:
            reports.append(json.loads(p.read_text()))
        except ValueError:
            continue
    reports.sort(key=lambda r: (r["device"] != "cuda", r["device_slug"]))
    with atomic_write(out / "README.md") as f:
        f.write(render(reports))
    return path


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m harness.train.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=list(ARCHS), default="tiny", help="random-weight Flan-T5 architecture (tiny: harness.tiny_t5's)")
    ap.add_argument("--batch", type=int, help="examples per step (default: per arch)")
    ap.add_argument("--source-len", type=int, help="encoder tokens (default: per arch)")
    ap.add_argument("--target-len", type=int, help="target tokens incl. EOS (default: per arch)")
    ap.add_argument("--k", type=int, default=5, help="teacher top-k width")
    ap.add_argument("--steps", type=int, help="timed steps (default 10; tiny 8)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (default 3; tiny 2)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--head", choices=("auto", "fused", "logits"), default="auto", help="ours: auto = fused on CUDA, logits on CPU")
    ap.add_argument("--providers", type=lambda s: [x.strip() for x in s.split(",") if x.strip()], default=list(PROVIDERS),
                    help=f"comma-separated subset of {','.join(PROVIDERS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="reports/train", help="report folder")
    return ap


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    b, s, t = ARCHS[a.arch][1]
    tiny = a.arch == "tiny"
    for name, default in (("batch", b), ("source_len", s), ("target_len", t), ("steps", 8 if tiny else 10), ("warmup", 2 if tiny else 3)):
        if getattr(a, name) is None:
            setattr(a, name, default)
    try:
        report = bench(a)
        path = write_reports(report, Path(a.out))
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    for name, p in report["providers"].items():
        shown = f"{p['median_ms']:.1f} ms/step, {p['tokens_per_s']:,.0f} tokens/s" if p["status"] == "ok" else p["status"]
        print(f"bench: {name}: {shown}")
    print(f"bench: wrote {path} and {Path(a.out) / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
