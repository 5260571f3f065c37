"""Rendered reports: the files, the sections, self-containment, and missing data handled."""

from __future__ import annotations

import base64
import json
import re

import pytest
from conftest import results_dict, schema2

from harness.report import render_report
from harness.report.results import parse_results
from harness.report.render import report_title

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def paper_report(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("paper")
    data = results_dict("table1", shift=0.5)
    data["cells"] += results_dict("table2", shift=1.0, with_figures=False)["cells"]  # Fig. 2 draws Table 2 cells
    data["notes"] = ["a note from the orchestrator"]
    path = tmp / "results.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    written = render_report(path, tmp / "out", data_root=data_dir)
    return tmp / "out", written


@pytest.fixture(scope="module")
def cpu_report(tmp_path_factory):
    """A bare cpu-profile results file: two cells, no curves, no provenance, no teacher data."""
    tmp = tmp_path_factory.mktemp("cpu")
    cells = [c for c in results_dict("table1", profile="cpu", shift=-3.0, n=5, with_figures=False)["cells"]
             if c["row"] in ("flan-t5-base", "flan-t5-base specialized") and c["column"] == "gsm8k"]
    for cell in cells:
        cell["protocol"]["limit"] = 5
    path = tmp / "results.json"
    path.write_text(json.dumps({"schema": 1, "table": "table1", "profile": "cpu", "cells": cells}), encoding="utf-8")
    written = render_report(path, tmp / "out", data_root=tmp / "no-data")
    return tmp / "out", written


def test_files_written(paper_report):
    out, written = paper_report
    assert sorted(p.name for p in written) == ["fig2.png", "fig3.png", "fig4.png", "table1.comparison.json", "table1.html", "table1.md"]
    assert all(p.parent == out and p.stat().st_size > 0 for p in written)
    assert all((out / f"fig{i}.png").read_bytes().startswith(PNG) for i in (2, 3, 4))


def test_markdown_sections_and_teacher_row(paper_report):
    out, _ = paper_report
    md = (out / "table1.md").read_text(encoding="utf-8")
    assert md.startswith("# Table 1 of Fu et al. (ICML 2023): reproduction report, paper profile\n")
    for heading in ("## Table 1: ours (paper)", "## Cells: value, delta, tolerance, verdict, protocol", "### Protocols",
                    "## Teacher row: code-davinci-002 from recorded generations", "## Claims", "## Figures",
                    "## Provenance", "### lm-eval tasks", "### Data checksums", "## What could not be verified"):
        assert heading in md, heading
    assert "| code-davinci-002 | bbh_ao | 56.61 |" in md and "| code-davinci-002 | bbh_cot | 73.93 |" in md
    assert "| bbh_ao | `code-davinci-002-direct` | 6,511 | 56.61 | 56.6 | 58.20 |" in md
    assert "| bbh_cot | `code-davinci-002-cot` | 6,511 | 73.93 | 73.9 | 76.61 |" in md
    assert "| flan-t5-xl specialized | gsm8k | 22.90 | 1,319 | 22.4 | +0.50 | ±2.30 | ✔ pass |" in md
    assert "a note from the orchestrator" in md and "sha256:" + "ef" * 32 in md
    assert "Quoted by the paper from other work" in md and "PIPELINE CHECK" not in md
    for name in ("fig2.png", "fig3.png", "fig4.png"):
        assert f"]({name})" in md


def test_comparison_json(paper_report):
    out, _ = paper_report
    data = json.loads((out / "table1.comparison.json").read_text(encoding="utf-8"))
    cells = {c["key"]: c for c in data["cells"]}
    assert cells["table1/flan-t5-xl specialized/gsm8k"]["verdict"] == "pass"
    assert cells["table1/code-davinci-002/bbh_cot"]["ours"] == pytest.approx(73.9281)
    assert cells["table1/lamda-137b/gsm8k"]["verdict"] == "quoted, not reproducible"
    claims = {c["id"]: c for c in data["claims"]}
    assert claims["t1-gsm8k"]["status"] == "verified" and "f4-zero-shot" in claims
    assert [t["column"] for t in data["teacher_row"]] == ["bbh_ao", "bbh_cot"]


def test_html_is_self_contained(paper_report):
    out, _ = paper_report
    page = (out / "table1.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not re.search(r"<(script|link|iframe)\b", page)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", page), "every src/href must be an inline data URI"
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3 and all(base64.b64decode(i).startswith(PNG) for i in images)
    md = (out / "table1.md").read_text(encoding="utf-8")
    assert page.count("<table>") == md.count("\n|---|") >= 8
    assert "<code>gsm8k_cot_spec</code>" in page and "&lt;/s&gt;" in page  # code spans and escaping


def test_cpu_report_says_pipeline_check_and_lists_what_is_missing(cpu_report):
    out, written = cpu_report
    md = (out / "table1.md").read_text(encoding="utf-8")
    title = md.splitlines()[0]
    assert "PIPELINE CHECK, not results" in title and "cpu profile" in title
    assert "<title>Table 1 of Fu et al. (ICML 2023): PIPELINE CHECK" in (out / "table1.html").read_text(encoding="utf-8")
    unverifiable = md[md.index("## What could not be verified"):]
    assert "Everything: this is the cpu profile" in unverifiable
    assert "Not in the results: flan-t5-xxl (gsm8k, multiarith, asdiv, svamp, bbh_ao, bbh_cot)." in unverifiable
    assert "Teacher row not recomputed:" in unverifiable and "data download" in unverifiable
    assert "Protocol differs for table1/flan-t5-base/gsm8k: limit: only 5 items per task were evaluated." in unverifiable
    assert "Fig. 3: no data in the results" in unverifiable and "Fig. 4: no data in the results" in unverifiable
    assert "Provenance not given in the results file: git_commit, packages, device, data_sha256, tasks, container." in unverifiable
    assert "## Teacher row" not in md
    assert all(p.stat().st_size > 0 for p in written)  # figures without data still render (they say so)


def test_cpu_title_cannot_hide_the_pipeline_check():
    results = parse_results({"schema": 1, "table": "table2", "profile": "cpu", "title": "Table 2 reproduced"})
    assert report_title(results) == "Table 2 reproduced: PIPELINE CHECK, not results (cpu profile)"
    paper = parse_results({"schema": 1, "table": "table2", "profile": "paper"})
    assert report_title(paper) == "Table 2 of Fu et al. (ICML 2023): reproduction report, paper profile"


def test_figures_only_report(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({**results_dict("figures"), "table": "figures"}), encoding="utf-8")
    written = render_report(path, tmp_path / "out", teacher=False)
    md = (tmp_path / "out" / "figures.md").read_text(encoding="utf-8")
    assert {p.name for p in written} >= {"figures.md", "figures.html"}
    assert "## Cells" not in md and "## Claims" in md and "f3-math" in md


def test_report_stage_imports_neither_torch_nor_lm_eval():
    # The report stage reads files only (style anchors §6); checked in a fresh interpreter because
    # the test session itself has torch loaded.
    import subprocess
    import sys

    code = ("import sys, harness.report.cli, harness.report.render, harness.report.provenance; "
            "print(sorted(m for m in ('torch', 'transformers', 'lm_eval') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_table3_report(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results_dict("table3", shift=0.0, with_figures=False)), encoding="utf-8")
    render_report(path, tmp_path / "out", teacher=False)
    md = (tmp_path / "out" / "table3.md").read_text(encoding="utf-8")
    assert "| flan-t5-xl mas-dev | out_of_dist | 35.00 |" in md and "t3-tradeoff" in md
    assert "`select_mas_out`" in md and "## Teacher row" not in md


# --- schema 2: selection, setup, clean values, rows not run, teacher data, Fig. 3 ----------------

XXL = "flan-t5-xxl specialized"
WHY = "Flan-T5-XXL needs 8 GPUs of 80 GB; this node has 1"


def schema2_results() -> dict:
    data = schema2(results_dict("table1", shift=0.5))
    data["cells"] = [c for c in data["cells"] if c["row"] != XXL]
    data["not_run"] = [{"table": "table1", "row": XXL, "stage": "plan", "reason": WHY},
                       {"table": "fig3", "row": "flan-t5-base", "stage": "train", "reason": "given with --checkpoint: no training run"}]
    return data


@pytest.fixture(scope="module")
def schema2_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schema2")
    path = tmp / "results.json"
    path.write_text(json.dumps(schema2_results()), encoding="utf-8")
    written = render_report(path, tmp / "out", teacher=False)
    return tmp / "out", written


def _grid_row(md: str, row: str) -> list[str]:
    line = next(l for l in md.splitlines() if l.startswith(f"| {row} ") and l.count("|") == 8)
    return [x.strip() for x in line.strip("|").split("|")]


def test_every_cell_shows_its_selection_and_the_settings_that_differ(schema2_report):
    out, _ = schema2_report
    md = (out / "table1.md").read_text(encoding="utf-8")
    xl = _grid_row(md, "flan-t5-xl specialized")
    assert xl[1] == "22.9 (22.4) ✔ [a]" and xl[3] == "28.9 (28.4) ✔ · clean 27.9 [a]"
    assert ("- [a] selected: best on M-A-S dev of 13 evaluated checkpoints (`iter_60000`); bf16 (the authors: fp32); "
            "accelerate launch: 8 processes, fsdp (the authors: python, 1 process); teacher data `authors`: code-davinci-002, "
            "the authors' released pickles") in md
    assert _grid_row(md, "flan-t5-xl")[1] == "14.0 (13.5) ✔"  # base model, fp32, one process: nothing to mark
    assert "| flan-t5-xl specialized | asdiv | 28.90 | 2,305 | 28.4 | +0.50 | ±1.89 | ✔ pass | 27.90 (n 2,005) |" in md
    assert "| [a] | runs/eval/flan-t5-xl-specialized/asdiv |" in md
    unverifiable = md[md.index("## What could not be verified"):]
    assert ("Setup differs from the paper's, precision bf16 (the authors: fp32): flan-t5-xl specialized (all columns); "
            "flan-t5-large specialized (all columns); flan-t5-base specialized (all columns).") in unverifiable
    assert "Schema-1 results file" not in md and "not recorded:" not in unverifiable.lower()


def test_rows_not_run_are_marked_with_the_reason_and_not_judged(schema2_report):
    out, _ = schema2_report
    md = (out / "table1.md").read_text(encoding="utf-8")
    xxl = _grid_row(md, f"{XXL} — not run (plan): {WHY}")
    assert xxl[1:] == ["not run (27.1)", "not run (63.0)", "not run (37.6)", "not run (35.6)", "not run (19.6)", "not run (0.0)"]
    assert f"Not run: {XXL} (gsm8k, multiarith, asdiv, svamp, bbh_ao, bbh_cot), stage plan: {WHY}" in md
    assert f"missing `table1/{XXL}/gsm8k` (row not run, plan: {WHY})" in md
    data = json.loads((out / "table1.comparison.json").read_text(encoding="utf-8"))
    cells = {c["key"]: c for c in data["cells"]}
    assert cells[f"table1/{XXL}/gsm8k"]["verdict"] == "not run" and cells[f"table1/{XXL}/gsm8k"]["not_run"] == f"plan: {WHY}"
    assert cells["table1/flan-t5-xl specialized/asdiv"]["selection"]["candidates"] == 13
    assert cells["table1/flan-t5-xl specialized/asdiv"]["clean"] == {"value": 27.9, "n": [2005]}
    assert data["schema"] == 2 and data["not_run"][0]["reason"] == WHY
    claims = {c["id"]: c for c in data["claims"]}
    # the XXL checks are missing: the claims hold for the sizes that ran, and are neither passed nor contradicted
    assert claims["t1-gsm8k"]["status"] == "not verified" and claims["t1-gsm8k"]["reason"] == "3 of 4 checks hold; 1 lack cells"
    assert claims["t1-lamda"]["status"] == "not verified"


def test_teacher_data_section(schema2_report):
    out, _ = schema2_report
    md = (out / "table1.md").read_text(encoding="utf-8")
    section = md[md.index("## Teacher data"):md.index("## Claims")]
    assert "| kind | `authors-pickles`: the authors' released training pickles" in section
    assert "| in_context_chain_of_thought.pkl | 1,000 | `" + "a1" * 32 + "` | 120 |" in section
    assert "| used by | 18 cells |" in section and "| used by | no cell of this table |" in section
    assert "| model | Qwen/Qwen2.5-7B-Instruct |" in section and "| content checksum (its manifest) | `fedcba9876543210` |" in section
    assert "first_sample_accuracy: corrected 81.00 %, faithful 80.00 %" in section and "| pipeline setting | `corrected` |" in section


def test_fig3_has_the_papers_panels_and_names_what_is_missing(schema2_report):
    out, written = schema2_report
    md = (out / "table1.md").read_text(encoding="utf-8")
    assert "fig3.png" in {p.name for p in written} and "fig2.png" not in {p.name for p in written}
    assert "*Fig. 3: A1: dev accuracy over training examples, one panel per model" in md and "B: training loss" in md
    figures = md[md.index("## Figures"):md.index("## Provenance")]
    assert "Fig. 2: no data in the results (no Table 2 cells); not drawn." in figures
    assert "Fig. 3 A: Curves missing for flan-t5-base: given with --checkpoint: no training run." in figures
    assert "Fig. 3 B" not in figures  # the losses are there
    assert "Fig. 3 B (\"distribution matching gives faster and lower loss convergence\"): drawn, not judged" in md
    page = (out / "table1.html").read_text(encoding="utf-8")
    assert page.count("<img ") == 2  # Figs. 3 and 4: no empty figure


def _render(tmp_path, data: dict) -> tuple[str, list]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    written = render_report(path, tmp_path / "out", teacher=False)
    return (tmp_path / "out" / f"{data['table']}.md").read_text(encoding="utf-8"), written


def test_fig3_panels_drawn_from_what_there_is(tmp_path):
    data = schema2(results_dict("table1"))
    data["curves"] = [p for p in data["curves"] if p["task"] in ("gsm8k", "mas")]  # checkpoint evaluations without a BBH slice
    md, written = _render(tmp_path / "a", data)
    assert "Fig. 3 A1 (flan-t5-xl): no BBH AO, BBH CoT curve in the results." in md
    data["curves"] = []
    md, written = _render(tmp_path / "b", data)
    assert "fig3.png" in {p.name for p in written} and "Fig. 3 A: no checkpoint curves in the results; only panel B is drawn." in md
    assert "*Fig. 3: B: training loss" in md
    data["losses"] = []
    md, written = _render(tmp_path / "c", data)
    assert "fig3.png" not in {p.name for p in written}
    assert "Fig. 3: no data in the results (no checkpoint curves, no training losses); not drawn." in md


def test_a_report_without_figure_data_draws_no_figure(cpu_report):
    out, written = cpu_report
    md = (out / "table1.md").read_text(encoding="utf-8")
    assert not [p for p in written if p.suffix == ".png"] and "![" not in md
    assert "<img" not in (out / "table1.html").read_text(encoding="utf-8")
    figures = md[md.index("## Figures"):md.index("## Provenance")]
    assert "Fig. 3: no data in the results (no checkpoint curves, no training losses); not drawn." in figures
    assert "Fig. 4: no data in the results" in figures and "Fig. 2: no data in the results" in figures


def test_a_pipeline_check_teacher_behind_paper_cells_is_flagged(tmp_path):
    data = schema2(results_dict("table1"))
    data["provenance"]["teacher_data"]["authors"] = {"kind": "pipeline-check", "model": "default-gpt2-random", "tokenizer": None,
                                                     "setting": "faithful", "sampling": {"n": 2}}
    md, _ = _render(tmp_path, data)
    assert md.split("\n")[2].startswith("> PIPELINE-CHECK TEACHER: the training data `authors` came from a teacher with random")
    assert "> `authors` is a pipeline-check teacher: cells trained on it are not results." in md


def test_what_a_schema_file_leaves_unrecorded(tmp_path):
    md, _ = _render(tmp_path / "one", results_dict("table1", with_figures=False))
    assert "Schema-1 results file: it records no checkpoint selection, precision, launcher, teacher data" in md
    assert "## Teacher data" in md and "Not recorded: this schema-1 results file does not record it." in md
    data = schema2(results_dict("table1", with_figures=False))
    for cell in data["cells"]:
        for key in ("selection", "teacher", "precision", "launcher", "clean"):
            cell.pop(key, None)
    data["provenance"].pop("teacher_data")
    md, _ = _render(tmp_path / "two", data)
    unverifiable = md[md.index("## What could not be verified"):]
    for label in ("Checkpoint selection not recorded", "Teacher data not recorded", "Precision not recorded", "Launcher not recorded"):
        assert f"{label}: " in unverifiable, label
    assert "No test-minus-dev (clean) value: flan-t5-xxl (asdiv, svamp);" in unverifiable
    assert "Not recorded: the results file names no teacher data (provenance.teacher_data)." in md
