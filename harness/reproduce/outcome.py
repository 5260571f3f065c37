"""What a reproduction measured: the cells of its table, the curves of its runs, the report.

Every cell is read from the eval summary of the model its protocol names (the base model, or the
checkpoint a rule chose in a training run, with the rule and its number of candidates), then the
results file is written and the report rendered (harness/report).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from harness.records import atomic_write
from harness.reproduce.plan import CLEAN_COLUMNS, COLUMNS1, CURVE_TASKS, Plan
from harness.reproduce.profiles import FIG4_TASKS
from harness.reproduce.runner import StepFailed
from harness.reproduce.steps import Model, Step

TEACHER_KEY = "training data"  # the key of the teacher behind every trained cell, in provenance.teacher_data


class Outcome(Plan):
    """The plan's results: resolving models, reading summaries into cells, writing the report."""

    def resolve(self, model: Model) -> str:
        """The model folder or id a cell evaluates: a checkpoint chosen by its rule for trained rows."""
        if model.train_key is None:
            return model.name
        run = self._run_of(model.train_key)
        choice = self.choose(run, model.rule)
        if choice.get("checkpoint") is None:
            raise StepFailed(model.train_key, self.log(model.train_key), f"selection by {model.rule}: {choice.get('note', 'no checkpoint')}")
        return str(run / choice["checkpoint"] / "model")

    def choose(self, run: Path, rule: str) -> dict[str, Any]:
        """{checkpoint, rule, candidates, …}: the checkpoint `rule` picks and how many it chose from."""
        from harness.train.selection import select

        if not (run / "metrics.jsonl").is_file():
            return {"checkpoint": None, "rule": rule, "candidates": 0, "note": "the run has no evaluated checkpoint"}
        return select(run, rule)

    def _from_training(self, step: Step, model: str) -> bool:
        """The checkpoint was already evaluated on these tasks while training, with the same limit
        and generation cap: its summary serves the cell (indexed so cells find it)."""
        folder = Path(model).parent
        if not (folder / "trainer_state.json").is_file() or step.split_mode:
            return False
        found = {}
        for task in step.tasks:
            for summary in reversed(_summaries(folder, task)):
                config = (json.loads(summary.read_text()).get("manifest") or {}).get("config") or {}
                if config.get("limit") == step.limit and config.get("max_gen_toks") == self.p.max_gen_toks:
                    found[task] = summary
                    break
        if len(found) != len(step.tasks):
            return False
        index = self.work / "evals" / "from-training.json"
        known = json.loads(index.read_text()) if index.is_file() else {}
        known.update({f"{model}|{task}|{step.limit}": str(path) for task, path in found.items()})
        with atomic_write(index) as handle:
            json.dump(known, handle, indent=1)
        return True

    def summary_of(self, model: str, task: str, limit, split_mode=None) -> Path | None:
        from harness.eval.job import is_complete

        for step in self.steps():
            if step.stage == "eval" and task in step.tasks and step.limit == limit and step.split_mode == split_mode:
                try:
                    resolved = self.resolve(step.model)
                except StepFailed:
                    continue
                if resolved == model:
                    folder = self.eval_dir(step, model)
                    if is_complete(folder):
                        return folder / "summary.json"
        index = self.work / "evals" / "from-training.json"
        known = json.loads(index.read_text()) if index.is_file() else {}
        found = known.get(f"{model}|{task}|{limit}")
        return Path(found) if found and Path(found).is_file() else None

    def cell(self, table: str, row: str, column: str, model: Model, paper_row: str | None = None) -> dict | None:
        from harness.report.collect import cell_from_summary
        from harness.report.paper import load_paper

        protocol = load_paper().cell(table, paper_row or row, column).protocol
        if protocol is None or protocol.task is None:
            return None
        try:
            name = self.resolve(model)
        except StepFailed:
            return None
        limit = self._limit(protocol.task)
        summary = self.summary_of(name, protocol.task, limit)
        if summary is None:
            return None
        setup = {}
        if model.train_key is not None:
            choice = self.choose(self._run_of(model.train_key), model.rule)
            step = next(s for s in self.steps() if s.key == model.train_key)
            config = json.loads((step.output / "config.json").read_text()) if (step.output / "config.json").is_file() else {}
            setup = {"chosen": {"rule": model.rule, "checkpoint": choice.get("checkpoint"), "candidates": choice.get("candidates") or None},
                     "precision": config.get("precision"), "launcher": step.launch, "teacher": TEACHER_KEY}
        clean = self.summary_of(name, protocol.task, limit, "clean") if table == "table1" and column in CLEAN_COLUMNS else None
        cell = cell_from_summary(summary, table, paper_row or row, column,
                                 selection={"gsm8k-dev": "gsm8k_dev", "mas-dev": "mas_dev"}.get(model.rule) if model.rule else None,
                                 clean_summary=clean, **setup)
        cell["model"] = name
        return cell

    def cells(self) -> list[dict]:
        cells: list[dict] = []
        for row in self.rows():
            if row in self.not_run:
                continue
            base = Model(self.p.models[row])
            if self.table == "table1":
                for column in COLUMNS1:
                    cells += [c for c in (self.cell("table1", row, column, base),
                                          self.cell("table1", row, column, self.specialized(row), f"{row} specialized")) if c]
            elif self.table in ("table2", "figures"):
                cells += [c for c in (self.cell("table2", row, "before", base),
                                      self.cell("table2", row, "after", self.specialized(row, "gsm8k-dev"))) if c]
            else:
                for rule in ("gsm8k-dev", "mas-dev"):
                    for column in ("in_dist", "out_of_dist"):
                        cells += [c for c in (self.cell("table3", row, column, self.specialized(row, rule), f"{row} {rule}"),) if c]
        return cells

    def curves(self) -> tuple[list[dict], list[dict]]:
        """Fig. 3: dev accuracy per checkpoint and training losses, distribution vs sample matching.
        Rows given with --checkpoint have no training run: their curves are missing, never borrowed."""
        from harness.train.metrics import read_metrics

        points, losses = [], []
        for row in self.rows():
            if row in self.checkpoints or row in self.not_run:
                continue
            for matching in ("distribution", "sample"):
                step = next((s for s in self.steps() if s.key == f"train {row} {matching}"), None)
                if step is None or not step.output.is_dir():
                    continue
                for task, name in CURVE_TASKS.items():
                    points += [{"run": str(step.output), "model": row, "matching": matching, "task": name, **point}
                               for point in self._trajectory(row, step.output, task)]
                losses += [{"run": str(step.output), "model": row, "matching": matching, "examples": r["examples"], "step": r["step"],
                            "loss": r["loss"]} for r in read_metrics(step.output) if r.get("kind") == "train"]
        return points, losses

    def fig4_points(self) -> list[dict]:
        out = []
        row = self.fig4_row()
        for only in ("in_context", "zero_shot"):
            step = next((s for s in self.steps() if s.key == f"train {row} distribution {only}-only"), None)
            if step is None or not step.output.is_dir():
                continue
            for task, test_format in FIG4_TASKS.items():
                out += [{"run": str(step.output), "model": row, "train_format": only, "test_format": test_format, **point}
                        for point in self._trajectory(row, step.output, task)]
        return out

    def _trajectory(self, row: str, run: Path, task: str) -> list[dict]:
        """{examples, value, n} of `task` for the start model (0 examples), then each checkpoint of `run`."""
        points = []
        start = self.summary_of(self.p.models[row], task, self._limit(task) if not task.startswith("bbh") else self.p.curve_bbh_limit)
        start = start or self.summary_of(self.p.models[row], task, self._limit(task))
        if start is not None:
            points.append((0, start))
        points += [(json.loads((c / "trainer_state.json").read_text())["examples"], summary)
                   for c in sorted(run.glob("checkpoint-*")) for summary in _summaries(c, task)[-1:]]
        out = []
        for examples, summary in points:
            data = json.loads(summary.read_text())
            value = _primary(data, task)
            if value is not None:
                n = (data["tasks"].get(task) or {}).get("n") or sum(e.get("n") or 0 for k, e in data["tasks"].items() if k.startswith(task + "_"))
                out.append({"examples": examples, "value": value, "n": n})
        return out

    def provenance_extra(self) -> dict[str, Any]:
        """Which teacher made the training data (harness.report.provenance reads the sealed store,
        or the authors' import with each pickle's sha256 and record count)."""
        from harness.errors import DataError
        from harness.report.provenance import teacher_data_entry

        folder = self.formats_dir if self.authors_formats is not None else self.work / "teacher"
        try:
            return {TEACHER_KEY: teacher_data_entry(folder, self.setting)}
        except DataError:
            return {}  # not made yet (the data step has not run, or failed): said by the rows not run

    def not_run_rows(self) -> list[dict[str, str]]:
        """The rows of the table each failed step took out, and the curves a given checkpoint has not."""
        out = []
        for row, info in self.not_run.items():
            names = {"table1": [row, f"{row} specialized"], "table3": [f"{row} gsm8k-dev", f"{row} mas-dev"]}.get(self.table, [row])
            table = "table2" if self.table == "figures" else self.table
            out += [{"table": table, "row": name, "stage": info["stage"], "reason": info["reason"]} for name in names]
        if self.table in ("table1", "figures"):
            out += [{"table": "fig3", "row": row, "stage": "train", "reason": f"--checkpoint {path}: no training run behind it, so no curve"}
                    for row, path in self.checkpoints.items() if row in self.rows()]
        return out

    def write_report(self) -> list[Path]:
        from harness.report.collect import write_results
        from harness.report.provenance import collect_provenance
        from harness.report.render import render_report

        cells = self.cells()
        curves, losses = self.curves() if self.table == "figures" or self.table == "table1" else ([], [])
        fig4 = self.fig4_points() if self.table == "figures" else []
        tasks = sorted({c["protocol"]["task"] for c in cells if c["protocol"].get("task")})
        notes = []
        if self.p.pipeline_check:
            notes.append(f"profile {self.p.name}: tiny random models stand in for the paper's; the numbers check the pipeline, nothing more")
        else:
            notes.append("profile paper: the paper's models, " + ("the authors' released teacher data" if self.authors_formats else "teacher data from --teacher-config"))
        if self.p.max_gen_toks:
            notes.append(f"generation capped at {self.p.max_gen_toks} new tokens (the paper: 256)")
        provenance = collect_provenance(self.data_dir, tasks, os.environ.get("SPEC_CONTAINER_IMAGE"), profile=self.p.name)
        provenance["teacher_data"] = self.provenance_extra()
        results = self.work / f"{self.table}.results.json"
        write_results(results, self.table, self.p.name, cells, curves=curves, fig4=fig4, losses=losses,
                      not_run=self.not_run_rows(),
                      provenance=provenance, seeds=self.seeds(), notes=notes)
        return render_report(results, self.reports / self.table / self.p.name, data_root=self.data_dir)

    def summary_lines(self) -> list[str]:
        """The finished table, one line per row: our value (the paper's) per column; rows not run say why."""
        from harness.report.paper import load_paper

        paper = load_paper()
        by_row: dict[str, list[str]] = {}
        for cell in self.cells():
            printed = paper.cell(cell["table"], cell["row"], cell["column"]).value
            by_row.setdefault(cell["row"], []).append(f"{cell['column']} {cell['value']:.1f}" + (f" ({printed:g})" if printed is not None else ""))
        lines = [f"{self.table} ({self.p.name}; ours, the paper's in brackets):"]
        lines += [f"  {row}: " + " · ".join(values) for row, values in by_row.items()]
        lines += [f"  {row}: not run ({info['reason']})" for row, info in self.not_run.items()]
        return lines

    def seeds(self) -> dict[str, int]:
        """The seeds the runs set (read back from what they recorded)."""
        seeds: dict[str, int] = {}
        for step in self.steps():
            if step.stage == "train" and (step.output / "config.json").is_file():
                seeds[step.key] = json.loads((step.output / "config.json").read_text()).get("seed")
            elif step.stage == "formats" and (step.output / "settings.json").is_file():
                seeds["formats"] = (json.loads((step.output / "settings.json").read_text()).get("settings") or {}).get("seed")
            elif step.stage == "teacher" and step.job is not None:
                seeds["teacher"] = step.job.sampling.seed
        seeds["eval"] = 0
        return {k: v for k, v in seeds.items() if v is not None}


def _tasks_of(summary: Path) -> set[str]:
    try:
        data = json.loads(summary.read_text())
    except ValueError:
        return set()
    return set(data.get("tasks", {})) | set(data.get("bbh", {}))


def _summaries(checkpoint: Path, task: str) -> list[Path]:
    """The periodic-eval summaries written inside a checkpoint that scored `task`."""
    found = sorted(checkpoint.glob("eval/*/*/summary.json"), key=lambda p: p.stat().st_mtime)
    return [p for p in found if task in _tasks_of(p)]


def _primary(summary: dict, task: str) -> float | None:
    from harness.eval.summary import primary_score

    return primary_score(summary, task)
