"""`render_report(results, out_dir)`: one table's comparison report in Markdown and HTML.

Writes `<table>.md` (figures as PNG files beside it), `<table>.html` (self-contained) and
`<table>.comparison.json` (the verdicts, for CI to diff) into `out_dir`, usually
`reports/<table>/<profile>/`. Sections: the cells against the paper with tolerance and verdict
(each with its checkpoint selection and every setting that differs from the paper's; rows that
did not run, with the reason), the teacher row (Table 1), the teacher data, the claims, the
figures that have data, provenance, and what could not be verified.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

from harness.errors import DataError
from harness.manifest import git_commit, package_versions
from harness.records import atomic_write
from harness.report.cell_setup import CellSetup, cell_setup, trained
from harness.report.claims import CONTRADICTED, VERIFIED, ClaimResult, evaluate_all
from harness.report.compare import FAIL, NOT_RUN, PASS, QUOTED, CellComparison, compare, tolerance_for
from harness.report.document import Block, Bullets, Heading, Image, Para, Table, to_html, to_markdown
from harness.report.figures import figures as draw_figures
from harness.report.paper import PAPER_PATH, TABLE_COLUMNS, TABLE_ROWS, Paper, cell_key, load_paper
from harness.report.provenance import missing_fields
from harness.report.results import CLEAN_CELLS, FIGURE_TABLES, Results, load_results
from harness.report.teacher_data import teacher_data_section
from harness.report.teacher_row import ROW as TEACHER, WHY, TeacherColumn, teacher_row

NAMES = {"table1": "Table 1", "table2": "Table 2", "table3": "Table 3", "figures": "Figures 2-4", "fig3": "Fig. 3", "fig4": "Fig. 4"}
MARK = {PASS: "✔ pass", FAIL: "✘ FAIL"}
CLAIM_MARK = {VERIFIED: "✔ verified", CONTRADICTED: "✘ contradicted"}
CPU_NOTE = ("PIPELINE CHECK, NOT RESULTS. The cpu profile runs tiny local models on small data slices so that the whole "
            "chain (teacher, align, formats, train, eval, report) is exercised in minutes on a laptop. Its numbers say "
            "nothing about the paper; pass/fail marks and claim verdicts below only show that the comparison runs. "
            "The one exception is Table 1's teacher row, recomputed from recorded generations in every profile.")
REHEARSAL_NOTE = ("PIPELINE CHECK, NOT RESULTS. The rehearsal profile runs the paper profile's own plan on CPU: tiny random "
                  "models stand in under the real hub ids, training goes through the same launcher with 2 CPU processes, and "
                  "sizes and limits are shrunk. It proves the paper path runs; its numbers say nothing about the paper.")
PIPELINE_PROFILES = {"cpu": CPU_NOTE, "rehearsal": REHEARSAL_NOTE}  # profiles whose numbers are pipeline checks


def report_title(results: Results) -> str:
    """CPU-profile titles say they are pipeline checks, whatever title the results file asks for."""
    if results.profile in PIPELINE_PROFILES:
        base = results.title or f"{NAMES[results.table]} of Fu et al. (ICML 2023)"
        return base if "pipeline check" in base.lower() else f"{base}: PIPELINE CHECK, not results ({results.profile} profile)"
    return results.title or f"{NAMES[results.table]} of Fu et al. (ICML 2023): reproduction report, {results.profile} profile"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None) -> str:
    return "" if value is None else f"{value:+.2f}"


def _n(comp: CellComparison) -> str:
    if comp.ours is None:
        return ""
    n = comp.ours.n
    return f"{n[0]:,}" if len(n) == 1 else f"{sum(n):,} ({len(n)} parts, n_eff {comp.ours.n_effective:,.0f})"


def _printed(value: float | None) -> str:
    """A published value as the paper prints it (13.0, 0.73), '-' for none."""
    return "-" if value is None else repr(value)


def _protocol(comp: CellComparison) -> str:
    """Our protocol in brief (task, rule, aggregate); the Protocols table has the rest."""
    p = comp.ours.protocol if comp.ours is not None else comp.paper.protocol
    if p is None:
        return ""
    parts = [f"`{p.task}`" if p.task else "recorded generations", f"rule `{p.rule}`" if p.rule else ""]
    parts += [f"`{p.aggregate}`"] if p.aggregate else []
    parts += [f"selected on `{p.selection}`"] if p.selection else []
    parts += [f"limit {p.limit}"] if getattr(p, "limit", None) else []
    text = ", ".join(x for x in parts if x)
    if comp.paper.protocol is not None and not comp.paper.protocol.quoted:
        text += f" (paper: `{comp.paper.protocol.id}`)"
    return text + (" ⚠ differs from the paper's" if comp.protocol_differences else "")


def protocols_section(comps: list[CellComparison]) -> list[Block]:
    """Each paper protocol behind the compared cells once: split, prompt and the evidence."""
    seen: dict[str, object] = {}
    for c in comps:
        p = c.paper.protocol
        if p is not None and not p.quoted and (c.ours is not None or c.verdict == NOT_RUN):
            seen.setdefault(p.id, p)
    rows = [[f"`{p.id}`", f"`{p.task}`" if p.task else "none (recorded generations)", p.split, p.prompt, f"`{p.rule}`",
             p.aggregate or "", p.evidence] for p in seen.values()]
    return [Heading("Protocols", 3), Para("The paper's protocol for each cell (reports/paper/fu2023.json; docs/protocol.md)."),
            Table(["protocol", "task", "split", "prompt", "rule", "aggregate", "evidence"], rows)] if rows else []


def _letters(i: int) -> str:
    """a, b, …, z, aa, ab, …: the marks that tie grid cells to their setup."""
    return _letters(i // 26 - 1) + chr(97 + i % 26) if i >= 26 else chr(97 + i)


def setups(paper: Paper, results: Results, comps: list[CellComparison]) -> dict[str, CellSetup]:
    """Cell key -> its setup phrases, for every measured cell."""
    return {c.key: cell_setup(c.ours, c.paper, results.teacher_data) for c in comps if c.ours is not None}


def _clean(comp: CellComparison) -> str:
    clean = comp.ours.clean if comp.ours is not None else None
    if clean is None:
        return ""
    return f"{clean.value:.2f} (n {sum(clean.n):,})"


def cells_section(paper: Paper, results: Results, comps: list[CellComparison], setup: dict[str, CellSetup]) -> list[Block]:
    table = results.table
    marks: dict[str, str] = {}
    for c in comps:
        text = setup[c.key].text if c.key in setup else ""
        if text and text not in marks:
            marks[text] = _letters(len(marks))
    grid = []
    for row in TABLE_ROWS[table]:
        stopped = results.not_run_of(table, row)
        line = [row + "".join(f" — not run ({r.stage}): {r.reason}" for r in stopped)]
        for column in TABLE_COLUMNS[table]:
            c = next(x for x in comps if x.row == row and x.column == column)
            paper_text = _printed(c.paper.value)
            if c.ours is None and stopped:
                line.append(f"not run ({paper_text})")
                continue
            ours = "" if c.ours is None else f"{c.ours.value:.1f} "
            text = f"{ours}({paper_text})" + (" ✔" if c.verdict == PASS else " ✘" if c.verdict == FAIL else "")
            if c.ours is not None and c.ours.clean is not None:
                text += f" · clean {c.ours.clean.value:.1f}"
            mark = marks.get(setup[c.key].text) if c.key in setup else None
            line.append(text + (f" [{mark}]" if mark else ""))
        grid.append(line)
    shown = [c for c in comps if c.ours is not None]  # cells not run are listed under "What could not be verified"
    rows = [[c.row, c.column, _fmt(c.ours.value if c.ours else None), _n(c), _printed(c.paper.value),
             _signed(c.delta), "" if c.tolerance is None else f"±{c.tolerance:.2f}", MARK.get(c.verdict, c.verdict), _clean(c),
             _protocol(c), f"[{marks[setup[c.key].text]}]" if c.key in setup and setup[c.key].text else "",
             c.ours.run if c.ours else ""] for c in shown]
    tol = tolerance_for(results)
    counts = {v: sum(c.verdict == v for c in comps) for v in (PASS, FAIL, NOT_RUN)}
    blocks: list[Block] = [
        Heading(f"{NAMES[table]}: ours (paper)"),
        Para(paper.captions[table], "note"),
        Table(["model", *TABLE_COLUMNS[table]], grid),
    ]
    if marks:
        blocks += [Para("How the marked cells were produced (the mark is also in each cell's `setup` below): the checkpoint selection (rule, among how many evaluated checkpoints) "
                        "and every setting that differs from the paper's setup (the authors ran fp32, one python process per run, "
                        "code-davinci-002 teacher data through their own pipeline)."),
                   Bullets([f"[{mark}] {text}" for text, mark in marks.items()])]
    if any(c.ours is not None and c.ours.clean is not None for c in comps):
        blocks.append(Para("`clean`: the same model scored on the test set minus its 300-item dev split (the items M-A-S dev "
                           "selects on; `--split-mode clean` also drops questions found in GSM8K train or a prompt). The value "
                           "before it scores all items, as the paper did, and is the one compared with the paper."))
    blocks += [
        Heading("Cells: value, delta, tolerance, verdict, protocol"),
        Para(f"{counts[PASS]} pass, {counts[FAIL]} fail, {counts[NOT_RUN]} not run. Values are accuracy in percent; delta = ours - paper. "
             f"Tolerance = max(z x SE, floor) + r with z = {tol.z:g}, floor = {tol.floor:g} points, SE the binomial standard error "
             "of an accuracy equal to the paper's over our n items (n_eff for an unweighted mean of several sets), and r half a unit "
             "of the paper's last printed digit (docs/reports.md). A pass means consistent with the paper within our evaluation's "
             "sampling noise."),
        Table(["model", "column", "ours", "n", "paper", "delta", "tolerance", "Result", "clean: test − dev", "protocol", "setup", "run"], rows,
              [c.verdict if c.verdict in (PASS, FAIL) else "" for c in shown]),
        *protocols_section(comps),
    ]
    return blocks


def teacher_section(columns: list[TeacherColumn], paper: Paper) -> list[Block]:
    rows, why = [], []
    for c in columns:
        published = paper.value("table1", TEACHER, c.column)
        rows.append([c.column, f"`{c.folder.name}`", f"{c.items:,}", f"{c.mean_23['bbh']:.2f}", f"{published:g}",
                     f"{c.mean_23['faithful']:.2f}", f"{c.mean_27['bbh']:.2f} / {c.mean_27['faithful']:.2f}",
                     f"{c.faithful_only} / {c.bbh_only}"])
        why += [[c.column, d.group, str(d.faithful_only), d.example_target, d.example_prediction] for d in c.disagreements[:4]]
    return [
        Heading("Teacher row: code-davinci-002 from recorded generations"),
        Para("Fu et al. copied the teacher's BBH cells from the BBH paper. Here they are recomputed from the BBH authors' "
             "recorded generations (data directory, `bbh/code-davinci-002-outputs/`) with the BBH paper's rule `bbh` and, "
             "side by side, with Fu et al.'s rule `faithful`. Means over the 23 task groups (the logical_deduction and "
             "tracking_shuffled_objects subtasks pooled), as in the BBH paper."),
        Table(["column", "generations", "items", "`bbh` mean_23", "paper", "`faithful` mean_23", "mean_27 bbh / faithful",
               "items only faithful / only bbh credits"], rows),
        Para("Why the rules differ: " + WHY),
        Table(["column", "group", "items only faithful credits", "target", "end of one such generation"], why),
    ]


def not_run_keys(results: Results) -> dict[str, str]:
    """Cell key -> why its row did not run, for every column of each row in `not_run`."""
    out = {}
    for r in results.not_run:
        if r.table not in FIGURE_TABLES:
            for column in TABLE_COLUMNS[r.table]:
                out.setdefault(cell_key(r.table, r.row, column), f"{r.stage}: {r.reason}")
    return out


def claims_section(results: Results, claims: list[ClaimResult]) -> list[Block]:
    if not claims:
        return []
    stopped = not_run_keys(results)
    rows = [[CLAIM_MARK.get(r.status, r.status), r.claim.text, r.claim.where, r.in_paper, r.reason] for r in claims]
    details = []
    for r in claims:
        checks = [f"{x.status}: {x.check.label}" + (f" (estimate {x.estimate:+.2f}, margin ±{x.margin:.2f})" if x.estimate is not None else "")
                  + (f"; missing {', '.join(f'`{k}`' for k in x.missing)}" if x.missing else "")
                  + "".join(f" (row not run, {why})" for why in dict.fromkeys(stopped[k] for k in x.missing if k in stopped))
                  for x in r.checks]
        details.append(f"**{r.claim.id}** ({r.status}): " + ("; ".join(checks) if checks else r.reason)
                       + (f". Cells: {', '.join(f'`{k}`' for k in r.cells)}" if r.cells else ""))
    blocks: list[Block] = [Heading("Claims")]
    if results.profile in PIPELINE_PROFILES:
        blocks.append(Para("Pipeline check: these verdicts come from tiny models and test the claim logic, not the paper.", "warning"))
    blocks += [
        Para("Each claim is a set of checks on our cells; a check holds when our difference is beyond z x its standard error in "
             "the claimed direction, is opposite when beyond it the other way, inconclusive otherwise. Verified: every check holds; "
             "contradicted: some check is opposite; not verified: otherwise. 'In the paper's numbers': the same checks on the "
             "published values (direction only)."),
        Table(["Status", "claim", "where", "in the paper's numbers", "why"], rows, [r.status.replace(" ", "-") for r in claims]),
        Heading("Checks behind each claim", 3),
        Bullets(details),
    ]
    return blocks


def provenance_section(results: Results) -> list[Block]:
    p = results.provenance
    container = p.get("container") or {}
    rows = [["profile", results.profile], ["results file", str(results.path)], ["git commit", str(p.get("git_commit", "not given"))],
            ["container image", str(container.get("image_digest") or ("in a container, digest not given" if container.get("in_container") else "not given"))],
            ["device", str(p.get("device", "not given"))], ["python", str(p.get("python", "not given"))],
            ["created", str(p.get("created", "not given"))], ["data directory", str(p.get("data_dir", "not given"))],
            ["seeds", ", ".join(f"{k}={v}" for k, v in results.seeds.items()) or "not given"]]
    rows += [[k, json.dumps(v) if not isinstance(v, str) else v] for k, v in p.items()
             if k not in ("git_commit", "container", "device", "python", "created", "data_dir", "packages", "data_sha256", "tasks",
                          "teacher_data")]
    blocks: list[Block] = [Heading("Provenance"), Table(["field", "value"], rows)]
    if p.get("packages"):
        blocks += [Heading("Packages", 3), Table(["package", "version"], [[k, str(v)] for k, v in sorted(p["packages"].items())])]
    if p.get("tasks"):
        task_rows = [[name, str(t.get("version", "")), str(t.get("yaml", "missing")), str(t.get("sha256", ""))[:16],
                      f"{t.get('include', '')} {str(t.get('include_sha256', ''))[:16]}".strip()] for name, t in sorted(p["tasks"].items())]
        blocks += [Heading("lm-eval tasks", 3), Table(["task", "version", "YAML", "sha256 (16)", "include sha256 (16)"], task_rows)]
    if p.get("data_sha256"):
        blocks += [Heading("Data checksums", 3), Table(["file", "sha256"], [[k, v] for k, v in sorted(p["data_sha256"].items())])]
    blocks.append(Para(f"Rendered {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} at commit {git_commit()} "
                       f"(lm-eval {package_versions().get('lm-eval')})."))
    return blocks


def _setup_items(results: Results, comps: list[CellComparison], setup: dict[str, CellSetup]) -> list[str]:
    """Settings that differ from the paper's, grouped; what a schema-2 file should record but does not."""
    items = []
    differs: dict[str, list[str]] = {}
    for key, s in setup.items():
        for d in s.differences:
            differs.setdefault(d, []).append(key)
    items += [f"Setup differs from the paper's, {d}: {_cells_by_row(keys)}." for d, keys in differs.items()]
    measured = [c for c in comps if c.ours is not None and c.ours.source == "results"]
    if results.schema < 2:
        if measured:
            items.append("Schema-1 results file: it records no checkpoint selection, precision, launcher, teacher data or "
                         "test-minus-dev values, and no training losses (Fig. 3 B).")
        return items
    checks = (
        ("Checkpoint selection not recorded", lambda c: trained(c.table, c.row, c.column) and c.ours.selection is None),
        ("Number of candidate checkpoints not recorded", lambda c: c.ours.selection is not None and c.ours.selection.rule in ("gsm8k-dev", "mas-dev")
         and c.ours.selection.candidates is None),
        ("Teacher data not recorded", lambda c: trained(c.table, c.row, c.column) and c.ours.teacher is None),
        ("Precision not recorded", lambda c: c.ours.precision is None),
        ("Launcher not recorded", lambda c: c.ours.launcher is None),
        ("No test-minus-dev (clean) value", lambda c: (c.table, c.column) in CLEAN_CELLS and c.ours.clean is None),
    )
    for label, test in checks:
        keys = [c.key for c in measured if test(c)]
        if keys:
            items.append(f"{label}: {_cells_by_row(keys)}.")
    return items


