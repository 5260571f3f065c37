"""Kernel-speed regression gate: compare benchmark results against a stored baseline.

    python -m kernels.bench --compare reports/kernels/baseline.json [--current FILE ...] --max-slowdown 0.10

(`python -m kernels.bench_compare …` is the same command.) Both files are what `python -m
kernels.bench` writes: `{"meta": {"gpu": …}, "loss": [rows], "fused_linear": [rows]}`. A row is
identified by every field that is not a measurement (kind, N, V, K, d, dtype, provider, pass, …),
so a shape is the same shape only when all of them match. Only our own kernels are gated
(`TRACKED_PROVIDERS`, in the `TRACKED_KINDS` sections); the baselines (eager, torch.compile, Liger)
and the `--tune` sweep are shown, never gated.

Exit codes: 0 when no tracked row is more than `--max-slowdown` slower (by median time) and
every tracked baseline row is present and measured; 1 otherwise, one line per failure; 2 when
the comparison is refused (different GPU models, unreadable files, nothing tracked). Several
`--current` files (repeated runs) are combined by the median of their medians.

The baseline changes only through `nox -s kernel-baseline` (it runs `--promote`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASELINE = Path("reports/kernels/baseline.json")
DEFAULT_CURRENT = Path("reports/kernels/sparse_kl_latest.json")
DEFAULT_MAX_SLOWDOWN = 0.10

# Our kernels, the ones a change must not slow down. The eager, torch.compile, dense, Liger and
# matmul_triton (cuBLAS matmul + our loss) rows are reference points: their speed is not ours to gate.
TRACKED_PROVIDERS = frozenset({"triton", "triton_inplace", "triton_two_kernel", "fused_linear_triton"})
# Row kinds the gate reads. `tune` rows (`--tune`: a block/warp sweep feeding the tile heuristic) are
# shown, never gated: most of their configurations are deliberately bad ones.
TRACKED_KINDS = frozenset({"loss", "fused_linear"})

# A row field is a measurement (not part of the row's identity) if its name is listed here or
# ends with one of these suffixes. Everything else (kind, N, V, K, d, dtype, provider, pass, …)
# identifies the row; a new measurement field with another name would split rows apart and
# show up as "missing" (loudly), so add it here.
MEASUREMENT_FIELDS = frozenset({"bytes_moved", "skipped", "speedup", "error", "note", "repeats"})
MEASUREMENT_SUFFIXES = (
    "_ms", "_us", "_s", "_bytes", "_bytes_per_s", "_over_logits", "_fraction", "_frac", "_pct",
    "_percent", "_gbps", "_tflops", "_speedup",
)
TIME_FIELD = "median_ms"
EXIT_OK, EXIT_REGRESSION, EXIT_REFUSED = 0, 1, 2


class CompareError(Exception):
    """The comparison cannot be made (exit 2); the message says why and what to do."""


def is_measurement(field: str) -> bool:
    return field in MEASUREMENT_FIELDS or field.endswith(MEASUREMENT_SUFFIXES)


def row_key(row: dict) -> tuple:
    """The row's identity: every non-measurement field, as sorted (name, value) pairs."""
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in row.items() if not is_measurement(k)))


def describe(key: tuple) -> str:
    """`loss N=16384 V=32128 K=5 bfloat16 triton_inplace` from a row key."""
    fields = {k: json.loads(v) for k, v in key}
    head = [str(fields.pop(name)) for name in ("kind",) if name in fields]
    shape = [f"{name}={fields.pop(name)}" for name in ("N", "d", "V", "K") if name in fields]
    tail = [str(fields.pop(name)) for name in ("dtype", "provider") if name in fields]
    rest = [f"{k}={v}" for k, v in sorted(fields.items())]
    return " ".join(head + shape + tail + rest)


@dataclass
class Result:
    path: str
    gpu: str
    rows: dict  # row key -> list of rows (repeats)


