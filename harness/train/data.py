"""Training records: read a formats output, check it against the student's tokenizer, and turn
micro-batches into tensors.

The records stay in Arrow memory (a full paper-size output is ~2 GB of nested top-k lists);
a micro-batch takes its rows and flattens them with numpy, never through Python lists.
All checks run once, before the model loads, and each failure names the shard file, the row in
it and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness.errors import DataError, UsageError
from harness.mixing import COT_FORMATS
from harness.rules import first_bad_probability
from harness.schemas import FORMATS, TARGET_COLUMNS

IGNORE = -100


@dataclass
class FormatRecords:
    """One format's records: an Arrow table plus where each row came from (for error messages)."""

    format: str
    table: Any  # pyarrow.Table
    files: list[Path]
    starts: np.ndarray  # first row of each file in `table`
    # The decoder targets' token ids (no EOS), tokenized once when the records are checked and
    # kept as one flat array: the collator takes them from here instead of tokenizing again.
    target_flat: np.ndarray | None = None
    target_offsets: np.ndarray | None = None

    def __len__(self) -> int:
        return self.table.num_rows

    def keep_target_ids(self, ids: Sequence[Sequence[int]]) -> None:
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        self.target_offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.target_flat = np.fromiter((t for x in ids for t in x), dtype=np.int64, count=int(self.target_offsets[-1]))

    def target_ids(self, indices: Sequence[int]) -> list[list[int]] | None:
        if self.target_flat is None:
            return None
        off, flat = self.target_offsets, self.target_flat
        return [flat[off[i] : off[i + 1]].tolist() for i in indices]

    def where(self, row: int) -> str:
        i = int(np.searchsorted(self.starts, row, side="right") - 1)
        return f"{self.files[i]}: record {row - int(self.starts[i])}"


def read_settings(folder: Path) -> dict[str, Any]:
    path = folder / "settings.json"
    if not folder.is_dir():
        raise UsageError(f"formats_dir: no such folder {folder} (build it with `harness formats build`)")
    if not path.is_file():
        raise DataError(f"{folder}: no settings.json; not a formats output (`harness formats build` or `formats import-authors` writes one)")
    try:
        return json.loads(path.read_text())["settings"]
    except (ValueError, KeyError) as e:
        raise DataError(f"{path}: unreadable formats settings ({e})") from e


def open_formats(folder: str | Path):
    """The manifest of a finished, undamaged formats output (sizes checked; a killed or foreign
    output is refused in one line). Its `content` id pins the data a run trains on."""
    from harness import handoff

    folder = Path(folder)
    read_settings(folder)
    return handoff.verify(folder, FORMATS, what="formats output")


def load_formats(folder: str | Path, formats: Sequence[str], manifest=None) -> dict[str, FormatRecords]:
    """The enabled formats' records, in shard order, each shard checked against the manifest
    (size and sha256). Columns the trainer needs must be present."""
    import pyarrow as pa

    from harness import handoff

    folder = Path(folder)
    manifest = manifest or open_formats(folder)
    out: dict[str, FormatRecords] = {}
    needed = ("encoder_input", "decoder_target", *TARGET_COLUMNS)
    for fmt in formats:
        shards = handoff.read_shards(folder, FORMATS, needed, manifest, prefix=fmt)
        files = [folder / name for name, _ in shards]
        tables = [table for _, table in shards]
        if not tables:
            out[fmt] = FormatRecords(fmt, None, [], np.zeros(0, dtype=np.int64))
            continue
        starts = np.cumsum([0] + [t.num_rows for t in tables[:-1]])
        out[fmt] = FormatRecords(fmt, pa.concat_tables(tables).combine_chunks(), files, starts)
    return out


def counts(records: dict[str, FormatRecords]) -> dict[str, int]:
    return {f: len(r) if r.table is not None else 0 for f, r in records.items()}


# --- checks ----------------------------------------------------------------------------------