def _cells_by_row(keys: list[str]) -> str:
    """Cell keys as `row (col, col)`, a row whose every column is named as `row (all columns)`."""
    rows: dict[tuple[str, str], list[str]] = {}
    for key in keys:
        table, row, column = key.split("/")
        rows.setdefault((table, row), []).append(column)
    return "; ".join(f"{row} ({'all columns' if len(cols) == len(TABLE_COLUMNS[table]) else ', '.join(cols)})"
                     for (table, row), cols in rows.items())


def unverifiable_section(paper: Paper, results: Results, comps: list[CellComparison], claims: list[ClaimResult],
                         figures_missing: list[str], teacher_error: str | None, setup: dict[str, CellSetup] | None = None) -> list[Block]:
    items = []
    if results.profile in PIPELINE_PROFILES:
        items.append(f"Everything: this is the {results.profile} profile, a pipeline check with tiny models; no number in it bears on the paper.")
    not_run: dict[str, list[str]] = {}
    quoted: dict[str, list[str]] = {}
    for c in comps:
        target = not_run if c.verdict == NOT_RUN else quoted if c.verdict == QUOTED else None
        if target is not None:
            target.setdefault(c.row, []).append(c.column)
    for row, cols in not_run.items():
        stopped = results.not_run_of(results.table, row)
        if stopped:
            items += [f"Not run: {row} ({', '.join(cols)}), stage {r.stage}: {r.reason}" for r in stopped]
        else:
            items.append(f"Not in the results: {row} ({', '.join(cols)}).")
    items += [f"Not run ({NAMES[r.table]}): {r.row}, stage {r.stage}: {r.reason}" for r in results.not_run
              if r.table != results.table and r.table not in FIGURE_TABLES]
    if quoted:
        items.append("Quoted by the paper from other work, reproduced by nothing here: "
                     + "; ".join(f"{row} ({', '.join(cols)})" for row, cols in quoted.items()) + ".")
    items += [f"Protocol differs for {c.key}: " + "; ".join(c.protocol_differences) + "." for c in comps if c.protocol_differences]
    items += _setup_items(results, comps, setup or {})
    if teacher_error:
        items.append(f"Teacher row not recomputed: {teacher_error}")
    seen = set()
    for c in comps:
        p = c.paper.protocol
        if p is not None and p.id not in seen and (c.ours is not None or c.verdict == NOT_RUN):
            seen.add(p.id)
            items += [f"Protocol `{p.id}` caveat: {note}" for note in p.notes]
    items += [f"Claim not verified ({r.claim.id}): {r.reason}." for r in claims if r.status not in (VERIFIED, CONTRADICTED)]
    items += figures_missing
    if results.losses:
        items.append("Fig. 3 B (\"distribution matching gives faster and lower loss convergence\"): drawn, not judged: a training "
                     "loss has no sampling-error model here, and the two losses measure different things (KL to the teacher's "
                     "top-k vs cross-entropy of the teacher's text).")
    items += [f"Fig. {name.removeprefix('fig')}: {s}" for name, f in paper.figures.items() for s in f.get("stated_in_text", [])]
    missing = missing_fields(results.provenance)
    if missing:
        items.append("Provenance not given in the results file: " + ", ".join(missing) + ".")
    return [Heading("What could not be verified"), Bullets(items or ["Nothing: every cell was measured with the paper's protocol."])]


