"""Token strings that spell a teacher server's text, from the pieces servers send.

Servers send per-token strings that cannot always be decoded alone: OpenAI spells a token
holding part of a UTF-8 character "bytes:\\xe2\\x80" (legacy completions) or gives its exact
`bytes` (chat); vLLM puts U+FFFD in the string (and in chat `bytes`). Exact bytes are decoded
incrementally, so a character belongs to the token that completes it (the tokens before it spell
""). U+FFFD pieces are re-spelled against the text, each standing for at most one non-ASCII
character, again given to the last token that can hold it. vLLM ends the text before a stop
string but sends the tokens through it: those are cut at the text's end.
"""

from __future__ import annotations

import codecs
import math
from typing import Sequence

from harness.errors import DataError

REPLACEMENT = "\ufffd"


def _wire_bytes(token: str) -> bytes:
    if token.startswith("bytes:"):  # OpenAI: "bytes:\\xe2\\x80" for a token that is not whole UTF-8
        return codecs.escape_decode(token[6:].encode())[0]
    return token.encode()


def display_token(token: str, raw=None) -> str:
    if raw is None and not token.startswith("bytes:"):
        return token
    return (bytes(raw) if raw is not None else _wire_bytes(token)).decode("utf-8", errors="replace")


def legacy_entries(top: dict | None) -> list[tuple[str, float]]:
    if not top:
        return []
    return [(display_token(t) if t.startswith("bytes:") else t, v) for t, v in top.items()]


def logprob_or_nan(x, notes) -> float:
    if x is None:
        notes["missing_logprob"] += 1
        return math.nan
    return float(x)


def spell(wire: Sequence[str], raw: Sequence | None, text: str, *, allow_prefix: bool, notes=None) -> list[str]:
    """Token strings that spell `text` (or, with `allow_prefix`, the tokens up to the end of
    `text`, the last one cut). `raw`: exact bytes per token (chat), else taken from `wire`."""
    data = [bytes(r) if r is not None else _wire_bytes(w) for w, r in zip(wire, raw or [None] * len(wire))]
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    strings = [decoder.decode(b) for b in data]
    if strings:
        strings[-1] += decoder.decode(b"", final=True)
    joined = "".join(strings)
    if joined == text:
        return strings
    if allow_prefix and joined.startswith(text):
        if notes is not None:
            notes["tokens_cut_after_stop"] += 1
        return _cut(strings, len(text))
    out = _respell([b.decode("utf-8", errors="replace") for b in data], text, allow_prefix)
    if out is None:
        raise DataError(f"teacher tokens do not spell the returned text ({len(wire)} tokens, text starts {text[:40]!r})")
    if notes is not None:
        notes["respelled_completions"] += 1
    return out


def _cut(strings: list[str], n: int) -> list[str]:
    out, pos = [], 0
    for s in strings:
        if pos >= n and out:
            break
        out.append(s[: n - pos])
        pos += len(out[-1])
    return out


def _respell(pieces: list[str], text: str, allow_prefix: bool) -> list[str] | None:
    """Match the pieces' characters to `text`, each U+FFFD standing for zero or one non-ASCII
    character (forward: the reachable text positions before each character; backward: one
    consistent path, giving a character to the latest U+FFFD that can take it)."""
    items = [ch for p in pieces for ch in p]
    n, reach = len(text), [{0}]
    for ch in items:
        nxt = set()
        for p in reach[-1]:
            if ch == REPLACEMENT:
                nxt.add(p)
                if p < n and ord(text[p]) > 127:
                    nxt.add(p + 1)
            elif p < n and text[p] == ch:
                nxt.add(p + 1)
        if not nxt:
            break
        reach.append(nxt)
    complete = len(reach) == len(items) + 1 and n in reach[-1]
    ends = [len(items)] if complete else [t for t in range(len(reach)) if n in reach[t]] if allow_prefix else []
    if not ends:
        return None
    end_t = max(ends)
    before, pos = [0] * (end_t + 1), n
    before[end_t] = n
    for t in range(end_t - 1, -1, -1):
        if items[t] != REPLACEMENT or (pos - 1 in reach[t] and pos > 0 and ord(text[pos - 1]) > 127):
            pos -= 1
        before[t] = pos
    out, first = [], 0
    for p in pieces:
        if first >= end_t and not complete:
            break
        out.append(text[before[min(first, end_t)] : before[min(first + len(p), end_t)]])
        first += len(p)
    return out
