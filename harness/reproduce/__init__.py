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
from typing import Any

from harness.reproduce.outcome import Outcome
from harness.reproduce.plan import CLEAN_COLUMNS, COLUMNS1, CURVE_TASKS, Plan  # noqa: F401 (part of this package's API)
from harness.reproduce.profiles import (  # noqa: F401 (part of this package's API)
    PROFILES,
    SELECT_RULES,
    TABLES,
    Profile,
    gpu_count,
    pick_profile,
    profile,
)
from harness.reproduce.runner import Console, StepFailed, free_port, run_in_process, run_launched, run_parallel
from harness.reproduce.steps import Step, eval_command, eval_job, train_command


class Reproduction(Outcome):
    """A table under a profile, run: every step not yet complete, rows written as they finish."""

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
        console.line(f"{self.headline()}: {len(steps)} steps; logs in {self.work / 'logs'}/")
        self.run_data(console)
        written: list[Path] = []
        for row in self.rows():
            for wave in _waves([s for s in steps if s.stage not in ("teacher", "align", "formats") and row in s.rows]):
                self._run_wave(wave, console)
            written = self.write_report()
            page = next((p for p in written if p.suffix == ".md"), None)
            console.line(f"{row}: {'not run' if row in self.not_run else 'done'}; report updated: {page or '-'}")
        if not written:
            written = self.write_report()
        for line in self.summary_lines():
            console.line(line)
        return written

    def headline(self) -> str:
        return f"reproduce {self.table}, profile {self.p.name}"

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


def _waves(steps: list[Step]) -> list[list[Step]]:
    """Consecutive eval steps run together (one worker per device); anything else alone."""
    waves: list[list[Step]] = []
    for step in steps:
        if step.stage == "eval" and waves and waves[-1][0].stage == "eval":
            waves[-1].append(step)
        else:
            waves.append([step])
    return waves
