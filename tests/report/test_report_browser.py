"""A rendered report opened in real headless Chromium: its tables are there and its images decode.

A copy of the page gets one probe script that, on load, writes each image's decoded size into
the DOM; `--dump-dom` then returns the DOM as the browser built it. Skips when no Chromium is
installed (CI: `apt-get update && apt-get install -y --no-install-recommends chromium`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from conftest import results_dict, schema2

from harness.report import render_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PROBE = """<script>
window.addEventListener("load", () => {
  const out = {tables: document.querySelectorAll("table").length, images: []};
  for (const img of document.images) out.images.push({w: img.naturalWidth, h: img.naturalHeight, complete: img.complete});
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify(out);
  document.body.appendChild(probe);
});
</script>
"""


def _browser() -> str:
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("headless Chromium is not installed; install it with `apt-get install -y chromium` (Debian) to run the browser check")


def _open(browser: str, page: str, tmp_path) -> tuple[dict, str]:
    """What headless Chromium built from `page`: the probe's counts and the DOM."""
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert match, f"the probe did not run; DOM starts: {done.stdout[:300]!r}"
    return json.loads(match.group(1).replace("&amp;", "&")), done.stdout  # a text node: only &, <, > are escaped


def test_report_renders_in_headless_chromium(tmp_path):
    browser = _browser()
    path = tmp_path / "results.json"
    data = results_dict("table1")
    data["cells"] += results_dict("table2", with_figures=False)["cells"]
    path.write_text(json.dumps(data), encoding="utf-8")
    render_report(path, tmp_path / "out", teacher=False)
    page = (tmp_path / "out" / "table1.html").read_text(encoding="utf-8")
    seen, dom = _open(browser, page, tmp_path)
    assert seen["tables"] == page.count("<table>") >= 8
    assert len(seen["images"]) == 3
    for image in seen["images"]:
        assert image["complete"] and image["w"] >= 800 and image["h"] >= 300, image  # 9-10 in wide at 100 dpi
    assert dom.count("<tr") > 60 and "Teacher row" not in dom  # rendered without the teacher row here


def test_schema2_report_renders_in_headless_chromium(tmp_path):
    """Rows not run, setup marks, the teacher data tables and only the figures that have data."""
    browser = _browser()
    data = schema2(results_dict("table1"))
    data["cells"] = [c for c in data["cells"] if c["row"] != "flan-t5-xxl specialized"]
    data["not_run"] = [{"table": "table1", "row": "flan-t5-xxl specialized", "stage": "plan", "reason": "needs 8 GPUs of 80 GB"}]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    render_report(path, tmp_path / "out", teacher=False)
    page = (tmp_path / "out" / "table1.html").read_text(encoding="utf-8")
    seen, dom = _open(browser, page, tmp_path)
    assert seen["tables"] == page.count("<table>") >= 10
    assert len(seen["images"]) == 2  # Figs. 3 and 4; no Table 2 cells, so no Fig. 2
    for image in seen["images"]:
        assert image["complete"] and image["w"] >= 800 and image["h"] >= 300, image
    assert "not run (27.1)" in dom and "needs 8 GPUs of 80 GB" in dom and "Teacher data" in dom
    assert "of 13 evaluated checkpoints" in dom and "bf16 (the authors: fp32)" in dom


def test_tradeoff_report_renders_in_headless_chromium(tmp_path):
    """`harness specialize`'s report: the before/after table and its three figures decode."""
    from test_report_tradeoff import results

    from harness.report.tradeoff import render_tradeoff

    browser = _browser()
    path = tmp_path / "tradeoff.results.json"
    path.write_text(json.dumps(results()), encoding="utf-8")
    render_tradeoff(path, tmp_path / "out")
    page = (tmp_path / "out" / "tradeoff.html").read_text(encoding="utf-8")
    seen, dom = _open(browser, page, tmp_path)
    assert seen["tables"] == page.count("<table>") >= 1
    assert len(seen["images"]) == 3
    for image in seen["images"]:
        assert image["complete"] and image["w"] >= 400 and image["h"] >= 200, image
    assert "PIPELINE CHECK" in dom and "GSM8K, in-context" in dom and "checkpoint-000000200" in dom
