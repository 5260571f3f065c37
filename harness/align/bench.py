"""Benchmark and report: oracle vs fast faithful vs exact on real GSM8K rationales.

Teacher = p50k_base (code-davinci-002's encoding) on the gold CoT text, with synthetic top-5
(`synthetic.py`); student = the Flan-T5 SentencePiece model on the same text. Every
implementation runs on the same prepared pairs in one process; the fast faithful output is
compared with the oracle's, entry by entry and in order.

Protocol (harness.benchmarking): alternating repeats, every implementation once per repeat in an
order rotated by one each repeat; speed-ups are formed inside a repeat on the oracle's pairs; the
report gives median and min-max across repeats and the machine's load, and `report` refuses to
write a loaded run as a result (`harness align report --allow-load` writes it, labelled). Each
speed-up's median is checked against the min–max the previous report of the same pairs and seed
stated (ratios, not rates: absolute rates drift ~20% between runs on a VM), and the earlier quiet
runs of those settings are kept in the report.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.benchmarking import (DEFAULT_MAX_LOAD, LoadMeter, Verdict, check_max_load, command_line, history_line, judge,
                                  protocol_lines, provenance, ratios, read_previous, refuse, rerun_check, rerun_line, rotations,
                                  run_history, spread)
from harness.errors import UsageError

AUTHORS_SAMPLES = 207_135
PROJECTION_CORES = 2
REPEATS = 8  # in-process implementations: alternating repeats, order rotated each repeat
RUNNER_REPEATS = 4  # the measured `align run`: two modes alternating, each twice in each position
PACKAGES = ("numba", "rapidfuzz", "pyarrow", "orjson")
SPEEDUP_LABELS = {"faithful_vs_oracle": "fast faithful vs oracle", "faithful_vs_authors_style": "fast faithful vs authors-style"}
COMPARABLE = ("pairs", "oracle_pairs", "seed")  # what changes the speed-ups (not the repeats)


@dataclass
class Pair:
    id: str
    text: str
    teacher_tokens: list[str]
    topk: list[list[tuple[str, float]]]
    student: Any  # Tokenized


def prepare_pairs(n: int, seed: int = 0):
    from harness.align.synthetic import gsm8k_rationales, synthesize
    from harness.tokenizers import SentencePieceTokenizer, TiktokenTokenizer

    teacher = TiktokenTokenizer("p50k_base")
    student = SentencePieceTokenizer()
    pairs = []
    for sample_id, text in gsm8k_rationales(n):
        syn = synthesize(teacher, text, sample_id, seed=seed)
        pairs.append(Pair(sample_id, text, syn.tokens, syn.topk, student.encode(text)))
    return pairs, teacher, student


def authors_style(teacher_tokens, topk, student_tokens, vocab):
    """The authors' implementation shape: Python double loop, C edit distance per cell, numpy matrix.

    Timed only for context (the oracle is pure Python throughout); output equals the oracle's.
    """
    import numpy as np
    from rapidfuzz.distance import Levenshtein

    n, m = len(teacher_tokens), len(student_tokens)
    matrix = np.zeros((n + 1, m + 1))
    matrix[0, :] = np.inf
    matrix[:, 0] = np.inf
    matrix[0, 0] = 0
    for i, a in enumerate(teacher_tokens):
        a = a.replace(" ", "")
        for j, b in enumerate(student_tokens):
            cost = Levenshtein.distance(a, b.replace("▁", ""))
            matrix[i + 1, j + 1] = cost + min(matrix[i, j + 1], matrix[i + 1, j], matrix[i, j])
    matrix = matrix[1:, 1:]
    i, j = n - 1, m - 1
    mapping = [[] for _ in range(m)]
    while i > 0 or j > 0:
        mapping[j].append(i)
        options = [
            matrix[i - 1, j - 1] if i > 0 and j > 0 else np.inf,
            matrix[i - 1, j] if i > 0 else np.inf,
            matrix[i, j - 1] if j > 0 else np.inf,
        ]
        move = int(np.argmin(options))
        if move == 0:
            i, j = i - 1, j - 1
        elif move == 1:
            i -= 1
        else:
            j -= 1
    mapping[0].append(0)
    from harness.align.faithful_oracle import transfer

    return transfer([sorted(x) for x in mapping], teacher_tokens, topk, student_tokens, vocab)


def _providers(pairs, oracle_pairs, vocab, exact, faithful, with_authors_style: bool) -> dict:
    """name: (pairs it aligns, a function doing one pass over them and returning the outputs)."""
    from harness.align.faithful_fast import align_faithful_fast
    from harness.align.faithful_oracle import align_faithful_oracle
    from harness.align.targets import to_fixed_k

    def fast(ps):
        return lambda: [align_faithful_fast(p.teacher_tokens, p.topk, p.student.tokens, vocab) for p in ps]

    providers = {
        "oracle": (len(oracle_pairs), lambda: [align_faithful_oracle(p.teacher_tokens, p.topk, p.student.tokens, vocab)
                                               for p in oracle_pairs]),
        "fast faithful (oracle's pairs)": (len(oracle_pairs), fast(oracle_pairs)),
        "fast faithful": (len(pairs), fast(pairs)),
        "exact": (len(pairs), lambda: [exact.align(p.teacher_tokens, p.topk, p.student) for p in pairs]),
        # End to end per sample: student tokenization + alignment + fixed-K packing.
        "end-to-end faithful": (len(pairs), lambda: [to_fixed_k(faithful.align(p.teacher_tokens, p.topk, p.text), 5) for p in pairs]),
        "end-to-end exact": (len(pairs), lambda: [to_fixed_k(exact.align(p.teacher_tokens, p.topk, p.text), 5) for p in pairs]),
    }
    if with_authors_style:
        providers["authors-style"] = (len(oracle_pairs), lambda: [authors_style(p.teacher_tokens, p.topk, p.student.tokens, vocab)
                                                                  for p in oracle_pairs])
    return providers


def run_bench(n: int = 200, seed: int = 0, oracle_n: int | None = None, with_authors_style: bool = True, repeats: int = 3,
              progress=None, meter: LoadMeter | None = None) -> dict[str, Any]:
    """Time every implementation on the same pairs, `repeats` times in rotated order (alternating
    repeats: the fast paths take milliseconds, the oracle seconds, so step-level interleaving has
    no steps to interleave); check fast == oracle (and authors-style == oracle)."""
    from harness.align.api import AlignConfig, Aligner
    from harness.align.faithful_fast import align_faithful_fast
    from harness.align.targets import AlignmentStats

    if repeats < 1:
        raise UsageError(f"--repeats: {repeats} is not allowed; it must be > 0")
    pairs, teacher, student = prepare_pairs(n, seed)
    vocab = student.vocab()
    oracle_pairs = pairs if oracle_n is None else pairs[:oracle_n]
    exact = Aligner(AlignConfig(mode="exact"), student)
    faithful = Aligner(AlignConfig(mode="faithful"), student)

    # Warm-up outside the clocks: numba compilation (or cache load), memo tables.
    for p in pairs:
        exact.align(p.teacher_tokens, p.topk, p.student)
        align_faithful_fast(p.teacher_tokens, p.topk, p.student.tokens, vocab)

    providers = _providers(pairs, oracle_pairs, vocab, exact, faithful, with_authors_style)
    names = list(providers)
    rates: dict[str, list[float]] = {name: [] for name in names}
    first: dict[str, list] = {}
    meter = meter or LoadMeter().start()
    laps = len(meter.laps)
    for order in rotations(names, repeats):
        for name in order:
            count, run = providers[name]
            t0 = time.perf_counter()
            out = run()
            seconds = time.perf_counter() - t0
            rates[name].append(count / seconds if seconds > 0 else float("inf"))
            first.setdefault(name, out)
            if progress:
                progress(name)
        meter.lap()

    if with_authors_style:
        assert _ordered(first["authors-style"]) == _ordered(first["oracle"]), "authors-style reimplementation disagrees with the oracle"
    identical = _ordered(first["fast faithful (oracle's pairs)"]) == _ordered(first["oracle"])
    stats_f, stats_e = AlignmentStats(), AlignmentStats()
    for p in pairs:
        stats_f.add(faithful.align(p.teacher_tokens, p.topk, p.student))
        stats_e.add(exact.align(p.teacher_tokens, p.topk, p.student))

    spreads = {name: spread(values).to_dict() for name, values in rates.items()}
    speedups = {"faithful_vs_oracle": spread(ratios(rates["fast faithful (oracle's pairs)"], rates["oracle"])).to_dict()}
    if with_authors_style:
        speedups["faithful_vs_authors_style"] = spread(ratios(rates["fast faithful (oracle's pairs)"], rates["authors-style"])).to_dict()

    def med(name):
        return spreads[name]["median"]

    faithful_rate, e2e_f_rate, e2e_e_rate = med("fast faithful"), med("end-to-end faithful"), med("end-to-end exact")
    return {
        "pairs": n,
        "oracle_pairs": len(oracle_pairs),
        "oracle_pairs_per_s": round(med("oracle"), 2),
        "faithful_pairs_per_s": round(faithful_rate, 1),
        "exact_pairs_per_s": round(med("exact"), 1),
        "speedup_faithful_vs_oracle": round(speedups["faithful_vs_oracle"]["median"], 1),
        "soft_fraction_faithful": round(stats_f.summary()["soft_fraction"], 4),
        "soft_fraction_exact": round(stats_e.summary()["soft_fraction"], 4),
        "identical_to_oracle": identical,
        "authors_style_pairs_per_s": round(med("authors-style"), 1) if with_authors_style else None,
        "speedup_faithful_vs_authors_style": round(speedups["faithful_vs_authors_style"]["median"], 1) if with_authors_style else None,
        "end_to_end_faithful_pairs_per_s": round(e2e_f_rate, 1),
        "end_to_end_exact_pairs_per_s": round(e2e_e_rate, 1),
        "pairs_per_s": spreads,  # every implementation: median, p20-p80, min-max across repeats
        "speedups": speedups,  # formed inside each repeat, on the oracle's pairs
        "mean_teacher_tokens": round(sum(len(p.teacher_tokens) for p in pairs) / n, 1),
        "mean_student_tokens": round(sum(len(p.student) for p in pairs) / n, 1),
        "projection": {
            "samples": AUTHORS_SAMPLES,
            "cores": PROJECTION_CORES,
            "assumes": "an estimate, not a measurement: samples / (median single-core rate x cores) (alignment is CPU-bound "
                       "and embarrassingly parallel)",
            "faithful_align_only_s": round(AUTHORS_SAMPLES / (faithful_rate * PROJECTION_CORES), 1),
            "faithful_end_to_end_s": round(AUTHORS_SAMPLES / (e2e_f_rate * PROJECTION_CORES), 1),
            "exact_end_to_end_s": round(AUTHORS_SAMPLES / (e2e_e_rate * PROJECTION_CORES), 1),
            "oracle_s": round(AUTHORS_SAMPLES / (med("oracle") * PROJECTION_CORES), 1),
            "authors_reported_s": 58 * 60,
        },
        "stats_faithful": stats_f.summary(),
        "stats_exact": stats_e.summary(),
        "seed": seed,
        "repeats": repeats,
        "timing": f"single process; {repeats} repeats, each one pass of every implementation, order rotated each repeat",
        "load_per_repeat": [lap.to_dict() for lap in meter.laps[laps:]],
        "load": meter.total().to_dict(),
    }


def _ordered(outputs) -> list:
    return [[list(target.items()) for target in seq] for seq in outputs]


# ----------------------------------------------------------------------------- report


def input_checksums(inputs: list[Path]) -> dict[str, str]:
    """sha256 of the input files, keyed by their path under the data directory."""
    from harness.config import data_dir

    root = data_dir()
    checksums = {}
    for path in inputs:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        name = Path(path).resolve()
        checksums[str(name.relative_to(root)) if name.is_relative_to(root) else str(path)] = digest
    return checksums


def input_files() -> list[Path]:
    from harness.config import data_file

    cache = data_file("tokenizers/tiktoken_cache")
    # p50k_base's cached file is named by the sha1 of its URL; record every cached encoding.
    return [data_file("gsm8k/train.jsonl"), data_file("tokenizers/t5/spiece.model"),
            data_file("tokenizers/tiktoken/p50k_base.tiktoken")] + sorted(p for p in cache.iterdir() if p.is_file())


def _rate_cell(s: dict, spec: str = ".1f") -> str:
    return f"{format(s['median'], spec)} ({format(s['min'], spec)}–{format(s['max'], spec)})"


def write_report(result: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """reports/align/alignment_stats.json + alignment_stats.md (`result` carries provenance and verdict)."""
    from harness.records import atomic_write

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "alignment_stats.json"
    with atomic_write(json_path) as handle:
        handle.write(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    md_path = out_dir / "alignment_stats.md"
    f, e = result["stats_faithful"], result["stats_exact"]
    prov, rates, speed = result["provenance"], result["pairs_per_s"], result["speedups"]
    runner = result.get("measured_run_2_workers")
    lines = [
        "# Alignment: faithful (authors' DTW) vs exact (offset spans)",
        "",
        f"{result['pairs']} GSM8K train gold rationales (first {result['pairs']}, calculator annotations removed); "
        "teacher = p50k_base tokens with synthetic top-5 (sampled token first, 4 random vocabulary tokens, "
        f"seed {result['seed']}); student = Flan-T5 SentencePiece. Written by `{prov['command']}`.",
        "",
        "| | faithful | exact |",
        "|---|---|---|",
        f"| positions (student tokens) | {f['positions']} | {e['positions']} |",
        f"| soft (non-one-hot) fraction | {f['soft_fraction']:.4f} | {e['soft_fraction']:.4f} |",
        f"| positions with >1 entry | {f['multi_entry_fraction']:.4f} | {e['multi_entry_fraction']:.4f} |",
        f"| teacher-derived fraction | {f['teacher_derived_fraction']:.4f} | {e['teacher_derived_fraction']:.4f} |",
        f"| mean captured teacher mass (all positions) | {f['mean_captured_mass']:.4f} | {e['mean_captured_mass']:.4f} |",
        f"| mean captured mass where derived | {f['mean_captured_mass_where_derived']:.4f} | {e['mean_captured_mass_where_derived']:.4f} |",
        f"| target kinds | {f['kinds']} | {e['kinds']} |",
        "",
        f"Speed, single process, the same pairs; pairs/s as median (min–max) over {result['repeats']} repeats:",
        "",
        "| implementation | pairs | pairs/s |",
        "|---|---|---|",
        *[f"| {name} | {result['oracle_pairs'] if name in ORACLE_PAIRS else result['pairs']} | {_rate_cell(s)} |"
          for name, s in rates.items()],
        "",
        f"- fast faithful vs the oracle, on the oracle's pairs: {_rate_cell(speed['faithful_vs_oracle'])}x"
        + (f"; vs authors-style: {_rate_cell(speed['faithful_vs_authors_style'])}x" if "faithful_vs_authors_style" in speed else "")
        + f"; identical to the oracle: {result['identical_to_oracle']}",
        f"- projected for {AUTHORS_SAMPLES:,} samples on {PROJECTION_CORES} cores (an estimate: samples / (median rate x cores)): "
        f"faithful {result['projection']['faithful_align_only_s']} s (align only), {result['projection']['faithful_end_to_end_s']} s "
        f"(tokenize + align + pack); exact {result['projection']['exact_end_to_end_s']} s; authors reported 58 min.",
        *([f"- measured `align run` (JSONL in/out, {runner['workers']} processes, {runner['samples']} samples, start-up "
           f"included; {runner['repeats']} repeats, modes alternating): "
           + "; ".join(f"{m} {_rate_cell(v['samples_per_s'])} samples/s -> {v['projected_s_207135']} s for {AUTHORS_SAMPLES:,} "
                       "(linear, from the median)" for m, v in runner.items() if isinstance(v, dict))]
          if runner else []),
        "",
        "Caveat: the top-k alternatives are synthetic (random vocabulary tokens), so the captured-mass numbers say how",
        "much of the sampled token's probability survives; real teacher alternatives are more often real words and",
        "would raise both modes' captured mass. The soft fractions depend only on which positions get a teacher",
        "distribution (every synthetic sampled-token probability is below 1), so they carry over to real data.",
        "",
        *rerun_line(result.get("rerun_check"), SPEEDUP_LABELS, ".1f"),
        *history_line(result.get("history"), SPEEDUP_LABELS, ".1f"),
        *protocol_lines(Verdict(**result["verdict"]), prov, "alternating repeats (every implementation once per repeat, order "
                        "rotated by one each repeat)", result["repeats"]),
        "Inputs (sha256): see alignment_stats.json.",
    ]
    with atomic_write(md_path) as handle:
        handle.write("\n".join(lines) + "\n")
    return json_path, md_path


ORACLE_PAIRS = ("oracle", "fast faithful (oracle's pairs)", "authors-style")


def check_rerun(previous: dict | None, result: dict) -> None:
    """Record whether the speed-ups reproduce the previous report's (same pairs and seed) and carry
    the earlier quiet runs forward. This report keeps commit and time under "provenance"."""
    same = bool(previous) and all(previous.get(k) == result[k] for k in COMPARABLE)
    previous = previous and {**previous, "manifest": previous.get("provenance", {})}
    before = previous.get("speedups", {}) if same else {}
    result["rerun_figures"] = result["speedups"]
    result["rerun_check"] = rerun_check(previous, same, result["rerun_figures"], before)
    result["history"] = run_history(previous, same, before)


def measure_runner(n: int = 2000, workers: int = 2, modes: tuple[str, ...] = ("faithful", "exact"), seed: int = 0,
                   repeats: int = 2, meter: LoadMeter | None = None) -> dict[str, Any]:
    """Wall-clock of `run_alignment` (JSONL in → JSONL out, `workers` processes) on n synthetic samples,
    the modes alternating over `repeats` repeats.

    This is the whole command as a user runs it (parsing, validation, alignment, packing, JSON
    writing, process start-up), so it checks the single-core projection on real cores.
    """
    import math
    import tempfile

    from harness.align.api import AlignConfig
    from harness.align.jsonl import run_alignment
    from harness.align.synthetic import gsm8k_rationales, synthesize
    from harness.tokenizers import TiktokenTokenizer
    from harness.records import write_jsonl

    teacher = TiktokenTokenizer("p50k_base")
    rows = []
    texts = gsm8k_rationales(None)
    for r in range(n):
        sample_id, text = texts[r % len(texts)]
        syn = synthesize(teacher, text, f"{sample_id}#{r}", seed=seed)
        rows.append({"id": f"{sample_id}#{r}", "text": text, "tokens": syn.tokens,
                     "topk": [[[t, math.log(p)] for t, p in step] for step in syn.topk]})
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "teacher.jsonl"
        write_jsonl(source, rows)
        for order in rotations(modes, repeats):
            for mode in order:
                target = Path(tmp) / f"{mode}.jsonl"
                t0 = time.perf_counter()
                run_alignment(source, target, AlignConfig(mode=mode), workers=workers, chunk_size=64)
                seconds[mode].append(time.perf_counter() - t0)
                target.unlink()
            if meter:
                meter.lap()
    out: dict[str, Any] = {"samples": n, "workers": workers, "repeats": repeats}
    for mode, secs in seconds.items():
        rate = spread([n / s for s in secs]).to_dict()
        out[mode] = {"seconds": [round(s, 2) for s in secs], "samples_per_s": rate,
                     "projected_s_207135": round(AUTHORS_SAMPLES / rate["median"], 1)}
    return out


def report(n: int = 7473, seed: int = 0, oracle_n: int | None = 200, runner_samples: int = 6000, repeats: int = REPEATS,
           runner_repeats: int = RUNNER_REPEATS, max_load: float = DEFAULT_MAX_LOAD, allow_load: bool = False,
           out_dir: str | Path = "reports/align") -> tuple[Path, Path]:
    """`harness align report`: the bench, the measured runner, the load; written only as a result
    (or with allow_load, labelled); otherwise the numbers are printed and NotKept raised."""
    check_max_load(max_load)
    if runner_repeats < 1:
        raise UsageError(f"--runner-repeats: {runner_repeats} is not allowed; it must be > 0")
    command = command_line("python -m harness align report", {
        "n": n, "seed": seed, "oracle_n": oracle_n, "runner_samples": runner_samples, "repeats": repeats,
        "runner_repeats": runner_repeats, "max_load": max_load, "allow_load": allow_load, "out_dir": out_dir})
    meter = LoadMeter().start()
    result = run_bench(n=n, seed=seed, oracle_n=oracle_n, repeats=repeats, meter=meter)
    if runner_samples:
        result["measured_run_2_workers"] = measure_runner(runner_samples, workers=2, seed=seed, repeats=runner_repeats, meter=meter)
    load = meter.total()
    verdict = judge(load, max_load, allow_load)
    result["load"] = load.to_dict()
    result["verdict"] = verdict.to_dict()
    result["provenance"] = {**provenance(command, packages=PACKAGES), "inputs_sha256": input_checksums(input_files())}
    check_rerun(read_previous(Path(out_dir) / "alignment_stats.json"), result)
    print(json.dumps({"pairs_per_s": {k: round(v["median"], 1) for k, v in result["pairs_per_s"].items()},
                      "speedups": {k: round(v["median"], 1) for k, v in result["speedups"].items()},
                      "load": load.describe()}, indent=1), flush=True)
    for key, c in ((result["rerun_check"] or {}).get("figures") or {}).items():
        print(f"align report: rerun check {key}: {c['now']:.1f} {'inside' if c['within_previous_spread'] else 'OUTSIDE'} "
              f"the previous {c['previous']['min']:.1f}–{c['previous']['max']:.1f}", flush=True)
    if not verdict.write:
        raise refuse(verdict)
    return write_report(result, out_dir)
