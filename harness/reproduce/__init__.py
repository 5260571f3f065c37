"""`python -m harness reproduce table1|table2|table3|figures`: the paper's tables, end to end.

Part of the CLI layer (with harness/cli.py it is the only code that knows every stage); it
composes the stages through their Python faces (`<stage>.job`): typed jobs, `run`, `is_complete`.

    job = Reproduction("table1", profile("paper", gpus=8), work, reports, data_dir, authors_formats=folder)
    job.check()          # before any work: teacher data named, models available, outputs writable
    job.run()            # data -> (per row: base evals, training, selection, specialized evals) -> report

The plan is the same step list for every profile (`steps()`); profiles change sizes, limits and the
launcher's process count (harness/reproduce/profiles.py). Every step is skipped when its output is
complete, so a rerun resumes; every finished row is written to the results file and the report is
rendered again, and a row whose step fails is marked "not run" with the reason while the others go on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, TextIO

from harness.errors import UsageError, check_choice
from harness.records import atomic_write
from harness.reproduce.profiles import (  # noqa: F401 (part of this package's API)
    CURVE_BBH_TASKS,
    DEV_TASKS,
    FIG4_TASKS,
    PROFILES,
    SELECT_RULES,
    SETTINGS,
    TABLES,
    Profile,
    gpu_count,
    pick_profile,
    profile,
)
from harness.reproduce.runner import Console, StepFailed, free_port, run_in_process, run_launched, run_parallel
from harness.reproduce.steps import Model, Step, cell_dir, eval_command, eval_job, is_train_complete, train_command, train_config_values

COLUMNS1 = ("gsm8k", "multiarith", "asdiv", "svamp", "bbh_ao", "bbh_cot")
CLEAN_COLUMNS = {"asdiv": "asdiv_cot_spec", "svamp": "svamp_cot_spec"}  # test sets holding a dev split: also scored without it
CURVE_TASKS = {"gsm8k_cot_spec_dev": "gsm8k", "mas_cot_spec_dev": "mas", "bbh_ao_spec": "bbh_ao", "bbh_cot_spec": "bbh_cot"}


class Reproduction:
    """One table under one profile: its steps, run in order, each skipped when already done."""

    def __init__(self, table: str, prof: Profile, work: Path, reports: Path, data_dir: Path, *,
                 authors_formats: Path | None = None, teacher_config: Path | None = None, setting: str = "faithful",
                 checkpoints: dict[str, Path] | None = None, overrides: dict[str, Any] | None = None, select: str | None = None,
                 out: TextIO | None = None):
        import sys

        check_choice("table", table, TABLES)
        check_choice("--setting", setting, SETTINGS)
        self.table, self.p, self.work, self.reports, self.data_dir = table, prof, Path(work), Path(reports), Path(data_dir)
        self.authors_formats, self.teacher_config, self.setting = authors_formats, teacher_config, setting
        self.checkpoints = {row: Path(p) for row, p in (checkpoints or {}).items()}
        self.overrides = dict(overrides or {})
        self.select_rule = select or prof.select
        check_choice("--select", self.select_rule, SELECT_RULES)
        self.out = out or sys.stderr
        self.not_run: dict[str, dict[str, str]] = {}  # row -> {stage, reason}
        self.failed_steps: dict[str, StepFailed] = {}
        self._steps: list[Step] | None = None

    # --- where things go -------------------------------------------------------------------------

    @property
    def formats_dir(self) -> Path:
        return self.work / "formats"

    def log(self, step: Step | str) -> Path:
        key = step.key if isinstance(step, Step) else step
        return self.work / "logs" / (key.replace("/", "_").replace(" ", "-")[:120] + ".log")

    # --- the plan ----------------------------------------------------------------------------------

    def rows(self) -> list[str]:
        if self.table == "table1":
            return [r for r in self.p.rows if r.startswith("flan-t5")]
        if self.table == "table3":
            return [r for r in self.p.rows if r.startswith("flan-t5") and not r.endswith("xxl")]
        return [r for r in self.p.rows if not r.endswith("xxl")]  # table2, figures

    def tasks_of(self, table: str, row: str, columns) -> list[str]:
        from harness.report.paper import load_paper

        paper = load_paper()
        found = [paper.cell(table, row, c).protocol for c in columns]
        return list(dict.fromkeys(p.task for p in found if p is not None and p.task))

    def _limit(self, task: str) -> float | None:
        return self.p.bbh_limit if task.startswith("bbh") else self.p.eval_limit

    def data_steps(self) -> list[Step]:
        """Teacher data -> formats: the authors' released formats, or teacher -> align -> formats."""
        from harness.formats import job as formats_job

        rows = tuple(self.rows())
        formats = self.formats_dir
        if self.authors_formats is not None:
            job = formats_job.AuthorsImportJob(folder=Path(self.authors_formats), output=formats)
            return [Step("formats", "formats", rows, formats, "in-process", job=job, is_complete=lambda: formats_job.is_complete(formats),
                         details={"source": "authors' pickles"})]
        from harness.align import job as align_job
        from harness.teacher import job as teacher_job

        teacher, aligned = self.work / "teacher", self.work / "aligned"
        overrides = {"output": teacher, "sampling.limit": self.p.teacher_limit}
        if self.teacher_config is None:  # the cpu profile only (check() refuses it elsewhere)
            overrides["sampling.mode"] = "score"
        sample = teacher_job.load_config(self.teacher_config, **overrides)
        return [
            Step("teacher", "teacher", rows, teacher, "in-process", job=sample, is_complete=lambda: teacher_job.is_complete(teacher)),
            Step("align", "align", rows, aligned, "in-process",
                 job=align_job.AlignJob(store=teacher, output=aligned, setting=self.setting, workers=self.p.processes if self.p.cpu else 0),
                 is_complete=lambda: align_job.is_complete(aligned)),
            Step("formats", "formats", rows, formats, "in-process",
                 job=formats_job.FormatsJob(store=teacher, aligned=aligned, output=formats, setting=self.setting),
                 is_complete=lambda: formats_job.is_complete(formats)),
        ]

    def train_step(self, row: str, matching: str = "distribution", only: str | None = None, eval_tasks=None) -> Step:
        key = f"train {row} {matching}" + (f" {only}-only" if only else "")
        run = self.work / "train" / (f"{row}-{matching}-{only}" if only else f"{row}-{matching}")
        tasks = tuple(eval_tasks or (*DEV_TASKS, *CURVE_BBH_TASKS))
        preset = self.p.presets[row]
        kind = "python" if self.p.launcher == "python" else "accelerate"
        _, _, launch = train_command(self.p, row, run.with_suffix(".config.json"), run, False, 0)
        distributed = launch.rsplit(", ", 1)[-1] if kind == "accelerate" else None
        step = Step(key, "train", (row,), run, launch, tasks=tasks, is_complete=lambda: is_train_complete(run),
                    details={"preset": preset, "matching": matching, "only": only, "distributed": distributed})
        step.make_job = lambda: self._train_config(row, matching, only, run, list(tasks))
        return step

    def _train_config(self, row: str, matching: str, only: str | None, run: Path, eval_tasks: list[str]):
        from harness.train.config import load_config

        values = train_config_values(self.p, row, self.p.models[row], matching, only, self.formats_dir, run, eval_tasks, self.overrides)
        return load_config(self.p.presets[row], values)

    def specialized(self, row: str, rule: str | None = None, matching: str = "distribution", only: str | None = None) -> Model:
        if row in self.checkpoints and only is None and matching == "distribution":
            return Model(str(self.checkpoints[row]), given=True)
        key = f"train {row} {matching}" + (f" {only}-only" if only else "")
        return Model(self.p.models[row], train_key=key, rule=rule or self.select_rule)

    def eval_steps(self, model: Model, tasks: list[str], rows: tuple[str, ...], clean: bool = False) -> list[Step]:
        """One evaluation per (limit, split) group of `tasks`; with `clean`, ASDiv/SVAMP again on
        their clean test split (dev and contaminated items removed)."""
        groups: dict[tuple, list[str]] = {}  # math and BBH apart (their limits differ), whatever the profile
        for task in tasks:
            groups.setdefault(("bbh" if task.startswith("bbh") else "math", None), []).append(task)
        if clean:
            extra = [t for t in CLEAN_COLUMNS.values() if t in tasks]
            if extra:
                groups[("math", "clean")] = extra
        out = []
        for (_, split), group in groups.items():
            key = f"eval {model.label} {','.join(group)}" + (f" {split}" if split else "")
            out.append(Step(key, "eval", rows, Path(), "eval worker", model=model, tasks=tuple(group), limit=self._limit(group[0]),
                            split_mode=split))
        return out

    def steps(self) -> list[Step]:
        """The whole plan, in order."""
        if self._steps is not None:
            return self._steps
        steps = list(self.data_steps())
        for row in self.rows():
            steps += self.row_steps(row)
        seen, unique = set(), []
        for step in steps:
            if step.key not in seen:
                seen.add(step.key)
                unique.append(step)
        self._steps = unique
        return unique

    def row_steps(self, row: str) -> list[Step]:
        base = Model(self.p.models[row])
        if self.table == "table1":
            steps = self.eval_steps(base, self.tasks_of("table1", row, COLUMNS1), (row,), clean=True)
            if row not in self.checkpoints:
                steps.append(self.train_step(row))
            return steps + self.eval_steps(self.specialized(row), self.tasks_of("table1", f"{row} specialized", COLUMNS1), (row,), clean=True)
        if self.table == "table2":  # before: the base model on GSM8K dev; after: the training-time evaluation of the chosen checkpoint
            steps = self.eval_steps(base, self.tasks_of("table2", row, ("before",)), (row,))
            return steps + ([] if row in self.checkpoints else [self.train_step(row)])
        if self.table == "table3":
            steps = [] if row in self.checkpoints else [self.train_step(row)]
            for rule in ("gsm8k-dev", "mas-dev"):
                tasks = self.tasks_of("table3", f"{row} {rule}", ("in_dist", "out_of_dist"))
                steps += self.eval_steps(self.specialized(row, rule), tasks, (row,))
            return steps
        # figures: Table 2's runs, the sample-matching runs (Fig. 3) and the format-only runs (Fig. 4)
        steps = self.eval_steps(base, [*self.tasks_of("table2", row, ("before",)), *CURVE_TASKS], (row,))
        if row not in self.checkpoints:
            steps.append(self.train_step(row))
        steps.append(self.train_step(row, "sample"))
        if row == self.fig4_row():
            for only in ("in_context", "zero_shot"):
                steps.append(self.train_step(row, "distribution", only, eval_tasks=list(FIG4_TASKS)))
            steps += self.eval_steps(base, list(FIG4_TASKS), (row,))
        return steps

    def fig4_row(self) -> str:
        return "flan-t5-xl" if "flan-t5-xl" in self.p.models else self.p.rows[0]  # the paper's Fig. 4 model is Flan-T5 3B

    def graph(self) -> list[tuple]:
        return [step.graph() for step in self.steps()]

    # --- checks before any work ------------------------------------------------------------------

    def models(self) -> list[str]:
        return list(dict.fromkeys(self.p.models[row] for row in self.rows()))

    def check(self) -> None:
        """Every cheap check, before anything runs: teacher data, models, outputs."""
        from harness import handoff, hub

        if self.p.name != "cpu":
            if self.authors_formats is None and self.teacher_config is None:
                raise UsageError(f"--profile {self.p.name} needs teacher data: --authors-formats DIR (the authors' released format "
                                 "pickles, docs/reproduce.md) or --teacher-config FILE (a real teacher, README 'Teacher data')")
            if self.authors_formats is not None and self.teacher_config is not None:
                raise UsageError("give one source of teacher data: --authors-formats or --teacher-config, not both")
            if self.teacher_config is not None:
                from harness.teacher.job import load_config

                cfg = load_config(self.teacher_config)
                if cfg.teacher.kind == "default":
                    raise UsageError(f"--teacher-config {self.teacher_config}: teacher.kind 'default' is the CPU pipeline-check teacher "
                                     f"(random weights); the {self.p.name} profile needs a real teacher (openai or hf)")
            if self.authors_formats is not None and not Path(self.authors_formats).is_dir():
                raise UsageError(f"--authors-formats: no such folder {self.authors_formats}")
        for row in self.checkpoints:
            if row not in self.p.models:
                raise UsageError(f"--checkpoint: unknown row {row!r}; rows: {', '.join(self.p.models)}")
        absent = hub.missing(self.models(), check_hub=not self.p.hub_offline)
        if absent:
            fix = ("python -m harness models rehearsal-cache" if self.p.name == "rehearsal"
                   else f"python -m harness models download --profile {self.p.name} --table {self.table}")
            raise UsageError(f"model(s) not available here (not in the Hugging Face cache{'' if self.p.hub_offline or hub.hub_off() else ', Hub unreachable'}): "
                             f"{', '.join(absent)}\nfetch them first: {fix}")
        handoff.check_output(self.work, "--work")
        handoff.check_output(self.reports, "--reports")

    # --- running -----------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {"SPEC_DATA_DIR": str(self.data_dir)}
        if self.p.hub_offline:
            env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        return env

    def run(self) -> list[Path]:
        """Run every step not yet complete; write and render the results after every row."""
        self.check()
        os.environ.update(self.env())
        steps = self.steps()
        console = Console(self.out, total=len(steps))
        console.line(f"reproduce {self.table}, profile {self.p.name}: {len(steps)} steps; logs in {self.work / 'logs'}/")
        self.run_data(console)
        written: list[Path] = []
        for row in self.rows():
            for wave in _waves([s for s in steps if s.stage not in ("teacher", "align", "formats") and row in s.rows]):
                self._run_wave(wave, console)
            written = self.write_report()
        if not written:
            written = self.write_report()
        return written

    def run_data(self, console: Console | None = None) -> None:
        """The data steps: teacher -> align -> formats, or the authors' formats imported."""
        steps = [s for s in self.steps() if s.stage in ("teacher", "align", "formats")]
        console = console or Console(self.out, total=len(steps))
        for step in steps:
            self._run_step(step, console)

    def _blocked(self, step: Step) -> str | None:
        for row in step.rows:
            if row in self.not_run:
                return self.not_run[row]["reason"]
        return None

    def _fail(self, step: Step, failure: StepFailed, console: Console) -> None:
        self.failed_steps[step.key] = failure
        for row in step.rows:
            self.not_run.setdefault(row, {"stage": step.stage, "reason": f"{step.stage} failed: {failure.reason} (log: {failure.log})"})
        console.step(step.describe(), f"FAILED: {failure.reason}; log: {failure.log}")

    def _run_step(self, step: Step, console: Console) -> None:
        if all(r in self.not_run for r in step.rows):
            console.step(step.describe(), "not run (an earlier step of its row failed)")
            return
        if step.is_complete():
            console.step(step.describe(), "done earlier, skipped")
            return
        started = time.monotonic()
        try:
            if step.stage == "train":
                self._train(step)
            else:
                run_in_process(step.key, self.log(step), lambda: self._in_process(step))
        except StepFailed as failure:
            self._fail(step, failure, console)
            return
        console.step(step.describe(), "done", time.monotonic() - started)

    def _in_process(self, step: Step) -> Any:
        from harness.align import job as align_job
        from harness.formats import job as formats_job
        from harness.teacher import job as teacher_job

        if step.stage == "teacher":
            return teacher_job.run(step.job)
        if step.stage == "align":
            return align_job.run(step.job)
        return formats_job.run(step.job)

    def _train(self, step: Step) -> None:
        from harness.train.config import write_config

        config = step.make_job()
        config_file = write_config(config, step.output.with_suffix(".config.json"))
        resume = step.output.is_dir() and any(step.output.glob("checkpoint-*"))
        argv, env, _ = train_command(self.p, step.rows[0], config_file, step.output, resume, free_port())
        run_launched(step.key, argv, self.log(step), env)

    def _run_wave(self, wave: list[Step], console: Console) -> None:
        if wave[0].stage != "eval":
            for step in wave:
                self._run_step(step, console)
            return
        todo = []
        for step in wave:
            if self._blocked(step):
                console.step(step.describe(), "not run (an earlier step of its row failed)")
                continue
            try:
                model = self.resolve(step.model)
            except StepFailed as failure:
                self._fail(step, failure, console)
                continue
            config = eval_job(self.p, model, step.tasks, step.limit, step.split_mode, self.eval_dir(step, model))
            from harness.eval.job import is_complete

            if is_complete(config.run_dir) or self._from_training(step, model):
                console.step(step.describe(), "done earlier, skipped")
                continue
            todo.append((step, config))
        if not todo:
            return
        started = time.monotonic()
        workers = max(1, min(self.p.processes, len(todo)))
        jobs = []
        for w in range(workers):
            share = todo[w::workers]
            if not share:
                continue
            from harness.eval.job import write_config

            device = None if self.p.cpu else "cuda"
            files = [write_config(dataclasses.replace(config, device=device), self.work / "evals" / "configs" / f"{config.run_dir.name}.json")
                     for _, config in share]
            listing = self.work / "evals" / "configs" / f"wave-{share[0][1].run_dir.name}-w{w}.json"
            listing.parent.mkdir(parents=True, exist_ok=True)
            listing.write_text(json.dumps([str(f) for f in files]))
            env = {} if self.p.cpu else {"CUDA_VISIBLE_DEVICES": str(w)}
            jobs.append((f"eval worker {w}", eval_command(listing), self.log(f"eval-{share[0][1].run_dir.name}-w{w}"), env))
        failures = {f.key: f for f in run_parallel(jobs)}
        from harness.eval.job import is_complete

        for w, (key, _, log, _) in enumerate(jobs):
            for step, config in todo[w::workers]:
                if is_complete(config.run_dir):
                    console.step(step.describe(), "done", time.monotonic() - started)
                else:
                    reason = failures[key].reason if key in failures else "no summary written"
                    self._fail(step, StepFailed(step.key, log, reason), console)

    def eval_dir(self, step: Step, model: str) -> Path:
        return cell_dir(self.work, model, step.tasks, step.limit, step.split_mode, self.p.max_gen_toks)

    def resolve(self, model: Model) -> str:
        """The model folder or id a cell evaluates: a checkpoint chosen by its rule for trained rows."""
        if model.train_key is None:
            return model.name
        run = self._run_of(model.train_key)
        choice = self.choose(run, model.rule)
        if choice.get("checkpoint") is None:
            raise StepFailed(model.train_key, self.log(model.train_key), f"selection by {model.rule}: {choice.get('note', 'no checkpoint')}")
        return str(run / choice["checkpoint"] / "model")

    def _run_of(self, train_key: str) -> Path:
        for step in self.steps():
            if step.key == train_key:
                return step.output
        raise KeyError(train_key)

    def choose(self, run: Path, rule: str) -> dict[str, Any]:
        """{checkpoint, rule, candidates, …}: the checkpoint `rule` picks and how many it chose from."""
        from harness.train import checkpoints as ck
        from harness.train.selection import CRITERIA, select_checkpoints

        names = [p.name for p in ck.list_checkpoints(run)] if run.is_dir() else []
        if rule == "last":
            return {"checkpoint": names[-1] if names else None, "rule": rule, "candidates": len(names), "note": "no checkpoint"}
        result = select_checkpoints(run)
        choice = dict(result["choices"][rule])
        task = CRITERIA[rule]
        choice.update(rule=rule, candidates=sum(1 for entry in result["checkpoints"].values() if entry.get(task) is not None))
        return choice

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

    # --- cells and the report ------------------------------------------------------------------------

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
        summary = self.summary_of(name, protocol.task, self._limit(protocol.task))
        if summary is None:
            return None
        selection = None
        if model.train_key is not None:
            choice = self.choose(self._run_of(model.train_key), model.rule)
            selection = {"rule": model.rule, "checkpoint": choice.get("checkpoint"), "candidates": choice.get("candidates")}
        cell = cell_from_summary(summary, table, paper_row or row, column,
                                 selection={"gsm8k-dev": "gsm8k_dev", "mas-dev": "mas_dev"}.get(model.rule) if model.rule else None)
        cell["model"] = name
        cell.update(self._cell_setup(row, model, selection))
        if column in CLEAN_COLUMNS:
            clean = self.summary_of(name, protocol.task, self._limit(protocol.task), "clean")
            if clean is not None:
                other = cell_from_summary(clean, table, paper_row or row, column)
                cell["clean"] = {"value": other["value"], "n": other["n"] if isinstance(other["n"], list) else [other["n"]]}
        return cell

    def _cell_setup(self, row: str, model: Model, selection: dict | None) -> dict:
        """How a cell's model came to be: selection, precision, launcher, teacher data."""
        if model.train_key is None:
            return {"selection": None, "precision": None, "launcher": None, "teacher": None}
        step = next(s for s in self.steps() if s.key == model.train_key)
        config = json.loads((step.output / "config.json").read_text()) if (step.output / "config.json").is_file() else {}
        return {"selection": selection, "precision": config.get("precision"), "launcher": step.launch, "teacher": "training data"}

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
        """Which teacher made the training data: the store's model, settings, statistics and
        content, or the authors' pickles with their sha256 and record counts."""
        info: dict[str, Any] = {"setting": self.setting}
        if self.authors_formats is not None:
            stats_path = self.formats_dir / "stats.json"
            stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
            info.update(kind="authors-pickles", model="code-davinci-002", tokenizer="T5 (slow SentencePiece)", sampling=None,
                        stats=stats.get("records"), content=None,
                        files={name: {**meta, "records": None} for name, meta in ((stats.get("source") or {}).get("pickles") or {}).items()})
        else:
            store = self.work / "teacher"
            settings = json.loads((store / "settings.json").read_text()).get("settings", {}) if (store / "settings.json").is_file() else {}
            stats = json.loads((store / "stats.json").read_text()) if (store / "stats.json").is_file() else {}
            manifest = json.loads((store / "manifest.json").read_text()) if (store / "manifest.json").is_file() else {}
            teacher = settings.get("teacher") or {}
            info.update(kind="pipeline-check" if stats.get("pipeline_check") else "teacher-store", model=teacher.get("model") or teacher.get("kind"),
                        tokenizer=teacher.get("tokenizer"), sampling=settings.get("sampling"),
                        stats={k: stats.get(k) for k in ("questions", "samples", "first_sample_accuracy", "majority_vote_accuracy", "last_run")
                               if k in stats},
                        content=manifest.get("content"), files=None)
        return {"training data": info}

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
                      not_run=[{"table": self.table, "row": row, **info} for row, info in self.not_run.items()],
                      provenance=provenance, seeds=self.seeds(), notes=notes)
        return render_report(results, self.reports / self.table / self.p.name, data_root=self.data_dir)

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

    # --- the plan, printed -------------------------------------------------------------------------

    def plan_lines(self, costs: bool = False) -> list[str]:
        from harness.reproduce.costs import step_cost

        lines = []
        for i, step in enumerate(self.steps(), 1):
            done = "done " if step.is_complete() else ""
            cost = ""
            if costs:
                estimate = step_cost(self, step)
                cost = f"  [{estimate}]" if estimate else ""
            lines.append(f"{i:>3}. {done}{step.describe()}{cost}")
        return lines


def _waves(steps: list[Step]) -> list[list[Step]]:
    """Consecutive eval steps run together (one worker per device); anything else alone."""
    waves: list[list[Step]] = []
    for step in steps:
        if step.stage == "eval" and waves and waves[-1][0].stage == "eval":
            waves[-1].append(step)
        else:
            waves.append([step])
    return waves


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