def load(path: Path) -> Result:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CompareError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CompareError(f"{path}: not a readable benchmark result ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("meta"), dict):
        raise CompareError(f"{path}: no 'meta' object; expected the JSON that `python -m kernels.bench` writes")
    gpu = data["meta"].get("gpu")
    if not gpu:
        raise CompareError(f"{path}: meta.gpu is missing, so the device that produced it is unknown")
    rows: dict = {}
    for section, value in data.items():
        if section == "meta":
            continue
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise CompareError(f"{path}: section {section!r} is not a list of rows")
        for i, row in enumerate(value):
            if "skipped" not in row and not isinstance(row.get(TIME_FIELD), (int, float)):
                raise CompareError(f"{path}: {section}[{i}] has neither {TIME_FIELD} nor skipped")
            rows.setdefault(row_key(row), []).append(row)
    return Result(str(path), gpu, rows)


def median_time(rows: list[dict]) -> float | None:
    """Median of the measured repeats' medians; None when every repeat was skipped."""
    times = [r[TIME_FIELD] for r in rows if "skipped" not in r]
    return statistics.median(times) if times else None


def merge(results: list[Result]) -> Result:
    """Repeated runs of the current code as one result (they must share a GPU model)."""
    gpus = sorted({r.gpu for r in results})
    if len(gpus) > 1:
        raise CompareError("the --current files come from different GPUs: " + ", ".join(f"{r.path}: {r.gpu}" for r in results))
    rows: dict = {}
    for r in results:
        for key, reps in r.rows.items():
            rows.setdefault(key, []).extend(reps)
    return Result(", ".join(r.path for r in results), gpus[0], rows)


def is_tracked(key: tuple, tracked: frozenset) -> bool:
    fields = dict(key)
    return json.loads(fields.get("provider", "null")) in tracked and json.loads(fields.get("kind", "null")) in TRACKED_KINDS


@dataclass
class Line:
    key: tuple
    base_ms: float | None
    cur_ms: float | None
    status: str  # ok, faster, SLOWER, MISSING, SKIPPED, untracked, new, baseline skipped
    failure: str | None = None

    @property
    def change(self) -> float | None:
        return None if self.base_ms is None or self.cur_ms is None else self.cur_ms / self.base_ms - 1


def compare(baseline: Result, current: Result, max_slowdown: float, tracked: frozenset = TRACKED_PROVIDERS) -> list[Line]:
    if baseline.gpu != current.gpu:
        raise CompareError(
            f"refusing to compare across GPU models: the baseline ran on {baseline.gpu!r}, the current results on "
            f"{current.gpu!r}. Compare runs from the same GPU model, or record a baseline on this one with `nox -s kernel-baseline`."
        )
    if not any(is_tracked(k, tracked) for k in baseline.rows):
        raise CompareError(
            f"{baseline.path}: no row from a tracked provider ({', '.join(sorted(tracked))}), so nothing would be gated; "
            "check kernels/bench_compare.py TRACKED_PROVIDERS against the providers kernels/bench.py writes"
        )
    lines = []
    for key, reps in baseline.rows.items():
        base = median_time(reps)
        cur_reps = current.rows.get(key)
        cur = median_time(cur_reps) if cur_reps else None
        if not is_tracked(key, tracked):
            lines.append(Line(key, base, cur, "untracked"))
        elif base is None:
            lines.append(Line(key, None, cur, "baseline skipped"))
        elif cur_reps is None:
            lines.append(Line(key, base, None, "MISSING", f"missing from the current results (baseline {base:.3f} ms)"))
        elif cur is None:
            reason = cur_reps[0].get("skipped")
            lines.append(Line(key, base, None, "SKIPPED", f"measured in the baseline ({base:.3f} ms), now {reason}"))
        else:
            change = cur / base - 1
            if change > max_slowdown:
                failure = f"{base:.3f} ms -> {cur:.3f} ms ({change:+.1%}, more than the allowed {max_slowdown:+.1%})"
                lines.append(Line(key, base, cur, "SLOWER", failure))
            else:
                lines.append(Line(key, base, cur, "faster" if change < 0 else "ok"))
    for key, reps in current.rows.items():
        if key not in baseline.rows:
            lines.append(Line(key, None, median_time(reps), "new"))
    return lines


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def render(lines: list[Line], baseline: Result, current: Result, max_slowdown: float) -> str:
    out = [
        f"Kernel speed vs baseline on {baseline.gpu} (median time, gate: tracked rows at most {max_slowdown:.0%} slower)",
        f"baseline: {baseline.path}",
        f"current:  {current.path}",
        "",
        "| row | baseline ms | current ms | change | status |",
        "|---|---|---|---|---|",
    ]
    order = {"SLOWER": 0, "MISSING": 1, "SKIPPED": 2, "ok": 3, "faster": 4, "baseline skipped": 5, "new": 6, "untracked": 7}
    for ln in sorted(lines, key=lambda ln: (order[ln.status], describe(ln.key))):
        change = "—" if ln.change is None else f"{ln.change:+.1%}"
        out.append(f"| {describe(ln.key)} | {_ms(ln.base_ms)} | {_ms(ln.cur_ms)} | {change} | {ln.status} |")
    return "\n".join(out)


def promote(result_path: Path, baseline_path: Path) -> str:
    """Copy a benchmark result to the baseline after checking it can serve as one."""
    result = load(result_path)
    measured = [k for k, reps in result.rows.items() if is_tracked(k, TRACKED_PROVIDERS) and median_time(reps) is not None]
    if not measured:
        raise CompareError(f"{result_path}: no measured row from a tracked provider; it cannot be a baseline")
    data = json.loads(Path(result_path).read_text(encoding="utf-8"))
    data["meta"]["baseline"] = {
        "promoted_from": str(result_path),
        "promoted_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    baseline_path.parent.mkdir(parents=True, exist_ok=True)
    baseline_path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return f"kernels.bench_compare: {baseline_path} now holds {result_path} ({result.gpu}, {len(measured)} tracked rows measured)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m kernels.bench --compare", description=__doc__.splitlines()[0])
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--compare", type=Path, metavar="BASELINE", help=f"baseline result JSON (normally {DEFAULT_BASELINE})")
    what.add_argument("--promote", type=Path, metavar="RESULT", help="make RESULT the new baseline (what `nox -s kernel-baseline` runs)")
    ap.add_argument("--current", type=Path, action="append", metavar="FILE",
                    help=f"current result JSON; repeat for repeated runs (median of medians). Default {DEFAULT_CURRENT}")
    ap.add_argument("--max-slowdown", type=float, default=DEFAULT_MAX_SLOWDOWN, metavar="FRACTION",
                    help="largest allowed slowdown of a tracked row, as a fraction (default 0.10 = 10%%)")
    ap.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help="with --promote: where the baseline goes")
    args = ap.parse_args(argv)
    if not 0 <= args.max_slowdown < 10:
        ap.error(f"--max-slowdown must be a fraction in [0, 10), got {args.max_slowdown}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.promote:
            print(promote(args.promote, args.baseline))
            return EXIT_OK
        if not args.compare.exists():
            raise CompareError(f"{args.compare}: no baseline there; record one on the GPU with `nox -s kernel-baseline`")
        baseline = load(args.compare)
        current = merge([load(p) for p in (args.current or [DEFAULT_CURRENT])])
        lines = compare(baseline, current, args.max_slowdown)
    except CompareError as e:
        print(f"kernels.bench --compare: {e}", file=sys.stderr)
        return EXIT_REFUSED
    print(render(lines, baseline, current, args.max_slowdown))
    failures = [ln for ln in lines if ln.failure]
    tracked = sum(ln.status in ("ok", "faster", "SLOWER", "MISSING", "SKIPPED") for ln in lines)
    if failures:
        print(f"\nFAIL: {len(failures)} of {tracked} tracked rows regressed:", file=sys.stderr)
        for ln in failures:
            print(f"FAIL {describe(ln.key)}: {ln.failure}", file=sys.stderr)
        return EXIT_REGRESSION
    print(f"\nOK: {tracked} tracked rows within {args.max_slowdown:.0%} of the baseline "
          f"({sum(ln.status == 'faster' for ln in lines)} faster).")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
