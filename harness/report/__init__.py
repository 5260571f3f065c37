"""Report stage: the paper's numbers beside ours, with tolerances, claims, figures and provenance.

Reads files only (a results JSON, `reports/paper/fu2023.json`, the recorded teacher generations)
and imports neither torch nor transformers. `render_report(results_path, out_dir)` is the entry
point; docs/reports.md describes the results file.
"""

from __future__ import annotations


def __getattr__(name: str):
    # Lazy, so `python -m harness` does not import matplotlib for unrelated commands.
    if name == "render_report":
        from harness.report.render import render_report

        return render_report
    raise AttributeError(name)


__all__ = ["render_report"]