def _flat(column) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A list<list<x>> column -> (values, row offsets into positions, position offsets into values)."""
    col = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    rows = np.asarray(col.offsets)
    inner = col.flatten()
    return np.asarray(inner.flatten().to_numpy(zero_copy_only=False)), rows, np.asarray(inner.offsets)


def check_records(
    recs: FormatRecords,
    target_ids: list[list[int]],
    *,
    need_targets: bool,
    vocab_size: int,
    tokenizer_name: str = "",  # for the message: "<model>'s"
) -> int | None:
    """Validate one format against the training tokenizer. Returns the top-k width K (None: no targets).

    `target_ids[i]`: the training tokenizer's ids of record i's decoder_target (no special tokens).
    The guard: a record's aligned `student_ids` must be exactly those ids, else the teacher's
    distributions would sit on the wrong tokens (the authors aligned with the slow T5 tokenizer and
    trained with the fast one; they agree on GSM8K, and this check is what makes that safe). For a
    causal student too the target is tokenized alone, never after its prompt: aligning onto the
    target text alone is what makes the stored ids those the trainer feeds.
    """
    t = recs.table
    if t is None or t.num_rows == 0:
        return None
    for name in ("encoder_input", "decoder_target"):
        nulls = t.column(name).is_null().to_numpy(zero_copy_only=False)
        if nulls.any():
            raise DataError(f"{recs.where(int(np.argmax(nulls)))}: field {name} is missing")
    empty = np.array([len(ids) == 0 for ids in target_ids])
    if empty.any():
        raise DataError(f"{recs.where(int(np.argmax(empty)))}: field decoder_target is empty")
    has = ~t.column("student_ids").is_null().to_numpy(zero_copy_only=False)
    if recs.format not in COT_FORMATS or not need_targets:
        return None
    if not has.all():
        row = int(np.argmax(~has))
        raise DataError(f"{recs.where(row)}: field student_ids is missing; loss `distribution` needs aligned targets on every CoT record "
                        "(build formats with --aligned, or train with loss: sample)")
    for name in TARGET_COLUMNS[1:]:
        nulls = t.column(name).is_null().to_numpy(zero_copy_only=False)
        if nulls.any():
            raise DataError(f"{recs.where(int(np.argmax(nulls)))}: field {name} is missing")
    sid = t.column("student_ids").combine_chunks()
    sid_off, sid_val = np.asarray(sid.offsets), np.asarray(sid.flatten().to_numpy())
    lengths = np.diff(sid_off)
    whose = tokenizer_name or "the student's"
    for row, ids in enumerate(target_ids):
        stored = sid_val[sid_off[row] : sid_off[row + 1]]
        if len(stored) != len(ids) or not np.array_equal(stored, ids):
            pos = next((i for i, (a, b) in enumerate(zip(stored, ids)) if a != b), min(len(stored), len(ids)))
            raise DataError(
                f"{recs.where(row)}: field student_ids: the targets were aligned to other token ids than the training "
                f"tokenizer gives (first difference at token {pos}: {stored[pos:pos + 3].tolist()} vs {list(ids[pos:pos + 3])}, "
                f"lengths {len(stored)} vs {len(ids)}); align with {whose} tokenizer"
            )
    k = None
    flat: dict[str, np.ndarray] = {}
    positions = sid_off  # position offsets per row (same for every target column once checked)
    for name in TARGET_COLUMNS[1:]:
        values, rows, inner = _flat(t.column(name))
        steps = np.diff(rows)
        if not np.array_equal(steps, lengths):
            row = int(np.argmax(steps != lengths))
            raise DataError(f"{recs.where(row)}: field {name} has {steps[row]} positions but the target has {lengths[row]} tokens")
        widths = np.diff(inner)
        if len(widths):
            k = int(widths[0]) if k is None else k
            odd = widths != k
            if odd.any():
                row = int(np.searchsorted(positions, int(np.argmax(odd)), side="right") - 1)
                raise DataError(f"{recs.where(row)}: field {name}: top-k lists of different widths (expected {k})")
        flat[name] = values
    if not k:
        return None

    def row_of_item(i: int) -> int:
        return int(np.searchsorted(positions, i // k, side="right") - 1)

    ids, probs, keep = flat["topk_ids"], flat["topk_probs"], flat["topk_mask"].astype(bool)
    bad = keep & ((ids < 0) | (ids >= vocab_size))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{recs.where(row_of_item(i))}: field topk_ids: id {int(ids[i])} is outside the student's vocabulary (0..{vocab_size - 1})")
    i = first_bad_probability(probs)
    if i is not None:
        raise DataError(f"{recs.where(row_of_item(i))}: field topk_probs: {float(probs[i])!r} is not a probability")
    empty = np.where(keep, probs, 0.0).reshape(-1, k).sum(1) <= 0
    if empty.any():
        pos = int(np.argmax(empty))
        row = int(np.searchsorted(positions, pos, side="right") - 1)
        raise DataError(f"{recs.where(row)}: field topk_probs: token {pos - int(positions[row])} has no teacher mass (all entries masked or zero)")
    return k


def check_context(recs: FormatRecords, collate: "Collator", target_ids: list[list[int]], positions: int) -> None:
    """Causal students: every record's prompt + target must fit the model's `positions`.

    The inputs are the prompt and the target (the end token is predicted, never an input). Only
    records that might not fit are tokenized: no tokenizer gives a text more tokens than its UTF-8
    bytes, so a prompt's bytes plus the wrapping's own tokens bound its length from above (set
    `max_source_tokens` to keep the prompt's last tokens instead).
    """
    t = recs.table
    if t is None or t.num_rows == 0:
        return
    overhead = collate.prompt_overhead() + 1
    prompts = t.column("encoder_input").to_pylist()
    for row, (prompt, target) in enumerate(zip(prompts, target_ids)):
        if len(target) >= positions:
            raise DataError(f"{recs.where(row)}: field decoder_target: {len(target)} tokens, but the student has only {positions} positions")
        bound = len((prompt + collate.sep).encode("utf-8")) + overhead
        if collate.max_source:
            bound = min(bound, collate.max_source)
        if bound + len(target) <= positions:
            continue
        n = len(collate.source_ids([prompt])[0])
        if n + len(target) > positions:
            raise DataError(f"{recs.where(row)}: field encoder_input: the prompt ({n} tokens) and the target ({len(target)}) need "
                            f"{n + len(target)} positions, the student has {positions}; set max_source_tokens (keeps the prompt's "
                            f"last tokens) or use a student with a longer context")


def model_positions(config) -> int | None:
    """The positions a decoder-only model's config declares (GPT-2 n_positions, RoPE models
    max_position_embeddings), None when it declares none."""
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


# --- micro-batch tensors -----------------------------------------------------------------------


@dataclass
class Batch:
    """Tensors of one micro-batch. Target rows [B, T]: one per target token plus EOS."""

    format: str
    input_ids: Any  # seq2seq: encoder ids [B, S]; causal: prompt + target [B, L]
    attention_mask: Any
    labels: Any  # [B, T] target ids (EOS included), IGNORE on padding
    decoder_input_ids: Any = None  # seq2seq only
    position_ids: Any = None  # causal only (left-padded prompts)
    prompt_width: int = 0  # causal: first column of the targets in input_ids
    topk_ids: Any = None  # [B, T, K] teacher ids (IGNORE = padding) or None: sample matching
    topk_probs: Any = None  # [B, T, K]
    examples: int = 0
    tokens: int = 0  # target tokens (EOS included)


class Collator:
    """Tokenizes and pads one micro-batch; the teacher's top-k go where the aligned targets are.

    Causal students: the prompt is `encoder_input + prompt_separator` (with `chat`, a
    `harness.train.chat.ChatWrapping`, that text as a user turn); the target is tokenized *alone*
    (no special tokens), exactly as the aligner tokenized it, and its ids follow the prompt's.
    `self.eos` is the token that ends every target: EOS, or `end_id` (a chat template's end of turn).
    """

    def __init__(self, tokenizer, *, seq2seq: bool, prompt_separator: str = "\n", max_source_tokens: int | None = None,
                 chat=None, end_id: int | None = None):
        self.tok = tokenizer
        self.seq2seq = seq2seq
        self.sep = prompt_separator
        self.max_source = max_source_tokens
        self.chat = chat
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos = tokenizer.eos_token_id if end_id is None else end_id
        if self.eos is None:
            raise UsageError("the student's tokenizer has no EOS token; the targets end with one")

    def target_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tok(list(texts), add_special_tokens=False)["input_ids"]

    def prompt_text(self, text: str) -> str:
        """The causal prompt as a string (what `harness eval` must show the model for the same input)."""
        return self.chat.prompt_text(text + self.sep) if self.chat is not None else text + self.sep

    def source_ids(self, texts: Sequence[str]) -> list[list[int]]:
        if self.seq2seq:
            ids = self.tok(list(texts), add_special_tokens=True)["input_ids"]  # T5 appends </s>, as the authors' tokenizer call did
        elif self.chat is not None:
            ids = self.chat.prompt_ids([t + self.sep for t in texts])
        else:
            ids = self.tok([t + self.sep for t in texts], add_special_tokens=True)["input_ids"]
        if self.max_source:
            ids = [x[-self.max_source :] for x in ids]
        return ids

    def prompt_overhead(self) -> int:
        """Tokens the prompt gets beyond its text's own (BOS, a chat template's turn markers)."""
        return len(self.source_ids([""])[0])

    def __call__(self, recs: FormatRecords, indices: Sequence[int], distribution: bool) -> Batch:
        import torch

        rows = recs.table.take(np.asarray(indices, dtype=np.int64))
        sources = self.source_ids(rows.column("encoder_input").to_pylist())
        known = recs.target_ids(indices)  # tokenized once at load (and checked against the aligned ids)
        targets = [t + [self.eos] for t in (known if known is not None else self.target_ids(rows.column("decoder_target").to_pylist()))]
        b, width = len(targets), max(len(t) for t in targets)
        labels = torch.full((b, width), IGNORE, dtype=torch.long)
        for i, t in enumerate(targets):
            labels[i, : len(t)] = torch.tensor(t)
        batch = Batch(recs.format, None, None, labels, examples=b, tokens=sum(len(t) for t in targets))
        if self.seq2seq:
            s = max(len(x) for x in sources)
            batch.input_ids = torch.full((b, s), self.pad, dtype=torch.long)
            batch.attention_mask = torch.zeros((b, s), dtype=torch.long)
            for i, x in enumerate(sources):
                batch.input_ids[i, : len(x)] = torch.tensor(x)
                batch.attention_mask[i, : len(x)] = 1
            start = torch.full((b, 1), self.pad, dtype=torch.long)  # T5's decoder_start_token_id is pad (0)
            batch.decoder_input_ids = torch.cat([start, labels[:, :-1].clamp(min=0)], 1).masked_fill(
                torch.cat([torch.zeros((b, 1), dtype=torch.bool), labels[:, :-1] == IGNORE], 1), self.pad)
        else:
            p = max(len(x) for x in sources)  # prompts left-padded so every target starts at column p
            total = p + width - 1  # the last target token is never an input
            batch.input_ids = torch.full((b, total), self.pad, dtype=torch.long)
            batch.attention_mask = torch.zeros((b, total), dtype=torch.long)
            for i, (x, t) in enumerate(zip(sources, targets)):
                seq = x + t[:-1]
                batch.input_ids[i, p - len(x) : p - len(x) + len(seq)] = torch.tensor(seq)
                batch.attention_mask[i, p - len(x) : p - len(x) + len(seq)] = 1
            batch.position_ids = (batch.attention_mask.cumsum(1) - 1).clamp(min=0)
            batch.prompt_width = p
        if distribution and recs.format in COT_FORMATS:
            batch.topk_ids, batch.topk_probs = self._teacher(rows, targets, width)
        return batch

    def _teacher(self, rows, targets, width):
        """[B, T, K] ids/probs: the aligned top-k on target tokens, one-hot EOS after them (as the
        authors' dense target), padding elsewhere."""
        import torch

        ids, _, inner = _flat(rows.column("topk_ids"))
        probs, _, _ = _flat(rows.column("topk_probs"))
        mask, _, _ = _flat(rows.column("topk_mask"))
        k = int(inner[1] - inner[0]) if len(inner) > 1 else 1
        ids = torch.from_numpy(ids.astype(np.int64)).view(-1, k)
        probs = torch.from_numpy(probs.astype(np.float32)).view(-1, k)
        keep = torch.from_numpy(mask.astype(bool)).view(-1, k)
        ids = ids.masked_fill(~keep, IGNORE)
        b = len(targets)
        out_ids = torch.full((b, width, k), IGNORE, dtype=torch.long)
        out_probs = torch.zeros((b, width, k), dtype=torch.float32)
        pos = 0
        for i, t in enumerate(targets):
            n = len(t) - 1
            out_ids[i, :n], out_probs[i, :n] = ids[pos : pos + n], probs[pos : pos + n]
            out_ids[i, n, 0], out_probs[i, n, 0] = self.eos, 1.0
            pos += n
        return out_ids, out_probs
