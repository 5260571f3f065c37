"""Figures 2-4 as PNG bytes, drawn with matplotlib's Agg canvas from a results file.

Each figure draws whatever the results hold; a panel without data says so in the image, so a
report never breaks on a half-finished run. The paper's own numbers (Table 2 for Fig. 2) are
drawn beside ours, dashed and grey; Figs. 3 and 4 have no published numbers.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.report.paper import Paper, size_in_params
from harness.report.results import Results

DPI = 100
FAMILIES = {"T5": ("t5-base", "t5-large", "t5-3b"), "Flan-T5": ("flan-t5-base", "flan-t5-large", "flan-t5-xl")}
FIG3_TASKS = (("gsm8k", "GSM8K"), ("mas", "M-A-S"), ("bbh_ao", "BBH AO"), ("bbh_cot", "BBH CoT"))
STYLE = {"distribution": "-", "sample": "--", "in_context": "-", "zero_shot": "--"}


@dataclass(frozen=True)
class Drawn:
    """One figure: its file name, caption, PNG bytes, and whether any of our data is in it."""

    name: str
    caption: str
    png: bytes
    has_data: bool


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=9, color="#a33", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _label(ax, has_lines: bool, ylabel: str, title: str) -> None:
    """Axes over training examples: labels and legend where lines were drawn, the title always."""
    if has_lines:
        ax.set_xlabel("training examples")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)


def fig2(paper: Paper, results: Results) -> Drawn:
    """GSM8K dev accuracy against log model size, before and after, T5 and Flan-T5 (Table 2)."""
    fig = Figure(figsize=(9, 3.6))
    ours = {(c.row, c.column): c.value for c in results.cells if c.table == "table2"}
    for i, (family, models) in enumerate(FAMILIES.items()):
        ax = fig.add_subplot(1, 2, i + 1)
        x = [size_in_params(paper.sizes[m]) for m in models]
        for column, colour in (("before", "#1f77b4"), ("after", "#d62728")):
            ax.plot(x, [paper.value("table2", m, column) for m in models], ls=":", marker="o", color=colour, alpha=0.4, label=f"paper, {column}")
            points = [(size_in_params(paper.sizes[m]), ours[(m, column)]) for m in models if (m, column) in ours]
            if points:
                ax.plot(*zip(*points), ls="-", marker="s", color=colour, label=f"ours, {column}")
        ax.set_xscale("log")
        ax.set_xticks(x, [paper.sizes[m] for m in models])
        ax.minorticks_off()
        ax.set_xlabel("parameters (log scale)")
        ax.set_ylabel("GSM8K dev accuracy (%)")
        ax.set_title(f"{family}" + ("" if any(m == r for m in models for r, _ in ours) else " (no results: paper only)"), fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    caption = "Fig. 2: GSM8K dev accuracy against model size, before and after specialization (faint dotted: the paper's Table 2)."
    return Drawn("fig2.png", caption, _png(fig), bool(ours))


def fig3(results: Results) -> Drawn:
    """Accuracy over training examples per task; distribution matching solid, sample matching dashed."""
    fig = Figure(figsize=(10, 6.4))
    for i, (task, title) in enumerate(FIG3_TASKS):
        ax = fig.add_subplot(2, 2, i + 1)
        runs: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
        for p in results.curves:
            if p.task == task:
                runs.setdefault((p.model, p.matching, p.run), []).append((p.examples, p.value))
        if not runs:
            _empty(ax, f"no {title} curve in the results")
        models = sorted({m for m, _, _ in runs})
        for (model, matching, run), points in sorted(runs.items()):
            ax.plot(*zip(*sorted(points)), ls=STYLE[matching], marker=".", color=f"C{models.index(model)}", label=f"{model}, {matching}")
        _label(ax, bool(runs), "accuracy (%)", title)
    fig.tight_layout()
    caption = "Fig. 3: accuracy over training examples (solid: distribution matching, dashed: sample matching)."
    return Drawn("fig3.png", caption, _png(fig), bool(results.curves))


def fig4(results: Results) -> Drawn:
    """GSM8K dev accuracy over training for runs trained in-context / zero-shot, tested both ways."""
    fig = Figure(figsize=(9, 3.6))
    for i, (train, title) in enumerate((("in_context", "A: trained on in-context data"), ("zero_shot", "B: trained on zero-shot data"))):
        ax = fig.add_subplot(1, 2, i + 1)
        lines: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for p in results.fig4:
            if p.train_format == train:
                lines.setdefault((p.run, p.test_format), []).append((p.examples, p.value))
        if not lines:
            _empty(ax, f"no run trained on {train.replace('_', '-')} data in the results")
        several = len({run for run, _ in lines}) > 1
        for (run, test), points in sorted(lines.items()):
            label = f"tested {test.replace('_', '-')}" + (f" ({run})" if several else "")
            ax.plot(*zip(*sorted(points)), ls=STYLE[test], marker=".", label=label)
        _label(ax, bool(lines), "GSM8K dev accuracy (%)", title)
    fig.tight_layout()
    caption = "Fig. 4: in-context vs zero-shot training data, tested in-context (solid) and zero-shot (dashed)."
    return Drawn("fig4.png", caption, _png(fig), bool(results.fig4))


def all_figures(paper: Paper, results: Results) -> list[Drawn]:
    return [fig2(paper, results), fig3(results), fig4(results)]
