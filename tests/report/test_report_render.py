"""Rendered reports: the files, the sections, self-containment, and missing data handled."""

from __future__ import annotations

import base64
import json
import re

import pytest
from conftest import results_dict

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
