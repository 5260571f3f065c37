"""The benchmark protocol every harness bench follows, so that a committed figure reproduces.

- **Interleaved providers.** `rotations` gives each repeat (or step) its provider order, each
  rotated by one place, so every provider takes every position equally often: load that comes
  and goes, and order effects (a warm allocator, a cold cache), fall on all of them alike.
- **Repeats with their spread.** A ratio is formed inside one repeat (side by side), then
  summarised across repeats by `spread`: median, p20–p80 and min–max. A rerun's median falling
  outside the previous run's min–max is the sign that a figure does not reproduce (`within`,
  `rerun_check`); `run_history` keeps the earlier quiet runs of a figure on its page.
- **A machine-speed reference.** A bench with one provider and absolute seconds (the pipeline)
  times `reference_seconds` (fixed pure-Python work) around each stage and also states its figure
  divided by that, and whether that narrowed the spread: the VM's speed drifts by more than one
  run's spread.
- **The machine's load.** `LoadMeter` reads the machine's busy CPU seconds (/proc/stat, steal
  included) and this process tree's own (rusage of this process and its waited-for children);
  the difference is what other processes took while the bench ran.
- **A refusal.** `judge` calls a run a result only when others took at most `max_load` of the
  machine's capacity (wall seconds x cores). Otherwise the bench prints its numbers and raises
  `NotKept` (exit 3) without writing; `--allow-load` writes it, labelled "not a result".
- **Provenance.** `provenance` records git commit, package versions, device, CPU model and the
  exact command (`command_line`: every option spelled out, so defaults can change safely).

Core module: imports no stage.
"""

from __future__ import annotations

import os
import resource
import shlex
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from harness.errors import HarnessError, UsageError

DEFAULT_MAX_LOAD = 0.05  # other processes' CPU seconds / (wall seconds x cores)
ALLOW_LOAD_HELP = "write the report even when the machine was loaded (it then says: measured under load, not a result)"
MAX_LOAD_HELP = (f"largest share of the machine's CPU capacity other processes may take for the run to count as a result "
                 f"(default {DEFAULT_MAX_LOAD})")
QUIET_COMMAND = "nox -s bench-cpu"


class NotKept(HarnessError):
    """The run's numbers were printed but not written as a result (the machine was loaded)."""

    exit_code = 3


# ----------------------------------------------------------------------------- load


