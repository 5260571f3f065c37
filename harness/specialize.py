"""`python -m harness specialize --student MODEL --teacher-config FILE`: the paper's method for your own model.

Part of the CLI layer (like reproduce, it knows every stage). Teacher data -> alignment onto the
student's own tokenizer (the identity path when the teacher shares it) -> the four formats ->
distribution matching -> the checkpoint best on M-A-S dev -> the student before and after on
GSM8K, M-A-S and BBH (AO and CoT), in-context and zero-shot -> the trade-off report
(harness/report/tradeoff.py): what was gained and what was paid, with intervals, curves and the
choice. The same step machinery as `harness reproduce`: resumable, one line per step on the
console, each step's output in a log, `--plan` before spending.

Profiles: `cpu` (small slices, one process: a pipeline check with tiny models) and `gpu` (full
test sets, `accelerate launch` on every visible GPU, evaluation spread over them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from harness.errors import UsageError, check_choice
from harness.reproduce import Reproduction
from harness.reproduce.plan import CURVE_TASKS
from harness.reproduce.profiles import CURVE_BBH_TASKS, DEV_TASKS, Profile, gpu_count
from harness.reproduce.steps import Model, Step

PROFILES = ("auto", "cpu", "gpu")
ROW = "student"
# The trade-off: (task, label, group, rule, aggregate); math under the corrected rule, BBH under
# the BBH paper's exact match (mean over the 27 subtasks).
METRICS = (
    ("gsm8k_cot_spec", "GSM8K, in-context", "math, in-distribution", "corrected", None),
    ("gsm8k_cot_spec_zeroshot", "GSM8K, zero-shot", "math, in-distribution", "corrected", None),
    ("mas_cot_spec", "M-A-S, in-context", "math, out-of-distribution", "corrected", None),
    ("mas_cot_spec_zeroshot", "M-A-S, zero-shot", "math, out-of-distribution", "corrected", None),
    ("bbh_ao_spec", "BBH answer-only", "generic (BBH)", "bbh", "mean_27"),
    ("bbh_cot_spec", "BBH CoT", "generic (BBH)", "bbh", "mean_27"),
)


def student_tokenizer(model: str) -> str:
    """The aligner's spec for the tokenizer `model` trains with (harness.align.api)."""
    if model == "tiny":
        return "t5"
    if model == "tiny-gpt2":
        return "hf-gpt2"
    return f"hf:{model}"


def default_preset(model: str, profile: str) -> str:
    if model == "tiny":
        return "cpu-tiny"
    if model == "tiny-gpt2":
        return "cpu-tiny-gpt2"
    return "corrected"


def specialize_profile(name: str, student: str, preset: str, gpus: int | None = None) -> Profile:
    if name == "cpu":
        return Profile(
            "specialize-cpu", models={ROW: student}, presets={ROW: preset}, eval_limit=3, bbh_limit=1, curve_bbh_limit=1,
            teacher_limit=32, max_gen_toks=32,
            train_overrides={"epochs": 2, "checkpoint_every_examples": None, "checkpoints_per_run": 2, "eval_limit": 3,
                             "eval_max_gen_toks": 32, "loss": "distribution"},
            launcher="python", processes=1, cpu=True, hub_offline=True, pipeline_check=student.startswith("tiny"), select="mas-dev")
    n = gpus or max(1, gpu_count())
    return Profile("specialize-gpu", models={ROW: student}, presets={ROW: preset}, eval_limit=None, bbh_limit=None,
                   curve_bbh_limit=10, teacher_limit=None, train_overrides={"eval_batch_size": "auto", "loss": "distribution"},
                   batch_size="auto", backend="auto", launcher="accelerate", processes=n, select="mas-dev")


