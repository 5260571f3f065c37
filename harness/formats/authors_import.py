"""Import the authors' released training pickles (their final four formats) as our formats output.

    from harness.formats.authors_import import import_authors_formats
    stats = import_authors_formats("path/to/processed_data", "runs/formats/authors")

Inputs: whichever of `zero_shot_answer_only.pkl`, `zero_shot_chain_of_thought.pkl`,
`in_context_answer_only.pkl`, `in_context_chain_of_thought.pkl` are in the folder
(authors-code-protocol.md §1.3). Each is a flat list of dicts in question order: `question`
(encoder input), `answer` (decoder target, without `</s>`), `answer_gold` ("Answer: …#### N\\n"),
`answer_label` (1), `type` (the file's stem) and, for the two CoT files, `per_step_probs`: one
{T5 piece: prob} dict per T5 token of `answer`, EOS excluded (an OrderedDict of up to 6 entries
where the Codex token matched 1:1, else {piece: 1.0}). Pickles are read with the core's
restricted unpickler (`harness.safe_pickle`), so a file naming any other global is refused.

Output: the same folder layout, Parquet schema and shard naming as `build_formats`
(`{format}-{n:05d}.parquet`, `settings.json` via `resume.claim`, `stats.json`, `manifest.json` sealed
last with the pickles' sizes and sha256), with
`setting = "authors-released"`, `teacher_model = "code-davinci-002"`, `demo_ids` and `seed` null
(their demos were drawn unseeded and are only inside the encoder string), plus `progress.json`
(formats already written: a rerun with the same settings skips them).

Mapping (docs/formats.md, "Importing the authors' released format pickles"):
- encoder_input = `question`, decoder_target = `answer`, both exactly as stored (their `": "`
  deletion is already applied); gold_answer = the canonical number after `####` in `answer_gold`.
- student_ids = the T5 ids of `answer`, EOS excluded, from the slow-tokenizer emulation `T5Pieces`
  (SentencePiece on the text between special-token strings). Each CoT record must have exactly one
  per_step_probs entry per id, and each entry's first key must be that id's piece (their transfer
  rule puts the sampled token, which equals the T5 token, first); otherwise DataError naming the
  file, record and field.
- topk_ids / topk_probs / topk_mask: K = 6 (the authors' maximum: sampled token + API top-5) or
  `k`; entries in dict order, padded with id 0 / prob 0.0 / mask 0; probabilities as stored (not
  renormalised). With `k` given, an entry with more than `k` entries keeps its `k` most probable
  ones (ties: dict order) in dict order; without `k`, more than 6 is a DataError. Pieces are looked
  up in the T5 table (32,000 SentencePiece pieces + `<extra_id_0..99>` = ids 32099..32000); an
  unknown piece is a DataError (their own training loop indexed `vocab[w]` and would have failed),
  or with `drop_unknown` is dropped and counted (never the target piece).
- question_id / sample_index: consecutive records with the same (target question, gold) form one
  question (the target question is the text after the last "Q: " once the format's suffix is
  removed: their stripper deleted every ": " from it, so "Q: " cannot occur inside it); a key
  that reappears after another question is a DataError. With `match_gsm8k` (default) the question
  id is the GSM8K train id whose gold answer is `answer_gold` (gold answers are unique in GSM8K
  train) and whose ": "-deleted question equals the target question, else DataError; without it,
  "authors/" + 16 hex digits of sha1(question, gold), the same in every format. sample_index counts
  the question's records in that file from 0: in the two CoT files it is the k-th correct,
  aligned Codex sample (the same sample in both files), not the Codex sample number; in the
  answer-only files it is 0 and names no CoT sample.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness import answers, handoff
from harness.checksums import sha256_of
from harness.config import data_file
from harness.errors import DataError, check_positive
from harness.records import Example, RecordError, atomic_write
from harness.rules import is_probability
from harness.safe_pickle import load_pickle
from harness.templates import COT_TRIGGER, strip_colons

from harness.formats.build import ALIGNED_FIELDS, PLAIN_FIELDS, SCHEMA_VERSION, ShardFiles, ShardWriter, _mix_summary
from harness.schemas import FORMATS as FORMATS_CONTRACT
from harness.mixing import BATCH_SIZES
from harness.formats.render import COT_FORMATS, FORMATS

# The released files' record counts (authors-code-protocol.md §1.4): every correct, aligned Codex
# sample in each CoT file; at most one record per question with a correct sample in each
# answer-only file (their batch arithmetic puts it in [7,200, 7,296]).
PAPER_RECORDS = {"zero_shot_cot": (207_135, 207_135), "in_context_cot": (207_135, 207_135),
                 "zero_shot_answer_only": (7_200, 7_296), "in_context_answer_only": (7_200, 7_296)}
SOURCE_URL = "https://drive.google.com/drive/folders/1BOXcUTnEyvQia_ypHcaUnUbLsN4HzqmQ"  # linked from the authors' readme.md (a8ffd51)
JOB = "formats.import-authors"
IMPORTER_VERSION = 1
SETTING = "authors-released"
TEACHER_MODEL = "code-davinci-002"
MAX_ENTRIES = 6  # the sampled token + the API's top-5
EXTRA_IDS = 100
PAD_ID = 0
PROGRESS = "progress.json"

# The authors' file stem (also each record's `type`) -> our format name.
PICKLES = {
    "in_context_answer_only": "in_context_answer_only",
    "in_context_chain_of_thought": "in_context_cot",
    "zero_shot_answer_only": "zero_shot_answer_only",
    "zero_shot_chain_of_thought": "zero_shot_cot",
}
STEMS = {fmt: stem for stem, fmt in PICKLES.items()}
# What follows the target question in each format's encoder input (authors-code-protocol.md §2).
SUFFIX = {
    "zero_shot_answer_only": " A:",
    "in_context_answer_only": "\nA:",
    "zero_shot_cot": "\n" + COT_TRIGGER,
    "in_context_cot": "\n" + COT_TRIGGER,
}
ANSWER_PREFIX = "Answer: "


# ------------------------------------------------------------------------------------ T5 pieces


class T5Pieces:
    """T5 ids and piece strings as the authors' slow `T5Tokenizer` produced them.

    The slow tokenizer (transformers 4.2x, legacy) split the text at special-token strings
    (`</s>`, `<pad>`, `<unk>`, `<extra_id_N>`), stripped the whitespace next to them, and ran
    SentencePiece on each remaining piece; `encode` does the same and adds no `</s>`. On plain
    text this is SentencePiece itself, and it equals the fast tokenizer (checked on all GSM8K train
    questions and rationales, docs/formats.md). `pieces[i]` is the piece of id i, `vocab` the inverse
    (32,100 entries, the table their `vocab[w]` lookup used).
    """

    def __init__(self, model_file: str | os.PathLike):
        import sentencepiece as spm

        self.model_file = str(model_file)
        self.sp = spm.SentencePieceProcessor(model_file=self.model_file)
        n = self.sp.get_piece_size()
        self.pieces = [self.sp.id_to_piece(i) for i in range(n)] + [f"<extra_id_{EXTRA_IDS - 1 - j}>" for j in range(EXTRA_IDS)]
        self.vocab = {piece: i for i, piece in enumerate(self.pieces)}
        specials = [self.sp.id_to_piece(i) for i in (self.sp.pad_id(), self.sp.eos_id(), self.sp.unk_id()) if i >= 0]
        specials += [f"<extra_id_{j}>" for j in range(EXTRA_IDS)]
        self._special = re.compile("(" + "|".join(map(re.escape, specials)) + ")")

    def encode(self, text: str) -> list[int]:
        if "<" not in text:
            return self.sp.encode(text)
        parts = self._special.split(text)  # [text, special, text, …, text]
        ids: list[int] = []
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if i % 2:
                ids.append(self.vocab[part])
                continue
            if i > 0:
                part = part.lstrip()
            if i < last:
                part = part.rstrip()
            if part:
                ids.extend(self.sp.encode(part))
        return ids


# ------------------------------------------------------------------------------------ records


class _File:
    """Converts one pickle's records into rows, checking them (errors name file, record, field)."""

    def __init__(self, path: Path, fmt: str, t5: T5Pieces, k: int, truncate: bool, drop_unknown: bool,
                 gsm8k: Mapping[str, Example] | None):
        self.path, self.fmt, self.t5, self.k, self.truncate, self.drop_unknown, self.gsm8k = path, fmt, t5, k, truncate, drop_unknown, gsm8k
        self.cot = fmt in COT_FORMATS
        self.counts = {"records": 0, "questions": 0, "max_records_per_question": 0}
        if self.cot:
            self.counts.update({"positions": 0, "one_hot_positions": 0, "multi_entry_positions": 0, "max_entries": 0,
                                "truncated_positions": 0, "unknown_pieces_dropped": 0})
        self.digest = hashlib.sha256()  # (question_id, sample_index, answer) sequence: the two CoT files must agree
        self._key: tuple[str, str] | None = None
        self._qid = ""
        self._sample = -1
        self._seen: set[str] = set()
        self._pad = [[PAD_ID] * (k - w) for w in range(k + 1)]
        self._zeros = [[0.0] * (k - w) for w in range(k + 1)]
        self._masks = [[1] * w + [0] * (k - w) for w in range(k + 1)]

    def fail(self, i: int, field: str, problem: str):
        raise RecordError(self.path, i, field, problem)

    def row(self, i: int, rec: Any) -> dict[str, Any]:
        if not isinstance(rec, dict):
            raise RecordError(self.path, i, "<record>", f"expected a dict, got {type(rec).__name__}")
        for field in ("question", "answer", "answer_gold", "type"):
            if not isinstance(rec.get(field), str):
                self.fail(i, field, "missing" if field not in rec else f"expected a string, got {type(rec[field]).__name__}")
        if rec["type"] != STEMS[self.fmt]:
            self.fail(i, "type", f"{rec['type']!r}, but this file holds {STEMS[self.fmt]!r} records")
        label = rec.get("answer_label")
        if type(label) not in (int, bool, float) or label != 1:
            self.fail(i, "answer_label", f"{label!r}: only correct samples (1) are expected in the released formats")
        question, gold_raw, gold = self._question(i, rec["question"]), *self._gold(i, rec["answer_gold"])
        key = (question, gold_raw)
        if key != self._key:
            qid = self._question_id(i, key)
            if qid in self._seen:
                self.fail(i, "question", f"question {qid} appears again after other questions: the records are not grouped by question")
            self._seen.add(qid)
            self._key, self._qid, self._sample = key, qid, 0
            self.counts["questions"] += 1
        else:
            self._sample += 1
        self.counts["records"] += 1
        self.counts["max_records_per_question"] = max(self.counts["max_records_per_question"], self._sample + 1)
        answer = rec["answer"]
        self.digest.update(json.dumps([self._qid, self._sample, answer]).encode("utf-8"))
        out = {"format": self.fmt, "setting": SETTING, "question_id": self._qid, "sample_index": self._sample,
               "encoder_input": rec["question"], "decoder_target": answer, "gold_answer": gold, "demo_ids": None,
               "student_ids": None, "topk_ids": None, "topk_probs": None, "topk_mask": None,
               "teacher_model": TEACHER_MODEL, "seed": None}
        if self.cot:
            if "per_step_probs" not in rec:
                self.fail(i, "per_step_probs", "missing (every chain-of-thought record carries its per-T5-token targets)")
            out.update(self._targets(i, answer, rec["per_step_probs"]))
        return out

    def _question(self, i: int, text: str) -> str:
        suffix = SUFFIX[self.fmt]
        if not text.endswith(suffix):
            self.fail(i, "question", f"does not end with {suffix!r}, as every {STEMS[self.fmt]} encoder input does")
        head = text[: -len(suffix)]
        start = head.rfind("Q: ")
        if start < 0 or (self.fmt.startswith("zero_shot") and start != 0):
            self.fail(i, "question", "does not start its target question with 'Q: '" if start < 0 else "a zero-shot input must hold one 'Q: {question}'")
        return head[start + 3 :]

    def _gold(self, i: int, value: str) -> tuple[str, str]:
        gold_raw = (value[len(ANSWER_PREFIX) :] if value.startswith(ANSWER_PREFIX) else value).strip()
        if "####" not in gold_raw:
            self.fail(i, "answer_gold", "has no '#### N' final answer")
        final = gold_raw.rsplit("####", 1)[1].strip()
        number = answers.parse_number(final)
        if number is None:
            self.fail(i, "answer_gold", f"final answer {final!r} is not a number")
        return gold_raw, answers.canonical_number(number)

    def _question_id(self, i: int, key: tuple[str, str]) -> str:
        question, gold_raw = key
        if self.gsm8k is None:
            return "authors/" + hashlib.sha1(f"{question}\x00{gold_raw}".encode("utf-8")).hexdigest()[:16]
        example = self.gsm8k.get(gold_raw)
        if example is None:
            self.fail(i, "answer_gold", "is no GSM8K train gold answer; import with match_gsm8k=False (--no-match-gsm8k) for content ids")
        if strip_colons(example.question) != question:
            self.fail(i, "question", f"the target question differs from {example.id}'s (': ' deleted), whose gold answer it has; "
                                     "import with match_gsm8k=False (--no-match-gsm8k) for content ids")
        return example.id

    def _targets(self, i: int, answer: str, steps: Any) -> dict[str, Any]:
        t5, counts, k = self.t5, self.counts, self.k
        if not isinstance(steps, list):
            self.fail(i, "per_step_probs", f"expected a list of {{T5 piece: probability}} dicts, got {type(steps).__name__}")
        ids = t5.encode(answer)
        if len(steps) != len(ids):
            self.fail(i, "per_step_probs", f"{len(steps)} steps, but `answer` is {len(ids)} T5 tokens (slow tokenizer, EOS excluded)")
        pieces, vocab = t5.pieces, t5.vocab
        topk_ids, topk_probs, topk_mask = [], [], []
        for s, (entry, target) in enumerate(zip(steps, ids)):
            if not isinstance(entry, dict) or not entry:
                self.fail(i, "per_step_probs", f"step {s}: expected a non-empty {{T5 piece: probability}} dict, got {_show(entry)}")
            items = list(entry.items())
            if items[0][0] != pieces[target]:
                self.fail(i, "per_step_probs", f"step {s}: first piece {items[0][0]!r} is not the answer's T5 token {pieces[target]!r} (id {target})")
            counts["max_entries"] = max(counts["max_entries"], len(items))
            if len(items) == 1:
                p = items[0][1]
                if not is_probability(p):
                    self.fail(i, "per_step_probs", f"step {s}: probability {p!r} of {items[0][0]!r} is not a number in [0, 1]")
                counts["one_hot_positions"] += p == 1.0
                topk_ids.append([target, *self._pad[1]])
                topk_probs.append([float(p), *self._zeros[1]])
                topk_mask.append(self._masks[1])
                continue
            counts["multi_entry_positions"] += 1
            kept: list[tuple[int, float]] = []
            for piece, p in items:
                if not is_probability(p):
                    self.fail(i, "per_step_probs", f"step {s}: probability {p!r} of {piece!r} is not a number in [0, 1]")
                token = vocab.get(piece) if isinstance(piece, str) else None
                if token is None:
                    if not self.drop_unknown:
                        self.fail(i, "per_step_probs", f"step {s}: {piece!r} is not a T5 piece (drop_unknown / --drop-unknown drops such entries)")
                    counts["unknown_pieces_dropped"] += 1
                    continue
                kept.append((token, float(p)))
            if len(kept) > k:
                if not self.truncate:
                    self.fail(i, "per_step_probs", f"step {s}: {len(kept)} entries, more than the authors' {MAX_ENTRIES}; pass k to keep the k most probable")
                order = sorted(range(len(kept)), key=lambda j: -kept[j][1])[:k]
                kept = [kept[j] for j in sorted(order)]
                counts["truncated_positions"] += 1
            w = len(kept)
            topk_ids.append([t for t, _ in kept] + self._pad[w])
            topk_probs.append([p for _, p in kept] + self._zeros[w])
            topk_mask.append(self._masks[w])
        counts["positions"] += len(ids)
        return {"student_ids": ids, "topk_ids": topk_ids, "topk_probs": topk_probs, "topk_mask": topk_mask}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------------------------ import


