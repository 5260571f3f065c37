"""Align a teacher data file: validated JSONL in, fixed-K student targets out, resumable, multi-core.

Input (one JSON object per line, until the teacher-data stage fixes its own format):
    {"id": "gsm8k/train/0#3",            # unique, string or integer
     "text": "Natalia sold ...",          # the completion text
     "tokens": ["Nat", "alia", ...],      # the teacher's sampled tokens; they must spell `text`
     "topk": [[["Nat", -0.51], ["If", -2.3], ...], ...],   # per step: K [token, logprob] pairs
     "token_logprobs": [-0.51, ...],      # optional: sampled token's logprob, put first (authors' layout)
     "student_text": "..."}               # optional: the text the student is trained on (default `text`)

Output (one line per input sample, in input order):
    {"id", "mode", "status": "ok", "k", "student_ids": [T], "topk_ids": [T][K], "topk_probs": [T][K],
     "topk_mask": [T][K] (0/1), "tail_mass": [T] (with --tail), "stats": {...}}
    {"id", "mode", "status": "rejected", "reason"}        # authors' framing check failed

Resuming: complete lines already in the output are kept and their ids skipped; a torn last line
(no trailing newline: the process died mid-write) is cut off first. Rows are appended a chunk at a
time with flush + fsync, so a crash loses at most the chunk in flight and never duplicates a row.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from itertools import compress
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.checksums import sha256_of
from harness.errors import DataError, check_positive
from harness.records import RecordError, iter_jsonl
from harness.resume import claim

from harness.align.api import AlignConfig, Aligner
from harness.align.errors import AlignmentError, FramingError
from harness.align.targets import AlignedSequence, AlignmentStats, round6, stored_k

try:  # optional: ~3x faster parsing of the big input lines; anything it rejects goes to `json`
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None


def _loads(line: bytes | str) -> Any:
    """`json.loads` semantics; orjson first when installed, stdlib `json` for whatever it refuses
    (NaN/Infinity literals, > 64-bit integers, lone surrogates, invalid JSON for the error text)."""
    if _orjson is not None:
        try:
            return _orjson.loads(line)
        except _orjson.JSONDecodeError:
            pass
    if isinstance(line, bytes):
        line = line.decode("utf-8")
    return json.loads(line)


@dataclass(frozen=True)
class TeacherSample:
    id: str
    text: str
    student_text: str
    tokens: list[str]
    topk: list[list[tuple[str, float]]]  # probabilities, sampled token first when given
    line: int


def parse_record(row: dict[str, Any], path: str | os.PathLike, line: int, framing: str = "none") -> TeacherSample:
    """Validate one input row; every problem names the file, the record and the field."""
    rid = row.get("id")
    record = f"line {line}" + (f" (id {rid!r})" if rid is not None else "")

    def fail(field: str, problem: str):
        raise RecordError(path, record, field, problem)

    if not isinstance(rid, (str, int)) or isinstance(rid, bool) or str(rid) == "":
        fail("id", "missing, empty, or not a string/integer")
    text = row.get("text")
    if not isinstance(text, str):
        fail("text", "missing or not a string")
    student_text = row.get("student_text", text)
    if not isinstance(student_text, str):
        fail("student_text", "not a string")
    tokens = row.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        fail("tokens", "missing or not a list of strings")
    topk = row.get("topk")
    if not isinstance(topk, list):
        fail("topk", "missing or not a list (one list of [token, logprob] pairs per step)")
    if len(topk) != len(tokens):
        fail("topk", f"has {len(topk)} steps but there are {len(tokens)} tokens")
    sampled = row.get("token_logprobs")
    if sampled is not None and (not isinstance(sampled, list) or len(sampled) != len(tokens)):
        fail("token_logprobs", f"must be a list of {len(tokens)} numbers")
    steps = _parse_steps(topk, tokens, sampled, fail)
    spelled = "".join(tokens)
    if framing == "none" and spelled != text:
        at = next((i for i, (a, b) in enumerate(zip(spelled, text)) if a != b), min(len(spelled), len(text)))
        fail("tokens", f"the tokens spell a different text than `text` (first difference at char {at}: "
                       f"{spelled[at:at + 20]!r} vs {text[at:at + 20]!r})")
    if framing == "authors" and len(tokens) >= 4 and "".join(tokens[2:-2]).strip() != text.strip():
        if tokens[0] == " step" and tokens[1] == "\n":
            fail("tokens", "after dropping the authors' framing steps, the tokens do not spell `text`")
    return TeacherSample(str(rid), text, student_text, list(tokens), steps, line)


def _parse_steps(topk: list, tokens: list[str], sampled: list | None, fail: Callable) -> list[list[tuple[str, float]]]:
    """[token, logprob] pairs → (token, prob) lists, validated for the whole sample at once.

    The checks run over one flattened list (C-speed `map`/`set`); only a sample that fails them
    is walked entry by entry, to name the bad step and entry.
    """
    exp, isfinite = math.exp, math.isfinite
    try:
        lengths = [len(step) for step in topk]
        flat = [pair for step in topk for pair in step]
        words = [w for w, _ in flat]
        logprobs = [lp for _, lp in flat]
        ok = (all(type(step) is list for step in topk) and set(map(type, words)) <= {str}
              and set(map(type, logprobs)) <= {float, int} and all(map(isfinite, logprobs))
              and (not logprobs or max(logprobs) <= 1e-6))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        for s, step in enumerate(topk):
            _check_step(step, s, fail)
        lengths = [len(step) for step in topk]  # every entry passed the slow checks
        words = [pair[0] for step in topk for pair in step]
        logprobs = [pair[1] for step in topk for pair in step]
    probs = [exp(lp) if lp < 0 else 1.0 for lp in logprobs]
    pairs = list(zip(words, probs))
    steps: list[list[tuple[str, float]]] = []
    start = 0
    for s, n in enumerate(lengths):
        entries = pairs[start : start + n]
        start += n
        if sampled is not None:
            entries.insert(0, (tokens[s], _probability(sampled[s], fail, "token_logprobs", f"step {s}")))
        steps.append(entries)
    return steps


def _check_step(step: Any, s: int, fail: Callable) -> None:
    if not isinstance(step, list):
        fail("topk", f"step {s} is not a list of [token, logprob] pairs")
    for e, pair in enumerate(step):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)):
            fail("topk", f"step {s} entry {e} is not a [token, logprob] pair: {pair!r}")
        _probability(pair[1], fail, "topk", f"step {s} entry {e}")


def _probability(value: Any, fail: Callable, field: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        fail(field, f"{where}: logprob {value!r} is not a finite number")
    if value > 1e-6:
        fail(field, f"{where}: logprob {value!r} is positive (expected log-probabilities <= 0)")
    return math.exp(min(value, 0.0))


def read_samples(path: str | os.PathLike, framing: str = "none") -> Iterator[TeacherSample]:
    seen: set[str] = set()
    for line_no, row in iter_jsonl(path):
        sample = parse_record(row, path, line_no, framing)
        if sample.id in seen:
            raise RecordError(path, f"line {line_no}", "id", f"duplicate id {sample.id!r}")
        seen.add(sample.id)
        yield sample


# ----------------------------------------------------------------------------- worker side
#
# Workers parse, validate, align and serialise; the driver only reads lines, checks ids and
# writes. Results come back as plain tuples (no exception objects cross process boundaries):
#   ("row", id, json_line, stats)  ("skip", id)  ("error", record, field, problem)


@dataclass
class _WorkerState:
    aligner: Aligner
    path: str
    done: frozenset


_STATE: _WorkerState | None = None
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def _init_worker(config: AlignConfig, path: str = "<input>", done: frozenset = frozenset(), pool: bool = False) -> None:
    global _STATE
    _STATE = _WorkerState(Aligner(config), path, done)
    if pool:  # long-lived worker: keep the tokenizer/vocabulary out of every cyclic-GC pass
        import gc
        import signal

        gc.freeze()
        # Ctrl-C goes to the whole process group: the driver stops the pool and reports once;
        # workers must not each print a KeyboardInterrupt traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def align_sample(aligner: Aligner, sample: TeacherSample) -> dict[str, Any]:
    """One output row (or a rejection); other alignment errors propagate."""
    config = aligner.config
    try:
        seq = aligner.align(sample.tokens, sample.topk, sample.student_text)
    except FramingError as err:
        return {"id": sample.id, "mode": config.mode, "status": "rejected", "reason": str(err)}
    topk_ids, topk_probs, topk_mask = stored_k(seq.entries, config.k, aligner.student_tokenizer.pad_id)
    row = {
        "id": sample.id,
        "mode": config.mode,
        "status": "ok",
        "k": config.k,
        "student_ids": list(seq.student_ids),
        "topk_ids": topk_ids.tolist(),
        "topk_probs": topk_probs.tolist(),
        "topk_mask": topk_mask.tolist(),
        "stats": {**sequence_stats(seq), "kinds": _count(seq.kinds)},
    }
    if seq.tail is not None:
        row["tail_mass"] = round6(seq.tail).tolist()
    return row


def sequence_stats(seq: AlignedSequence) -> dict[str, Any]:
    """The per-row statistics both outputs store (the JSONL adds `kinds`)."""
    entries = seq.entries
    widths = list(map(len, entries))
    one_hot = sum(1 for e in entries if len(e) == 1 and e[0][1] == 1.0)
    captured = sum([sum(map(_prob, e)) for e in compress(entries, seq.derived)])  # in order, as the sums always were
    return {
        "positions": len(seq),
        "soft": len(entries) - one_hot,
        "multi_entry": len(widths) - widths.count(0) - widths.count(1),
        "derived": sum(seq.derived),
        "captured_mass": round(captured, 6),
    }


_prob = itemgetter(1)


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _work(chunk: list[tuple[int, bytes | str]]) -> list[tuple]:
    """Parse, validate, align and serialise a chunk of (line number, raw line) pairs."""
    state = _STATE
    assert state is not None
    out: list[tuple] = []
    framing = state.aligner.config.framing
    for line_no, line in chunk:
        try:
            try:
                row = _loads(line)
            except json.JSONDecodeError as err:
                raise RecordError(state.path, f"line {line_no}", "<json>", f"not valid JSON ({err.msg})") from None
            except UnicodeDecodeError as err:
                raise RecordError(state.path, f"line {line_no}", "<json>", f"not valid UTF-8 ({err.reason})") from None
            if not isinstance(row, dict):
                raise RecordError(state.path, f"line {line_no}", "<json>", "expected a JSON object")
            sample = parse_record(row, state.path, line_no, framing)
        except RecordError as err:
            out.append(("error", err.record, err.field, str(err).split(f"field {err.field!r}: ", 1)[-1]))
            break
        if sample.id in state.done:
            out.append(("skip", sample.id))
            continue
        try:
            result = align_sample(state.aligner, sample)
        except AlignmentError as err:
            out.append(("error", f"line {line_no} (id {sample.id!r})", "tokens/text", str(err)))
            break  # nothing after a hard error in this chunk is written
        out.append(("row", sample.id, _ENCODER.encode(result) + "\n", result.get("stats"), line_no))
    return out


# ----------------------------------------------------------------------------- driver side


def resume_state(output: Path) -> tuple[set[str], AlignmentStats]:
    """Ids already written, after cutting off a torn last line; stats of the rows kept."""
    done: set[str] = set()
    stats = AlignmentStats()
    if not output.exists():
        return done, stats
    with open(output, "rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            handle.truncate(keep)
            data = data[:keep]
    for line_no, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = _loads(line)
        except json.JSONDecodeError as err:
            raise RecordError(output, f"line {line_no}", "<json>", f"existing output line is not valid JSON ({err.msg})") from None
        done.add(str(row["id"]))
        _add_row_stats(stats, row.get("status"), row.get("stats"))
    return done, stats


def _add_row_stats(stats: AlignmentStats, status: str | None, s: dict | None) -> None:
    if status == "rejected" or s is None:
        stats.rejected += 1
        return
    stats.merge(AlignmentStats(1, 0, s["positions"], s["soft"], s["multi_entry"], s["derived"], s["captured_mass"], dict(s["kinds"])))


def count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def run_alignment(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    config: AlignConfig,
    workers: int = 1,
    chunk_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Align every sample of `input_path` not yet in `output_path`; returns the summary statistics."""
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise DataError(f"{input_path}: no such file (the teacher JSONL to align)")
    check_positive("--workers", workers)
    check_positive("--chunk-size", chunk_size)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    # The output remembers what made it: a rerun resumes only with the same input and settings.
    # The input's checksum too: a teacher file regenerated under the same name must not be mixed in.
    claim(output_path, "align", {"input": str(input_path.resolve()), "input_sha256": sha256_of(input_path),
                                 "config": _config_dict(config)})
    done, stats = resume_state(output_path)

    def chunks() -> Iterator[list[tuple[int, bytes]]]:
        # Raw bytes: the driver neither decodes nor parses; workers do (UTF-8, in `_loads`).
        chunk: list[tuple[int, bytes]] = []
        with open(input_path, "rb") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                chunk.append((line_no, line))
                if len(chunk) >= chunk_size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    written = 0
    seen: set[str] = set()

    def write(results: list[tuple], out) -> None:
        nonlocal written
        lines, error, advanced = [], None, 0
        for result in results:
            if result[0] == "error":
                error = RecordError(input_path, result[1], result[2], result[3])
                break
            sample_id = result[1]
            if sample_id in seen:
                error = RecordError(input_path, f"line {result[4]}" if len(result) > 4 else sample_id, "id", f"duplicate id {sample_id!r}")
                break
            seen.add(sample_id)
            advanced += 1
            if result[0] == "row":
                lines.append(result[2])
                _add_row_stats(stats, "ok" if result[3] is not None else "rejected", result[3])
        out.write("".join(lines))
        out.flush()
        os.fsync(out.fileno())
        written += len(lines)
        if progress:
            progress(advanced)
        if error is not None:
            raise error

    with open(output_path, "a", encoding="utf-8") as out:
        if workers <= 1:
            _init_worker(config, str(input_path), frozenset(done))
            for chunk in chunks():
                write(_work(chunk), out)
        else:
            _run_pool(chunks(), config, workers, str(input_path), frozenset(done), lambda results: write(results, out))
    summary = {"input": str(input_path), "output": str(output_path), "written_now": written, "config": _config_dict(config)}
    summary.update(stats.summary())
    return summary


def _run_pool(chunks, config: AlignConfig, workers: int, path: str, done: frozenset, write: Callable, work: Callable = _work) -> None:
    """Run `work` on chunks in `workers` processes with a bounded window in flight; write in input order."""
    import collections
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(config, path, done, True))
    pending: collections.deque = collections.deque()
    try:
        for chunk in chunks:
            pending.append(pool.apply_async(work, (chunk,)))
            if len(pending) >= 4 * workers:
                write(pending.popleft().get())
        while pending:
            write(pending.popleft().get())
    finally:
        pool.terminate()
        pool.join()


def _config_dict(config: AlignConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(config)