def _warnings(results: Results, comps: list[CellComparison]) -> list[Block]:
    """Loud notes at the top: a results file whose specialized cells come from a pipeline-check teacher."""
    used = {c.ours.teacher for c in comps if c.ours is not None and c.ours.teacher}
    checks = [k for k, t in results.teacher_data.items() if t.kind == "pipeline-check" and (k in used or not comps)]
    if not checks or results.profile in PIPELINE_PROFILES:
        return []
    return [Para(f"PIPELINE-CHECK TEACHER: the training data `{'`, `'.join(checks)}` came from a teacher with random or barely "
                 "trained weights. Specialized cells trained on it are not results, whatever their verdicts say.", "warning")]


def build(paper: Paper, results: Results, teacher: list[TeacherColumn] | None, teacher_error: str | None = None):
    """(title, blocks, figures, comparisons, claims) for one report."""
    if teacher:
        present = {c.key for c in results.cells}
        results = dataclasses.replace(results, cells=results.cells + [c.cell() for c in teacher if c.cell().key not in present])
    comps = compare(paper, results, results.table) if results.table != "figures" else []
    claims = evaluate_all(paper, results, tolerance_for(results).z)
    figures, missing = draw_figures(paper, results)
    setup = setups(paper, results, comps)
    blocks: list[Block] = []
    if results.profile in PIPELINE_PROFILES:
        blocks.append(Para(PIPELINE_PROFILES[results.profile], "warning"))
    blocks += _warnings(results, comps)
    blocks.append(Para(f"Paper: {paper.citation()} Published numbers: `reports/paper/{paper.path.name}`."))
    blocks += [Para(n, "note") for n in results.notes]
    if comps:
        blocks += cells_section(paper, results, comps, setup)
    if teacher and results.table == "table1":
        blocks += teacher_section(teacher, paper)
    blocks += teacher_data_section(results, comps)
    blocks += claims_section(results, claims)
    blocks.append(Heading("Figures"))
    blocks += [Image(f.name, f.caption, f.png) for f in figures]
    if missing:
        blocks += [Para("Not drawn, or drawn in part (a figure shows only what the results hold):"), Bullets(missing)]
    blocks += provenance_section(results)
    blocks += unverifiable_section(paper, results, comps, claims, missing, teacher_error, setup)
    return report_title(results), blocks, figures, comps, claims