def import_authors_formats(
    folder: str | os.PathLike,
    output: str | os.PathLike,
    *,
    shard_size: int = 5000,
    k: int | None = None,
    match_gsm8k: bool = True,
    drop_unknown: bool = False,
    examples: Sequence[Example] | None = None,
    data_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write the formats output for the pickles in `folder`; returns the statistics (also stats.json).

    Resumable: `settings.json` records the options, the pickles found and their sizes, and the T5
    model's sha256 (other settings are refused); `progress.json` lists the formats already written,
    which a rerun skips. `examples`: the GSM8K train items to match (default: loaded from the data
    directory when `match_gsm8k`). The returned dict also says which formats were `resumed`.
    """
    check_positive("shard_size", shard_size)
    check_positive("k", k)
    folder, output = Path(folder), Path(output)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (it should hold the authors' {', '.join(s + '.pkl' for s in PICKLES)})")
    files = {fmt: folder / f"{STEMS[fmt]}.pkl" for fmt in FORMATS if (folder / f"{STEMS[fmt]}.pkl").is_file()}
    if not files:
        raise DataError(f"{folder}: none of the authors' format pickles ({', '.join(s + '.pkl' for s in PICKLES)})")
    spiece = data_file("tokenizers/t5/spiece.model", data_dir)
    width = k or MAX_ENTRIES
    settings = {
        "setting": SETTING, "teacher_model": TEACHER_MODEL, "formats": list(files), "shard_size": shard_size, "k": width,
        "truncate": k is not None, "drop_unknown": drop_unknown, "match_gsm8k": match_gsm8k,
        "source": {"files": {p.name: p.stat().st_size for p in files.values()}},
        "tokenizer": {"spiece_sha256": sha256_of(spiece), "mode": "slow (SentencePiece between special tokens)"},
        "importer_version": IMPORTER_VERSION, "schema_version": SCHEMA_VERSION,
    }
    with handoff.OutputFolder(output, FORMATS_CONTRACT) as out:
        out.open(JOB, settings)
        progress_path = output / PROGRESS
        progress: dict[str, Any] = {}
        if progress_path.is_file():
            try:
                progress = json.loads(progress_path.read_text(encoding="utf-8"))["formats"]
            except (ValueError, KeyError, TypeError):
                progress = {}  # unreadable: redo every format
        t5 = T5Pieces(spiece)
        gsm8k = None
        if match_gsm8k:
            if examples is None:
                from harness.data import load

                examples = load("gsm8k", "train", data_dir=data_dir)
            gsm8k = {e.gold_raw.strip(): e for e in examples}

        resumed = []
        for fmt, path in files.items():
            done = progress.get(fmt)
            if isinstance(done, dict) and {"shards", "counts", "digest"} <= set(done) and all((output / n).is_file() for n in done["shards"]):
                out.keep_shards(done["shards"])  # each checked against the earlier manifest
                resumed.append(fmt)
                continue
            progress[fmt] = _import_file(path, fmt, out, t5, width, k is not None, drop_unknown, gsm8k, shard_size)
            with atomic_write(progress_path) as handle:
                json.dump({"formats": progress}, handle, indent=1, sort_keys=True)
                handle.write("\n")

        record_counts = {fmt: progress[fmt]["counts"]["records"] for fmt in files}
        digests = {progress[fmt]["digest"] for fmt in COT_FORMATS if fmt in files}
        pickles = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_of(p)} for p in files.values()}
        stats = {
            "settings": settings,
            "source": {"folder": str(folder.resolve()), "tokenizer_model": str(spiece), "pickles": pickles, "url": SOURCE_URL},
            "paper_counts": {fmt: {"records": record_counts[fmt], "expected": list(PAPER_RECORDS[fmt]),
                                   "as_released": PAPER_RECORDS[fmt][0] <= record_counts[fmt] <= PAPER_RECORDS[fmt][1]} for fmt in files},
            "records": record_counts,
            "counts": {fmt: progress[fmt]["counts"] for fmt in files},
            "cot_formats_same_targets": (len(digests) == 1) if all(f in files for f in COT_FORMATS) else None,
            "shards": {fmt: progress[fmt]["shards"] for fmt in files},
            "authors_mix": {size: _mix_summary(record_counts, size) for size in BATCH_SIZES},
        }
        with atomic_write(output / "stats.json") as handle:
            json.dump(stats, handle, indent=1)
            handle.write("\n")
        out.seal({"authors-pickles": {"path": str(folder.resolve()), "files": pickles}}, prune=True)
    return {**stats, "resumed": resumed}


def _import_file(path: Path, fmt: str, out: handoff.OutputFolder, t5: T5Pieces, k: int, truncate: bool, drop_unknown: bool,
                 gsm8k: Mapping[str, Example] | None, shard_size: int) -> dict[str, Any]:
    records = load_pickle(path)
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a list of record dicts, got {type(records).__name__}")
    converter = _File(path, fmt, t5, k, truncate, drop_unknown, gsm8k)
    for name in [n for n in out.shard_names if n.startswith(f"{fmt}-")]:
        out.manifest.shards.pop(name)  # an earlier attempt's shards: written again below, extra ones pruned at the seal
    files = ShardFiles(out)
    writer = ShardWriter(out, fmt, shard_size, files)
    try:
        for i in range(len(records)):
            row = converter.row(i, records[i])
            writer.add([row[name] for name in PLAIN_FIELDS],
                       targets=None if row["student_ids"] is None else {name: row[name] for name in ALIGNED_FIELDS})
            records[i] = None  # free the record (its per-step dicts) as we go
        writer.flush()
    finally:
        files.close()
    return {"file": path.name, "shards": writer.written, "counts": converter.counts, "digest": converter.digest.hexdigest()}
