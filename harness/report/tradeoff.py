"""The trade-off report of `harness specialize`: what specializing a student gained and what it paid.

The paper's central point, for the user's own model: math up (in-distribution GSM8K,
out-of-distribution MultiArith/ASDiv/SVAMP), generic ability down (BBH answer-only and CoT), and
the in-context vs zero-shot balance. Each metric before and after, with a 95% interval (Wilson
for each value, Newcombe's for the change), the learning curves over the evaluated
checkpoints, the checkpoint chosen and why, the teacher behind the data and the provenance.

Input: a trade-off results file (schema `tradeoff-1`, written by harness.specialize); output:
Markdown + self-contained HTML + PNG figures, like the table reports (harness.report.document).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.records import atomic_write
from harness.report.document import Block, Bullets, Heading, Image, Para, Table, to_html, to_markdown

SCHEMA = "tradeoff-1"
GROUPS = ("math, in-distribution", "math, out-of-distribution", "generic (BBH)")
Z95 = 1.959964


def load(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable trade-off results file ({err})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise DataError(f"{path}: field 'schema': {data.get('schema') if isinstance(data, dict) else None!r}, expected {SCHEMA!r}")
    for i, metric in enumerate(data.get("metrics") or []):
        for key in ("task", "label", "group"):
            if not isinstance(metric.get(key), str):
                raise DataError(f"{path}: metrics[{i}].{key}: missing or not a string")
        if metric["group"] not in GROUPS:
            raise DataError(f"{path}: metrics[{i}].group: {metric['group']!r}; one of {', '.join(GROUPS)}")
        for side in ("before", "after"):
            value = metric.get(side)
            if value is not None and not (isinstance(value.get("value"), (int, float)) and isinstance(value.get("n"), int) and value["n"] > 0):
                raise DataError(f"{path}: metrics[{i}].{side}: expected {{value: percent, n: items > 0}} or null")
    return data


def wilson(percent: float, n: int) -> tuple[float, float]:
    """95% Wilson interval of a proportion given in percent, in percent."""
    p = percent / 100
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def change_interval(before: dict, after: dict) -> tuple[float, float, float]:
    """(after - before, low, high) in points, Newcombe's interval for a difference of proportions
    (from the two Wilson intervals: right at 0% and 100%, where the normal approximation collapses)."""
    p1, p2 = before["value"], after["value"]
    l1, u1 = wilson(p1, before["n"])
    l2, u2 = wilson(p2, after["n"])
    diff = p2 - p1
    return diff, diff - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2), diff + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)


def _value(v: dict | None) -> str:
    if v is None:
        return "not run"
    low, high = wilson(v["value"], v["n"])
    return f"{v['value']:.1f} [{low:.1f}, {high:.1f}] (n {v['n']:,})"


def _change(m: dict) -> tuple[str, str]:
    if m.get("before") is None or m.get("after") is None:
        return "-", ""
    diff, low, high = change_interval(m["before"], m["after"])
    verdict = "up" if low > 0 else "down" if high < 0 else "no clear change"
    return f"{diff:+.1f} [{low:+.1f}, {high:+.1f}]", verdict


def metrics_section(data: dict) -> list[Block]:
    blocks: list[Block] = [Heading("What was gained and what was paid"),
                           Para("Accuracy in percent with its 95% interval (Wilson); the change in points with its 95% interval "
                                "(Newcombe's, from the two Wilson intervals). `up` / `down`: the interval excludes 0.")]
    for group in GROUPS:
        rows, classes = [], []
        for m in (m for m in data["metrics"] if m["group"] == group):
            change, verdict = _change(m)
            rows.append([m["label"], _value(m.get("before")), _value(m.get("after")), change, verdict])
            classes.append({"up": "pass", "down": "fail"}.get(verdict, ""))
        if rows:
            blocks += [Heading(group, 3), Table(["metric", "before", "after", "change (points)", "verdict"], rows, classes)]
    return blocks


def selection_section(data: dict) -> list[Block]:
    sel = data.get("selection") or {}
    if not sel:
        return [Heading("The chosen checkpoint"), Para("No checkpoint was chosen (the training run did not finish).", "warning")]
    rule = {"mas-dev": "the best mean over the MultiArith, ASDiv and SVAMP dev splits (the paper's advice, §4.3)",
            "gsm8k-dev": "the best GSM8K dev accuracy", "last": "the last checkpoint"}.get(sel.get("rule"), sel.get("rule"))
    text = (f"`{sel.get('checkpoint')}` ({sel.get('examples', '?'):,} training examples), chosen by {rule} among "
            f"{sel.get('candidates', '?')} evaluated checkpoint(s)")
    if sel.get("dev") is not None:
        text += f"; its dev score: {sel['dev']:.1f}"
    return [Heading("The chosen checkpoint"), Para(text + ".")]


def figures(data: dict) -> list[Image]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def png(fig) -> bytes:
        FigureCanvasAgg(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        return buf.getvalue()

    out = []
    metrics = [m for m in data["metrics"] if m.get("before") and m.get("after")]
    if metrics:
        fig = Figure(figsize=(max(6, 1.1 * len(metrics)), 4))
        ax = fig.add_subplot()
        xs = range(len(metrics))
        for offset, side, colour in ((-0.18, "before", "#888"), (0.18, "after", "#1f6fb2")):
            values = [m[side]["value"] for m in metrics]
            errors = [[v - wilson(v, m[side]["n"])[0] for v, m in zip(values, metrics)],
                      [wilson(v, m[side]["n"])[1] - v for v, m in zip(values, metrics)]]
            ax.bar([x + offset for x in xs], values, width=0.36, yerr=errors, capsize=3, color=colour, label=side)
        ax.set_xticks(list(xs), [m["label"] for m in metrics], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("accuracy (%)")
        ax.set_title("Before and after specialization (95% intervals)", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        out.append(Image("tradeoff.png", "Each metric before and after specialization, with 95% Wilson intervals.", png(fig)))
    curves = data.get("curves") or []
    if curves:
        fig = Figure(figsize=(7, 4))
        ax = fig.add_subplot()
        for task in sorted({c["task"] for c in curves}):
            points = sorted((c["examples"], c["value"]) for c in curves if c["task"] == task)
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=task)
        chosen = (data.get("selection") or {}).get("examples")
        if chosen is not None:
            ax.axvline(chosen, color="#444", linestyle=":", label="chosen checkpoint")
        ax.set_xlabel("training examples")
        ax.set_ylabel("dev accuracy (%)")
        ax.set_title("Learning curves: each evaluated checkpoint", fontsize=10)
        ax.legend(fontsize=7)
        fig.tight_layout()
        out.append(Image("curves.png", "Dev accuracy at each evaluated checkpoint (0: the student before training).", png(fig)))
    losses = data.get("losses") or []
    if losses:
        fig = Figure(figsize=(7, 3))
        ax = fig.add_subplot()
        points = sorted((r["examples"], r["loss"]) for r in losses)
        ax.plot([p[0] for p in points], [p[1] for p in points], linewidth=1)
        ax.set_xlabel("training examples")
        ax.set_ylabel("training loss")
        ax.set_title(f"Training loss ({data.get('loss', 'distribution')} matching)", fontsize=10)
        fig.tight_layout()
        out.append(Image("loss.png", "The logged training loss per optimizer step.", png(fig)))
    return out


def build(data: dict) -> tuple[str, list[Block]]:
    student = data.get("student", "the student")
    title = f"Specializing {student}: the trade-off report"
    if data.get("pipeline_check"):
        title += " (PIPELINE CHECK, not results)"
    blocks: list[Block] = []
    if data.get("pipeline_check"):
        blocks.append(Para("PIPELINE CHECK, NOT RESULTS: random or barely trained models stand in (student or teacher); the "
                           "numbers test the pipeline and say nothing about the method.", "warning"))
    teacher = data.get("teacher") or {}
    blocks.append(Para(f"Student `{student}`, specialized on chain-of-thought from `{teacher.get('model', '?')}` "
                       f"({teacher.get('kind', '?')}; tokenizer `{teacher.get('tokenizer')}`) with {data.get('loss', 'distribution')} "
                       f"matching, {data.get('setting', 'corrected')} pipeline."))
    blocks += [Para(n, "note") for n in data.get("notes") or []]
    blocks += metrics_section(data) + selection_section(data)
    images = figures(data)
    if images:
        blocks.append(Heading("Figures"))
        blocks += images
    prov = data.get("provenance") or {}
    items = [f"{k}: `{v}`" for k, v in prov.items() if isinstance(v, (str, int, float)) and v != ""]
    if teacher:
        items.append("teacher data: " + ", ".join(f"{k} `{v}`" for k, v in teacher.items() if isinstance(v, (str, int, float))))
    if items:
        blocks += [Heading("Provenance"), Bullets(items)]
    return title, blocks


def render_tradeoff(results_path: str | Path, out_dir: str | Path) -> list[Path]:
    """tradeoff.md, tradeoff.html and the figures, in `out_dir`."""
    data = load(results_path)
    title, blocks = build(data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for block in blocks:
        if isinstance(block, Image):
            with atomic_write(out_dir / block.name, "wb") as handle:
                handle.write(block.png)
            written.append(out_dir / block.name)
    for name, text in (("tradeoff.md", to_markdown(title, blocks)), ("tradeoff.html", to_html(title, blocks))):
        with atomic_write(out_dir / name) as handle:
            handle.write(text)
        written.append(out_dir / name)
    return written
