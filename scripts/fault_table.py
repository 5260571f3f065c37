"""The fault table: inject each hand-off fault on copies of one small real pipeline and check every
stage refuses it in one line (or, for a torn metrics line, recovers).

    SPEC_DATA_DIR=/work/shared/data python scripts/fault_table.py            # writes reports/faults/fault_table.md
    python scripts/fault_table.py --seed 3 --keep /tmp/faults                # another bit to flip; keep the folders

Builds, in a temp dir, with the real commands: two teacher stores from the CPU default teacher
(`--mode score`, 6 and 4 questions: different limits), their alignments, their formats
(zero_shot_answer_only, zero_shot_cot) and a one-step cpu-tiny training run on store A's formats.
Then each fault runs on copies of these; a row records the command, its exit code, the first lines
of its stderr and a verdict. About 2-3 minutes (135 s on 2 busy CPU cores), so no test runs it (the faults
themselves are tested one by one in tests/test_handoff.py and the stage tests).

Exit status: 1 if any row fails (a traceback without --debug, exit 0 on bad input, a refusal that is
not one `error:` line naming the file or the folder), else 0. The report is written either way,
atomically. `--seed` picks the byte and bit flipped in each bit-flipped shard.

Read-only output: as root, a chmod 555 folder is still writable, so the command then runs in its
own mount namespace (`unshare -m`) with the folder bind-mounted read-only; that mount goes away
with the process.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "faults" / "fault_table.md"
TRACEBACK = "Traceback (most recent call last)"
FORMATS = "zero_shot_answer_only,zero_shot_cot"
TRAIN_SETTINGS = ["--set", "formats=[zero_shot_answer_only,zero_shot_cot]",
                  "--set", "batch_sizes={zero_shot_answer_only: 2, zero_shot_cot: 2}",
                  "--set", "grad_accum=1", "--set", "checkpoint_every_examples=4", "--set", "warmup_steps=0"]


@dataclass
class Result:
    args: list[str]
    code: int
    stdout: str
    stderr: str


@dataclass
class Row:
    fault: str
    command: str
    code: int | None
    stderr: str
    verdict: str  # "PASS" or "FAIL: why"


class Pipeline:
    """The temp folder, the commands run in it and the rows they gave."""

    def __init__(self, tmp: Path, seed: int):
        self.tmp = tmp
        self.rng = random.Random(seed)
        self.rows: list[Row] = []
        self.env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                    "PYTHONUNBUFFERED": "1"}

    def harness(self, *args, env: dict | None = None, wrap: list[str] | None = None) -> Result:
        argv = [str(a) for a in args]
        cmd = (wrap or []) + [sys.executable, "-m", "harness", *argv]
        done = subprocess.run(cmd, cwd=ROOT, env=env or self.env, capture_output=True, text=True, timeout=900)
        return Result(argv, done.returncode, done.stdout, done.stderr)

    def build(self, *args) -> None:
        result = self.harness(*args)
        if result.code != 0:
            sys.exit(f"fault_table: building the pipeline failed: harness {' '.join(result.args)}\n{result.stderr[-3000:]}")

    def copy(self, name: str, as_name: str) -> Path:
        target = self.tmp / as_name
        shutil.copytree(self.tmp / name, target)
        return target

    def shown(self, args: list[str]) -> str:
        return "harness " + " ".join(args).replace(str(self.tmp), "$T")

    def add(self, fault: str, result: Result, verdict: str) -> None:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        first = lines[:2] + [line for line in lines[2:] if line.startswith("error:")][:1]
        text = " / ".join(line[:240] for line in first).replace(str(self.tmp), "$T")
        self.rows.append(Row(fault, self.shown(result.args), result.code, text, verdict))

    def refused(self, fault: str, result: Result, *names: str, code: int | None = None) -> None:
        """Bad input: a non-zero exit, no traceback, exactly one `error:` line, naming each of `names`."""
        self.add(fault, result, refusal_verdict(result, names, code))


def refusal_verdict(result: Result, names, code: int | None = None) -> str:
    output = result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    if TRACEBACK in output:
        return "FAIL: traceback"
    if result.code == 0:
        return "FAIL: exit 0 on bad input"
    if code is not None and result.code != code:
        return f"FAIL: exit {result.code}, expected {code}"
    if len(errors) != 1:
        return f"FAIL: {len(errors)} `error:` lines, expected one"
    missing = [name for name in names if name not in errors[0]]
    if missing:
        return "FAIL: the message does not name " + ", ".join(missing)
    return "PASS"


# --- damage ------------------------------------------------------------------------------------------


def first_shard(folder: Path) -> Path:
    shards = json.loads((folder / "manifest.json").read_text())["shards"]
    return folder / sorted(shards)[0]


def truncate(path: Path, rng: random.Random) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_bit(path: Path, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


DAMAGES = {"truncated": truncate, "bit-flipped": flip_a_bit}


# --- the pipeline ------------------------------------------------------------------------------------


def build_pipeline(p: Pipeline) -> None:
    t = p.tmp
    for store, limit in (("storeA", 6), ("storeB", 4)):
        p.build("teacher", "sample", "--output", t / store, "--mode", "score", "--limit", limit)
    for name in ("A", "B"):
        p.build("align", "run", t / f"store{name}", t / f"aligned{name}", "--workers", 1, "--shard-rows", 4)
        p.build("formats", "build", "--store", t / f"store{name}", "--aligned", t / f"aligned{name}",
                "--output", t / f"formats{name}", "--formats", FORMATS)
    p.build("train", "--config", "cpu-tiny", "--formats", t / "formatsA", "--output", t / "runA", *TRAIN_SETTINGS,
            "--set", "max_steps=1", "--no-eval", "--quiet")


def train(p: Pipeline, formats: Path, run: Path, *extra) -> Result:
    return p.harness("train", "--config", "cpu-tiny", "--formats", formats, "--output", run, *TRAIN_SETTINGS, *extra,
                     "--no-eval", "--quiet")


# --- the faults ----------------------------------------------------------------------------------------


def fault_killed_formats_build(p: Pipeline) -> None:
    killed = p.copy("formatsA", "formats-killed")
    (killed / "manifest.json").unlink()  # killed before it sealed its output: shards, no manifest
    (killed / "zero_shot_cot-00000.parquet").unlink(missing_ok=True)  # one format's shard not yet written
    result = train(p, killed, p.tmp / "run-killed-formats", "--set", "max_steps=1")
    p.refused("1. killed `formats build` (shards, no manifest) -> train", result, str(killed), "no manifest.json")


def fault_aligned_of_another_store(p: Pipeline) -> None:
    result = p.harness("formats", "build", "--store", p.tmp / "storeA", "--aligned", p.tmp / "alignedB",
                       "--output", p.tmp / "formats-mixed", "--formats", FORMATS)
    p.refused("2. formats build: store A with aligned of store B", result, str(p.tmp / "storeA"), "other teacher data")


def fault_resume_over_replaced_formats(p: Pipeline) -> None:
    formats = p.copy("formatsA", "formats-replaced")
    run = p.tmp / "run-replaced"
    shutil.copytree(p.tmp / "runA", run)
    config = json.loads((run / "config.json").read_text())
    config["formats_dir"] = str(formats)  # the copied run was trained on this folder's (then) content
    (run / "config.json").write_text(json.dumps(config, indent=2))
    (run / "done.json").unlink(missing_ok=True)  # killed after its first checkpoint
    shutil.rmtree(formats)
    shutil.copytree(p.tmp / "formatsB", formats)  # the same path, other content
    result = train(p, formats, run, "--set", "max_steps=2", "--resume")
    p.refused("3. train --resume of a killed run after its formats were replaced", result, "formats")


def fault_corrupted_shards(p: Pipeline) -> None:
    t = p.tmp
    for label, damage in DAMAGES.items():
        store = p.copy("storeA", f"store-{label}")
        shard = first_shard(store)
        damage(shard, p.rng)
        result = p.harness("teacher", "sample", "--output", store, "--mode", "score", "--limit", 6)
        p.refused(f"4. {label} teacher store shard -> teacher sample rerun", result, str(shard), "corrupted")
        result = p.harness("align", "run", store, t / f"aligned-from-{label}", "--workers", 1)
        p.refused(f"4. {label} teacher store shard -> align run", result, str(shard), "corrupted")

        aligned = p.copy("alignedA", f"aligned-{label}")
        shard = first_shard(aligned)
        damage(shard, p.rng)
        result = p.harness("formats", "build", "--store", t / "storeA", "--aligned", aligned,
                           "--output", t / f"formats-from-{label}", "--formats", FORMATS)
        p.refused(f"4. {label} aligned shard -> formats build", result, str(shard), "corrupted")
        result = p.harness("align", "run", t / "storeA", aligned, "--workers", 1, "--shard-rows", 4)
        p.refused(f"4. {label} aligned shard -> align run rerun", result, str(shard), "corrupted")

        formats = p.copy("formatsA", f"formats-{label}")
        shard = first_shard(formats)
        damage(shard, p.rng)
        result = train(p, formats, t / f"run-{label}", "--set", "max_steps=1")
        p.refused(f"4. {label} formats shard -> train", result, str(shard), "corrupted")


def fault_torn_metrics_line(p: Pipeline) -> None:
    run = p.tmp / "run-torn"
    shutil.copytree(p.tmp / "runA", run)
    with open(run / "metrics.jsonl", "a") as log:
        log.write('{"kind": "train", "step": 2, "exam')  # killed mid-append
    result = train(p, p.tmp / "formatsA", run, "--set", "max_steps=2", "--resume")
    verdict = "PASS"
    if TRACEBACK in result.stdout + result.stderr:
        verdict = "FAIL: traceback"
    elif result.code != 0:
        verdict = f"FAIL: exit {result.code}, expected a resumed run (0)"
    else:
        try:
            steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
                     if json.loads(line).get("kind") == "train"]
        except ValueError:
            steps = None
        if steps != [1, 2]:
            verdict = f"FAIL: metrics.jsonl train steps {steps}, expected [1, 2]"
    p.add("4. torn last line of metrics.jsonl -> train --resume (must resume)", result, verdict)


def lock_is_held(lock: Path) -> bool:
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # releases it if we took it
    return False


def fault_concurrent_align_runs(p: Pipeline) -> None:
    """The first run is stopped (SIGSTOP) once it holds the output's lock; the second runs meanwhile."""
    for attempt in range(5):
        out = p.tmp / f"aligned-concurrent-{attempt}"
        args = ["align", "run", str(p.tmp / "storeA"), str(out), "--workers", "1"]
        first = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=ROOT, env=p.env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        held = False
        while first.poll() is None and not held:
            if (out / ".lock").exists():
                first.send_signal(signal.SIGSTOP)
                held = lock_is_held(out / ".lock")
                if not held:
                    first.send_signal(signal.SIGCONT)
            time.sleep(0.002)
        if not held:
            first.communicate()
            continue
        try:
            second = p.harness(*args)
        finally:
            first.send_signal(signal.SIGCONT)
        _, first_err = first.communicate(timeout=600)
        p.refused("5. two concurrent align runs into one output: the second", second, str(out), "another process",
                  code=2)
        if first.returncode != 0:
            p.rows[-1].verdict = f"FAIL: the first run failed ({first.returncode}): {first_err.strip().splitlines()[-1:]}"
        return
    p.add("5. two concurrent align runs into one output", Result(args, 0, "", ""),
          "FAIL: could not catch the first run holding its lock")


