"""Benchmark: teacher store -> aligned targets -> training formats on synthetic teacher data.

    python scripts/bench_pipeline.py                 # 207,135 samples (the authors' count), 2 workers
    python scripts/bench_pipeline.py --samples 20000 # a quicker run

The store holds GSM8K train gold CoTs tokenized with p50k_base (code-davinci-002's encoding) and
synthetic top-5 (harness.align.synthetic), each question repeated with new sample indices until
the count is reached: GSM8K-length samples. Building the store is not timed; the two stages after
it are, each in a fresh process, with their peak resident memory. Writes reports/teacher/pipeline.{json,md}.
This script spans stages, so it lives beside the CLI, not inside one stage.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_store(root: Path, samples: int, seed: int = 0) -> dict:
    from harness.align.synthetic import synthesize
    from harness.tokenizers import TiktokenTokenizer
    from harness.data import load
    from harness.teacher.base import Completion
    from harness.teacher.gold import gold_text
    from harness.teacher.store import TeacherStore, record_from_completion

    examples = load("gsm8k", "train")
    teacher = TiktokenTokenizer("p50k_base")
    base = []
    for example in examples:
        syn = synthesize(teacher, gold_text(example), example.id, seed=seed)
        top = [[w for w, _ in step] for step in syn.topk]
        logp = [[math.log(max(p, 1e-6)) for _, p in step] for step in syn.topk]
        base.append((example, Completion(text=syn.text, tokens=syn.tokens, token_logprobs=[lp[0] for lp in logp],
                                         top_tokens=top, top_logprobs=logp, finish_reason="stop")))
    repeats = math.ceil(samples / len(base))
    settings = {"teacher": {"model": "synthetic", "tokenizer": "tiktoken:p50k_base"}, "sampling": {"samples": samples, "seed": seed}}
    written = 0
    with TeacherStore.open(root, "bench.synthetic", settings) as store:
        for index in range(repeats):
            records = []
            for example, completion in base:
                if written + len(records) >= samples:
                    break
                records.append(record_from_completion(completion, example, index, prompt_id="synthetic", teacher_model="synthetic",
                                                      teacher_tokenizer="tiktoken:p50k_base"))
            store.write_shard(records)
            written += len(records)
        stats = store.stats()
    return {"samples": written, "tokens": stats["tokens"], "bytes_on_disk": stats["bytes_on_disk"], "bytes_per_token": stats["bytes_per_token"]}


def timed(args: list[str]) -> dict:
    """Run `python -m harness ARGS` in a fresh process: wall seconds and peak RSS (GiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"harness {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, the largest child so far
    return {"seconds": round(seconds, 2), "peak_rss_gib_largest_process": round(max(peak, before) / 2**20, 3), "stdout_tail": done.stdout[-400:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=207_135)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "reports/teacher")
    args = parser.parse_args()

    from harness.manifest import run_manifest

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        store = build_store(tmp / "store", args.samples)
        store["build_seconds_untimed_stage"] = round(time.perf_counter() - started, 1)
        align = timed(["align", "run", str(tmp / "store"), str(tmp / "aligned"), "--workers", str(args.workers), "--setting", "corrected"])
        formats = timed(["formats", "build", "--store", str(tmp / "store"), "--aligned", str(tmp / "aligned"), "--output", str(tmp / "formats"),
                         "--setting", "corrected"])
        aligned_bytes = sum(p.stat().st_size for p in (tmp / "aligned").rglob("*.parquet"))
        formats_bytes = sum(p.stat().st_size for p in (tmp / "formats").glob("*.parquet"))
    total = align["seconds"] + formats["seconds"]
    result = {
        "samples": args.samples, "workers": args.workers, "store": store,
        "align": {k: v for k, v in align.items() if k != "stdout_tail"}, "formats": {k: v for k, v in formats.items() if k != "stdout_tail"},
        "store_to_formats_seconds": round(total, 2), "target_seconds": 180, "target_peak_gib": 4.0,
        "aligned_bytes_per_token": round(aligned_bytes / store["tokens"], 2), "formats_bytes": formats_bytes,
        "manifest": run_manifest(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline.json").write_text(json.dumps(result, indent=1) + "\n")
    peak = max(align["peak_rss_gib_largest_process"], formats["peak_rss_gib_largest_process"])
    md = [
        "# Teacher store -> aligned targets -> formats (synthetic GSM8K-length samples)",
        "",
        f"Device: {result['manifest']['device']}; commit {result['manifest']['git_commit'][:12]}; `python scripts/bench_pipeline.py --samples {args.samples} --workers {args.workers}`.",
        "",
        "| step | seconds | peak RSS of its largest process (GiB) |",
        "|---|---|---|",
        f"| align run (store -> aligned, {args.workers} workers) | {align['seconds']} | {align['peak_rss_gib_largest_process']} |",
        f"| formats build (store + aligned -> 4 formats) | {formats['seconds']} | {formats['peak_rss_gib_largest_process']} |",
        f"| **total** (target <= 180 s, <= 4 GiB) | **{round(total, 1)}** | **{peak}** |",
        "",
        f"Store: {store['samples']:,} samples, {store['tokens']:,} teacher tokens, {store['bytes_on_disk'] / 2**20:.1f} MiB, "
        f"**{store['bytes_per_token']} bytes/token** at top-5 (DistillKit reports ~300 bytes/token at top-128). "
        f"Aligned targets: {result['aligned_bytes_per_token']} bytes per teacher token.",
        "",
    ]
    (args.out / "pipeline.md").write_text("\n".join(md))
    print(json.dumps({k: v for k, v in result.items() if k != "manifest"}, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("SPEC_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    main()
