"""HTTP client throughput: sustained requests/s of OpenAITeacher against a loopback server.

    python -m harness.teacher.http_bench                      # d=0.05 s, c=32, 2,000 requests
    python -m harness.teacher.http_bench --delay 0.1 --concurrency 16 --requests 500

The server (tests/teacher/fake_openai_server.py, in its own process) answers every request after
a fixed delay d, so c requests in flight can at best finish c/d per second. Runs, each repeated
(median reported): clean; every 10th request failing (429 and 500 in turn, no Retry-After),
answered at once and answered after d; and the same requests over bare aiohttp (no httpx layer,
no parsing), to tell client overhead from the machine. The server builds each answer while the request "runs",
so it leaves d after the request arrived whatever the server's own CPU time.
"Sustained" is the rate between the 10th and 90th percentile of completions, free of start-up and
of the last retries' backoff. The report also gives the client's and server's CPU per request.

Protocol (harness.benchmarking): alternating repeats, the four runs once per repeat in an order
rotated by one each repeat; each row shows the repeat with the median sustained rate and the
min-max over repeats; the CPU seconds other processes took during each run (the server is this
bench's child, so its CPU counts as ours). Above `--max-load` the numbers are printed and not
written (exit 3) unless `--allow-load`. Each run's sustained fraction of c/d (and, answered after
d, its attempts' fraction) is checked against the min–max the previous report of the same d, c,
requests and tokens stated, and the earlier quiet runs of those settings are kept in the report.
Writes reports/teacher/http_client.json and http_client.md. Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from harness.benchmarking import (ALLOW_LOAD_HELP, DEFAULT_MAX_LOAD, MAX_LOAD_HELP, LoadMeter, Verdict, check_max_load,
                                  command_line, history_line, judge, protocol_lines, provenance, read_previous, refuse, rerun_check, rerun_line,
                                  rotations, run_history, spread)
from harness.config import REPO_ROOT
from harness.errors import HarnessError, UsageError
from harness.records import atomic_write
from harness.teacher.base import SampleRequest
from harness.teacher.openai_backend import OpenAIConfig, OpenAITeacher

SERVER = REPO_ROOT / "tests" / "teacher" / "fake_openai_server.py"
TARGET = 0.90  # of c/d
REPEATS = 5
PACKAGES = ("openai", "httpx2", "aiohttp")
PLAN = (("clean", 0, False, False), ("10% 429/500, answered at once", 10, False, True),
        ("10% 429/500, answered after d", 10, False, False), ("bare aiohttp, no httpx layer or parsing, clean", 0, True, False))
COMPARABLE = ("delay_s", "concurrency", "requests", "max_tokens")  # what changes the fractions of c/d (not the repeats)
ATTEMPTS = " (attempts)"  # the figure key's suffix for attempts / ideal
LABELS = {"clean": "clean", "10% 429/500, answered at once": "errors answered at once",
          "10% 429/500, answered after d": "errors answered after d",
          "10% 429/500, answered after d" + ATTEMPTS: "errors answered after d (attempts)",
          "bare aiohttp, no httpx layer or parsing, clean": "bare aiohttp"}


def _bare_aiohttp(base_url: str, concurrency: int, requests: list[SampleRequest], stamps: list[float]) -> int:
    """The same POSTs from c workers over aiohttp alone (no httpx layer, no parsing): is the
    client the limit, or the machine?"""
    import asyncio

    import aiohttp

    async def go():
        queue = iter(requests)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            async def worker():
                for r in queue:
                    body = {"model": "fake", "prompt": r.prompt, "n": 1, "temperature": r.temperature,
                            "max_tokens": r.max_tokens, "logprobs": r.top_k, "seed": r.seed}
                    async with session.post(f"{base_url}/completions", json=body) as resp:
                        await resp.read()
                    stamps.append(time.perf_counter())

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    asyncio.run(go())
    return len(requests)


def run_once(delay: float, concurrency: int, n: int, fault_every: int, max_tokens: int, raw: bool = False,
             faults_at_once: bool = False) -> dict:
    command = [sys.executable, str(SERVER), "--delay", str(delay), "--fault-every", str(fault_every)]
    server = subprocess.Popen(command + (["--faults-at-once"] if faults_at_once else []),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    import aiohttp  # noqa: F401  (imported before the clock starts: their import is no part of the rate)
    import openai  # noqa: F401

    try:
        port = int(server.stdout.readline().split()[1])
        config = OpenAIConfig(f"http://127.0.0.1:{port}/v1", "fake", concurrency=concurrency, timeout_s=10,
                              backoff_base_s=0.05, backoff_max_s=1, api_key_env="SPEC_BENCH_NO_KEY")
        teacher = OpenAITeacher(config)
        requests = [SampleRequest(f"Question {i}: how many clips?", 1, 0.5, max_tokens, 5, seed=i) for i in range(n)]
        stamps: list[float] = []
        cpu0, t0 = time.process_time(), time.perf_counter()
        if raw:
            attempts = _bare_aiohttp(config.base_url, concurrency, requests, stamps)
        else:
            out = teacher.sample(requests, progress=lambda done, retries, tokens: stamps.append(time.perf_counter()))
            assert len(out) == n and all(len(c) == 1 for c in out)
            attempts = teacher.usage.requests + teacher.usage.retries
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        server_cpu = _cpu_seconds(server.pid)
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    lo, hi = int(0.1 * n), int(0.9 * n) - 1
    sustained = (hi - lo) / (stamps[hi] - stamps[lo])
    best, first = 0, 0  # most completions in any 1 s window: the rate while no other job took the cores
    for last in range(len(stamps)):
        while stamps[last] - stamps[first] > 1.0:
            first += 1
        best = max(best, last - first + 1)
    ideal = concurrency / delay
    return {
        "fault_every": fault_every, "faults_at_once": faults_at_once, "wall_s": round(wall, 3), "requests_per_s": round(n / wall, 1),
        "sustained_requests_per_s": round(sustained, 1), "best_1s_window_requests_per_s": best,
        "http_attempts_per_s": round(attempts / wall, 1),
        "ideal_requests_per_s": ideal, "sustained_fraction_of_ideal": round(sustained / ideal, 3),
        # a failed attempt holds its slot for d too: compare attempts with c/d
        "sustained_attempts_fraction_of_ideal": round(sustained * attempts / n / ideal, 3),
        "retries": teacher.usage.retries, "errors": teacher.usage.errors,
        "client_cpu_s": round(cpu, 3), "client_cpu_ms_per_attempt": round(1000 * cpu / attempts, 3),
        "server_cpu_s": server_cpu,
        # each request's cycle if only its own CPU were added to d (client and server one core each)
        "cpu_model_ceiling_requests_per_s": round(concurrency / (delay + (cpu + (server_cpu or 0)) / attempts), 1),
    }


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a live process (Linux), to tell client from server cost."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, IndexError, ValueError):
        return None


def write_report(out_dir: Path, record: dict):
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_dir / "http_client.json") as f:
        f.write(json.dumps(record, indent=2) + "\n")
    with atomic_write(out_dir / "http_client.md") as f:
        f.write(render(record))


def render(record: dict) -> str:
    d, c = record["delay_s"], record["concurrency"]
    rows = []
    for name, reps in record["runs"].items():
        r = _median_run(reps)
        rates = sorted(x["sustained_requests_per_s"] for x in reps)
        others = [x["load"]["fraction"] for x in reps if x["load"]["fraction"] is not None]
        rows.append(f"| {name} | {r['sustained_requests_per_s']:.0f} ({rates[0]:.0f}–{rates[-1]:.0f}) | {r['requests_per_s']:.0f} "
                    f"| {100 * r['sustained_fraction_of_ideal']:.0f}% | {_attempts_cell(r)} "
                    f"| {r['best_1s_window_requests_per_s']} | {r['retries']} | {r['client_cpu_ms_per_attempt']:.2f} "
                    f"| {r['server_cpu_s']} | {'–' if not others else f'{100 * max(others):.0f}%'} |")
    return "\n".join([
        "# OpenAI-compatible teacher client: throughput on loopback",
        "",
        f"Server answers after d = {d} s; concurrency c = {c}; ideal c/d = {c / d:.0f} requests/s; target >= {TARGET:.0%}. "
        f"{record['requests']:,} requests of {record['max_tokens']} tokens, top-5, per run. httpx2 over openai's aiohttp transport.",
        "",
        f"Each run {record['repeats']} times, the four runs interleaved; the table shows the repeat with the median sustained "
        "rate (min–max over the repeats in brackets).",
        "",
        "| run | sustained req/s | overall req/s | sustained / ideal | attempts / ideal | best 1 s window | retries "
        "| client CPU ms / attempt | server CPU s | other processes' CPU share (max over repeats) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Sustained: completions between the 10th and 90th percentile over their time span. Overall includes "
        "start-up (connections) and, with faults, the backoff of the last retries (base 0.05 s, full jitter). "
        "With faults, every 10th request fails (429 and 500 in turn, no Retry-After) and is retried. Answered at once "
        "(as a rate limiter's 429 is), a failure costs its slot almost nothing, so successes / c/d is the target's measure; "
        "answered after d, a failure holds its slot for d like a success, so successes can reach at most 90% of c/d and "
        "the comparable rate is attempts (successes + retries) / c/d. "
        "The bare-aiohttp row sends the same requests from c workers over aiohttp alone, without the httpx layer or parsing. "
        "CPU-model ceiling of the median clean run: c / (d + client and server CPU per attempt) = "
        f"{_median_run(record['runs']['clean'])['cpu_model_ceiling_requests_per_s']:.0f} req/s; a measured rate below it is "
        "time spent waiting for a core. Best 1 s window: the most completions in any one second of the run.",
        "",
        *rerun_line(record.get("rerun_check"), LABELS, ".1%"),
        *history_line(record.get("history"), LABELS, ".1%", "median fraction of c/d"),
        *protocol_lines(Verdict(**record["verdict"]), record["manifest"], "alternating repeats (the four runs once per repeat, "
                        "order rotated by one each repeat)", record["repeats"]),
        *record.get("notes", []),
        "",
    ])


def figures(record: dict) -> dict:
    """The figures a rerun is checked on: each run's sustained fraction of c/d over the repeats, and
    attempts / c/d where a failure holds its slot for d (from the runs themselves, so a report
    written before the check existed is checked against too)."""
    out = {}
    for name, reps in record["runs"].items():
        out[name] = spread([r["sustained_fraction_of_ideal"] for r in reps]).to_dict()
        if reps[0]["fault_every"] and not reps[0]["faults_at_once"]:
            out[name + ATTEMPTS] = spread([r["sustained_attempts_fraction_of_ideal"] for r in reps]).to_dict()
    return out


def check_rerun(previous: dict | None, record: dict) -> None:
    same = bool(previous) and all(previous.get(k) == record[k] for k in COMPARABLE)
    before = figures(previous) if same else {}
    record["rerun_figures"] = figures(record)
    record["rerun_check"] = rerun_check(previous, same, record["rerun_figures"], before)
    record["history"] = run_history(previous, same, before)


def _attempts_cell(run: dict) -> str:
    """Attempts / ideal means something only where a failed attempt holds its slot for d."""
    return "—" if run.get("faults_at_once") and run["fault_every"] else f"{100 * run['sustained_attempts_fraction_of_ideal']:.0f}%"


def _median_run(reps: list[dict]) -> dict:
    return sorted(reps, key=lambda r: r["sustained_requests_per_s"])[len(reps) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.teacher.http_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--delay", type=float, default=0.05, help="seconds the server waits before answering")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=REPEATS, help=f"repeats of the four runs, interleaved (default {REPEATS})")
    ap.add_argument("--max-load", type=float, default=DEFAULT_MAX_LOAD, help=MAX_LOAD_HELP)
    ap.add_argument("--allow-load", action="store_true", help=ALLOW_LOAD_HELP)
    ap.add_argument("--note", action="append", default=[], help="a line to add under the table")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "teacher")
    args = ap.parse_args(argv)
    try:
        for name in ("concurrency", "requests", "max_tokens", "repeats"):
            if getattr(args, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')}: {getattr(args, name)} is not allowed; it must be > 0")
        if args.requests < 10:
            raise UsageError(f"--requests: {args.requests} is not allowed; the sustained rate needs >= 10")
        check_max_load(args.max_load)
        out = args.out if args.out.is_absolute() else Path.cwd() / args.out
        command = command_line("python -m harness.teacher.http_bench", {
            "delay": args.delay, "concurrency": args.concurrency, "requests": args.requests, "max_tokens": args.max_tokens,
            "repeats": args.repeats, "max_load": args.max_load, "allow_load": args.allow_load,
            "out": os.path.relpath(out, REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out})
        runs: dict[str, list[dict]] = {name: [] for name, *_ in PLAN}
        settings = {name: rest for name, *rest in PLAN}
        meter = LoadMeter().start()
        for order in rotations(list(runs), args.repeats):
            for name in order:
                every, raw, at_once = settings[name]
                run = run_once(args.delay, args.concurrency, args.requests, every, args.max_tokens, raw, at_once)
                run["load"] = meter.lap().to_dict()
                runs[name].append(run)
        load = meter.total()
        verdict = judge(load, args.max_load, args.allow_load)
        record = {
            "delay_s": args.delay, "concurrency": args.concurrency, "requests": args.requests, "max_tokens": args.max_tokens,
            "repeats": args.repeats, "target_fraction": TARGET, "runs": runs, "notes": args.note,
            "load": load.to_dict(), "verdict": verdict.to_dict(), "manifest": provenance(command, packages=PACKAGES),
        }
        check_rerun(read_previous(out / "http_client.json"), record)
        page = render(record)
        print(page, flush=True)
        for key, c in ((record["rerun_check"] or {}).get("figures") or {}).items():
            print(f"http_bench: rerun check {key}: {c['now']:.1%} {'inside' if c['within_previous_spread'] else 'OUTSIDE'} "
                  f"the previous {c['previous']['min']:.1%}–{c['previous']['max']:.1%} of c/d", flush=True)
        if not verdict.write:
            raise refuse(verdict)
        write_report(out, record)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"wrote {out / 'http_client.json'} and {out / 'http_client.md'}"
          f"{'' if verdict.result else ' (labelled: measured under load, not a result)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
