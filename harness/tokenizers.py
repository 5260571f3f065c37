"""One interface over the teacher and student tokenizers: ids, token strings and character offsets.

Alignment needs three things from a tokenizer, whatever library it comes from:
- the ids (what the student is trained on),
- the token strings (what the authors' DTW compares: GPT strings with literal spaces, T5 pieces with `▁`),
- character offsets into the original text (what the exact mode aligns on).

Offsets here always *tile* the text: token k covers `text[start_k:end_k]`, `end_k == start_{k+1}`
except where the tokenizer dropped whitespace (T5 drops leading/trailing whitespace). A T5 piece's
span includes the whitespace its `▁` stands for (`▁Nat` covers " Nat", `▁The` after a newline covers
"\nThe"). Pieces that NFKC normalisation invents (½ → `1`, `⁄`, `2`) may have empty spans.

Every tokenizer also lists its ids (`id_table()`: each id's bytes and whether it is a special
token). `fingerprint()` hashes that table, so the hash does not depend on the library: tiktoken's
"gpt2" and the Hugging Face GPT-2 tokenizer hash alike, p50k_base does not. Alignment records the
student's fingerprint and compares the teacher's with it (equal: the teacher's ids are the student's).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol, Sequence

from harness.errors import UsageError

SPIECE_MARKER = "▁"


@dataclass(frozen=True)
class Tokenized:
    """A text's tokenization.

    `tokens[k]` is the string alignment compares: for SentencePiece the piece (`▁Nat`, `<unk>`);
    for byte-level BPE teachers the text the token covers (`' Nat'`, as the OpenAI API shows it).
    """

    text: str
    ids: tuple[int, ...]
    tokens: tuple[str, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def surface(self, k: int) -> str:
        return self.text[self.starts[k] : self.ends[k]]


class Tokenizer(Protocol):
    name: str

    def encode(self, text: str) -> Tokenized: ...

    def vocab(self) -> dict[str, int]: ...

    def id_table(self) -> Iterable[tuple[int, bytes, bool]]: ...


IdTable = Iterable[tuple[int, bytes, bool]]  # (id, the bytes it stands for, special?)


def fingerprint(tokenizer) -> dict:
    """`{"name", "size", "vocab_sha256"}`: sha256 over every (id, bytes, special) of the tokenizer,
    in id order. Equal hashes: every id stands for the same bytes (the same special tokens too)."""
    cached = getattr(tokenizer, "_fingerprint", None)
    if cached is None:
        digest = hashlib.sha256()
        size = 0
        for token_id, raw, special in sorted(tokenizer.id_table()):
            digest.update(b"%d\t%s\t%d\n" % (token_id, raw.hex().encode(), int(special)))
            size += 1
        cached = {"name": tokenizer.name, "size": size, "vocab_sha256": digest.hexdigest()}
        try:
            tokenizer._fingerprint = cached
        except AttributeError:
            pass
    return dict(cached)


def text_ids(tokenizer) -> dict[str, int]:
    """Token text -> id, for the ids whose bytes are whole UTF-8 and spelled by no other id
    (special tokens by their content). Maps a teacher's token strings onto the same tokenizer's ids.
    Texts holding U+FFFD are left out: decoders and servers write lost bytes that way."""
    cached = getattr(tokenizer, "_text_ids", None)
    if cached is None:
        seen: dict[str, int] = {}
        twice: set[str] = set()
        for token_id, raw, _ in tokenizer.id_table():
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if text in seen:
                twice.add(text)
            seen[text] = token_id
        cached = {t: i for t, i in seen.items() if t not in twice and t and "\ufffd" not in t}
        try:
            tokenizer._text_ids = cached
        except AttributeError:
            pass
    return cached


def _chars_before_byte(text: str) -> list[int] | None:
    """`table[b]` = number of whole characters in the first b UTF-8 bytes (None for ASCII: identity)."""
    if text.isascii():
        return None
    table = [0]
    for i, ch in enumerate(text):
        n = len(ch.encode("utf-8"))
        table.extend([i] * (n - 1))
        table.append(i + 1)
    return table


class TiktokenTokenizer:
    """A tiktoken encoding (p50k_base = code-davinci-002, cl100k_base, r50k_base, gpt2), offline.

    Token strings are the text each token covers (literal spaces, as the OpenAI API returns them).
    A character split across tokens belongs to the token where its last byte lies; the others
    get '' (the API would show them as partial bytes).
    """

    def __init__(self, encoding: str = "p50k_base"):
        from harness.config import setup_offline_tokenizers

        setup_offline_tokenizers()
        import tiktoken

        self.name = f"tiktoken:{encoding}"
        self.encoding = tiktoken.get_encoding(encoding)
        self._vocab: dict[str, int] | None = None

    def encode(self, text: str) -> Tokenized:
        ids = self.encoding.encode(text, disallowed_special=())
        raw = [self.encoding.decode_single_token_bytes(i) for i in ids]
        table = _chars_before_byte(text)
        starts, ends, tokens = [], [], []
        pos = 0
        for piece in raw:
            nxt = pos + len(piece)
            starts.append(pos if table is None else table[pos])
            ends.append(nxt if table is None else table[nxt])
            pos = nxt
        # Token strings are the text each token covers, so they always spell the text; a token
        # holding only the first bytes of a split character covers '' (its bytes decode to nothing).
        tokens = [text[s:e] for s, e in zip(starts, ends)]
        return Tokenized(text, tuple(ids), tuple(tokens), tuple(starts), tuple(ends))

    def vocab(self) -> dict[str, int]:
        if self._vocab is None:
            out: dict[str, int] = {}
            for i in range(self.encoding.n_vocab):
                try:
                    piece = self.encoding.decode_single_token_bytes(i)
                except KeyError:
                    continue
                out.setdefault(piece.decode("utf-8", errors="replace"), i)
            self._vocab = out
        return self._vocab

    def id_table(self) -> IdTable:
        specials = {self.encoding.encode_single_token(t) for t in self.encoding.special_tokens_set}
        for i in range(self.encoding.n_vocab):
            try:
                yield i, self.encoding.decode_single_token_bytes(i), i in specials
            except KeyError:
                continue


class SentencePieceTokenizer:
    """The T5 / Flan-T5 SentencePiece model, read directly (ids identical to HF `T5Tokenizer`).

    `vocab()` matches HF's 32,100 entries (32,000 pieces plus `<extra_id_0..99>`), which is the
    vocabulary the authors' transfer rule checked membership against. `encode` adds no `</s>`.
    """

    folds_whitespace = True  # whitespace is no token of its own: it becomes the next piece's `▁`

    def __init__(self, model_file: str | Path | None = None, extra_ids: int = 100):
        import sentencepiece as spm

        if model_file is None:
            from harness.config import data_file

            model_file = data_file("tokenizers/t5/spiece.model")
        self.name = f"sentencepiece:{Path(model_file).name}"
        self.model_file = str(model_file)
        self.sp = spm.SentencePieceProcessor(model_file=self.model_file)
        self.extra_ids = extra_ids
        self._vocab: dict[str, int] | None = None
        self._no_prefix = None
        self._spelled_after_space: dict[str, tuple[int, ...]] = {}
        self._spelled_in_word: dict[str, tuple[int, ...]] = {}
        self.unk_id = self.sp.unk_id()
        self.pad_id = self.sp.pad_id() if self.sp.pad_id() >= 0 else 0

    def encode(self, text: str) -> Tokenized:
        proto = self.sp.encode(text, return_type="proto")
        table = _chars_before_byte(text)
        ids, tokens, starts, ends = [], [], [], []
        piece = self._piece_table()
        for p in proto.pieces:
            i = p.id
            ids.append(i)
            tokens.append(piece[i])
            if table is None:
                starts.append(p.begin)
                ends.append(p.end)
            else:
                starts.append(table[p.begin])
                ends.append(table[p.end])
        return Tokenized(text, tuple(ids), tuple(tokens), tuple(starts), tuple(ends))

    def vocab(self) -> dict[str, int]:
        if self._vocab is None:
            out = {self.sp.id_to_piece(i): i for i in range(self.sp.get_piece_size())}
            n = self.sp.get_piece_size()
            for k in range(self.extra_ids):
                out[f"<extra_id_{k}>"] = n + self.extra_ids - 1 - k
            self._vocab = out
        return self._vocab

    def id_table(self) -> IdTable:
        """Pieces as bytes (`▁` as a space, `<0xNN>` byte pieces as that byte); control and
        unknown pieces and `<extra_id_N>` are special, by their text."""
        for i in range(self.sp.get_piece_size()):
            piece = self.sp.id_to_piece(i)
            if self.sp.is_control(i) or self.sp.is_unknown(i):
                yield i, piece.encode(), True
            elif self.sp.is_byte(i):
                yield i, bytes([int(piece[3:5], 16)]), False
            else:
                yield i, piece.replace(SPIECE_MARKER, " ").encode(), False
        n = self.sp.get_piece_size()
        for k in range(self.extra_ids):
            yield n + self.extra_ids - 1 - k, f"<extra_id_{k}>".encode(), True

    def _piece_table(self) -> list[str]:
        """`id_to_piece` for every id, built once (encode looks up every piece of every text)."""
        table = self.__dict__.get("_pieces")
        if table is None:
            table = self._pieces = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]
        return table

    def piece(self, i: int) -> str:
        return self.sp.id_to_piece(i)

    def pieces_for(self, fragment: str, after_space: bool) -> tuple[int, ...]:
        """How the student would spell `fragment` at a position after whitespace or inside a word.

        After whitespace (or at the start) the usual encoder applies and the first piece carries `▁`;
        inside a word the same model runs without its dummy-prefix `▁`. Whitespace-only fragments
        give () (T5 folds them into the next piece's `▁`). Memoised: teachers repeat their tokens.
        """
        cache = self._spelled_after_space if after_space else self._spelled_in_word
        found = cache.get(fragment)
        if found is None:
            if after_space or fragment[:1].isspace():
                found = tuple(self.sp.encode(fragment))
            else:
                found = tuple(self._no_prefix_processor().encode(fragment))
            if len(cache) > 500_000:
                cache.clear()
            cache[fragment] = found
        return found

    def _no_prefix_processor(self):
        if self._no_prefix is None:
            import sentencepiece as spm
            from sentencepiece import sentencepiece_model_pb2 as model_pb2

            proto = model_pb2.ModelProto()
            proto.ParseFromString(Path(self.model_file).read_bytes())
            proto.normalizer_spec.add_dummy_prefix = False
            self._no_prefix = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
        return self._no_prefix


class HFTokenizer:
    """Any Hugging Face fast tokenizer: byte-level BPE (GPT-2, Qwen, Llama-3), SentencePiece-style
    ones (Llama-2, Mistral, T5's tokenizer.json), from a folder, the hub or the data dir's GPT-2.

    Offsets come from `return_offsets_mapping` and are made to tile the text: a whitespace gap
    before a token is given to that token (HF trims the space that a GPT `Ġ` or T5 `▁` stands for),
    and a character split over several byte-level or byte-fallback tokens belongs to the one
    holding its last byte (the tokens before it, like a dummy-prefix `▁`, span nothing). Where the
    tokenizer keeps whitespace as text (`folds_whitespace` false: everything but T5-like
    normalisers), any gap goes to the next token and the last token runs to the end of the text.
    Token strings are the text each token covers (literal spaces, no `Ġ`). Special tokens written
    in the text are read as special tokens (what training's `tokenizer(text)` does).
    """

    ANCHORS = ("\n", ".", "0", "x")  # left contexts `pieces_for` tries, first that stays its own token

    def __init__(self, tokenizer, name: str | None = None):
        if not getattr(tokenizer, "is_fast", True):
            raise UsageError(f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} is a slow (Python) tokenizer: offsets need "
                             "a fast one (a folder with tokenizer.json)")
        self.tok = tokenizer
        self.name = name or f"hf:{getattr(tokenizer, 'name_or_path', type(tokenizer).__name__)}"
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = pad if pad is not None else 0
        self.unk_id = tokenizer.unk_token_id
        self._folds: bool | None = None
        self._spelled: dict[bool, dict[str, tuple[int, ...]]] = {True: {}, False: {}}

    @classmethod
    def gpt2(cls) -> "HFTokenizer":
        from transformers import GPT2TokenizerFast

        from harness.config import data_file

        folder = data_file("tokenizers/gpt2")
        vocab = json.loads((folder / "encoder.json").read_text(encoding="utf-8"))
        lines = (folder / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:]  # first line: version
        merges = [tuple(line.split()) for line in lines if line.strip()]
        tok = GPT2TokenizerFast(vocab=vocab, merges=merges)
        tok.name_or_path = "gpt2"
        return cls(tok)

    def _ids(self, text: str) -> list[int]:
        """Ids of `text` with no special tokens added, from the Rust tokenizer itself when there is
        one (the same ids as `tokenizer(text)`, without its per-call Python overhead)."""
        backend = getattr(self.tok, "backend_tokenizer", None)
        if backend is not None:
            return backend.encode(text, add_special_tokens=False).ids
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    @property
    def folds_whitespace(self) -> bool:
        """True for tokenizers that drop whitespace into the next piece's `▁` (T5's normaliser):
        a newline does not survive a round trip."""
        if self._folds is None:
            self._folds = "\n" not in self.tok.decode(self._ids("a\nb"), skip_special_tokens=True)
        return self._folds

    def encode(self, text: str) -> Tokenized:
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        offsets = [list(pair) for pair in enc["offset_mapping"]]
        # Byte-level BPE can split one character over several tokens, which HF then all map to
        # that character. Give it to the token holding its last byte (tiktoken's, the OpenAI API's
        # and the teacher backends' convention); the tokens before it spell "".
        for i in range(len(offsets) - 1, 0, -1):
            if offsets[i - 1][1] > offsets[i][0]:
                offsets[i - 1][1] = max(offsets[i - 1][0], offsets[i][0])
        keeps_text = bool(ids) and not self.folds_whitespace
        starts, ends = [], []
        prev = 0
        for s, e in offsets:
            if s > prev and (keeps_text or text[prev:s].isspace()):
                s = prev
            s = max(s, prev)
            e = max(e, s)
            starts.append(s)
            ends.append(e)
            prev = e
        if keeps_text and ends[-1] < len(text):
            ends[-1] = len(text)
        tokens = [text[s:e] for s, e in zip(starts, ends)]
        return Tokenized(text, tuple(ids), tuple(tokens), tuple(starts), tuple(ends))

    def vocab(self) -> dict[str, int]:
        return dict(self.tok.get_vocab())

    def piece(self, i: int) -> str:
        return self.tok.convert_ids_to_tokens(i)

    def pieces_for(self, fragment: str, after_space: bool) -> tuple[int, ...]:
        """How this tokenizer spells `fragment` at the start of a text (`after_space`, for T5-like
        ones also after whitespace) or as a continuation: then it is encoded after a left context
        (a newline, else '.', '0', 'x') whose own ids must come out unchanged, and those are cut
        off. That keeps SentencePiece's dummy-prefix `▁` off word-internal pieces. A fragment
        holding U+FFFD (partial bytes, as servers and decoders spell them) spells nothing.
        Memoised: teachers repeat their tokens."""
        cache = self._spelled[after_space]
        found = cache.get(fragment)
        if found is None:
            if not fragment or "\ufffd" in fragment:
                found = ()
            elif after_space or (fragment[:1].isspace() and self.folds_whitespace):
                found = tuple(self._ids(fragment))
            else:
                found = self._continuation(fragment)
            if len(cache) > 500_000:
                cache.clear()
            cache[fragment] = found
        return found

    def _continuation(self, fragment: str) -> tuple[int, ...]:
        heads = self.__dict__.get("_heads")
        if heads is None:
            heads = self._heads = [(anchor, self._ids(anchor)) for anchor in self.ANCHORS]
        for anchor, head in heads:
            both = self._ids(anchor + fragment)
            if head and both[: len(head)] == head and len(both) > len(head):
                return tuple(both[len(head):])
        return tuple(self._ids(fragment))

    def id_table(self) -> IdTable:
        """Each id's bytes: byte-level tokens through GPT-2's byte alphabet, SentencePiece-style
        ones with `▁` as a space and `<0xNN>` as that byte, others as their UTF-8; added tokens by
        their content, special as the tokenizer marks them."""
        added = {i: t for i, t in self.tok.added_tokens_decoder.items()}
        kinds = _decoder_kinds(self.tok)
        byte_level = "ByteLevel" in kinds
        metaspace = "Metaspace" in kinds or "Replace" in kinds
        byte_fallback = "ByteFallback" in kinds
        alphabet = _byte_decoder() if byte_level else {}
        for token, i in self.tok.get_vocab().items():
            if i in added:
                yield i, added[i].content.encode(), bool(added[i].special)
            elif byte_level and all(c in alphabet for c in token):
                yield i, bytes(alphabet[c] for c in token), False
            elif byte_fallback and _BYTE_PIECE.fullmatch(token):
                yield i, bytes([int(token[3:5], 16)]), False
            elif metaspace:
                yield i, token.replace(SPIECE_MARKER, " ").encode(), False
            else:
                yield i, token.encode(), False


_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _decoder_kinds(tok) -> set[str]:
    """Every `type` in the tokenizer's decoder (nested sequences included)."""
    try:
        decoder = json.loads(tok.backend_tokenizer.to_str()).get("decoder") or {}
    except (AttributeError, ValueError):
        return set()
    kinds: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if "type" in node:
                kinds.add(node["type"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(decoder)
    return kinds


def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable alphabet for bytes (`Ġ` = space), reversed: character -> byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def load_tokenizer(spec: str):
    """`tiktoken:p50k_base`, `t5` (the data dir's spiece.model), `spm:/path/model`, `hf-gpt2`, `hf:/path`."""
    if spec.startswith("tiktoken:"):
        return TiktokenTokenizer(spec.split(":", 1)[1])
    if spec in ("p50k_base", "cl100k_base", "r50k_base", "gpt2"):
        return TiktokenTokenizer(spec)
    if spec == "t5":
        return SentencePieceTokenizer()
    if spec.startswith("spm:"):
        return SentencePieceTokenizer(spec.split(":", 1)[1])
    if spec == "hf-gpt2":
        return HFTokenizer.gpt2()
    if spec.startswith("hf:"):
        from transformers import AutoTokenizer

        try:
            return HFTokenizer(AutoTokenizer.from_pretrained(spec.split(":", 1)[1]))
        except (OSError, ValueError) as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
            raise UsageError(f"tokenizer {spec!r} cannot be loaded ({reason}); specs load_tokenizer understands: "
                             "tiktoken:<encoding>, t5, spm:<model file>, hf-gpt2, hf:<path>") from None
    raise UsageError(f"unknown tokenizer {spec!r}: use tiktoken:<encoding>, t5, spm:<model file>, hf-gpt2 or hf:<path>")


def token_strings(tokenized: Tokenized | Sequence[str]) -> list[str]:
    return list(tokenized.tokens) if isinstance(tokenized, Tokenized) else list(tokenized)
