"""Token strings that spell a teacher server's text, from the pieces servers send.

Servers send per-token strings that cannot always be decoded alone: OpenAI spells a token
holding part of a UTF-8 character "bytes:\\xe2\\x80" (legacy completions) or gives its exact
`bytes` (chat); vLLM puts U+FFFD in the string (and in chat `bytes`). Exact bytes are decoded
incrementally, so a character belongs to the token that completes it (the tokens before it spell
""). U+FFFD pieces are re-spelled against the text, each standing for at most one non-ASCII
character, again given to the last token that can hold it. llama-cpp-python decodes each token
alone with errors="ignore", so partial bytes vanish: " \xf0\x9f" is sent as " " and "\x98\x80"
as "", and the emoji is in the text but in no token. When nothing else spells the text, the
non-ASCII characters missing at a token boundary go to the token that completes them: the last
empty token starting there, else the token starting there (the one holding the continuation
bytes). vLLM ends the text before a stop string but sends the tokens through it: those are cut at
the text's end.
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
    pieces = [b.decode("utf-8", errors="replace") for b in data]
    out = _respell(pieces, text, allow_prefix)
    lossy = out is None
    if lossy:
        out = _respell(pieces, text, allow_prefix, lossy=True)
    if out is None:
        raise DataError(f"teacher tokens do not spell the returned text ({len(wire)} tokens, text starts {text[:40]!r})")
    if notes is not None:
        notes["respelled_lost_bytes" if lossy else "respelled_completions"] += 1
    return out


def _cut(strings: list[str], n: int) -> list[str]:
    out, pos = [], 0
    for s in strings:
        if pos >= n and out:
            break
        out.append(s[: n - pos])
        pos += len(out[-1])
    return out


def _respell(pieces: list[str], text: str, allow_prefix: bool, lossy: bool = False) -> list[str] | None:
    """Match the pieces' characters to `text`, each U+FFFD standing for zero or one non-ASCII
    character; with `lossy`, a run of non-ASCII characters may also be missing at a piece
    boundary (bytes a server dropped). Forward: the text positions reachable before each
    character (`pre`), and after the boundary's missing run (`post`). Backward: one consistent
    path, giving a character to the latest U+FFFD or boundary that can take it."""
    items = [ch for p in pieces for ch in p]
    starts, t = [], 0
    for p in pieces:
        starts.append(t)
        t += len(p)
    boundaries = set(starts) | {len(items)} if lossy else set()
    n = len(text)

    def close(positions: set[int], t: int) -> set[int]:
        if t not in boundaries:
            return positions
        out = set(positions)
        for p in positions:
            while p < n and ord(text[p]) > 127:
                p += 1
                out.add(p)
        return out

    pre, post = [{0}], [close({0}, 0)]
    for t, ch in enumerate(items):
        nxt = set()
        for p in post[t]:
            if ch == REPLACEMENT:
                nxt.add(p)
                if p < n and ord(text[p]) > 127:
                    nxt.add(p + 1)
            elif p < n and text[p] == ch:
                nxt.add(p + 1)
        if not nxt:
            break
        pre.append(nxt)
        post.append(close(nxt, t + 1))
    complete = len(post) == len(items) + 1 and n in post[-1]
    ends = [len(items)] if complete else [t for t in range(len(post)) if n in post[t]] if allow_prefix else []
    if not ends:
        return None
    end_t = max(ends)
    before, after, pos = [0] * (end_t + 1), [0] * (end_t + 1), n  # text position before / after boundary t's run
    for t in range(end_t, -1, -1):
        after[t] = pos
        if t in boundaries:  # the latest boundary takes as much of the missing run as it can
            q, best = pos, pos if pos in pre[t] else None
            while q > 0 and ord(text[q - 1]) > 127:
                q -= 1
                if q in pre[t]:
                    best = q
            pos = best
        before[t] = pos
        if t and (items[t - 1] != REPLACEMENT or (pos > 0 and ord(text[pos - 1]) > 127 and pos - 1 in post[t - 1])):
            pos -= 1
    owner = [j for j, p in enumerate(pieces) for _ in p]  # the piece of each character
    keep = len(pieces) if complete else sum(1 for s in starts if s < end_t)
    out = [""] * len(pieces)
    for t in range(end_t + 1):
        if after[t] > before[t]:  # a missing run: to the token completing it
            starting = [j for j, s in enumerate(starts) if s == t]
            empty = [j for j in starting if not pieces[j]]
            j = empty[-1] if empty else starting[0] if starting else owner[t - 1]
            out[j] += text[before[t] : after[t]]
            keep = max(keep, j + 1)
        if t < end_t:
            out[owner[t]] += text[after[t] : before[t + 1]]
    return out[:keep]
