"""The benchmark protocol: providers interleaved, repeats with their spread, the machine's load recorded.

A ratio between two providers means something only if both ran under the same conditions, so:

* `interleave` runs the providers round-robin, one sample each per repeat, rotating the order
  every repeat (no provider always runs first, right after a warm cache or a cold one);
* every figure is the median of its repeats, with p20/p80, min/max and the relative spread;
  ratios are taken repeat by repeat (the two samples were adjacent in time) and summarised alike;
* `LoadMeter` records what else ran meanwhile: the machine's busy CPU seconds (Linux /proc/stat)
  minus this process's own (and its waited-for children's, getrusage), and `load_verdict` turns
  that into keep / refuse against a threshold, so a result from a shared machine is never
  written down as the result.

Only the stdlib: kernels import torch, triton and the stdlib alone, and this serves the CPU and
the GPU benches alike.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable

# Default: refuse when other processes used more than 5% of the machine's CPU time during the run
# (0.1 core on a 2-core machine, 0.8 core on a 16-core GPU host).
MAX_OTHER_FRACTION = 0.05


def busy_cpu_seconds() -> float | None:
    """CPU seconds every process on the machine has used since boot (all but idle and iowait);
    None where /proc/stat does not exist."""
    try:
        with open("/proc/stat") as handle:
            ticks = [int(v) for v in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class LoadMeter:
    """`with LoadMeter() as load: ...`, then `load.record()`: wall seconds, own and other
    processes' CPU seconds, and other processes' share of the machine's CPU time."""

    def __enter__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), busy_cpu_seconds(), own_cpu_seconds()
        self.t1 = self.busy1 = self.own1 = None
        return self

    def __exit__(self, *exc):
        self.t1, self.busy1, self.own1 = time.perf_counter(), busy_cpu_seconds(), own_cpu_seconds()

    def record(self) -> dict:
        if self.t1 is None:
            self.__exit__(None, None, None)
        wall = self.t1 - self.t0
        own = self.own1 - self.own0
        cpus = os.cpu_count() or 1
        load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        rec = {"wall_s": round(wall, 3), "own_cpu_s": round(own, 3), "cpus": cpus, "loadavg_1min_at_end": load1}
        if self.busy0 is None or self.busy1 is None:
            rec.update(other_cpu_s=None, other_fraction=None, note="no /proc/stat: other processes' CPU time unknown")
            return rec
        other = max(0.0, (self.busy1 - self.busy0) - own)  # accounting ticks can make it dip below 0
        rec.update(other_cpu_s=round(other, 3), other_fraction=round(other / max(wall * cpus, 1e-9), 4))
        return rec


def load_verdict(load: dict, max_other_fraction: float = MAX_OTHER_FRACTION) -> tuple[bool, str]:
    """(keep, reason): keep only when other processes' share of the CPU time is known and small."""
    frac = load.get("other_fraction")
    if frac is None:
        return False, "the machine's load could not be measured (no /proc/stat)"
    cores = frac * load["cpus"]
    if frac > max_other_fraction:
        return False, (f"other processes used {load['other_cpu_s']:.1f} CPU s in {load['wall_s']:.1f} s "
                       f"({cores:.2f} of {load['cpus']} cores, {frac:.1%} of the machine), above the "
                       f"{max_other_fraction:.0%} threshold: the machine was not quiet")
    return True, (f"other processes used {load['other_cpu_s']:.1f} CPU s in {load['wall_s']:.1f} s "
                  f"({frac:.1%} of the machine; threshold {max_other_fraction:.0%})")


def interleave(providers: dict[str, Callable[[], object]], repeats: int, sample: Callable[[Callable], float],
               warmup: int = 1) -> dict[str, list[float]]:
    """name -> `repeats` samples, taken round-robin: repeat r runs the providers in the order
    rotated by r. `sample(fn)` returns one measurement (e.g. the ms of a timed block of calls).
    Each provider first runs `warmup` untimed calls, interleaved the same way."""
    names = list(providers)
    for _ in range(warmup):
        for name in names:
            providers[name]()
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            out[name].append(sample(providers[name]))
    return out


