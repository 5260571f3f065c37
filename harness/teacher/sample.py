"""`harness teacher sample`: sample (or score) chain-of-thought from a teacher into a store.

The authors' recipe is the default (authors-code-protocol.md §1.1): every GSM8K train question,
the 8-shot `prompt_complex.txt` demos + `Question: {q}` + "Let's think step by step", 40 samples
at temperature 0.5, at most 256 tokens, top-5 log-probabilities, each sample kept up to the end
of its first line containing "answer is" and graded with `harness/answers.py`. (Their script
asked for `n=num_sample` per call instead of `batch_size`, so the documented `--num_sample 20
--batch_size 10` gave 40 per question; restarts left 43.3 on average. Here `n` is exact.)

Scoring mode (`mode: score`) scores a given text instead: the teacher's top-k at every position
of each question's gold rationale, so human CoTs become distribution-matching data.

Work goes a few questions at a time; each group is one store shard, written atomically, so a
killed job loses at most the group in flight and a rerun skips every question already stored.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.errors import UsageError, check_choice, check_positive
from harness.records import Example, atomic_write
from harness.teacher.base import SampleRequest, ScoreRequest, Teacher
from harness.teacher.record import record_from_completion
from harness.teacher.store import STATS_NAME, TeacherStore

JOB = "teacher-sample"
TEACHERS = ("default", "hf", "openai")
MODES = ("sample", "score")
TARGETS = ("topk", "sampled")
ANSWER_LINE = re.compile(r"answer is[^\n]*(\n|$)")
SAMPLE_ONLY = ("n", "temperature", "max_tokens", "cut_after_answer")  # settings score mode does not use


@dataclass
class TeacherConfig:
    """Which teacher. `default`: the CPU default (a small GPT-2 with the real tokenizer);
    `hf`: a local Hugging Face causal LM (`model` = hub id or folder); `openai`: an
    OpenAI-compatible server (`model`, `base_url`; the API key comes from the environment only)."""

    kind: str = "default"
    model: str | None = None
    tokenizer: str | None = None  # a harness.tokenizers spec; default: the backend's own
    base_url: str | None = None
    api: str = "completions"  # openai: completions | chat
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    requests_per_minute: float | None = None
    device: str | None = None
    batch_size: int = 8
    train_steps: int = 0  # default teacher: 0 = random init, else trained briefly on GSM8K


@dataclass
class SamplingConfig:
    mode: str = "sample"  # sample | score
    source: str = "gsm8k"
    split: str = "train"
    split_mode: str = "faithful"
    limit: int | None = None  # first N questions (None: all)
    n: int = 40  # samples per question
    temperature: float = 0.5
    max_tokens: int = 256
    top_k: int = 5
    prompt: str = "complex"  # prompts/prompt_<name>.txt, the 8-shot demos
    targets: str = "topk"  # topk | sampled (local teachers: M draws with importance weights)
    draws: int = 64
    seed: int = 0
    cut_after_answer: bool = True  # keep each sample up to its first line containing "answer is"


@dataclass
class SampleJobConfig:
    output: Path = Path("runs/teacher/default")
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # Resume granularity. It does not change which texts are sampled or scored (seeds are per
    # question), but a local teacher (default, hf) batches within a shard, and which prompts share a
    # batch changes their padding and so the log-probabilities in the last float bits (up to 1.9e-6
    # measured in score mode; `teacher.batch_size` does the same). HTTP teachers: no effect.
    questions_per_shard: int = 16

    def validate(self) -> None:
        t, s = self.teacher, self.sampling
        check_choice("teacher.kind", t.kind, TEACHERS)
        check_choice("sampling.mode", s.mode, MODES)
        check_choice("sampling.targets", s.targets, TARGETS)
        check_choice("sampling.split_mode", s.split_mode, ("faithful", "clean"))
        if s.source != "gsm8k":
            raise UsageError(f"sampling.source: {s.source!r} is not supported; the teacher data of the paper is GSM8K (gsm8k)")
        for name in ("n", "max_tokens", "top_k", "draws", "limit"):
            check_positive(f"sampling.{name}", getattr(s, name))
        check_positive("sampling.temperature", s.temperature, allow_zero=True)
        check_positive("questions_per_shard", self.questions_per_shard)
        if t.kind == "hf" and not t.model:
            raise UsageError("teacher.model: required for teacher.kind 'hf' (a hub id or a local model folder)")
        if t.kind == "openai" and not (t.model or os.environ.get("SPEC_TEACHER_MODEL")):
            raise UsageError("teacher.model: required for teacher.kind 'openai' (the served model name; or set SPEC_TEACHER_MODEL)")
        if t.kind == "openai" and s.targets == "sampled":
            raise UsageError("sampling.targets: 'sampled' needs the teacher's full distribution; use a local teacher (default or hf), or 'topk'")
        if t.kind == "openai" and s.mode == "score" and t.api == "chat":
            raise UsageError("teacher.api: chat completions cannot score a given text; use api: completions for sampling.mode score")

    def settings(self) -> dict[str, Any]:
        """What makes the data: stored with the store, checked on resume (no secrets, no speed
        knobs, no address: a server restarted on another port serves the same model; the address
        is recorded per run in stats.json)."""
        teacher = {k: v for k, v in asdict(self.teacher).items()
                   if k not in ("concurrency", "requests_per_minute", "api_key_env", "device", "base_url")}
        # `limit` only says how far to go: growing a run (40 -> 50 questions) resumes it.
        sampling = {k: v for k, v in asdict(self.sampling).items() if k != "limit" and not (self.sampling.mode == "score" and k in SAMPLE_ONLY)}
        return {"teacher": teacher, "sampling": sampling}


def load_config(path: str | os.PathLike | None = None, **overrides: Any) -> SampleJobConfig:
    """A job config from a YAML/JSON file (sections `teacher`, `sampling`, plus `output`,
    `questions_per_shard`), then dotted overrides such as {"sampling.n": 4} (None: not given).
    Read with the rules every stage's config follows (`harness.config_files`)."""
    from harness.config_files import build, merge, nest, read_mapping

    raw = read_mapping(path, "a teacher config (sections teacher, sampling)") if path is not None else {}
    cfg = build(SampleJobConfig, merge(raw, nest(overrides)), where=str(path or "config"))
    cfg.validate()
    return cfg