def _cell_json(c: CellComparison, stopped: dict[str, str]) -> dict:
    out = {"key": c.key, "row": c.row, "column": c.column, "ours": c.ours.value if c.ours else None,
           "n": list(c.ours.n) if c.ours else None, "paper": c.paper.value, "delta": c.delta, "tolerance": c.tolerance,
           "verdict": c.verdict, "protocol_differences": list(c.protocol_differences)}
    if c.ours is not None:
        o = c.ours
        out.update({"selection": dataclasses.asdict(o.selection) if o.selection else None, "precision": o.precision,
                    "launcher": o.launcher, "teacher": o.teacher,
                    "clean": {"value": o.clean.value, "n": list(o.clean.n)} if o.clean else None})
    elif c.key in stopped:
        out["not_run"] = stopped[c.key]
    return out


def comparison_json(results: Results, comps: list[CellComparison], claims: list[ClaimResult], teacher: list[TeacherColumn] | None) -> dict:
    stopped = not_run_keys(results)
    return {
        "table": results.table, "profile": results.profile, "results": str(results.path), "schema": results.schema,
        "cells": [_cell_json(c, stopped) for c in comps],
        "not_run": [dataclasses.asdict(r) for r in results.not_run],
        "claims": [{"id": r.claim.id, "text": r.claim.text, "status": r.status, "in_paper": r.in_paper, "reason": r.reason,
                    "cells": r.cells} for r in claims],
        "teacher_row": [{"column": t.column, "items": t.items, "mean_23": t.mean_23, "mean_27": t.mean_27} for t in teacher or []],
        "teacher_data": {k: {"kind": t.kind, "model": t.model, "setting": t.setting, "content": t.content}
                         for k, t in results.teacher_data.items()},
    }


def render_report(results_path: str | Path, out_dir: str | Path, paper_path: str | Path = PAPER_PATH,
                  data_root: Path | None = None, teacher: bool = True) -> list[Path]:
    """Render one report; returns the files written. For Table 1 the teacher row is recomputed from
    the recorded generations (data directory: `data_root`, else $SPEC_DATA_DIR) unless the results
    already hold those cells; without the data the report says so instead."""
    paper, results = load_paper(paper_path), load_results(results_path)
    columns, error = None, None
    if teacher and results.table == "table1":
        try:
            columns = teacher_row(data_root)
        except DataError as err:
            error = str(err)
    title, blocks, figures, comps, claims = build(paper, results, columns, error)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = results.table
    written = []
    for f in figures:
        with atomic_write(out / f.name, "wb", encoding=None) as handle:
            handle.write(f.png)
        written.append(out / f.name)
    for name, text in ((f"{stem}.md", to_markdown(title, blocks)), (f"{stem}.html", to_html(title, blocks)),
                       (f"{stem}.comparison.json", json.dumps(comparison_json(results, comps, claims, columns), indent=1) + "\n")):
        with atomic_write(out / name) as handle:
            handle.write(text)
        written.append(out / name)
    return written