def fault_output_is_a_file(p: Pipeline) -> None:
    target = p.tmp / "a-file"
    target.write_text("x")
    result = p.harness("align", "run", p.tmp / "storeA", target, "--workers", 1)
    p.refused("5. align run into a path that is a file", result, str(target), "is not a folder", code=2)


def fault_read_only_output(p: Pipeline) -> None:
    out = p.tmp / "read-only"
    out.mkdir()
    out.chmod(0o555)
    wrap = None
    if os.geteuid() == 0:  # root writes through 0o555: make the folder read-only for real, in a private mount namespace
        script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
        wrap = ["unshare", "-m", "sh", "-c", script, str(out)]
    started = time.monotonic()
    result = p.harness("align", "run", p.tmp / "storeA", out, "--workers", 1, wrap=wrap)
    seconds = time.monotonic() - started
    p.refused("5. align run into a read-only output folder", result, str(out), "not writable")
    left = list(out.iterdir())
    if p.rows[-1].verdict == "PASS" and left:
        p.rows[-1].verdict = f"FAIL: wrote {left[0].name} before refusing"
    p.rows[-1].stderr += f" ({seconds:.1f} s{', read-only bind mount' if wrap else ''})"
    out.chmod(0o755)


def fault_data_dir_is_a_file(p: Pipeline) -> None:
    data_file = p.tmp / "data-dir-file"
    data_file.write_text("not a folder")
    result = p.harness("teacher", "sample", "--output", p.tmp / "store-no-data", "--mode", "score", "--limit", 1,
                       env={**p.env, "SPEC_DATA_DIR": str(data_file)})
    p.refused("6. SPEC_DATA_DIR is a file", result, str(data_file), "not a folder")
    if p.rows[-1].verdict == "PASS" and "does not exist" in result.stderr:
        p.rows[-1].verdict = "FAIL: says 'does not exist'"