def make_teacher(cfg: TeacherConfig, seed: int = 0, targets: str = "topk", draws: int = 64) -> Teacher:
    """Build the configured backend (imported lazily: each pulls in its own heavy dependencies)."""
    if cfg.kind == "default":
        from harness.teacher.default_teacher import default_teacher

        return default_teacher(train_steps=cfg.train_steps, seed=seed, targets=targets, draws=draws, device=cfg.device, batch_size=cfg.batch_size)
    if cfg.kind == "hf":
        from harness.teacher.hf_backend import HFTeacher

        return HFTeacher(cfg.model, tokenizer_spec=cfg.tokenizer, device=cfg.device, batch_size=cfg.batch_size, seed=seed, targets=targets, draws=draws)
    from harness.teacher.openai_backend import OpenAIConfig, OpenAITeacher

    return OpenAITeacher(OpenAIConfig.from_env(**openai_options(cfg)))


def openai_options(cfg: TeacherConfig) -> dict[str, Any]:
    """OpenAIConfig arguments from the job's teacher section (unset ones come from the environment)."""
    options = {"api": cfg.api, "concurrency": cfg.concurrency, "requests_per_minute": cfg.requests_per_minute,
               "api_key_env": cfg.api_key_env, "model": cfg.model, "base_url": cfg.base_url, "tokenizer": cfg.tokenizer}
    return {k: v for k, v in options.items() if v is not None}


def answer_line_cut(tokens: list[str]) -> int:
    """How many tokens to keep: through the end of the first line containing "answer is" (the
    authors' extract_ans); all of them when no line does. A token that straddles the line end
    is kept, so the kept text ends with (at most) its newline."""
    text = "".join(tokens)
    match = ANSWER_LINE.search(text)
    if not match:
        return len(tokens)
    end, pos = match.end(), 0
    for i, token in enumerate(tokens):
        if pos >= end:
            return i
        pos += len(token)
    return len(tokens)


def load_questions(cfg: SamplingConfig) -> list[Example]:
    from harness.data import load

    examples = load(cfg.source, cfg.split, mode=cfg.split_mode)
    return examples[: cfg.limit] if cfg.limit else examples


PIPELINE_CHECK_NOTE = ("PIPELINE CHECK: the teacher has random or barely trained weights ({what}); "
                       "its samples test the plumbing and are not teacher data.")
SCORE_NOTE = "score mode: the texts are GSM8K's gold rationales, so the accuracies are those of the gold text, not of the teacher."


