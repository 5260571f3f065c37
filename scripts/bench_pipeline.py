"""Benchmark: teacher store -> aligned targets -> training formats on synthetic teacher data.

    python scripts/bench_pipeline.py                 # 207,135 samples (the authors' count), 2 workers, 3 repeats
    python scripts/bench_pipeline.py --samples 20000 # a quicker run

The store holds GSM8K train gold CoTs tokenized with p50k_base (code-davinci-002's encoding) and
synthetic top-5 (harness.align.synthetic), each question repeated with new sample indices until
the count is reached: GSM8K-length samples. Building the store is not timed; the two stages after
it are, each in a fresh process, with wall and CPU seconds and peak resident memory. Writes
reports/teacher/pipeline.{json,md}.

Protocol (harness.benchmarking): `--repeats` repeats of align run then formats build, each from
scratch; median and min-max of each stage's and the total's wall seconds, the largest peak RSS,
the CPU seconds other processes took during each stage. A rerun is checked against the report
it replaces (same samples and workers): each figure's median inside that report's min–max, and
the page keeps every earlier quiet run's figures (`history`). Around each stage the script times
a fixed pure-Python reference (`harness.benchmarking.reference_seconds`) and also states the total
in those units, and whether that narrowed the spread: this VM's speed drifts by more than a run's
spread (identical align runs took 231, 267, 299 CPU s), and a point measurement of the machine
tracks that only when the drift is slower than a stage. Nothing to interleave: there is one
provider, and formats build reads align run's output. A run where others took more than
`--max-load` of the machine is printed, not written (exit 3), unless `--allow-load`.
This script spans stages, so it lives beside the CLI, not inside one stage.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPEATS = 3
TARGET_SECONDS, TARGET_PEAK_GIB = 180, 4.0


def build_store(root: Path, samples: int, seed: int = 0) -> dict:
    from harness.align.synthetic import synthesize
    from harness.tokenizers import TiktokenTokenizer
    from harness.data import load
    from harness.teacher.base import Completion
    from harness.teacher.gold import gold_text
    from harness.teacher.record import record_from_completion
    from harness.teacher.store import TeacherStore

    examples = load("gsm8k", "train")[:samples]  # a smaller count needs fewer distinct questions
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


def build_store_in_child(root: Path, samples: int) -> dict:
    """`build_store` in a child process (peak RSS is inherited across fork, so this one stays small)."""
    started = time.perf_counter()
    built = subprocess.run([sys.executable, __file__, "--samples", str(samples), "--build-store-only", str(root)],
                           capture_output=True, text=True, check=True)
    store = json.loads(built.stdout.splitlines()[-1])
    store["build_seconds_untimed_stage"] = round(time.perf_counter() - started, 1)
    return store


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


def timed(args: list[str], meter) -> dict:
    """Run `python -m harness ARGS` in a fresh process: wall seconds, CPU seconds (the command's
    process, its workers), peak RSS of the largest process (GiB), and the CPU seconds other
    processes used meanwhile (`meter.lap()`: other work on the machine slows every step)."""
    from harness.benchmarking import reference_seconds

    before = reference_seconds()
    meter.lap()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _STEP, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    lap = meter.lap()
    after = reference_seconds()
    if done.returncode != 0:
        raise SystemExit(f"harness {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    line = [line for line in done.stderr.splitlines() if line.startswith("BENCH ")][-1]
    main_cpu, worker_cpu, main_rss, worker_rss = json.loads(line[len("BENCH "):])
    return {"seconds": round(seconds, 2), "cpu_seconds_main_process": round(main_cpu, 1), "cpu_seconds_workers": round(worker_cpu, 1),
            "peak_rss_gib_largest_process": round(max(main_rss, worker_rss) / 2**20, 3),
            "cpu_seconds_other_processes": None if lap.other_cpu_s is None else round(lap.other_cpu_s, 1), "load": lap.to_dict(),
            "reference_seconds": round((before + after) / 2, 4)}


def run_repeats(store: Path, tmp: Path, workers: int, repeats: int, meter) -> tuple[list[dict], dict]:
    """align run then formats build, `repeats` times from scratch; output sizes from the first."""
    runs, sizes = [], {}
    for r in range(repeats):
        aligned, formats = tmp / f"aligned-{r}", tmp / f"formats-{r}"
        print(f"bench: repeat {r + 1}/{repeats}", file=sys.stderr, flush=True)
        align = timed(["align", "run", str(store), str(aligned), "--workers", str(workers), "--setting", "corrected"], meter)
        fmt = timed(["formats", "build", "--store", str(store), "--aligned", str(aligned), "--output", str(formats),
                     "--setting", "corrected"], meter)
        if not sizes:
            sizes = {"aligned_bytes": sum(p.stat().st_size for p in aligned.rglob("*.parquet")),
                     "formats_bytes": sum(p.stat().st_size for p in formats.glob("*.parquet"))}
        shutil.rmtree(aligned)
        shutil.rmtree(formats)
        total = round(align["seconds"] + fmt["seconds"], 2)
        reference = (align["reference_seconds"] + fmt["reference_seconds"]) / 2
        runs.append({"align": align, "formats": fmt, "total_seconds": total, "reference_seconds": round(reference, 4),
                     "total_per_reference": round(total / reference, 1)})
    return runs, sizes


def summarize(runs: list[dict]) -> dict:
    from harness.benchmarking import spread

    out = {}
    for stage in ("align", "formats"):
        steps = [r[stage] for r in runs]
        out[stage] = {"seconds": spread([s["seconds"] for s in steps]).to_dict(),
                      "cpu_seconds_main_process": spread([s["cpu_seconds_main_process"] for s in steps]).to_dict(),
                      "cpu_seconds_workers": spread([s["cpu_seconds_workers"] for s in steps]).to_dict(),
                      "peak_rss_gib_largest_process": max(s["peak_rss_gib_largest_process"] for s in steps),
                      "cpu_seconds_other_processes": [s["cpu_seconds_other_processes"] for s in steps]}
    out["total_seconds"] = spread([r["total_seconds"] for r in runs]).to_dict()
    out["reference_seconds"] = spread([r["reference_seconds"] for r in runs]).to_dict()
    out["total_per_reference"] = spread([r["total_per_reference"] for r in runs]).to_dict()
    return out


def render(result: dict) -> str:
    from harness.benchmarking import Verdict, protocol_lines, rerun_line

    s, store = result["summary"], result["store"]
    total, peak = s["total_seconds"], max(s[k]["peak_rss_gib_largest_process"] for k in ("align", "formats"))

    def cell(x: dict) -> str:
        return f"{x['median']:.1f} ({x['min']:.1f}–{x['max']:.1f})"

    def row(name: str, step: dict) -> str:
        others = ", ".join("–" if x is None else f"{x}" for x in step["cpu_seconds_other_processes"])
        return (f"| {name} | {cell(step['seconds'])} | {step['cpu_seconds_main_process']['median']:.1f} + "
                f"{step['cpu_seconds_workers']['median']:.1f} | {step['peak_rss_gib_largest_process']} | {others} |")

    return "\n".join([
        "# Teacher store -> aligned targets -> formats (synthetic GSM8K-length samples)",
        "",
        f"{result['samples']:,} samples, {result['workers']} workers, {result['repeats']} repeats; "
        "wall seconds as median (min–max) over the repeats.",
        "",
        "| step | wall seconds | CPU seconds, median (main process + workers) | peak RSS of its largest process, max (GiB) "
        "| CPU seconds of other processes meanwhile, per repeat |",
        "|---|---|---|---|---|",
        row(f"align run (store -> aligned, {result['workers']} workers)", s["align"]),
        row("formats build (store + aligned -> 4 formats)", s["formats"]),
        f"| **total** (target <= {TARGET_SECONDS} s, <= {TARGET_PEAK_GIB:g} GiB) | **{cell(total)}** | | **{peak}** | |",
        "",
        f"Target {'met' if result['target_met'] else 'NOT met'} (judged on the median total and the largest peak): "
        f"{total['median']:.1f} s and {peak} GiB for {result['samples']:,} samples on this machine.",
        "",
        *reference_lines(s),
        f"Store: {store['samples']:,} samples, {store['tokens']:,} teacher tokens, {store['bytes_on_disk'] / 2**20:.1f} MiB, "
        f"**{store['bytes_per_token']} bytes/token** at top-5 (DistillKit reports ~300 bytes/token at top-128). "
        f"Aligned targets: {result['aligned_bytes_per_token']} bytes per teacher token.",
        "",
        *rerun_line(result.get("rerun_check"), FIGURE_LABELS, ".1f"),
        *history_lines(result),
        *protocol_lines(Verdict(**result["verdict"]), result["manifest"], "one provider, stages in their order (nothing to "
                        "interleave)", result["repeats"]),
    ])


FIGURE_LABELS = {"total_seconds": "total s", "align_seconds": "align run s", "formats_seconds": "formats build s",
                 "total_per_reference": "total / machine reference"}


def figures(summary: dict) -> dict:
    """The figures a rerun is checked on: each stage's and the total's wall seconds, and the total
    over the machine-speed reference of its repeat (a report without it is checked on the rest)."""
    out = {"total_seconds": summary["total_seconds"], "align_seconds": summary["align"]["seconds"],
           "formats_seconds": summary["formats"]["seconds"]}
    if "total_per_reference" in summary:
        out["total_per_reference"] = summary["total_per_reference"]
    return out


def reference_lines(summary: dict) -> list[str]:
    if "total_per_reference" not in summary:
        return []
    ref, per, total = summary["reference_seconds"], summary["total_per_reference"], summary["total_seconds"]

    def width(x: dict) -> float:  # the spread relative to the median
        return (x["max"] - x["min"]) / x["median"]

    tracks = width(per) < width(total)
    return [f"Machine-speed reference (`harness.benchmarking.reference_seconds`, fixed pure-Python work, timed before and "
            f"after each stage): {ref['median']:.3f} s ({ref['min']:.3f}–{ref['max']:.3f}); the total in those units: "
            f"{per['median']:.0f} ({per['min']:.0f}–{per['max']:.0f}), a spread of {100 * width(per):.0f}% of its median "
            f"against {100 * width(total):.0f}% for the seconds: on this run the reference "
            + ("narrowed the spread (it tracked the machine's speed)." if tracks else
               "did not narrow the spread (the machine's speed changed during the stages, not only between them), so "
               "it is a diagnostic here, not a steadier figure."), ""]


def history_lines(result: dict) -> list[str]:
    """Every quiet run of these settings the reports have kept, this one last: a VM's speed drifts
    between runs by more than one run's spread, so the page shows the runs, not only the latest."""
    runs = [*result.get("history", []), {"commit": result["manifest"]["git_commit"], "created": result["manifest"]["created"],
                                           "figures": result["rerun_figures"], "this_run": True}]
    if len(runs) < 2:
        return []
    lines = ["Runs of this command kept so far (quiet runs of the same samples and workers; wall seconds, median (min–max)):", "",
             "| run | commit | align run | formats build | total | total / machine reference |", "|---|---|---|---|---|---|"]
    for run in runs:
        f = run["figures"]
        cells = " | ".join("–" if k not in f else f"{f[k]['median']:.1f} ({f[k]['min']:.1f}–{f[k]['max']:.1f})"
                           for k in ("align_seconds", "formats_seconds", "total_seconds", "total_per_reference"))
        lines.append(f"| {run['created']}{' (this run)' if run.get('this_run') else ''} | `{(run['commit'] or '?')[:12]}` | {cells} |")
    medians = [run["figures"]["total_seconds"]["median"] for run in runs if "total_seconds" in run["figures"]]
    lines += ["", f"Across these {len(medians)} runs the median total ranged {min(medians):.1f}–{max(medians):.1f} s.", ""]
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from harness.benchmarking import ALLOW_LOAD_HELP, DEFAULT_MAX_LOAD, MAX_LOAD_HELP

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=207_135)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=REPEATS, help=f"align run + formats build, from scratch (default {REPEATS})")
    parser.add_argument("--max-load", type=float, default=DEFAULT_MAX_LOAD, help=MAX_LOAD_HELP)
    parser.add_argument("--allow-load", action="store_true", help=ALLOW_LOAD_HELP)
    parser.add_argument("--out", type=Path, default=ROOT / "reports/teacher")
    parser.add_argument("--build-store-only", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from harness.benchmarking import (LoadMeter, check_max_load, command_line, judge, provenance, read_previous, refuse,
                                      rerun_check, run_history)
    from harness.errors import HarnessError, UsageError
    from harness.records import atomic_write

    args = parse_args(argv)
    if args.build_store_only:  # the child process that builds the store
        print(json.dumps(build_store(args.build_store_only, args.samples)))
        return 0
    try:
        for name in ("samples", "workers", "repeats"):
            if getattr(args, name) < 1:
                raise UsageError(f"--{name}: {getattr(args, name)} is not allowed; it must be > 0")
        check_max_load(args.max_load)
        out = args.out if args.out.is_absolute() else Path.cwd() / args.out
        command = command_line("python scripts/bench_pipeline.py", {
            "samples": args.samples, "workers": args.workers, "repeats": args.repeats, "max_load": args.max_load,
            "allow_load": args.allow_load, "out": os.path.relpath(out, ROOT) if out.is_relative_to(ROOT) else out})
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
            tmp = Path(tmp)
            store = build_store_in_child(tmp / "store", args.samples)
            meter = LoadMeter().start()
            runs, sizes = run_repeats(tmp / "store", tmp, args.workers, args.repeats, meter)
            load = meter.total()
        summary = summarize(runs)
        peak = max(summary[k]["peak_rss_gib_largest_process"] for k in ("align", "formats"))
        verdict = judge(load, args.max_load, args.allow_load)
        result = {
            "samples": args.samples, "workers": args.workers, "repeats": args.repeats, "store": store, "runs": runs, "summary": summary,
            "store_to_formats_seconds": summary["total_seconds"], "target_seconds": TARGET_SECONDS, "target_peak_gib": TARGET_PEAK_GIB,
            "target_met": summary["total_seconds"]["median"] <= TARGET_SECONDS and peak <= TARGET_PEAK_GIB,
            "aligned_bytes_per_token": round(sizes["aligned_bytes"] / store["tokens"], 2), "formats_bytes": sizes["formats_bytes"],
            "load": load.to_dict(), "verdict": verdict.to_dict(), "manifest": provenance(command, packages=("pyarrow", "numba")),
        }
        previous = read_previous(out / "pipeline.json")
        same = bool(previous) and (previous.get("samples"), previous.get("workers")) == (args.samples, args.workers)
        before = figures(previous["summary"]) if same and "summary" in previous else {}
        result["rerun_figures"] = figures(summary)
        result["rerun_check"] = rerun_check(previous, same, result["rerun_figures"], before)
        result["history"] = run_history(previous, same, before)
        page = render(result)
        print(page)
        for key, c in ((result["rerun_check"] or {}).get("figures") or {}).items():
            print(f"bench: rerun check {key}: {c['now']:.1f} {'inside' if c['within_previous_spread'] else 'OUTSIDE'} "
                  f"the previous {c['previous']['min']:.1f}–{c['previous']['max']:.1f}", file=sys.stderr)
        if not verdict.write:
            raise refuse(verdict)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_write(out / "pipeline.json") as f:
            f.write(json.dumps(result, indent=1) + "\n")
        with atomic_write(out / "pipeline.md") as f:
            f.write(page + "\n")
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"wrote {out / 'pipeline.json'} and {out / 'pipeline.md'}{'' if verdict.result else ' (labelled: measured under load, not a result)'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("SPEC_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    sys.exit(main())
