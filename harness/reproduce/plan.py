"""The plan of a reproduction: its steps, in order, for one table under one profile.

The plan is the same step list for every profile: profiles change sizes, limits and the launcher's
process count (harness/reproduce/profiles.py), so the rehearsal plans what the paper run would.
Built without running anything: printed by `--plan`, costed, compared between profiles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from harness.errors import UsageError, check_choice
from harness.reproduce.profiles import CURVE_BBH_TASKS, DEV_TASKS, FIG4_TASKS, SELECT_RULES, SETTINGS, TABLES, Profile
from harness.reproduce.runner import StepFailed
from harness.reproduce.steps import Model, Step, cell_dir, is_train_complete, train_command, train_config_values

COLUMNS1 = ("gsm8k", "multiarith", "asdiv", "svamp", "bbh_ao", "bbh_cot")
CLEAN_COLUMNS = {"asdiv": "asdiv_cot_spec", "svamp": "svamp_cot_spec"}  # test sets holding a dev split: also scored without it
CURVE_TASKS = {"gsm8k_cot_spec_dev": "gsm8k", "mas_cot_spec_dev": "mas", "bbh_ao_spec": "bbh_ao", "bbh_cot_spec": "bbh_cot"}


class Plan:
    """One table under one profile: its steps, and the checks made before any of them runs."""

    TABLES = TABLES

    def __init__(self, table: str, prof: Profile, work: Path, reports: Path, data_dir: Path, *,
                 authors_formats: Path | None = None, teacher_config: Path | None = None, setting: str = "faithful",
                 checkpoints: dict[str, Path] | None = None, overrides: dict[str, Any] | None = None, select: str | None = None,
                 out: TextIO | None = None):
        import sys

        check_choice("table", table, self.TABLES)
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

    @property
    def formats_dir(self) -> Path:
        return self.work / "formats"

    def log(self, step: Step | str) -> Path:
        key = step.key if isinstance(step, Step) else step
        return self.work / "logs" / (key.replace("/", "_").replace(" ", "-")[:120] + ".log")

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
                 job=align_job.AlignJob(store=teacher, output=aligned, config=self.align_config(), setting=self.setting),
                 is_complete=lambda: align_job.is_complete(aligned)),
            Step("formats", "formats", rows, formats, "in-process",
                 job=formats_job.FormatsJob(store=teacher, aligned=aligned, output=formats, setting=self.setting),
                 is_complete=lambda: formats_job.is_complete(formats)),
        ]

    def align_config(self):
        """How teacher samples are aligned: exact mode onto the T5 student's tokens (the paper's students)."""
        from harness.align.api import AlignConfig

        return AlignConfig()

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

    def models(self) -> list[str]:
        return list(dict.fromkeys(self.p.models[row] for row in self.rows()))

    def check(self, models: bool = True) -> None:
        """Every cheap check, before anything runs: teacher data, models (unless `models=False`:
        a plan can be printed before downloading them), outputs."""
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
        absent = hub.missing(self.models(), check_hub=not self.p.hub_offline) if models else []
        if absent:
            fix = ("python -m harness models rehearsal-cache" if self.p.name == "rehearsal"
                   else f"python -m harness models download --profile {self.p.name} --table {self.table}")
            raise UsageError(f"model(s) not available here (not in the Hugging Face cache{'' if self.p.hub_offline or hub.hub_off() else ', Hub unreachable'}): "
                             f"{', '.join(absent)}\nfetch them first: {fix}")
        handoff.check_output(self.work, "--work")
        handoff.check_output(self.reports, "--reports")

    def eval_dir(self, step: Step, model: str) -> Path:
        return cell_dir(self.work, model, step.tasks, step.limit, step.split_mode, self.p.max_gen_toks)

    def _run_of(self, train_key: str) -> Path:
        for step in self.steps():
            if step.key == train_key:
                return step.output
        raise KeyError(train_key)

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
        if costs and self.p.name == "paper":
            from harness.reproduce.costs import total_cost

            lines.append(total_cost(self))
        return lines
