"""Figures 2-4 as PNG bytes, drawn with matplotlib's Agg canvas from a results file.

A figure is drawn only from data the results hold, and only the panels that have data: a figure
with none is not drawn at all, and `figures()` says in words what is missing and why (a report
never shows an empty panel). The paper's own numbers (Table 2 for Fig. 2) are drawn beside
ours, dotted and faint; Figs. 3 and 4 have no published numbers.

Fig. 3 follows the paper's layout: one A panel per model (A1: Flan-T5 3B, A2: Base in the paper),
each with its four accuracies over training (GSM8K, M-A-S, BBH AO, BBH CoT), and panel B, the
training loss of distribution matching against sample matching.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.report.paper import Paper, size_in_params
from harness.report.results import Results

DPI = 100
FAMILIES = {"T5": ("t5-base", "t5-large", "t5-3b"), "Flan-T5": ("flan-t5-base", "flan-t5-large", "flan-t5-xl")}
FIG3_TASKS = (("gsm8k", "GSM8K"), ("mas", "M-A-S"), ("bbh_ao", "BBH AO"), ("bbh_cot", "BBH CoT"))
STYLE = {"distribution": "-", "sample": "--", "in_context": "-", "zero_shot": "--"}
COLUMNS = 3  # Fig. 3 panels per row


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


def _label(ax, has_lines: bool, ylabel: str, title: str) -> None:
    """Axes over training examples: labels and legend where lines were drawn, the title always."""
    if has_lines:
        ax.set_xlabel("training examples")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)


def fig2(paper: Paper, results: Results) -> Drawn | None:
    """GSM8K dev accuracy against log model size, before and after, T5 and Flan-T5 (Table 2);
    None without Table 2 cells (the paper's numbers alone are Table 2 itself)."""
    ours = {(c.row, c.column): c.value for c in results.cells if c.table == "table2"}
    if not ours:
        return None
    fig = Figure(figsize=(9, 3.6))
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


def _size(paper: Paper, model: str) -> float:
    """Parameters of a paper model name (0 for a name the paper does not size)."""
    size = paper.sizes.get(model)
    return size_in_params(size) if size else 0.0


def fig3(paper: Paper, results: Results) -> Drawn | None:
    """A panels: per model, the four accuracies over training examples (solid distribution matching,
    dashed sample matching); B: the logged training losses. None when the results hold neither."""
    models = sorted({p.model for p in results.curves}, key=lambda m: (-_size(paper, m), m))  # the paper: A1 3B, A2 Base
    panels = len(models) + bool(results.losses)
    if not panels:
        return None
    columns = min(COLUMNS, panels)
    rows = math.ceil(panels / columns)
    fig = Figure(figsize=(10, 3.4 * rows + 0.2))
    for i, model in enumerate(models):
        ax = fig.add_subplot(rows, columns, i + 1)
        styles = set()
        for j, (task, name) in enumerate(FIG3_TASKS):
            lines: dict[tuple[str, str], list[tuple[int, float]]] = {}
            for p in results.curves:
                if p.model == model and p.task == task:
                    lines.setdefault((p.matching, p.run), []).append((p.examples, p.value))
            for k, ((matching, run), points) in enumerate(sorted(lines.items())):
                ax.plot(*zip(*sorted(points)), ls=STYLE[matching], marker=".", color=f"C{j}", label=None if k else name)
                styles.add(matching)
        if len(styles) > 1:  # colour: the task; line style: the matching
            for matching in sorted(styles):
                ax.plot([], [], ls=STYLE[matching], color="#444", label=f"{matching} matching")
        size = f" ({paper.sizes[model]})" if model in paper.sizes else ""
        _label(ax, True, "dev accuracy (%)", f"A{i + 1}: {model}{size}" + ("" if len(styles) > 1 else f", {styles.pop()} matching"))
    if results.losses:
        ax = fig.add_subplot(rows, columns, len(models) + 1)
        runs: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
        for p in results.losses:
            runs.setdefault((p.model, p.matching, p.run), []).append((p.examples, p.loss))
        loss_models = sorted({m for m, _, _ in runs}, key=lambda m: (-_size(paper, m), m))
        for (model, matching, run), points in sorted(runs.items()):
            ax.plot(*zip(*sorted(points)), ls=STYLE[matching], color=f"C{loss_models.index(model)}", label=f"{model}, {matching}")
        _label(ax, True, "training loss", "B: distribution vs sample matching")
    fig.tight_layout()
    panel_names = "A1" if len(models) == 1 else f"A1-A{len(models)}"
    caption = ("Fig. 3: " + (f"{panel_names}: dev accuracy over training examples, one panel per model "
                             "(solid: distribution matching, dashed: sample matching)" if models else "")
               + ("; " if models and results.losses else "")
               + ("B: training loss over training examples (distribution matching: KL to the teacher's top-k; "
                  "sample matching: cross-entropy of the teacher's text)" if results.losses else "") + ".")
    return Drawn("fig3.png", caption, _png(fig), True)


def fig4(results: Results) -> Drawn | None:
    """GSM8K dev accuracy over training for runs trained in-context / zero-shot, tested both ways
    (the panels that have runs); None without any."""
    panels = [(train, title) for train, title in (("in_context", "A: trained on in-context data"), ("zero_shot", "B: trained on zero-shot data"))
              if any(p.train_format == train for p in results.fig4)]
    if not panels:
        return None
    fig = Figure(figsize=(9 if len(panels) == 2 else 8, 3.6))
    for i, (train, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        lines: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for p in results.fig4:
            if p.train_format == train:
                lines.setdefault((p.run, p.test_format), []).append((p.examples, p.value))
        several = len({run for run, _ in lines}) > 1
        for (run, test), points in sorted(lines.items()):
            label = f"tested {test.replace('_', '-')}" + (f" ({run})" if several else "")
            ax.plot(*zip(*sorted(points)), ls=STYLE[test], marker=".", label=label)
        _label(ax, bool(lines), "GSM8K dev accuracy (%)", title)
    fig.tight_layout()
    caption = "Fig. 4: in-context vs zero-shot training data, tested in-context (solid) and zero-shot (dashed)."
    return Drawn("fig4.png", caption, _png(fig), bool(results.fig4))


def figures(paper: Paper, results: Results) -> tuple[list[Drawn], list[str]]:
    """The figures that have data, and a sentence for each figure or panel that is not drawn, saying why."""
    drawn = [f for f in (fig2(paper, results), fig3(paper, results), fig4(results)) if f is not None]
    names = {f.name for f in drawn}
    missing = []
    if "fig2.png" not in names:
        missing.append("Fig. 2: no data in the results (no Table 2 cells); not drawn.")
    gone = [f"{r.row}: {r.reason}" for r in results.not_run if r.table == "fig3"]
    why = f" Curves missing for {'; '.join(gone)}." if gone else ""
    if not results.curves and not results.losses:
        missing.append("Fig. 3: no data in the results (no checkpoint curves, no training losses); not drawn." + why)
    else:
        if not results.curves:
            missing.append("Fig. 3 A: no checkpoint curves in the results; only panel B is drawn." + why)
        elif gone:
            missing.append("Fig. 3 A:" + why)
        models = sorted({p.model for p in results.curves}, key=lambda m: (-_size(paper, m), m))
        for i, model in enumerate(models):
            tasks = {p.task for p in results.curves if p.model == model}
            lacking = [name for task, name in FIG3_TASKS if task not in tasks]
            if lacking:
                missing.append(f"Fig. 3 A{i + 1} ({model}): no {', '.join(lacking)} curve in the results.")
        if not results.losses:
            missing.append("Fig. 3 B: no training losses in the results; panel B is not drawn.")
    gone4 = [f"{r.row}: {r.reason}" for r in results.not_run if r.table == "fig4"]
    why4 = f" Runs missing: {'; '.join(gone4)}." if gone4 else ""
    if not results.fig4:
        missing.append("Fig. 4: no data in the results (no in-context or zero-shot training runs); not drawn." + why4)
    else:
        trained = {p.train_format for p in results.fig4}
        missing += [f"Fig. 4 {panel}: no run trained on {fmt.replace('_', '-')} data; panel not drawn." + why4
                    for panel, fmt in (("A", "in_context"), ("B", "zero_shot")) if fmt not in trained]
        if gone4 and len(trained) == 2:
            missing.append("Fig. 4:" + why4)
    return drawn, missing
