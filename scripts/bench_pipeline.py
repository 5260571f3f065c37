"""Benchmark: teacher store -> aligned targets -> training formats on synthetic teacher data.

    python scripts/bench_pipeline.py                 # 207,135 samples (the authors' count), 2 workers
    python scripts/bench_pipeline.py --samples 20000 # a quicker run

The store holds GSM8K train gold CoTs tokenized with p50k_base (code-davinci-002's encoding) and
synthetic top-5 (harness.align.synthetic), each question repeated with new sample indices until
the count is reached: GSM8K-length samples. Building the store is not timed; the two stages after
it are, each in a fresh process, with wall and CPU seconds and peak resident memory. Writes
reports/teacher/pipeline.{json,md}.
This script spans stages, so it lives beside the CLI, not inside one stage.
"""

from __future__ import annotations

import argparse
import json
import math
import os
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
    from harness.teacher.record import record_from_completion
    from harness.teacher.store import TeacherStore

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


# Runs one harness command and reports its own resource use: the CPU seconds of the command's
# process and of its workers (waited-for children), and the peak RSS of each.
_STEP = """\
import json, resource, sys
from harness.cli import main
try:
    main(sys.argv[1:])
finally:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print("BENCH " + json.dumps([me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime, me.ru_maxrss, kids.ru_maxrss]), file=sys.stderr)
"""


def busy_cpu_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (Linux /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat") as handle:
            ticks = [int(v) for v in handle.readline().split()[1:9]]
    except OSError:
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def timed(args: list[str]) -> dict:
    """Run `python -m harness ARGS` in a fresh process: wall seconds, CPU seconds (the command's
    process, its workers), peak RSS of the largest process (GiB), and the CPU seconds other
    processes used meanwhile (other work on this 2-core machine slows every step)."""
    busy = busy_cpu_seconds()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _STEP, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"harness {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    line = [line for line in done.stderr.splitlines() if line.startswith("BENCH ")][-1]
    main_cpu, worker_cpu, main_rss, worker_rss = json.loads(line[len("BENCH "):])
    others = busy_cpu_seconds() - busy - main_cpu - worker_cpu
    return {"seconds": round(seconds, 2), "cpu_seconds_main_process": round(main_cpu, 1), "cpu_seconds_workers": round(worker_cpu, 1),
            "peak_rss_gib_largest_process": round(max(main_rss, worker_rss) / 2**20, 3),
            "cpu_seconds_other_processes": round(max(others, 0.0), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=207_135)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "reports/teacher")
    parser.add_argument("--build-store-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_store_only:  # the child process that builds the store
        print(json.dumps(build_store(args.build_store_only, args.samples)))
        return

    from harness.manifest import run_manifest

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        # In a child process: peak RSS is inherited across fork, so this process stays small.
        built = subprocess.run([sys.executable, __file__, "--samples", str(args.samples), "--build-store-only", str(tmp / "store")],
                               capture_output=True, text=True, check=True)
        store = json.loads(built.stdout.splitlines()[-1])
        store["build_seconds_untimed_stage"] = round(time.perf_counter() - started, 1)
        align = timed(["align", "run", str(tmp / "store"), str(tmp / "aligned"), "--workers", str(args.workers), "--setting", "corrected"])
        formats = timed(["formats", "build", "--store", str(tmp / "store"), "--aligned", str(tmp / "aligned"), "--output", str(tmp / "formats"),
                         "--setting", "corrected"])
        aligned_bytes = sum(p.stat().st_size for p in (tmp / "aligned").rglob("*.parquet"))
        formats_bytes = sum(p.stat().st_size for p in (tmp / "formats").glob("*.parquet"))
    total = align["seconds"] + formats["seconds"]
    peak = max(align["peak_rss_gib_largest_process"], formats["peak_rss_gib_largest_process"])
    met = total <= 180 and peak <= 4.0
    result = {
        "samples": args.samples, "workers": args.workers, "store": store, "align": align, "formats": formats,
        "store_to_formats_seconds": round(total, 2), "target_seconds": 180, "target_peak_gib": 4.0, "target_met": met,
        "aligned_bytes_per_token": round(aligned_bytes / store["tokens"], 2), "formats_bytes": formats_bytes,
        "manifest": run_manifest(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline.json").write_text(json.dumps(result, indent=1) + "\n")

    def row(name: str, step: dict) -> str:
        return (f"| {name} | {step['seconds']} | {step['cpu_seconds_main_process']} + {step['cpu_seconds_workers']} | "
                f"{step['peak_rss_gib_largest_process']} | {step['cpu_seconds_other_processes']} |")

    commit = result["manifest"]["git_commit"]
    md = [
        "# Teacher store -> aligned targets -> formats (synthetic GSM8K-length samples)",
        "",
        f"Device: {result['manifest']['device']}; commit {commit[:12]}{'-dirty' if commit.endswith('-dirty') else ''}; "
        f"`python scripts/bench_pipeline.py --samples {args.samples} --workers {args.workers}`.",
        "",
        "| step | wall seconds | CPU seconds (main process + workers) | peak RSS of its largest process (GiB) | CPU seconds of other processes meanwhile |",
        "|---|---|---|---|---|",
        row(f"align run (store -> aligned, {args.workers} workers)", align),
        row("formats build (store + aligned -> 4 formats)", formats),
        f"| **total** (target <= 180 s, <= 4 GiB) | **{round(total, 1)}** | "
        f"{round(sum(s[k] for s in (align, formats) for k in ('cpu_seconds_main_process', 'cpu_seconds_workers')), 1)} | **{peak}** | |",
        "",
        f"Target {'met' if met else 'NOT met'}: {round(total, 1)} s and {peak} GiB for {args.samples:,} samples on this machine "
        f"(other processes' CPU seconds show how much the 2 cores were shared while this ran).",
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
