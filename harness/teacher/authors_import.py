"""Import the authors' Codex pickles (Fu et al. 2023, §1.2 of authors-code-protocol.md) into a store.

    from harness.teacher.authors_import import import_authors
    import_authors("path/to/processed_data", "runs/teacher/authors")   # resumable; writes import.json

Inputs (one folder): codex_questions.pkl ("Question {i}: {q}\\n"), codex_answers.pkl
("Answer: {gsm8k answer}\\n"), codex_predictions.pkl ([question][sample] "Model output {k}: \\n{CoT}\\n"),
codex_per_step_probs.pkl ([question][sample][GPT step] 6 (token, prob) pairs: the sampled token,
then the 5 API top entries, probabilities rounded to 4 decimals) and codex_prediction_labels.pkl
([question][sample] 0/1, the authors' last-number rule). Optional: codex_updated_labels.pkl (labels
after their alignment; cross-checked and counted in import.json, not stored).

What one row holds (docs/teacher-store.md, "The authors' importer"):
- question_id "gsm8k/train/{i}" after the duplicated question is removed (their parser wrote
  question 3324 twice, at 3324 and 3325; removed only when questions is one longer than
  answers and those two entries are equal), sample_index = position in the question's list;
- question / text: the "Question {i}: " / "Model output {k}: " prefix removed and whitespace
  stripped, nothing else. The authors' own stripper also deleted every other ": " (`authors_strip`);
  `faithful_text(text)` gives that variant from the stored text, for the faithful formats;
- tokens: every stored step's sampled token, the frame included (' step', '\\n', …, '\\n'), with
  framing="authors": `"".join(tokens[2:-2]).strip() == text.strip()` when the frame is there;
  `raw_text` is "".join(tokens) whenever the steps spell more than the frame around `text`;
- token_logprobs / top_tokens / top_logprobs: entry 0's probability, and entries 1-5 sorted by
  probability (stable; the API's dict order is kept among ties); probabilities become natural
  logs, and a probability rounded to 0.0 becomes ZERO_PROB_LOGPROB (-1e4; exp gives 0.0 back);
- correct_faithful: the authors' label; correct: the corrected rule on `text`; answer: the
  corrected extraction.

Security: pickles can run code when loaded. These files come from a third party, so they are
read with `harness.safe_pickle.load_pickle` (core; also importable from here), whose restricted
Unpickler only builds builtins containers, str, int, float, bool and collections.OrderedDict;
anything else (numpy scalars included) stops the import with a DataError.
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

from harness import answers
from harness.errors import DataError
from harness.records import Example, atomic_write
from harness.rules import all_probabilities, clean_text, framed_text, is_framed, is_probability
from harness.safe_pickle import RestrictedUnpickler, load_pickle  # noqa: F401 (moved to the core; still importable here)

from harness.teacher.record import ZERO_PROB_LOGPROB, TeacherRecord, grade
from harness.teacher.store import TeacherStore

JOB = "teacher-authors-import"
IMPORTER_VERSION = 1
TEACHER_MODEL = "code-davinci-002"
TEACHER_TOKENIZER = "tiktoken:p50k_base"
PROMPT_ID = "authors-complex-8shot"
SAMPLING = {"temperature": 0.5, "max_tokens": 256, "logprobs": 5, "prompt": "lib_prompt/prompt_complex.txt + 'Question: {q}\\nLet's think step by step'"}
DUPLICATE_INDEX = 3325
ENTRIES_PER_STEP = 6

FILES = {
    "questions": "codex_questions.pkl",
    "answers": "codex_answers.pkl",
    "predictions": "codex_predictions.pkl",
    "per_step_probs": "codex_per_step_probs.pkl",
    "labels": "codex_prediction_labels.pkl",
}
OPTIONAL_FILES = {"updated_labels": "codex_updated_labels.pkl", "dtw": "codex_dtw_transformed_step_probs.pkl"}

QUESTION_PREFIX = re.compile(r"Question (\d+): ")
OUTPUT_PREFIX = re.compile(r"Model output (\d+): ")
ANSWER_PREFIX = re.compile(r"Answer: ")


# ------------------------------------------------------------------------------------ text


def strip_prefix(value: Any, pattern: re.Pattern, path: Path, where: str) -> tuple[str, int | None]:
    """(text after the prefix, whitespace-stripped; the number in the prefix, if any)."""
    if not isinstance(value, str):
        raise DataError(f"{path}: {where}: expected a string, got {type(value).__name__}")
    match = pattern.match(value)
    if not match:
        shape = {QUESTION_PREFIX: "Question {i}: ", OUTPUT_PREFIX: "Model output {k}: ", ANSWER_PREFIX: "Answer: "}.get(pattern, pattern.pattern)
        raise DataError(f"{path}: {where}: does not start with {shape!r}: {value[:40]!r}")
    number = int(match.group(1)) if match.groups() else None
    return value[match.end() :].strip(), number


def authors_strip(raw: str) -> str:
    """The authors' stripper on a raw pickle string: split on ": ", drop the first piece, join the
    rest with "" (so every other ": " disappears too), strip whitespace."""
    return "".join(raw.split(": ")[1:]).strip()


def faithful_text(text: str) -> str:
    """What the authors trained on, from a stored `text` / `question` (prefix already removed):
    every ": " deleted (`rules.clean_text(text, "faithful")`). Equals `authors_strip(raw)` except
    when the stored text ends in ":" and the raw string had a space right after it (the authors
    then also dropped that ":")."""
    return clean_text(text, "faithful")


# ------------------------------------------------------------------------------------ steps


class _Where:
    """Names the pickle, question, sample (and step) in an error."""

    def __init__(self, path: Path, question: int, sample: int):
        self.path, self.question, self.sample = path, question, sample

    def fail(self, problem: str, step: int | None = None):
        at = f"question {self.question} sample {self.sample}" + (f" step {step}" if step is not None else "")
        raise DataError(f"{self.path}: {at}: {problem}")


class _LogTable(dict):
    """probability -> natural log (ZERO_PROB_LOGPROB for 0.0), memoised: the pickles' probabilities
    are rounded to 4 decimals, so there are at most 10,001 of them."""

    def __missing__(self, p: float) -> float:
        lp = math.log(min(p, 1.0)) if p > 0 else ZERO_PROB_LOGPROB
        if len(self) < 100_000:
            self[p] = lp
        return lp


_LOG = _LogTable()


def convert_steps(steps: Any, where: _Where) -> tuple[list[str], list[float], list[list[str]], list[list[float]]]:
    """6-entry step lists → (sampled tokens, their logprobs, top-5 tokens, top-5 logprobs).

    The whole sample is checked at once over flattened lists; only a sample that fails is walked
    step by step, to name the bad step and entry.
    """
    if not isinstance(steps, list):
        where.fail(f"expected a list of steps, got {type(steps).__name__}")
    try:
        ok = set(map(type, steps)) <= {list, tuple} and set(map(len, steps)) <= {ENTRIES_PER_STEP}
        flat = [pair for step in steps for pair in step] if ok else []
        ok = ok and set(map(type, flat)) <= {list, tuple} and set(map(len, flat)) <= {2}
        words = [w for w, _ in flat] if ok else []
        probs = [p for _, p in flat] if ok else []
        ok = ok and set(map(type, words)) <= {str} and all_probabilities(probs)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        _find_bad_step(steps, where)
    lps = list(map(_LOG.__getitem__, probs))
    n = len(steps)
    tokens, token_lps = words[0::ENTRIES_PER_STEP], lps[0::ENTRIES_PER_STEP]
    top_tokens: list[list[str]] = []
    top_lps: list[list[float]] = []
    for b in range(1, n * ENTRIES_PER_STEP, ENTRIES_PER_STEP):
        ws, ls = words[b : b + 5], lps[b : b + 5]
        if not (ls[0] >= ls[1] >= ls[2] >= ls[3] >= ls[4]):
            order = sorted(range(5), key=ls.__getitem__, reverse=True)  # stable: ties keep API order
            ws, ls = [ws[j] for j in order], [ls[j] for j in order]
        top_tokens.append(ws)
        top_lps.append(ls)
    return tokens, token_lps, top_tokens, top_lps


def _find_bad_step(steps: list, where: _Where) -> None:
    for s, step in enumerate(steps):
        if type(step) not in (list, tuple) or len(step) != ENTRIES_PER_STEP:
            where.fail(f"expected {ENTRIES_PER_STEP} (token, probability) pairs, got {_show(step)}", s)
        for e, pair in enumerate(step):
            if type(pair) not in (list, tuple) or len(pair) != 2:
                where.fail(f"entry {e} is not a (token, probability) pair: {_show(pair)}", s)
            w, p = pair
            if type(w) is not str:
                where.fail(f"entry {e}: token {w!r} is not a string", s)
            if not is_probability(p):
                where.fail(f"entry {e}: probability {p!r} is not a number in [0, 1]", s)
    where.fail("malformed step list")  # pragma: no cover - the checks above name every failure


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------------------------ import


def _gold_example(i: int, raw_answer: Any, path: Path) -> Example:
    gold_raw, _ = strip_prefix(raw_answer, ANSWER_PREFIX, path, f"question {i}")
    if "####" not in gold_raw:
        raise DataError(f"{path}: question {i}: the answer has no '#### N' final answer")
    number = answers.parse_number(gold_raw.rsplit("####", 1)[1].strip())
    if number is None:
        raise DataError(f"{path}: question {i}: final answer {gold_raw.rsplit('####', 1)[1].strip()!r} is not a number")
    return Example(id=f"gsm8k/train/{i}", source="gsm8k", question="", answer=answers.canonical_number(number),
                   number=number, gold_raw=gold_raw, index=i)


def _list(value: Any, path: Path, what: str) -> list:
    if not isinstance(value, list):
        raise DataError(f"{path}: expected {what}, got {type(value).__name__}")
    return value


def remove_duplicate_question(questions: list, n_answers: int, path: Path, index: int = DUPLICATE_INDEX) -> tuple[list, bool]:
    """The questions list with the parser's duplicate removed (see the module docstring)."""
    if len(questions) == n_answers:
        return questions, False
    if len(questions) == n_answers + 1 and 0 < index < len(questions) and questions[index - 1] == questions[index]:
        return questions[:index] + questions[index + 1 :], True
    if len(questions) == n_answers + 1:
        raise DataError(
            f"{path}: {len(questions)} questions for {n_answers} answers, but entries {index - 1} and {index} are not the "
            "known duplicate (they differ); the file does not have the authors' layout"
        )
    raise DataError(f"{path}: {len(questions)} questions for {n_answers} answers (expected equal, or one known duplicate)")