class Specialization(Reproduction):
    """One student specialized on one teacher's data, measured before and after."""

    TABLES = ("specialize",)

    def __init__(self, student: str, teacher_config: Path, prof: Profile, work: Path, reports: Path, data_dir: Path, **kw):
        super().__init__("specialize", prof, work, reports, data_dir, teacher_config=teacher_config, setting=kw.pop("setting", "corrected"),
                         **kw)
        self.student = student

    def rows(self) -> list[str]:
        return [ROW]

    def headline(self) -> str:
        return f"specialize {self.student}, profile {self.p.name}"

    def eval_dir(self, step: Step, model: str) -> Path:
        """Evaluations live beside every specialization of the --work folder: the student's baseline
        is measured once and shared by runs with other teachers (the folder's name is a hash of
        the model, tasks, limits and generation cap)."""
        from harness.reproduce.steps import cell_dir

        return cell_dir(self.work.parent, model, step.tasks, step.limit, step.split_mode, self.p.max_gen_toks)

    def align_config(self):
        from harness.align.api import AlignConfig

        spec = student_tokenizer(self.student)
        return AlignConfig() if spec == "t5" else AlignConfig(student=spec)

    def tasks(self) -> list[str]:
        return [task for task, *_ in METRICS]

    def row_steps(self, row: str) -> list[Step]:
        base = Model(self.student)
        steps = self.eval_steps(base, [*self.tasks(), *[t for t in CURVE_TASKS if t not in self.tasks()]], (row,))
        steps.append(self.train_step(row))
        return steps + self.eval_steps(self.specialized(row), self.tasks(), (row,))

    def train_step(self, row: str, matching: str = "distribution", only: str | None = None, eval_tasks=None) -> Step:
        return super().train_step(row, matching, only, eval_tasks or (*DEV_TASKS, *CURVE_BBH_TASKS))

    def check(self, models: bool = True) -> None:
        from harness import handoff, hub
        from harness.teacher.job import load_config

        if self.teacher_config is None:
            raise UsageError("--teacher-config: required (a teacher job config: README 'Teacher data'; docs/specialize.md)")
        cfg = load_config(self.teacher_config)
        if cfg.teacher.kind == "default" and not self.p.pipeline_check:
            raise UsageError(f"--teacher-config {self.teacher_config}: teacher.kind 'default' is the CPU pipeline-check teacher "
                             "(random weights); name a real teacher (openai or hf), or use --profile cpu with a tiny student")
        absent = hub.missing([self.student], check_hub=not self.p.hub_offline) if models else []
        if absent:
            raise UsageError(f"--student {self.student}: not available here (not a folder, not in the Hugging Face cache"
                             f"{'' if self.p.hub_offline or hub.hub_off() else ', Hub unreachable'})")
        handoff.check_output(self.work, "--work")
        handoff.check_output(self.reports, "--reports")

    # --- the measurements ---------------------------------------------------------------------------

    def metric(self, model: Model, task: str, rule: str, aggregate: str | None) -> dict | None:
        from harness.report.collect import value_from_summary
        from harness.reproduce.runner import StepFailed

        try:
            name = self.resolve(model)
        except StepFailed:
            return None
        summary = self.summary_of(name, task, self._limit(task))
        if summary is None:
            return None
        value, n, _ = value_from_summary(summary, task, rule, aggregate)
        return {"value": value, "n": int(sum(n))}

    def tradeoff(self) -> dict[str, Any]:
        from harness.report.provenance import collect_provenance
        from harness.train.metrics import read_metrics

        base, spec = Model(self.student), self.specialized(ROW)
        metrics = [{"task": task, "label": label, "group": group, "rule": rule,
                    "before": self.metric(base, task, rule, aggregate), "after": self.metric(spec, task, rule, aggregate)}
                   for task, label, group, rule, aggregate in METRICS]
        step = next(s for s in self.steps() if s.stage == "train")
        curves = [{"task": task, **point} for task in CURVE_TASKS for point in self._trajectory(ROW, step.output, task)] if step.output.is_dir() else []
        losses = [{"examples": r["examples"], "loss": r["loss"]} for r in read_metrics(step.output) if r.get("kind") == "train"] \
            if step.output.is_dir() else []
        selection = None
        if (step.output / "metrics.jsonl").is_file():
            choice = self.choose(step.output, self.select_rule)
            if choice.get("checkpoint"):
                selection = {k: choice.get(k) for k in ("rule", "checkpoint", "candidates", "examples", "dev")}
        provenance = collect_provenance(self.data_dir, self.tasks(), os.environ.get("SPEC_CONTAINER_IMAGE"), profile=self.p.name)
        flat = {"git_commit": provenance.get("git_commit"), "device": (provenance.get("device") or {}).get("name")
                if isinstance(provenance.get("device"), dict) else provenance.get("device"), "profile": self.p.name}
        config = json.loads((step.output / "config.json").read_text()) if (step.output / "config.json").is_file() else {}
        teacher = self.provenance_extra().get("training data") or {}
        notes = [f"generation capped at {self.p.max_gen_toks} new tokens" for _ in [0] if self.p.max_gen_toks]
        notes += [f"{row}: not run ({info['reason']})" for row, info in self.not_run.items()]
        return {"schema": "tradeoff-1", "student": self.student, "loss": config.get("loss", "distribution"), "setting": self.setting,
                "pipeline_check": bool(self.p.pipeline_check or teacher.get("kind") == "pipeline-check"),
                "teacher": {k: v for k, v in teacher.items() if isinstance(v, (str, int, float)) or v is None},
                "metrics": metrics, "curves": curves, "losses": losses, "selection": selection,
                "precision": config.get("precision"), "launcher": step.launch, "provenance": flat, "notes": notes,
                "limits": {"math": self.p.eval_limit, "bbh": self.p.bbh_limit}}

    def write_report(self) -> list[Path]:
        from harness.records import atomic_write
        from harness.report.tradeoff import render_tradeoff

        results = self.work / "tradeoff.results.json"
        with atomic_write(results) as handle:
            json.dump(self.tradeoff(), handle, indent=1)
        return render_tradeoff(results, self.reports)

    def summary_lines(self) -> list[str]:
        data = json.loads((self.work / "tradeoff.results.json").read_text()) if (self.work / "tradeoff.results.json").is_file() else {}
        lines = [f"specialize {self.student} ({self.p.name}): before -> after"]
        for m in data.get("metrics", []):
            b, a = m.get("before"), m.get("after")
            lines.append(f"  {m['label']}: " + (f"{b['value']:.1f} -> {a['value']:.1f}" if b and a else "not run"))
        return lines


def pick(name: str) -> str:
    check_choice("--profile", name, PROFILES)
    if name != "auto":
        return name
    return "gpu" if gpu_count() else "cpu"


def make(student: str, teacher_config: Path, profile: str = "auto", preset: str | None = None, gpus: int | None = None,
         work: Path = Path("runs/specialize"), reports: Path = Path("reports/specialize"), data_dir: Path | None = None,
         **kw) -> Specialization:
    from harness.config import data_dir as resolve_data_dir

    name = pick(profile)
    prof = specialize_profile(name, student, preset or default_preset(student, name), gpus)
    label = Path(student).name if "/" in student and Path(student).exists() else student.replace("/", "__")
    return Specialization(student, teacher_config, prof, work / label, reports / label, resolve_data_dir(data_dir), **kw)