def wall_ms(calls: int = 1) -> Callable[[Callable], float]:
    """A `sample` for CPU work: wall ms per call over a block of `calls` calls."""

    def sample(fn: Callable) -> float:
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - t) * 1e3 / calls

    return sample


def summary(values: list[float]) -> dict:
    """median, p20, p80, min, max and the relative spread (max - min) / median of some repeats."""
    if not values:
        return {}
    if len(values) > 1:
        q = statistics.quantiles(values, n=10, method="inclusive")
        p20, p80 = q[1], q[7]
    else:
        p20 = p80 = values[0]
    med = statistics.median(values)
    return {"median": med, "p20": p20, "p80": p80, "min": min(values), "max": max(values),
            "spread_frac": (max(values) - min(values)) / med if med else None, "repeats": len(values)}


def ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """Repeat-by-repeat ratios of two providers' samples (taken next to each other in time)."""
    return [a / b for a, b in zip(numerator, denominator) if b]


# Reruns: harness.benchmarking's rerun_check / run_history / rerun_line for the kernels' reports
# (kernels import no harness; these reports keep commit, time and verdict under "meta").


def _spread3(x: dict) -> dict:
    return {m: x[m] for m in ("median", "min", "max")}


def rerun_check(previous: dict | None, same_settings: bool, now: dict, before: dict) -> dict | None:
    """Each figure's median now against the min–max the previous report stated; None without a
    previous report of the same settings."""
    if not previous or not same_settings:
        return None
    figures = {k: {"now": x["median"], "previous": _spread3(before[k]),
                   "within_previous_spread": before[k]["min"] <= x["median"] <= before[k]["max"]}
               for k, x in now.items() if x and isinstance(before.get(k), dict)}
    meta = previous.get("meta", {})
    return {"previous_commit": meta.get("git_commit"), "previous_created": meta.get("timestamp"),
            "previous_was_result": bool(meta.get("load_ok")), "figures": figures}


def run_history(previous: dict | None, same_settings: bool, previous_figures: dict) -> list[dict]:
    """The quiet runs of the same settings before this one, oldest first (the previous report's
    history, then the previous report itself when it was a result)."""
    if not previous or not same_settings:
        return []
    runs = list(previous.get("history") or [])
    meta = previous.get("meta", {})
    if meta.get("load_ok"):
        runs.append({"commit": meta.get("git_commit"), "created": meta.get("timestamp"),
                     "figures": {k: _spread3(v) for k, v in previous_figures.items() if v}})
    return runs


def rerun_line(check: dict | None, labels: dict, spec: str = ".2f") -> list[str]:
    """The page's "Rerun check" paragraph (nothing without a previous report to check against)."""
    figures = (check or {}).get("figures") or {}
    if not figures:
        return []
    verdicts = "; ".join(f"{labels.get(k, k)} {format(c['now'], spec)} {'inside' if c['within_previous_spread'] else 'OUTSIDE'} "
                         f"{format(c['previous']['min'], spec)}–{format(c['previous']['max'], spec)}" for k, c in figures.items())
    return [f"Rerun check against the previous report (commit `{check['previous_commit']}`, {check['previous_created']}"
            f"{'' if check['previous_was_result'] else ', itself not a result'}): {verdicts}.", ""]


def history_line(history: list[dict] | None, labels: dict, spec: str = ".2f") -> list[str]:
    """The earlier quiet runs' medians in one paragraph (nothing when there are none)."""
    if not history:
        return []
    runs = "; ".join(f"{h['created']} (`{(h['commit'] or '?')[:12]}`): "
                     + ", ".join(f"{labels.get(k, k)} {format(f['median'], spec)}" for k, f in h["figures"].items()) for h in history)
    return [f"Earlier quiet runs of the same settings (oldest first; medians): {runs}.", ""]