def import_settings(folder: Path, duplicate_index: int) -> dict[str, Any]:
    sizes = {name: (folder / name).stat().st_size for name in FILES.values() if (folder / name).exists()}
    return {
        "teacher": {"model": TEACHER_MODEL, "tokenizer": TEACHER_TOKENIZER, "prompt_id": PROMPT_ID},
        "sampling": SAMPLING,
        "source": {"folder_files": sizes, "duplicate_index": duplicate_index},
        "import": {"version": IMPORTER_VERSION, "zero_prob_logprob": ZERO_PROB_LOGPROB, "top": "entries 1-5 sorted by probability"},
    }


def import_authors(
    folder: str | os.PathLike,
    store_root: str | os.PathLike,
    *,
    duplicate_index: int = DUPLICATE_INDEX,
    check_gsm8k: bool = True,
    examples: Sequence[Example] | None = None,
    questions_per_shard: int = 200,
    data_dir: str | os.PathLike | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Import the pickles in `folder` into the store at `store_root` (resumable: a rerun reads
    and checks everything again, so import.json always counts every sample, and writes only the
    rows not yet stored).

    With `check_gsm8k`, every question and gold answer must equal GSM8K train's (`examples`, or
    `harness.data.load("gsm8k", "train")`), so that question_id "gsm8k/train/{i}" is right.
    Returns the import summary, also written to `<store_root>/import.json`.
    """
    folder = Path(folder)
    paths = {key: folder / name for key, name in FILES.items()}
    for path in paths.values():
        if not path.is_file():
            raise DataError(f"{path}: not found (the authors' pickles: {', '.join(FILES.values())})")
    summary: dict[str, Any] = collections.Counter()
    with TeacherStore.open(store_root, JOB, import_settings(folder, duplicate_index)) as store:
        data = {key: load_pickle(path) for key, path in paths.items()}
        answers_ = _list(data["answers"], paths["answers"], "a list of answer strings")
        questions, removed = remove_duplicate_question(_list(data["questions"], paths["questions"], "a list of question strings"),
                                                       len(answers_), paths["questions"], duplicate_index)
        n = len(answers_)
        for key in ("predictions", "per_step_probs", "labels"):
            got = _list(data[key], paths[key], "a list with one entry per question")
            if len(got) != n:
                raise DataError(f"{paths[key]}: {len(got)} questions, but {paths['answers'].name} has {n}")
        updated = _load_updated_labels(folder, n, data["labels"], paths["labels"])
        if check_gsm8k and examples is None:
            from harness.data import load

            examples = load("gsm8k", "train", data_dir=data_dir)
        if check_gsm8k and len(examples) != n:
            raise DataError(f"{paths['answers']}: {n} questions, but GSM8K train has {len(examples)}")

        done = store.done_keys()
        batch: list[TeacherRecord] = []
        batch_questions = 0
        for i in range(n):
            question, _ = strip_prefix(questions[i], QUESTION_PREFIX, paths["questions"], f"question {i}")
            gold = _gold_example(i, answers_[i], paths["answers"])
            if check_gsm8k:
                _check_gsm8k(i, question, gold, examples[i], paths)
            gold = Example(**{**gold.to_dict(), "question": question})
            records = _question_records(i, question, gold, data, paths, updated, summary)
            data["per_step_probs"][i] = None  # the converted rows replace it: free it as we go
            summary["questions"] += 1
            summary["samples"] += len(records)
            todo = [r for r in records if r.key not in done]
            summary["skipped"] += len(records) - len(todo)
            batch.extend(todo)
            batch_questions += 1
            if batch_questions >= questions_per_shard:
                summary["written"] += len(batch)
                store.write_shard(batch)
                batch, batch_questions = [], 0
            if progress:
                progress(i + 1)
        if batch:
            summary["written"] += len(batch)
            store.write_shard(batch)
        summary = {"duplicate_question_removed": removed, **dict(summary)}
        summary.setdefault("written", 0)
        with atomic_write(Path(store_root) / "import.json") as handle:
            json.dump(summary, handle, indent=1, sort_keys=True)
            handle.write("\n")
        store.write_stats()
    return summary


def _check_gsm8k(i: int, question: str, gold: Example, example: Example, paths: dict[str, Path]) -> None:
    if question != example.question.strip():
        raise DataError(f"{paths['questions']}: question {i}: differs from GSM8K train {i} ({question[:40]!r} vs {example.question[:40]!r})")
    if gold.gold_raw.strip() != example.gold_raw.strip():
        raise DataError(f"{paths['answers']}: question {i}: gold answer differs from GSM8K train {i}")


def _load_updated_labels(folder: Path, n: int, labels: list, labels_path: Path) -> list | None:
    path = folder / OPTIONAL_FILES["updated_labels"]
    if not path.is_file():
        return None
    updated = _list(load_pickle(path), path, "a list with one entry per question")
    if len(updated) != n:
        raise DataError(f"{path}: {len(updated)} questions, but {labels_path.name} has {n}")
    for i, (a, b) in enumerate(zip(labels, updated)):
        if not isinstance(b, list) or not isinstance(a, list) or len(a) != len(b):
            raise DataError(f"{path}: question {i}: expected one 0/1 label per sample, as in {labels_path.name}")
    return updated


def _label(value: Any, path: Path, i: int, k: int) -> bool:
    if value not in (0, 1) or type(value) not in (int, bool, float):
        raise DataError(f"{path}: question {i} sample {k}: label {value!r} is not 0 or 1")
    return bool(value)


def _question_records(i: int, question: str, gold: Example, data: dict[str, Any], paths: dict[str, Path],
                      updated: list | None, summary: collections.Counter) -> list[TeacherRecord]:
    predictions, steps, labels = data["predictions"][i], data["per_step_probs"][i], data["labels"][i]
    for key, value in (("predictions", predictions), ("per_step_probs", steps), ("labels", labels)):
        if not isinstance(value, list):
            raise DataError(f"{paths[key]}: question {i}: expected a list with one entry per sample, got {type(value).__name__}")
    if not len(predictions) == len(steps) == len(labels):
        raise DataError(
            f"{paths['per_step_probs']}: question {i}: {len(steps)} samples, but {paths['predictions'].name} has "
            f"{len(predictions)} and {paths['labels'].name} has {len(labels)}"
        )
    records = []
    for k, (prediction, sample_steps, label) in enumerate(zip(predictions, steps, labels)):
        text, number = strip_prefix(prediction, OUTPUT_PREFIX, paths["predictions"], f"question {i} sample {k}")
        tokens, token_lps, top_tokens, top_lps = convert_steps(sample_steps, _Where(paths["per_step_probs"], i, k))
        label = _label(label, paths["labels"], i, k)
        answer, correct, faithful = grade(text, gold)
        framed = is_framed(tokens)
        spelled = "".join(tokens)
        content_matches = framed and framed_text(tokens) == text.strip()
        summary["framed"] += framed
        summary["frame_text_mismatch"] += framed and not content_matches
        summary["labels_correct"] += label
        summary["label_vs_last_number_disagreements"] += label != faithful
        summary["output_number_not_sample_index"] += number != k
        if updated is not None:
            new = _label(updated[i][k], paths["labels"].with_name(OPTIONAL_FILES["updated_labels"]), i, k)
            summary["updated_labels_correct"] += new
            summary["updated_label_dropped"] += label and not new
            summary["updated_label_dropped_unframed"] += label and not new and not framed
        records.append(TeacherRecord(
            question_id=gold.id, sample_index=k, prompt_id=PROMPT_ID, question=question, gold=gold.answer, text=text,
            raw_text=None if content_matches else spelled, teacher_model=TEACHER_MODEL, teacher_tokenizer=TEACHER_TOKENIZER,
            targets="topk", framing="authors", tokens=tokens, token_ids=None, token_logprobs=token_lps,
            top_tokens=top_tokens, top_ids=None, top_logprobs=top_lps, finish_reason=None, answer=answer,
            correct=correct, correct_faithful=label,
        ))
    return records


def load_dtw_targets(path: str | os.PathLike) -> list[list[list[dict[str, float]] | None]]:
    """codex_dtw_transformed_step_probs.pkl, validated: [question][sample] → None or one
    {T5 token: prob} dict per T5 token of the answer (EOS excluded). Not stored: it is the
    authors' alignment *output*, kept for comparing `harness.align` against it."""
    path = Path(path)
    data = _list(load_pickle(path), path, "a list with one entry per question")
    for i, samples in enumerate(data):
        if not isinstance(samples, list):
            raise DataError(f"{path}: question {i}: expected a list of samples, got {type(samples).__name__}")
        for k, steps in enumerate(samples):
            if steps is None:
                continue
            if not isinstance(steps, list):
                raise DataError(f"{path}: question {i} sample {k}: expected None or a list of dicts, got {type(steps).__name__}")
            for s, entry in enumerate(steps):
                if not isinstance(entry, dict) or not all(isinstance(w, str) and is_probability(p) for w, p in entry.items()):
                    raise DataError(f"{path}: question {i} sample {k} step {s}: expected a {{T5 token: probability}} dict, got {_show(entry)}")
    return data