def machine_busy_seconds() -> float | None:
    """CPU seconds every process on the machine has used since boot: /proc/stat's first line,
    all but idle and iowait (steal included: a neighbour VM's time is load too). None off Linux."""
    try:
        with open("/proc/stat") as handle:
            ticks = [int(v) for v in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have been waited for."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass(frozen=True)
class CpuReading:
    wall_s: float
    machine_busy_s: float | None
    own_s: float


@dataclass(frozen=True)
class Load:
    """What other processes took between two readings."""

    wall_s: float
    cores: int
    own_cpu_s: float
    other_cpu_s: float | None  # None: the machine's busy time cannot be read here

    @classmethod
    def between(cls, a: CpuReading, b: CpuReading, cores: int) -> "Load":
        other = None
        if a.machine_busy_s is not None and b.machine_busy_s is not None:
            # /proc/stat counts in clock ticks, rusage in microseconds: clamp the rounding at 0.
            other = max(0.0, (b.machine_busy_s - a.machine_busy_s) - (b.own_s - a.own_s))
        return cls(b.wall_s - a.wall_s, cores, b.own_s - a.own_s, other)

    @property
    def fraction(self) -> float | None:
        """Other processes' share of the machine's capacity over the run."""
        if self.other_cpu_s is None or self.wall_s <= 0:
            return None
        return self.other_cpu_s / (self.wall_s * self.cores)

    def describe(self) -> str:
        if self.other_cpu_s is None:
            return f"load not measured ({self.wall_s:.1f} s; no /proc/stat on this machine)"
        return (f"other processes used {self.other_cpu_s:.1f} CPU s in {self.wall_s:.1f} s on {self.cores} cores "
                f"({100 * self.fraction:.1f}% of the machine)")

    def to_dict(self) -> dict:
        return {**asdict(self), "fraction": None if self.fraction is None else round(self.fraction, 4)}


class LoadMeter:
    """`start()`, then `lap()` after each repeat and `total()` at the end. The readers and the
    clock are injectable (tests use fakes)."""

    def __init__(self, busy: Callable[[], float | None] = machine_busy_seconds, own: Callable[[], float] = own_cpu_seconds,
                 clock: Callable[[], float] = time.perf_counter, cores: int | None = None):
        self.busy, self.own, self.clock = busy, own, clock
        self.cores = cores or os.cpu_count() or 1
        self.first: CpuReading | None = None
        self.last: CpuReading | None = None
        self.laps: list[Load] = []

    def read(self) -> CpuReading:
        return CpuReading(self.clock(), self.busy(), self.own())

    def start(self) -> "LoadMeter":
        self.first = self.last = self.read()
        self.laps = []
        return self

    def lap(self) -> Load:
        now = self.read()
        load = Load.between(self.last, now, self.cores)
        self.last = now
        self.laps.append(load)
        return load

    def total(self) -> Load:
        return Load.between(self.first, self.read(), self.cores)


# ----------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Verdict:
    result: bool  # a figure to commit: the machine was quiet
    write: bool  # the report may be written (a result, or --allow-load)
    reason: str  # why it is not a result ("" when it is)
    max_load: float
    load: dict
    load_text: str

    def label(self) -> str:
        """The line a report opens with."""
        if self.result:
            return f"Result: measured on a quiet machine ({self.load_text}; threshold {100 * self.max_load:.0f}%)."
        return f"**Measured under load, not a result**: {self.reason}. Rerun on a quiet machine: `{QUIET_COMMAND}`."

    def to_dict(self) -> dict:
        return asdict(self)


def judge(load: Load, max_load: float = DEFAULT_MAX_LOAD, allow_load: bool = False) -> Verdict:
    if load.fraction is None:
        reason = load.describe()
    elif load.fraction > max_load:
        reason = f"{load.describe()}, above the {100 * max_load:.0f}% threshold"
    else:
        return Verdict(True, True, "", max_load, load.to_dict(), load.describe())
    return Verdict(False, allow_load, reason, max_load, load.to_dict(), load.describe())


def refuse(verdict: Verdict) -> NotKept:
    """The error a bench raises (after printing its numbers) when the verdict forbids writing."""
    return NotKept(f"numbers not kept as a result: {verdict.reason}.\n"
                   "Rerun on a quiet machine, or pass --allow-load to write them labelled as measured under load.")


def check_max_load(value: float) -> float:
    if not 0 <= value <= 1:
        raise UsageError(f"--max-load: {value} is not allowed; it must be in [0, 1] (a share of the machine's CPU capacity)")
    return value


# ----------------------------------------------------------------------------- interleaving and spread


def rotations(providers: Sequence[str], count: int) -> list[list[str]]:
    """`count` orders: order i is `providers` rotated left by i, so over len(providers) orders each
    provider runs once in each position (alternating, for two)."""
    items = list(providers)
    if not items:
        return [[] for _ in range(count)]
    return [items[i % len(items):] + items[:i % len(items)] for i in range(count)]


@dataclass(frozen=True)
class Spread:
    median: float
    p20: float
    p80: float
    min: float
    max: float
    n: int

    def cell(self, spec: str = ".1f") -> str:
        """'median (min–max)'."""
        return f"{format(self.median, spec)} ({format(self.min, spec)}–{format(self.max, spec)})"

    def to_dict(self) -> dict:
        return asdict(self)


def spread(values: Sequence[float]) -> Spread:
    """Median, p20/p80 (inclusive quantiles) and min/max of per-repeat values."""
    xs = sorted(float(v) for v in values)
    if not xs:
        raise ValueError("spread of no values")
    p20, p80 = (statistics.quantiles(xs, n=5, method="inclusive")[i] for i in (0, 3)) if len(xs) > 1 else (xs[0], xs[0])
    return Spread(statistics.median(xs), p20, p80, xs[0], xs[-1], len(xs))


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Per-repeat ratios, pairing the two providers' values of the same repeat."""
    if len(numerators) != len(denominators):
        raise ValueError("one value per repeat on both sides")
    return [a / b for a, b in zip(numerators, denominators)]


def within(value: float, previous: Mapping) -> bool:
    """Does a rerun's median fall inside the spread an earlier report stated (its min–max)?"""
    return previous["min"] <= value <= previous["max"]


# ----------------------------------------------------------------------------- machine speed


def _reference_work() -> int:
    """A fixed pure-Python workload: dict lookups and updates on short strings, slicing, joins,
    list building and float sums, the interpreter work the alignment stage is made of."""
    words = [f"tok{i % 4093}" for i in range(6000)]
    table: dict[str, int] = {}
    total = 0.0
    for r in range(12):
        for i, w in enumerate(words):
            table[w] = table.get(w, 0) + i
        pairs = [(w, i * 0.5) for i, w in enumerate(words)]
        total += sum(p for _, p in pairs[r:r + 3000])
        total += len("".join(words[r * 100:r * 100 + 2000]))
    return len(table) + int(total)


def reference_seconds(tries: int = 3, rounds: int = 10) -> float:
    """Seconds this machine takes for `rounds` x `_reference_work`, the best of `tries` (~0.25 s
    each; the cyclic garbage collector off, as the alignment workers run).

    A single-provider bench whose figures are absolute seconds (the pipeline) measures this before
    each repeat: the same work on a VM whose host is busier takes more CPU seconds (measured here:
    identical align runs took 231, 267 and 299 CPU s on three runs); a figure divided by the
    reference of its own repeat corrects for drift slower than a stage, not for faster drift."""
    import gc

    best = float("inf")
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(tries):
            started = time.perf_counter()
            for _ in range(rounds):
                _reference_work()
            best = min(best, time.perf_counter() - started)
    finally:
        if collecting:
            gc.enable()
    return best


# ----------------------------------------------------------------------------- reruns


def rerun_check(previous: Mapping | None, same_settings: bool, now: Mapping[str, Mapping | None],
                before: Mapping[str, Mapping | None]) -> dict | None:
    """Each figure's median now against the min–max the previous report stated (`before`: its
    spreads by the same keys); None without a previous report of the same settings."""
    if not previous or not same_settings:
        return None
    figures = {}
    for key, x in now.items():
        b = before.get(key)
        if x and isinstance(b, Mapping):
            figures[key] = {"now": x["median"], "previous": {k: b[k] for k in ("median", "min", "max")},
                            "within_previous_spread": within(x["median"], b)}
    manifest = previous.get("manifest", {})
    return {"previous_commit": manifest.get("git_commit"), "previous_created": manifest.get("created"),
            "previous_was_result": bool(previous.get("verdict", {}).get("result")), "figures": figures}


def rerun_line(check: Mapping | None, labels: Mapping[str, str], spec: str = ".2f") -> list[str]:
    """The page's "Rerun check" paragraph (nothing when there was no previous report to check against)."""
    figures = (check or {}).get("figures") or (check or {}).get("ratios") or {}
    if not figures:
        return []
    verdicts = "; ".join(f"{labels.get(k, k)} {format(c['now'], spec)} {'inside' if c['within_previous_spread'] else 'OUTSIDE'} "
                         f"{format(c['previous']['min'], spec)}–{format(c['previous']['max'], spec)}" for k, c in figures.items())
    return [f"Rerun check against the previous report (commit `{check['previous_commit']}`, {check['previous_created']}"
            f"{'' if check['previous_was_result'] else ', itself not a result'}): {verdicts}.", ""]


def run_history(previous: Mapping | None, same_settings: bool, previous_figures: Mapping[str, Mapping | None]) -> list[dict]:
    """The quiet runs of the same settings before this one, oldest first: the previous report's own
    history plus the previous report itself (when it was a result). A figure that drifts between
    runs (a VM's speed does) shows here rather than being replaced by the latest run."""
    if not previous or not same_settings:
        return []
    runs = list(previous.get("history") or [])
    if previous.get("verdict", {}).get("result"):
        manifest = previous.get("manifest", {})
        runs.append({"commit": manifest.get("git_commit"), "created": manifest.get("created"),
                     "figures": {k: {m: v[m] for m in ("median", "min", "max")} for k, v in previous_figures.items() if v}})
    return runs


def history_line(history: list[dict] | None, labels: Mapping[str, str], spec: str = ".2f", what: str = "medians") -> list[str]:
    """The earlier quiet runs' medians in one paragraph (nothing when there are none)."""
    if not history:
        return []
    runs = "; ".join(f"{h['created']} (`{(h['commit'] or '?')[:12]}`): "
                     + ", ".join(f"{labels.get(k, k)} {format(f['median'], spec)}" for k, f in h["figures"].items()) for h in history)
    return [f"Earlier quiet runs of the same settings (oldest first; {what}): {runs}.", ""]


def read_previous(path: Path) -> dict | None:
    """The report a bench is about to replace (its JSON), or None when there is none or it is unreadable."""
    import json

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- provenance


def versions(names: Sequence[str]) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} logical cores"
    except OSError:
        pass
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores"


def command_line(prog: str, options: Mapping[str, object]) -> str:
    """`prog --name value …` with every option spelled out (True: a bare flag; False/None: left out)."""
    parts = shlex.split(prog)
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, (list, tuple)):
            parts += [flag, ",".join(map(str, value))]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def provenance(command: str, packages: Sequence[str] = (), **extra) -> dict:
    """harness.manifest's run manifest (commit, packages, device) plus the CPU model and the command."""
    from harness.manifest import run_manifest

    record = run_manifest(**extra)
    record["packages"].update(versions(packages))
    record["cpu"] = cpu_model()
    record["command"] = command
    return record


def protocol_lines(verdict: Verdict, record: Mapping, interleaving: str, repeats: int) -> list[str]:
    """The Markdown lines every bench report carries: verdict, load, protocol, command, provenance."""
    pkgs = ", ".join(f"{k} {v}" for k, v in record["packages"].items() if v != "not installed")
    return [verdict.label(), "",
            f"Protocol: {repeats} repeats, {interleaving}; spreads are min–max across repeats.", "",
            f"Command: `{record['command']}`. Commit `{record['git_commit']}`, {record['created']}; "
            f"{record['device']} ({record['cpu']}); Python {record['python']}; {pkgs}.", ""]
