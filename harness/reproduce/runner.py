"""Running steps: each one's full output to its own log file, one line on the console per step.

In-process steps (teacher, align, formats) run with the process's stdout and stderr pointed at the
log file (file descriptors, so worker processes and progress bars land there too); launched steps
(train, eval) are child processes writing to their log. A failure is a `StepFailed` carrying the
step, the log and its last meaningful line.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO


class StepFailed(Exception):
    def __init__(self, key: str, log: Path, reason: str):
        self.key, self.log, self.reason = key, log, reason
        super().__init__(f"{key} failed: {reason} (log: {log})")


def last_line(log: Path) -> str:
    """The error line of a log: the last `error:` line, else the last line that is not a progress bar."""
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if line.startswith("error:") or "Error" in line.split(":", 1)[0]:
            return line[:300]
    useful = [line for line in lines if "%|" not in line and not line.startswith(("Loading weights", "Writing model"))]
    return (useful[-1] if useful else "no output")[:300]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def output_to(log: Path):
    """Point file descriptors 1 and 2 (and sys.stdout/err) at `log` for the block."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a", encoding="utf-8") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_in_process(key: str, log: Path, call: Callable[[], Any]) -> Any:
    from harness.errors import HarnessError

    with output_to(log):
        try:
            return call()
        except HarnessError as err:
            print(f"error: {err}", file=sys.stderr)
            raise StepFailed(key, log, str(err).splitlines()[0]) from None
        except Exception as err:  # noqa: BLE001 - a bug in a stage: its traceback goes to the log
            import traceback

            traceback.print_exc()
            raise StepFailed(key, log, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None


def launch(argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "a", encoding="utf-8")
    handle.write("$ " + " ".join(argv) + "\n")
    handle.flush()
    proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd)
    handle.close()
    return proc


def run_launched(key: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    proc = launch(argv, log, env)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        raise
    if code:
        raise StepFailed(key, log, f"exit {code}: {last_line(log)}")


def run_parallel(jobs: list[tuple[str, list[str], Path, dict[str, str]]]) -> list[StepFailed]:
    """Launch every job at once (one per device); wait for all; the failures."""
    procs = [(key, launch(argv, log, env), log) for key, argv, log, env in jobs]
    failures = []
    try:
        for key, proc, log in procs:
            if proc.wait():
                failures.append(StepFailed(key, log, f"exit {proc.returncode}: {last_line(log)}"))
    except KeyboardInterrupt:
        for _, proc, _ in procs:
            proc.terminate()
        for _, proc, _ in procs:
            proc.wait()
        raise
    return failures


@dataclass
class Console:
    """One line per step on the terminal (the logs hold the rest): [i/n] elapsed, ETA, what."""

    out: TextIO
    total: int
    started: float = 0.0
    done: int = 0

    def __post_init__(self):
        self.started = time.monotonic()

    def _clock(self) -> str:
        elapsed = time.monotonic() - self.started
        eta = "" if not self.done else f", ~{_duration(elapsed / self.done * max(self.total - self.done, 0))} left"
        return f"{_duration(elapsed)}{eta}"

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def step(self, what: str, status: str, seconds: float | None = None, count: bool = True) -> None:
        if count:
            self.done += 1
        took = f" ({_duration(seconds)})" if seconds is not None else ""
        self.line(f"[{self.done:>2}/{self.total} {self._clock()}] {what}: {status}{took}")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
