"""The paper's claims, each judged from the cells behind it: verified, not verified or contradicted.

A claim is a list of checks; a check is a linear combination of cells compared with a threshold,
e.g. "specialized - before > 0" for GSM8K at one size. With our values v_i over n_i items:

    estimate = sum(c_i * v_i) - threshold,   margin = z * sqrt(sum(c_i^2 * SE_i^2))

(SE_i the binomial standard error of v_i, `compare.binomial_se`). The check *holds* if the
estimate is beyond the margin in the claimed direction, is *opposite* if it is beyond the margin
the other way, and is *inconclusive* otherwise (or *missing* without the cells). A claim is
**verified** when every check holds, **contradicted** when any check is opposite, and **not
verified** otherwise. Cells are treated as independent; before/after scores on the same items
are positively correlated, so the margin errs on the cautious side.

Every claim is also run on the paper's own numbers (SE 0: only the direction counts), so a
report shows whether the paper's table supports the paper's sentence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.report.compare import binomial_se
from harness.report.paper import FLAN, Paper, cell_key
from harness.report.results import CurvePoint, Fig4Point, Results, effective_n

VERIFIED, NOT_VERIFIED, CONTRADICTED = "verified", "not verified", "contradicted"
HOLDS, OPPOSITE, INCONCLUSIVE, MISSING = "holds", "opposite", "inconclusive", "missing"
LOST = 1.0  # points: "loses all BBH CoT ability" read as below 1 % (the paper prints 0.0-0.3)
NAMES = {"gsm8k": "GSM8K", "mas": "M-A-S", "bbh_ao": "BBH AO", "bbh_cot": "BBH CoT"}


@dataclass(frozen=True)
class Check:
    label: str
    terms: tuple[tuple[str, float], ...]  # (cell key, coefficient)
    op: str = ">"  # the claimed direction of sum(c_i v_i) relative to threshold
    threshold: float = 0.0


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    where: str  # where the paper says it
    scope: str  # table1, table2, table3, fig3, fig4
    checks: tuple[Check, ...]
    no_data: str = ""  # why there are no checks (figure claims without curves)


@dataclass(frozen=True)
class CheckResult:
    check: Check
    status: str
    estimate: float | None = None
    margin: float | None = None
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    status: str
    checks: tuple[CheckResult, ...]
    in_paper: str  # "holds", "does not hold", or why it cannot be checked on the paper's numbers
    reason: str

    @property
    def cells(self) -> list[str]:
        return sorted({k for c in self.claim.checks for k, _ in c.terms})


def evaluate_check(check: Check, values: dict[str, tuple[float, float]], z: float = 1.96) -> CheckResult:
    """values: cell key -> (value, standard error), both in points."""
    missing = tuple(k for k, _ in check.terms if k not in values)
    if missing:
        return CheckResult(check, MISSING, missing=missing)
    estimate = sum(c * values[k][0] for k, c in check.terms) - check.threshold
    margin = z * math.sqrt(sum((c * values[k][1]) ** 2 for k, c in check.terms))
    signed = estimate if check.op == ">" else -estimate
    status = HOLDS if signed > margin else OPPOSITE if signed < -margin else INCONCLUSIVE
    return CheckResult(check, status, estimate, margin)


def judge(results: list[CheckResult]) -> tuple[str, str]:
    """(status, reason) of a claim from its checks."""
    if not results:
        return NOT_VERIFIED, "no data for it"
    counts = {s: sum(r.status == s for r in results) for s in (HOLDS, OPPOSITE, INCONCLUSIVE, MISSING)}
    if counts[OPPOSITE]:
        return CONTRADICTED, f"{counts[OPPOSITE]} of {len(results)} checks go significantly the other way"
    if counts[HOLDS] == len(results):
        return VERIFIED, f"all {len(results)} checks hold beyond z x SE"
    parts = [f"{counts[MISSING]} lack cells" * bool(counts[MISSING]), f"{counts[INCONCLUSIVE]} within noise" * bool(counts[INCONCLUSIVE])]
    return NOT_VERIFIED, f"{counts[HOLDS]} of {len(results)} checks hold; " + ", ".join(p for p in parts if p)


def evaluate(claim: Claim, ours: dict[str, tuple[float, float]], published: dict[str, tuple[float, float]],
             z: float = 1.96) -> ClaimResult:
    """Judge one claim on our values, and run its checks on the published values (direction only)."""
    results = tuple(evaluate_check(c, ours, z) for c in claim.checks)
    status, reason = judge(list(results))
    if claim.no_data:
        status, reason = NOT_VERIFIED, claim.no_data
    if claim.scope.startswith("fig"):
        in_paper = "stated in the text; the paper gives no numbers"
    else:
        on_paper = [evaluate_check(c, published, 0.0).status for c in claim.checks]
        in_paper = "holds" if on_paper and all(s == HOLDS for s in on_paper) else "does not hold"
    return ClaimResult(claim, status, results, in_paper, reason)


# --- values ------------------------------------------------------------------------------------


def our_values(results: Results) -> dict[str, tuple[float, float]]:
    """Cell and curve keys -> (value, SE) from a results file."""
    out = {c.key: (c.value, binomial_se(c.value, c.n_effective)) for c in results.cells}
    for p in results.curves:
        out[curve_key(p)] = (p.value, binomial_se(p.value, effective_n(p.n)))
    for p in results.fig4:
        out[fig4_key(p)] = (p.value, binomial_se(p.value, effective_n(p.n)))
    return out


def paper_values(paper: Paper) -> dict[str, tuple[float, float]]:
    return {k: (c.value, 0.0) for k, c in paper.cells.items() if c.value is not None}


def curve_key(p: CurvePoint) -> str:
    return f"fig3/{p.run}/{p.task}@{p.examples}"


def fig4_key(p: Fig4Point) -> str:
    return f"fig4/{p.run}/{p.train_format}->{p.test_format}@{p.examples}"


# --- the claims ----------------------------------------------------------------------------------


MAS = ("multiarith", "asdiv", "svamp")
PAIRS = (("flan-t5-xl", "t5-3b"), ("flan-t5-large", "t5-large"), ("flan-t5-base", "t5-base"))  # Table 2, big to small


def _key(table: str):
    return lambda row, column: cell_key(table, row, column)


def _diff(label: str, a: str, b: str, op: str = ">") -> Check:
    return Check(label, ((a, 1.0), (b, -1.0)), op)


def _bound(label: str, key: str, op: str, threshold: float) -> Check:
    return Check(label, ((key, 1.0),), op, threshold)


def _table1_claims(paper: Paper) -> list[Claim]:
    t1 = _key("table1")
    spec = {m: f"{m} specialized" for m in FLAN}
    magister, shridhar = (paper.value("table1", r, "gsm8k") for r in ("magister22-t5-11b", "shridhar22-gpt-6b"))
    lamda = sum(paper.value("table1", "lamda-137b", c) for c in ("gsm8k", *MAS)) / 4
    xl = t1(spec["flan-t5-xl"], "gsm8k")
    return [
        Claim("t1-gsm8k", "Specialization improves GSM8K for every Flan-T5 size.", "Sec. 4.1, Table 1", "table1",
              tuple(_diff(f"{m}: specialized > before, GSM8K", t1(spec[m], "gsm8k"), t1(m, "gsm8k")) for m in FLAN)),
        Claim("t1-mas", "Specialization improves out-of-distribution math (the mean of MultiArith, ASDiv and SVAMP) "
              "for every Flan-T5 size.", "Sec. 4.1, Table 1 caption", "table1",
              tuple(Check(f"{m}: specialized > before, M-A-S mean",
                          tuple((t1(spec[m], s), 1 / 3) for s in MAS) + tuple((t1(m, s), -1 / 3) for s in MAS)) for m in FLAN)),
        Claim("t1-bbh-ao", "Specialization costs BBH answer-only accuracy for every Flan-T5 size.", "Sec. 4.1, Table 1 caption",
              "table1", tuple(_diff(f"{m}: specialized < before, BBH AO", t1(spec[m], "bbh_ao"), t1(m, "bbh_ao"), "<") for m in FLAN)),
        Claim("t1-bbh-cot", f"Specialized models lose all BBH chain-of-thought ability (read as: below {LOST:g} %).",
              "Sec. 4.1, Table 1 caption", "table1",
              tuple(_bound(f"{spec[m]}: BBH CoT < {LOST:g}", t1(spec[m], "bbh_cot"), "<", LOST) for m in FLAN)),
        Claim("t1-scaling", "Specialized GSM8K accuracy increases with model size (Base < Large < XL < XXL).", "Sec. 4.2, Sec. 5",
              "table1", tuple(_diff(f"{big} > {small}, specialized GSM8K", t1(spec[big], "gsm8k"), t1(spec[small], "gsm8k"))
                              for big, small in zip(FLAN, FLAN[1:]))),
        Claim("t1-concurrent", f"The specialized 3B model beats the concurrent 11B and 6B distillation models on GSM8K test "
              f"({magister} and {shridhar}).", "Sec. 4.1", "table1",
              (_bound(f"flan-t5-xl specialized GSM8K > {magister} (Magister22, T5 11B)", xl, ">", magister),
               _bound(f"flan-t5-xl specialized GSM8K > {shridhar} (Shridhar22, GPT 6B)", xl, ">", shridhar))),
        Claim("t1-lamda", f"Specialized Flan-T5-XXL's mean over the four math sets (40.8) exceeds LaMDA 137B's ({lamda:.1f}).",
              "Sec. 4.1", "table1",
              (Check(f"flan-t5-xxl specialized: mean(GSM8K, MultiArith, ASDiv, SVAMP) > {lamda:.2f} (LaMDA 137B)",
                     tuple((t1(spec["flan-t5-xxl"], c), 0.25) for c in ("gsm8k", *MAS)), ">", lamda),)),
    ]


def _table2_claims() -> list[Claim]:
    t2 = _key("table2")
    families = ([f for f, _ in PAIRS], [t for _, t in PAIRS])
    return [
        Claim("t2-flan-better", "After specialization, instruction-tuned Flan-T5 beats raw T5 at every size.",
              "Sec. 4.2, Table 2 caption", "table2", tuple(_diff(f"{f} > {t}, after", t2(f, "after"), t2(t, "after")) for f, t in PAIRS)),
        Claim("t2-t5-gains-more", "Raw T5 gains more from specialization than Flan-T5 (\"specialized Flan T5 performs better "
              "but specialized T5 achieves more accuracy gain\").", "Sec. 1", "table2",
              tuple(Check(f"gain {t} > gain {f}", ((t2(t, "after"), 1.0), (t2(t, "before"), -1.0),
                                                   (t2(f, "after"), -1.0), (t2(f, "before"), 1.0))) for f, t in PAIRS)),
        Claim("t2-lifts", "Specialization lifts GSM8K dev accuracy of both T5 and Flan-T5 at every size.", "Sec. 4.2, Fig. 2",
              "table2", tuple(_diff(f"{m}: after > before", t2(m, "after"), t2(m, "before")) for pair in PAIRS for m in pair)),
        Claim("t2-scaling", "After specialization, GSM8K dev accuracy increases with model size in both families "
              "(log-linear curves).", "Sec. 4.2, Fig. 2", "table2",
              tuple(_diff(f"{big} > {small}, after", t2(big, "after"), t2(small, "after"))
                    for family in families for big, small in zip(family, family[1:]))),
    ]


def _table3_claims() -> list[Claim]:
    t3 = _key("table3")
    checks = []
    for m in FLAN[1:]:
        gsm, mas = f"{m} gsm8k-dev", f"{m} mas-dev"
        checks.append(_diff(f"{m}: GSM8K-dev selection > M-A-S-dev selection, in-distribution", t3(gsm, "in_dist"), t3(mas, "in_dist")))
        checks.append(_diff(f"{m}: M-A-S-dev selection > GSM8K-dev selection, out-of-distribution",
                            t3(mas, "out_of_dist"), t3(gsm, "out_of_dist")))
    return [Claim("t3-tradeoff", "Selecting on GSM8K dev gives the better in-distribution accuracy, selecting on M-A-S dev "
                  "the better out-of-distribution accuracy.", "Sec. 4.3, Table 3", "table3", tuple(checks))]


def table_claims(paper: Paper) -> list[Claim]:
    """The claims of Sec. 1 and 4.1-4.3 that Tables 1-3 carry, with the cells behind each."""
    return _table1_claims(paper) + _table2_claims() + _table3_claims()


def _fig3_checks(results: Results) -> tuple[list[Check], list[Check], list[Check]]:
    """Per training run: BBH CoT at the first checkpoint, BBH AO first checkpoint vs before, math last vs first."""
    runs: dict[str, dict[str, list[CurvePoint]]] = {}
    for p in results.curves:
        runs.setdefault(p.run, {}).setdefault(p.task, []).append(p)
    cot, ao, math_up = [], [], []
    for run, tasks in sorted(runs.items()):
        series = {t: sorted(points, key=lambda p: p.examples) for t, points in tasks.items()}
        trained = {t: [p for p in s if p.examples > 0] for t, s in series.items()}
        if trained.get("bbh_cot"):
            first = trained["bbh_cot"][0]
            cot.append(_bound(f"{run}: BBH CoT at {first.examples:,} examples < {LOST:g}", curve_key(first), "<", LOST))
        before = [p for p in series.get("bbh_ao", []) if p.examples == 0]
        if before and trained.get("bbh_ao"):
            first = trained["bbh_ao"][0]
            ao.append(_diff(f"{run}: BBH AO at {first.examples:,} examples < before", curve_key(first), curve_key(before[0]), "<"))
        for task in ("gsm8k", "mas"):
            s = series.get(task, [])
            if len(s) >= 2:
                label = f"{run}: {NAMES[task]} at {s[-1].examples:,} > at {s[0].examples:,} examples"
                math_up.append(_diff(label, curve_key(s[-1]), curve_key(s[0])))
    return cot, ao, math_up


def _fig4_checks(results: Results) -> tuple[list[Check], list[Check]]:
    """Per run: last vs first checkpoint in each test mode; a zero-shot-trained run tested in-context
    must end below its earlier peak instead."""
    runs: dict[tuple[str, str], dict[str, list[Fig4Point]]] = {}
    for p in results.fig4:
        runs.setdefault((p.run, p.train_format), {}).setdefault(p.test_format, []).append(p)
    in_context, zero_shot = [], []
    for (run, train), tests in sorted(runs.items()):
        for test, points in sorted(tests.items()):
            s = sorted(points, key=lambda p: p.examples)
            if len(s) < 2:
                continue
            target = in_context if train == "in_context" else zero_shot
            if train == "zero_shot" and test == "in_context":
                peak = max(s[:-1], key=lambda p: p.value)
                label = f"{run} (trained zero_shot): in_context test at {s[-1].examples:,} < its peak at {peak.examples:,}"
                target.append(_diff(label, fig4_key(s[-1]), fig4_key(peak), "<"))
            else:
                label = f"{run} (trained {train}): {test} test at {s[-1].examples:,} > at {s[0].examples:,}"
                target.append(_diff(label, fig4_key(s[-1]), fig4_key(s[0])))
    return in_context, zero_shot


def figure_claims(results: Results) -> list[Claim]:
    """Fig. 3 and Fig. 4 claims, with one check per training run found in the results."""
    cot, ao, math_up = _fig3_checks(results)
    in_context, zero_shot = _fig4_checks(results)
    none3, none4 = "the results hold no Fig. 3 curves for it", "the results hold no Fig. 4 runs for it"
    specs = [
        ("f3-bbh-cot", "At the first checkpoint the model loses all BBH CoT ability.", "Sec. 4.3, Fig. 3", cot),
        ("f3-bbh-ao", "At the first checkpoint BBH AO accuracy drops (from about 30 to about 10).", "Sec. 4.3, Fig. 3", ao),
        ("f3-math", "In-distribution (GSM8K) and out-of-distribution (M-A-S) accuracy increase during specialization.",
         "Sec. 4.3, Fig. 3", math_up),
        ("f4-in-context", "Training on in-context data induces both in-context and zero-shot ability.", "Sec. 4.4, Fig. 4A",
         in_context),
        ("f4-zero-shot", "Training on zero-shot data raises zero-shot ability but loses in-context ability.", "Sec. 4.4, Fig. 4B",
         zero_shot),
    ]
    claims = []
    for cid, text, where, checks in specs:
        scope = "fig3" if cid.startswith("f3") else "fig4"
        claims.append(Claim(cid, text, where, scope, tuple(checks), "" if checks else none3 if scope == "fig3" else none4))
    return claims


def claims_for(paper: Paper, results: Results) -> list[Claim]:
    """The report's table's claims, plus figure claims where the results hold figure data (all of
    them for a `figures` report)."""
    chosen = [c for c in table_claims(paper) if c.scope == results.table]
    figures = figure_claims(results)
    if results.table == "figures":
        return figures
    return chosen + [c for c in figures if not c.no_data]


def evaluate_all(paper: Paper, results: Results, z: float = 1.96) -> list[ClaimResult]:
    ours, published = our_values(results), paper_values(paper)
    return [evaluate(c, ours, published, z) for c in claims_for(paper, results)]
