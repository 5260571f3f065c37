"""`python -m harness reproduce table1|table2|table3|figures`: the paper's tables, end to end.

Part of the CLI layer (like harness/cli.py, it knows every stage). Each step is a stage command
whose output is resumable on its own, and each evaluated cell is cached by (model, task, limit):
a rerun skips everything already finished, so a run killed half-way loses at most one step.

Profiles
- `cpu` (chosen when no GPU is visible): the CPU default teacher scores gold rationales of a GSM8K
  slice, alignment and formats as usual, a tiny random T5 (real tokenizer) stands in for
  flan-t5-base and is trained for an epoch or two, evaluation on small `--limit` slices. A pipeline
  check, not results; its reports say so.
- `paper`: google/flan-t5-{base,large,xl,xxl} from the hub, the faithful presets, full data and
  test sets; teacher data from the authors' released format pickles (`--authors-formats`) or from
  a teacher config (`--teacher-config`); `--checkpoint ROW=PATH` evaluates already-specialized
  models instead of training. Evaluation batches with lm-eval's `batch_size auto` (T5 on hf) and
  runs a decoder-only student (a `--checkpoint` row; the profile's own rows are all T5) on
  lm-eval's vLLM backend when vLLM is installed (`--backend auto`).
  Needs GPUs (see README for hours and disk).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.config import EVAL_BATCH_SIZE
from harness.errors import UsageError, check_choice
from harness.records import atomic_write

TABLES = ("table1", "table2", "table3", "figures")
PROFILES = ("auto", "cpu", "paper")
COLUMNS1 = ("gsm8k", "multiarith", "asdiv", "svamp", "bbh_ao", "bbh_cot")
DEV_TASKS = ("gsm8k_cot_spec_dev", "mas_cot_spec_dev")
CURVE_TASKS = {"gsm8k_cot_spec_dev": "gsm8k", "mas_cot_spec_dev": "mas"}
FIG4_TASKS = {"gsm8k_cot_spec_dev": "in_context", "gsm8k_cot_spec_zeroshot_dev": "zero_shot"}  # GSM8K dev, tested two ways


@dataclass
class Profile:
    name: str
    sizes: dict[str, str]  # paper row stem -> model (hub id or `tiny`)
    train_preset: dict[str, str]  # paper row stem -> training preset
    eval_limit: float | None  # --limit per math task (None: full sets)
    bbh_limit: float | None  # --limit per BBH subtask
    teacher_limit: int | None  # GSM8K train questions the CPU teacher scores
    train_overrides: dict = field(default_factory=dict)
    batch_size: int | str = EVAL_BATCH_SIZE  # `harness eval --batch-size`; "auto": lm-eval finds the largest that fits
    backend: str = "hf"  # `harness eval --backend`; "auto": vLLM for decoder-only students when installed, on a GPU
    max_gen_toks: int | None = None  # None: the tasks' 256 (the authors')


def profile(name: str) -> Profile:
    if name == "cpu":
        return Profile(
            "cpu", sizes={"flan-t5-base": "tiny"}, train_preset={"flan-t5-base": "cpu-tiny"},
            eval_limit=5, bbh_limit=1, teacher_limit=60, max_gen_toks=64,  # random weights never stop: 64 new tokens, not 256
            train_overrides={"epochs": 2, "checkpoint_every_examples": 150, "eval_limit": 5, "eval_tasks": list(DEV_TASKS),
                             "eval_max_gen_toks": 64},
        )
    sizes = {f"flan-t5-{s}": f"google/flan-t5-{s}" for s in ("base", "large", "xl", "xxl")}
    sizes.update({"t5-base": "t5-base", "t5-large": "t5-large", "t5-3b": "t5-3b"})
    presets = {"flan-t5-base": "faithful-base", "flan-t5-large": "faithful-large", "flan-t5-xl": "faithful-xl",
               "flan-t5-xxl": "faithful-xxl", "t5-base": "faithful-base", "t5-large": "faithful-large", "t5-3b": "faithful-xl"}
    return Profile("paper", sizes=sizes, train_preset=presets, eval_limit=None, bbh_limit=None, teacher_limit=None,
                   train_overrides={"eval_tasks": list(DEV_TASKS), "eval_limit": None, "eval_batch_size": "auto"},
                   batch_size="auto", backend="auto")


def pick_profile(name: str) -> str:
    check_choice("--profile", name, PROFILES)
    if name != "auto":
        return name
    import torch

    return "paper" if torch.cuda.is_available() else "cpu"


class Reproduction:
    """One table under one profile: the chain of stages, each skipped when already done."""

    def __init__(self, table: str, prof: Profile, work: Path, reports: Path, data_dir: Path,
                 authors_formats: Path | None = None, teacher_config: Path | None = None,
                 checkpoints: dict[str, Path] | None = None, log: Callable[[str], None] = print, dry_run: bool = False):
        check_choice("table", table, TABLES)
        self.table, self.p, self.work, self.reports, self.data_dir = table, prof, work, reports, data_dir
        self.authors_formats, self.teacher_config = authors_formats, teacher_config
        self.checkpoints = checkpoints or {}
        self.log, self.dry_run = log, dry_run
        self.planned: list[str] = []
        self._pending: set[str] = set()

    # --- stages ----------------------------------------------------------------------------------

    def _run(self, args: list[str], done: bool, what: str) -> None:
        """One stage command (`python -m harness …`), unless its output is already complete."""
        line = "python -m harness " + " ".join(args)
        self.planned.append(("done: " if done else "") + line)
        if done:
            self.log(f"reproduce: {what}: done, skipped")
            return
        if self.dry_run:
            return
        self.log(f"reproduce: {what}: {line}")
        code = subprocess.run([sys.executable, "-m", "harness", *args]).returncode
        if code:
            raise UsageError(f"reproduce: {what} failed (exit {code}); fix the error above and rerun: finished steps are kept")

    def formats(self) -> Path:
        out = self.work / "formats"
        done = (out / "stats.json").is_file()
        if self.authors_formats:
            self._run(["formats", "import-authors", str(self.authors_formats), "--output", str(out)], done, "formats (authors' pickles)")
            return out
        teacher, aligned = self.work / "teacher", self.work / "aligned"
        args = ["teacher", "sample", "--output", str(teacher)]
        if self.teacher_config:
            args += ["--config", str(self.teacher_config)]
        else:
            args += ["--mode", "score"]
        if self.p.teacher_limit:
            args += ["--limit", str(self.p.teacher_limit)]
        self._run(args, (teacher / "stats.json").is_file() and done, "teacher")
        self._run(["align", "run", str(teacher), str(aligned), "--setting", "corrected"], done, "align")
        self._run(["formats", "build", "--store", str(teacher), "--aligned", str(aligned), "--output", str(out), "--setting", "corrected"],
                  done, "formats")
        return out

    def trained(self, row: str, matching: str = "distribution", only: str | None = None) -> Path:
        """The run folder of `row` specialized with `matching` (training it, or resuming, if needed).
        `only`: train on the in_context or zero_shot formats alone (Fig. 4), tested both ways."""
        run = self.work / "train" / (f"{row}-{matching}-{only}" if only else f"{row}-{matching}")
        if row in self.checkpoints and only is None:
            return self.checkpoints[row]
        formats = self.formats()
        done = (run / "done.json").is_file()
        args = ["train", "--config", self.p.train_preset[row], "--formats", str(formats), "--output", str(run), "--quiet",
                "--set", f"model={self.p.sizes[row]}", "--set", f"loss={matching}"]
        overrides = dict(self.p.train_overrides)
        if only:
            overrides.update(formats=[f"{only}_answer_only", f"{only}_cot"], eval_tasks=list(FIG4_TASKS))
        for key, value in overrides.items():
            args += ["--set", f"{key}={json.dumps(value)}"]
        if run.is_dir() and any(run.glob("checkpoint-*")):
            args.append("--resume")
        self._run(args, done, f"train {row} ({matching} matching)")
        if not done and not self.dry_run:
            (run / "done.json").write_text(json.dumps({"row": row, "matching": matching}))
        return run

    def final_model(self, run: Path) -> Path:
        if (run / "config.json").is_file() and not run.name.startswith("checkpoint-"):
            found = sorted(run.glob("checkpoint-*/model"))
            if not found and not self.dry_run:
                raise UsageError(f"{run}: no checkpoint to evaluate")
            return found[-1] if found else run / "checkpoint-final" / "model"
        return run  # a given model folder or hub id

    def _index(self) -> tuple[Path, dict]:
        index = self.work / "evals" / "index.json"
        return index, (json.loads(index.read_text()) if index.is_file() else {})

    @staticmethod
    def _key(model, task: str, limit) -> str:
        return f"{model}|{task}|{limit}"

    def ensure(self, model: str | Path, tasks: list[str]) -> None:
        """Evaluate `model` on every task not yet cached: one `harness eval` call per --limit."""
        index, known = self._index()
        todo: dict = {}
        for task in dict.fromkeys(tasks):
            limit = self._limit(task)
            if self.dry_run and self._key(model, task, limit) in self._pending:
                continue
            if self._key(model, task, limit) in known and Path(known[self._key(model, task, limit)]).is_file():
                self.planned.append(f"done: eval {model} {task} limit {limit}")
            elif self._from_training(model, task, limit, known):
                self.planned.append(f"done (during training): eval {model} {task} limit {limit}")
                if not self.dry_run:
                    index.parent.mkdir(parents=True, exist_ok=True)
                    with atomic_write(index) as f:
                        json.dump(known, f, indent=1)
            else:
                todo.setdefault(limit, []).append(task)
        for limit, group in todo.items():
            out = self.work / "evals" / f"{len(known):04d}"
            args = ["eval", "--model", str(model), "--tasks", ",".join(group), "--output-dir", str(out), "--batch-size", str(self.p.batch_size)]
            if self.p.backend != "hf":  # the default: the cpu profile's commands stay as they were
                args += ["--backend", self.p.backend]
            if limit is not None:
                args += ["--limit", str(limit)]
            if self.p.max_gen_toks:
                args += ["--max-gen-toks", str(self.p.max_gen_toks)]
            self._run(args, False, f"eval {','.join(group)} on {model}")
            if self.dry_run:
                self._pending.update(self._key(model, t, limit) for t in group)
                continue
            found = sorted(out.glob("*/*/summary.json"), key=lambda p: p.stat().st_mtime)
            if not found:
                raise UsageError(f"reproduce: eval of {', '.join(group)} on {model} wrote no summary under {out}")
            for task in group:
                known[self._key(model, task, limit)] = str(found[-1])
            index.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(index) as f:
                json.dump(known, f, indent=1)

    def _from_training(self, model, task: str, limit, known: dict) -> bool:
        """A checkpoint evaluated on `task` while training, with the same limit and generation cap."""
        folder = Path(str(model)).parent
        if not (folder / "trainer_state.json").is_file():
            return False
        for summary in reversed(_summaries(folder, task)):
            config = (json.loads(summary.read_text()).get("manifest") or {}).get("config") or {}
            if config.get("limit") == limit and config.get("max_gen_toks") == self.p.max_gen_toks:
                known[self._key(model, task, limit)] = str(summary)
                return True
        return False

    def evaluate(self, model: str | Path, task: str, limit: float | None) -> Path:
        """summary.json of `harness eval` holding (model, task, limit), evaluating it if needed."""
        self.ensure(model, [task])
        if self.dry_run:
            return Path("<dry-run>")
        return Path(self._index()[1][self._key(model, task, limit)])

    def tasks_of(self, table: str, row: str, columns) -> list[str]:
        from harness.report.paper import load_paper

        paper = load_paper()
        found = [paper.cell(table, row, c).protocol for c in columns]
        return [p.task for p in found if p is not None and p.task]

    # --- cells -------------------------------------------------------------------------------------

    def _limit(self, task: str) -> float | None:
        return self.p.bbh_limit if task.startswith("bbh") else self.p.eval_limit

    def cell(self, table: str, row: str, column: str, model: str | Path, selection: str | None = None) -> dict | None:
        from harness.report.collect import cell_from_summary
        from harness.report.paper import load_paper

        protocol = load_paper().cell(table, row, column).protocol
        if protocol is None or protocol.task is None:
            return None
        summary = self.evaluate(model, protocol.task, self._limit(protocol.task))
        if self.dry_run:
            return None
        out = cell_from_summary(summary, table, row, column, selection=selection)
        out["model"] = str(model)
        return out

    def rows(self) -> list[str]:
        return [r for r in self.p.sizes if r.startswith("flan-t5")] if self.table == "table1" else list(self.p.sizes)

    def table1(self) -> list[dict]:
        cells = []
        for row in self.rows():
            base = self.p.sizes[row]
            spec = self.final_model(self.trained(row))
            self.ensure(base, self.tasks_of("table1", row, COLUMNS1))
            self.ensure(spec, self.tasks_of("table1", f"{row} specialized", COLUMNS1))
            for column in COLUMNS1:
                cells += [c for c in (self.cell("table1", row, column, base), self.cell("table1", f"{row} specialized", column, spec)) if c]
        return cells

    def selection(self, run: Path) -> dict:
        from harness.train.selection import select_checkpoints

        return select_checkpoints(run)["choices"] if not self.dry_run else {}

    def table2(self) -> list[dict]:
        cells = []
        for row in self.p.sizes:
            if row.endswith("xxl"):
                continue
            cells.append(self.cell("table2", row, "before", self.p.sizes[row]))
            run = self.trained(row)
            chosen = self.selection(run).get("gsm8k-dev", {}).get("checkpoint")
            model = run / chosen / "model" if chosen else self.final_model(run)
            cells.append(self.cell("table2", row, "after", model, selection="gsm8k_dev"))
        return [c for c in cells if c]

    def table3(self) -> list[dict]:
        cells = []
        for row in (r for r in self.p.sizes if r.startswith("flan-t5") and not r.endswith("xxl")):
            run = self.trained(row)
            for name, criterion in (("gsm8k-dev", "gsm8k_dev"), ("mas-dev", "mas_dev")):
                chosen = self.selection(run).get(name, {}).get("checkpoint")
                model = run / chosen / "model" if chosen else self.final_model(run)
                for column in ("in_dist", "out_of_dist"):
                    cells.append(self.cell("table3", f"{row} {name}", column, model, selection=criterion))
        return [c for c in cells if c]

    def _trajectory(self, row: str, run: Path, task: str) -> list[dict]:
        """{examples, value, n} of `task` for the start model (0 examples), then each checkpoint of `run`
        as evaluated during training."""
        points = [(0, self.evaluate(self.p.sizes[row], task, self._limit(task)))]
        points += [(json.loads((c / "trainer_state.json").read_text())["examples"], summary)
                   for c in sorted(run.glob("checkpoint-*")) for summary in _summaries(c, task)[-1:]]
        out = []
        for examples, summary in points:
            data = json.loads(summary.read_text())["tasks"][task]
            out.append({"examples": examples, "value": data["acc_faithful"], "n": data["n"]})
        return out

    def curves(self) -> list[dict]:
        """Fig. 3: dev accuracy over training examples, distribution vs sample matching."""
        out = []
        for matching in ("distribution", "sample"):
            for row in (r for r in self.p.sizes if r.startswith("flan-t5") and not r.endswith("xxl")):
                run = self.trained(row, matching)
                if self.dry_run:
                    continue
                for task, name in CURVE_TASKS.items():
                    out += [{"run": str(run), "model": row, "matching": matching, "task": name, **point}
                            for point in self._trajectory(row, run, task)]
        return out

    def fig4_points(self) -> list[dict]:
        """Fig. 4: runs trained on in-context or zero-shot formats only, tested in-context and zero-shot."""
        out = []
        row = "flan-t5-xl" if self.p.name == "paper" else "flan-t5-base"  # the paper's Fig. 4 model is Flan-T5 3B
        for only in ("in_context", "zero_shot"):
            run = self.trained(row, "distribution", only)
            if self.dry_run:
                continue
            for task, test_format in FIG4_TASKS.items():
                out += [{"run": str(run), "model": row, "train_format": only, "test_format": test_format, **point}
                        for point in self._trajectory(row, run, task)]
        return out

    # --- the whole table -----------------------------------------------------------------------------

    def run(self) -> list[Path]:
        from harness.report.collect import write_results
        from harness.report.provenance import collect_provenance
        from harness.report.render import render_report

        table = self.table
        cells: list[dict] = []
        curves: list[dict] = []
        fig4: list[dict] = []
        if table == "table1":
            cells = self.table1()
        elif table == "table2":
            cells = self.table2()
        elif table == "table3":
            cells = self.table3()
        else:
            cells = self.table2()
            curves = self.curves()
            fig4 = self.fig4_points()
        if self.dry_run:
            return []
        tasks = sorted({c["protocol"]["task"] for c in cells if c["protocol"].get("task")})
        results = self.work / f"{table}.results.json"
        notes = [f"profile {self.p.name}: " + ("a tiny random T5 stands in for flan-t5-base; the numbers check the pipeline, nothing more"
                                               if self.p.name == "cpu" else "the paper's models and data")]
        if self.p.max_gen_toks:
            notes.append(f"generation capped at {self.p.max_gen_toks} new tokens (the paper: 256)")
        write_results(results, table, self.p.name, cells, curves=curves, fig4=fig4,
                      provenance=collect_provenance(self.data_dir, tasks, os.environ.get("SPEC_CONTAINER_IMAGE"), profile=self.p.name),
                      seeds={"train": 0, "eval": 0, "formats": 0}, notes=notes)
        out = self.reports / table / self.p.name
        return render_report(results, out, data_root=self.data_dir)


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