def run_sampling(
    cfg: SampleJobConfig,
    teacher: Teacher | None = None,
    progress: Callable[[int, dict[str, int]], None] | None = None,
    note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the job. `progress(questions_done_now, counters)` after each shard; `note`
    gets the pipeline-check and score-mode notes. Returns the store statistics plus what this run
    did; the notes are also written into stats.json."""
    from harness.data.prompts import authors_prompt
    from harness.teacher.gold import gold_text
    from harness.templates import teacher_cot

    cfg.validate()
    s = cfg.sampling
    questions = load_questions(s)  # cheap checks (data present) before the teacher loads
    demos = authors_prompt(s.prompt)
    with TeacherStore.open(cfg.output, JOB, cfg.settings()) as store:
        done_questions = {qid for qid, _ in store.done_keys()}
        todo = [e for e in questions if e.id not in done_questions]
        counters = {"questions": 0, "samples": 0, "retries": 0, "tokens": 0, "skipped": len(questions) - len(todo)}
        def sample_request(e: Example) -> SampleRequest:
            return SampleRequest(teacher_cot(e.question, demos), n=s.n, temperature=s.temperature, max_tokens=s.max_tokens,
                                 top_k=s.top_k, seed=_question_seed(s.seed, e.id))

        def score_request(e: Example) -> ScoreRequest:
            return ScoreRequest(teacher_cot(e.question, demos) + "\n", gold_text(e), top_k=s.top_k)

        if todo:
            teacher = teacher or make_teacher(cfg.teacher, seed=s.seed, targets=s.targets, draws=s.draws)
            if hasattr(teacher, "probe"):  # a server: learn what it supports before any work (one tiny request)
                capabilities = teacher.probe((sample_request if s.mode == "sample" else score_request)(todo[0]))
                if note:
                    note(capabilities.summary())
        clock = time.monotonic()  # after the teacher loads: the rate is the teacher's, not its start-up
        prompt_id = f"{s.prompt}-8shot" if s.mode == "sample" else f"gold-scored-{s.prompt}-8shot"
        for start in range(0, len(todo), cfg.questions_per_shard):
            group = todo[start : start + cfg.questions_per_shard]
            base = dict(counters)

            def on_progress(done: int, retries: int, tokens: int) -> None:
                if progress:
                    progress(0, {**base, "retries": base["retries"] + retries, "tokens": base["tokens"] + tokens})

            records = []
            if s.mode == "sample":
                results = teacher.sample([sample_request(e) for e in group], on_progress)
                for example, completions in zip(group, results):
                    for index, completion in enumerate(completions):
                        keep = answer_line_cut(completion.tokens) if s.cut_after_answer else None
                        records.append(record_from_completion(completion, example, index, prompt_id=prompt_id,
                                                              teacher_model=teacher.model, teacher_tokenizer=teacher.tokenizer, keep_tokens=keep))
            else:
                results = teacher.score([score_request(e) for e in group], on_progress)
                for example, completion in zip(group, results):
                    records.append(record_from_completion(completion, example, 0, prompt_id=prompt_id,
                                                          teacher_model=teacher.model, teacher_tokenizer=teacher.tokenizer))
            store.write_shard(records)
            counters["questions"] += len(group)
            counters["samples"] += len(records)
            counters["tokens"] += sum(len(r.tokens) for r in records)
            usage = getattr(teacher, "usage", None)
            counters["retries"] = getattr(usage, "retries", 0) if usage is not None else 0
            if progress:
                progress(len(group), dict(counters))
        counters.update(throughput(counters, time.monotonic() - clock))
        old_path = Path(cfg.output) / STATS_NAME
        previous = json.loads(old_path.read_text(encoding="utf-8")) if old_path.is_file() else {}
        stats_path = store.write_stats()
        stats = json.loads(Path(stats_path).read_text(encoding="utf-8"))
        notes = _notes(cfg, teacher)
        if counters["questions"]:  # a rerun with nothing left to do keeps the last measurement
            stats["last_run"] = {"teacher": getattr(teacher, "model", None), **counters}
            if hasattr(teacher, "provenance"):  # a server: its address, what it supports, the anomalies counted
                stats["last_run"]["server"] = teacher.provenance()
        elif "last_run" in previous:
            stats["last_run"] = previous["last_run"]
        if teacher is None:  # nothing left to do, the teacher never loaded: its marker's notes stand
            notes += [n for n in previous.get("notes", []) if n not in notes]
        if notes:
            stats["notes"] = notes
            stats["pipeline_check"] = any(n.startswith("PIPELINE CHECK") for n in notes)
        if notes or "last_run" in stats:
            with atomic_write(stats_path) as handle:
                json.dump(stats, handle, indent=1, sort_keys=True)
                handle.write("\n")
            for text in notes:
                if note:
                    note(text)
    return {"store": str(cfg.output), "this_run": counters, "stats": stats}


def throughput(counters: dict[str, int], seconds: float) -> dict[str, float | None]:
    """What a run measured: wall seconds, seconds per 1K questions, samples and tokens per second
    (the README's "time per 1K questions" for a given teacher is this, from a real run)."""
    q, seconds = counters["questions"], max(seconds, 1e-6)
    return {
        "wall_s": round(seconds, 3),
        "seconds_per_1k_questions": round(1000 * seconds / q, 1) if q else None,
        "samples_per_s": round(counters["samples"] / seconds, 2) if q else None,
        "tokens_per_s": round(counters["tokens"] / seconds, 1) if q else None,
    }


def _notes(cfg: SampleJobConfig, teacher: Teacher | None) -> list[str]:
    notes = []
    marker = teacher.marker() if teacher is not None and hasattr(teacher, "marker") else None
    if marker and marker.get("pipeline_check", True):
        notes.append(PIPELINE_CHECK_NOTE.format(what=marker.get("description") or marker.get("kind", "built by the harness")))
    elif teacher is None and cfg.teacher.kind == "default":
        notes.append(PIPELINE_CHECK_NOTE.format(what="the CPU default teacher"))
    if cfg.sampling.mode == "score":
        notes.append(SCORE_NOTE)
    return notes


def _question_seed(seed: int, question_id: str) -> int:
    """A per-question seed: the same question gets the same samples whatever else is in its batch."""
    import zlib

    return (seed * 1_000_003 + zlib.crc32(question_id.encode())) % (2**31)