FAULTS = [fault_killed_formats_build, fault_aligned_of_another_store, fault_resume_over_replaced_formats,
          fault_corrupted_shards, fault_torn_metrics_line, fault_concurrent_align_runs, fault_output_is_a_file,
          fault_read_only_output, fault_data_dir_is_a_file]


# --- the report ----------------------------------------------------------------------------------------


def git_commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "HEAD") or "unknown"
    return commit + (" (uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else "")


def cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def report(rows: list[Row], seed: int, seconds: float) -> str:
    failed = sum(not r.verdict.startswith("PASS") for r in rows)
    lines = ["# Fault table", "",
             f"- commit: {git_commit()}",
             f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}",
             f"- seed: {seed}; SPEC_DATA_DIR: {os.environ.get('SPEC_DATA_DIR', '(unset)')}; {seconds:.0f} s",
             f"- rows: {len(rows)}, failed: {failed}", "",
             "`$T` is the temp folder holding the pipeline (scripts/fault_table.py).", "",
             "| fault | command | exit | stderr (first lines) | verdict |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {cell(r.fault)} | `{cell(r.command)}` | {r.code} | {cell(r.stderr)} | {cell(r.verdict)} |")
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=REPORT)
    parser.add_argument("--keep", type=Path, help="build in this (new) folder and keep it")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.keep:
        args.keep.mkdir(parents=True)
        tmp = args.keep
    else:
        tmp = Path(tempfile.mkdtemp(prefix="fault-table-"))
    try:
        p = Pipeline(tmp, args.seed)
        build_pipeline(p)
        for fault in FAULTS:
            before = len(p.rows)
            fault(p)
            print(f"fault_table: {fault.__name__}: " + ", ".join(r.verdict for r in p.rows[before:]), file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    write_atomically(args.output, report(p.rows, args.seed, time.monotonic() - started))
    failed = [r for r in p.rows if not r.verdict.startswith("PASS")]
    for r in failed:
        print(f"FAIL {r.fault}: {r.verdict}", file=sys.stderr)
    print(f"fault_table: {len(p.rows)} rows, {len(failed)} failed -> {args.output}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
