"""A loopback OpenAI-compatible server for the teacher tests and the HTTP benchmark.

Serves /v1/completions (sampling, and scoring with echo) and /v1/chat/completions with logprobs
in the real response schemas, deterministic given (prompt, seed + choice index), after a fixed
delay, with faults taken in order from a scripted plan (or every Nth request):

    with FakeOpenAIServer(plan=[{"kind": "429", "retry_after": "1"}, {"kind": "timeout"}]) as server:
        ...  # server.base_url is http://127.0.0.1:<port>/v1
    python tests/teacher/fake_openai_server.py --delay 0.05 --fault-every 10   # prints "PORT <n>"

In process (tests) it is a ThreadingHTTPServer, which can also time out, send bad JSON, truncate
a body or drop the connection. The command line (the benchmark) runs one asyncio loop instead,
plain answers and status faults only: threads fighting over the GIL would make the server, not
the client, the bottleneck.

Tokens are bytes. A few words split a multi-byte character over two tokens, so the client meets
partial UTF-8 in both server conventions: `byte_tokens="openai"` spells such a token
"bytes:\\xc3" (legacy completions; chat gives the exact `bytes`), `"vllm"` spells it "\ufffd"
(and chat `bytes` are those of "\ufffd"). `expected_sample` / `expected_score` give what the
client must return, from the byte-level truth, independently of the client's code (each
position's top list with its own token added where the top-k leaves it out).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Units are one or more tokens that together form whole UTF-8 characters.
UNITS: list[list[bytes]] = [
    [b" The"], [b" answer"], [b" is"], [b" step"], [b" by"], [b"\n"], [b" 4"], [b"2"], [b" Natalia"],
    [b" sold"], [b" clips"], [b"."], [b" so"], [b" she"], [b" has"], [b" Question"], [b":"],
    [b" caf", b"\xc3", b"\xa9"],  # café: é split over two tokens
    [b" it", b"\xe2\x80", b"\x99s"],  # it's with a curly apostrophe, split 2 + 1
    [b" \xf0\x9f", b"\x98\x80"],  # an emoji, split 2 + 2
]
SINGLE = [u for u in UNITS if len(u) == 1]
# Alternatives in the top-k are whole tokens only (so their strings do not depend on the convention).
ALTERNATIVES = sorted({u[0] for u in SINGLE})
WORD = re.compile(rb" ?[A-Za-z0-9]+| ?[^\sA-Za-z0-9]+|\s+")


def _rng(*key) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "big"))


def wire_token(tok: bytes, convention: str) -> str:
    """How a server spells one token in JSON."""
    try:
        return tok.decode("utf-8")
    except UnicodeDecodeError:
        if convention == "openai":
            return "bytes:" + "".join(f"\\x{b:02x}" for b in tok)
        return tok.decode("utf-8", errors="replace")


def tokenize(text: str) -> list[bytes]:
    """Words, with each non-ASCII character split into its first byte and the rest."""
    out = []
    for m in WORD.finditer(text.encode()):
        piece = m.group()
        if piece.isascii():
            out.append(piece)
            continue
        for ch in piece.decode():
            b = ch.encode()
            out.extend([b[:1], b[1:]] if len(b) > 1 else [b])
    return out


def _topk(rng: random.Random, chosen: bytes, k: int) -> tuple[float, list[tuple[bytes, float]]]:
    """The chosen token's logprob and a top-k list (descending) that holds it unless k is 1 and it lost."""
    lps = sorted((-(i + rng.random()) * 0.7 for i in range(k)), reverse=True)
    others = [a for a in ALTERNATIVES if a != chosen]
    rng.shuffle(others)
    rank = rng.randrange(k)
    toks = others[: k - 1]
    toks.insert(rank, chosen)
    return lps[rank], list(zip(toks[:k], lps))


def generate(prompt: str, seed, index: int, max_tokens: int, k: int, stop=()) -> dict:
    """Byte-level truth for one sampled choice: tokens, logprobs, top-k, text, finish reason."""
    rng = _rng(prompt, None if seed is None else seed + index, None if seed is not None else index)
    toks: list[bytes] = []
    while len(toks) < max_tokens:
        room = max_tokens - len(toks)
        unit = rng.choice(UNITS)
        if len(unit) > room:
            unit = rng.choice(SINGLE)
        toks.extend(unit)
    lps, tops = [], []
    for t in toks:
        lp, top = _topk(rng, t, k)
        lps.append(lp)
        tops.append(top)
    full = b"".join(toks).decode()
    finish, cut = "length", len(full)
    for s in stop or ():
        at = full.find(s)
        if 0 <= at < cut:
            finish, cut = "stop", at
    if finish == "stop":  # vLLM-like: the text stops before the stop string, tokens run through it
        n, spelled = 0, 0
        while n < len(toks) and spelled < cut + len(stop[0]):
            spelled = len(b"".join(toks[: n + 1]).decode(errors="ignore"))
            n += 1
        toks, lps, tops = toks[:n], lps[:n], tops[:n]
    return {"tokens": toks, "logprobs": lps, "tops": tops, "text": full[:cut], "finish": finish}


def _spell(toks: list[bytes]) -> list[str]:
    """Each character goes to the token whose bytes complete it."""
    import codecs

    dec = codecs.getincrementaldecoder("utf-8")()
    return [dec.decode(t) for t in toks]


def _client_view(tokens, lps, tops, text, k, owns=None):
    """`owns`: the positions' own tokens, when `tokens` were trimmed (the score boundary)."""
    strings = _spell(tokens)
    out_t, out_lp, out_tt, out_tl, pos = [], [], [], [], 0
    for tok, s, lp, top in zip(owns or tokens, strings, lps, tops):
        if pos >= len(text):
            break
        s = s[: len(text) - pos]
        pos += len(s)
        out_t.append(s)
        out_lp.append(lp)
        top = top[:k]
        names, values = [t.decode("utf-8", errors="replace") for t, _ in top], [v for _, v in top]
        own = tok.decode("utf-8", errors="replace")
        if own not in names:  # the client adds the position's own token where the top-k leaves it out
            names, values = names + [own], values + [lp]
        out_tt.append(names)
        out_tl.append(values)
    return {"text": text, "tokens": out_t, "token_logprobs": out_lp, "top_tokens": out_tt, "top_logprobs": out_tl}


def expected_sample(prompt, seed, index, max_tokens, k, stop=(), topk_cap=None) -> dict:
    g = generate(prompt, seed, index, max_tokens, k, stop)
    view = _client_view(g["tokens"], g["logprobs"], g["tops"], g["text"], min(k, topk_cap or k))
    view["finish_reason"] = g["finish"]
    return view


def _score_truth(prompt: str, text: str, k: int):
    """A prompt's own token is often outside the top-k: the truth holds k + 3 ranks."""
    toks = tokenize(prompt + text)
    rng = _rng("score", prompt + text)
    lps, tops = [], []
    for t in toks:
        lp, top = _topk(rng, t, k + 3)
        lps.append(lp)
        tops.append(top)
    return toks, lps, tops


def expected_score(prompt: str, text: str, k: int, topk_cap=None) -> dict:
    """The scored positions of `text` (a token straddling the prompt/text boundary is trimmed)."""
    toks, lps, tops = _score_truth(prompt, text, k)
    strings, pos, first = _spell(toks), 0, 0
    while pos + len(strings[first]) <= len(prompt):
        pos += len(strings[first])
        first += 1
    head = strings[first][len(prompt) - pos :]
    view = _client_view([head.encode()] + toks[first + 1 :], lps[first:], tops[first:], text, min(k, topk_cap or k), toks[first:])
    view["tokens"][0] = head if head else view["tokens"][0]
    return view


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, status: int, payload, headers=()):  # one write: no Nagle / delayed-ACK stall
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        head = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}", "Content-Type: application/json",
                f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers)]
        try:
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        except OSError:  # the client gave up (timeout): nothing to do
            self.close_connection = True

    def do_POST(self):
        fake = self.server.fake
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        fault = fake.next_fault()
        fake.record(self.path, body, fault, self.headers.get("Authorization", ""))
        if fake.delay_s:
            time.sleep(fake.delay_s)
        if fault is not None and self._fault(fault):
            return
        self._send(*fake.answer(self.path, body))

    def _fault(self, fault: dict) -> bool:
        kind = fault["kind"]
        if (answer := status_fault(fault)) is not None:
            self._send(*answer)
        elif kind == "401_echo":  # a server that echoes the credential it got (some do, partly masked)
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
            self._send(401, {"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}})
        elif kind == "timeout":
            time.sleep(fault.get("sleep_s", 1.0))
            return False  # then answers normally, to a client that has gone
        elif kind == "malformed":
            self._send(200, b'{"id": "cmpl-x", "choices": [{"text": "hel')
        elif kind in ("truncated", "reset"):
            if kind == "truncated":
                data = b'{"id": "cmpl-x", "object": "text_completion", "choices": []}'
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(data) + 100, data[:20]))
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            raise ValueError(f"unknown fault {kind!r}")
        return True


def status_fault(fault: dict):
    """(status, body, headers) for the faults that are plain error answers, else None."""
    kind = fault["kind"]
    if kind in ("429", "500", "503", "408"):
        headers = [(h, fault[key]) for key, h in (("retry_after", "Retry-After"), ("retry_after_ms", "retry-after-ms")) if key in fault]
        return int(kind), {"error": {"message": f"injected {kind}", "type": "server_error"}}, headers
    if kind == "400":
        return 400, {"error": {"message": fault.get("message", "injected bad request"), "type": "invalid_request_error"}}, []
    if kind == "422":  # FastAPI's validation error (SGLang, some proxies): no `message`, a `detail`
        return 422, {"detail": [{"loc": ["body", "logprobs"], "msg": fault.get("message", "injected invalid field")}]}, []
    return None


async def _serve_async(fake: "FakeOpenAIServer", reader, writer):
    """One keep-alive connection of the asyncio server (plain answers and status faults only)."""
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            received = time.monotonic()
            path = head[0].split(" ")[1]
            length = next((int(h.split(":", 1)[1]) for h in head[1:] if h.lower().startswith("content-length:")), 0)
            body = json.loads(await reader.readexactly(length) or b"{}")
            fault = fake.next_fault()
            status, payload, *headers = status_fault(fault) if fault else fake.answer(path, body)
            data = json.dumps(payload).encode()
            extra = "".join(f"{k}: {v}\r\n" for k, v in (headers[0] if headers else []))
            # the answer is built while the request "runs": it leaves d after the request arrived,
            # not d plus this server's own CPU time (which would charge the rig to the client)
            # (--faults-at-once: a fault is answered without the delay, as a rate limiter's 429 is)
            delay = 0.0 if fault and fake.faults_at_once else fake.delay_s
            if (wait := received + delay - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n{extra}\r\n".encode() + data)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    fake: "FakeOpenAIServer"


class FakeOpenAIServer:
    """`plan`: faults served in order, one per request ({"kind": "429"|"500"|"503"|"408"|"400"|"422"|
    "401_echo"|"timeout"|"malformed"|"truncated"|"reset", plus "retry_after", "retry_after_ms",
    "sleep_s", "message"}). `fault_every`: also fail every Nth request (alternating 429 / 500).
    `topk_cap`: return at most this many top-k entries. `max_n`: return at most this many choices.
    `reject_max_tokens_0`: answer 400 to max_tokens=0 (as vLLM does). `prompt_topk_in`: where
    echoed prompt positions carry their top-k ("logprobs", or vLLM's "prompt_logprobs" field)."""

    def __init__(self, *, delay_s=0.0, plan=(), fault_every=0, topk_cap=None, max_n=None, byte_tokens="openai",
                 reject_max_tokens_0=False, prompt_topk_in="logprobs", port=0):
        self.delay_s, self.plan, self.fault_every = delay_s, list(plan), fault_every
        self.topk_cap, self.max_n, self.byte_tokens = topk_cap, max_n, byte_tokens
        self.reject_max_tokens_0, self.prompt_topk_in, self.port = reject_max_tokens_0, prompt_topk_in, port
        self.faults_at_once = False  # the asyncio server (benchmark) only: faults skip the delay
        self.log: list[dict] = []
        self._lock = threading.Lock()
        self._count = 0
        self._httpd: _Server | None = None

    # -- lifecycle
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> "FakeOpenAIServer":
        self._httpd = _Server(("127.0.0.1", self.port), _Handler)
        self._httpd.fake = self
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    __enter__ = start

    def __exit__(self, *exc):
        self.stop()

    # -- bookkeeping
    def next_fault(self):
        with self._lock:
            self._count += 1
            if self.plan:
                return self.plan.pop(0)
            if self.fault_every and self._count % self.fault_every == 0:
                return {"kind": "429" if (self._count // self.fault_every) % 2 else "500"}
        return None

    def record(self, path, body, fault, auth):
        with self._lock:
            self.log.append({"path": path, "fault": fault and fault["kind"], "body": body, "auth": auth})

    # -- endpoints
    def answer(self, path: str, body: dict):
        if path.endswith("/chat/completions"):
            return 200, self.chat(body)
        if path.endswith("/completions"):
            return self.completions(body)
        return 404, {"error": {"message": f"no route {path}", "type": "not_found"}}

    def _k(self, asked: int) -> int:
        return min(asked, self.topk_cap) if self.topk_cap else asked

    def completions(self, body: dict):
        k = int(body.get("logprobs") or 0)
        prompt = body["prompt"]
        max_tokens = body.get("max_tokens", 16)
        if body.get("echo"):
            if max_tokens == 0 and self.reject_max_tokens_0:
                return 400, {"error": {"message": "max_tokens must be at least 1, got 0.", "type": "BadRequestError"}}
            return 200, self._score(body, prompt, k, max_tokens)
        n = body.get("n", 1)
        n = min(n, self.max_n) if self.max_n else n
        choices, completion_tokens = [], 0
        for i in range(n):
            g = generate(prompt, body.get("seed"), i, max_tokens, max(k, 1), body.get("stop") or ())
            completion_tokens += len(g["tokens"])
            choices.append({"text": g["text"], "index": i, "finish_reason": g["finish"],
                            "logprobs": self._legacy_logprobs(g["tokens"], g["logprobs"], g["tops"], k, len(prompt))})
        return 200, _envelope("text_completion", choices, len(tokenize(prompt)), completion_tokens)

    def _legacy_logprobs(self, toks, lps, tops, k, offset0, prompt_positions=0):
        wire = [wire_token(t, self.byte_tokens) for t in toks]
        offsets, pos = [], offset0
        for w in wire:  # vLLM-style: cumulative lengths of the token strings
            offsets.append(pos)
            pos += len(w)
        top = []
        for i, t in enumerate(tops):
            if i < prompt_positions and self.prompt_topk_in == "prompt_logprobs":
                top.append(None)
                continue
            entries = [(wire_token(a, self.byte_tokens), v) for a, v in t[: self._k(k)]]
            random.Random(i).shuffle(entries)  # JSON objects carry no order: the client must sort
            top.append(dict(entries))
        return {"tokens": wire, "token_logprobs": list(lps), "top_logprobs": top, "text_offset": offsets}

    def _score(self, body, prompt, k, max_tokens):
        toks, lps, tops = _score_truth(prompt, "", max(k, 1))  # the client sends prompt + text as one prompt
        logprobs = self._legacy_logprobs(toks, [None] + lps[1:], tops, k, 0, prompt_positions=len(toks))
        logprobs["top_logprobs"][0] = None
        text, extra = prompt, {}
        if max_tokens:  # a server that insists on generating: the client drops these
            g = generate(prompt, 0, 0, 1, max(k, 1))
            more = self._legacy_logprobs(g["tokens"], g["logprobs"], g["tops"], k, len(prompt))
            for key in logprobs:
                logprobs[key] += more[key]
            text += g["text"]
        if self.prompt_topk_in == "prompt_logprobs" and body.get("prompt_logprobs"):
            extra["prompt_logprobs"] = [None] + [self._vllm_entry(toks[i], tops[i], k) for i in range(1, len(toks))]
        choice = {"text": text, "index": 0, "finish_reason": "length", "logprobs": logprobs, **extra}
        return _envelope("text_completion", [choice], len(toks), max_tokens and 1)

    def _vllm_entry(self, chosen: bytes, top, k) -> dict:
        """vLLM's prompt_logprobs entry: {token id: {logprob, rank, decoded_token}}, top-k plus the
        prompt's own token (with its rank, > k) when it is not among them."""
        ranked = list(enumerate(top))
        keep = ranked[: self._k(k)] + [(r, e) for r, e in ranked[self._k(k):] if e[0] == chosen]
        ids = {a: str(ALTERNATIVES.index(a)) if a in ALTERNATIVES else "1000" for a, _ in top}
        return {ids[a]: {"logprob": v, "rank": r + 1, "decoded_token": wire_token(a, self.byte_tokens)} for r, (a, v) in keep}

    def chat(self, body: dict) -> dict:
        prompt = body["messages"][-1]["content"]
        k = int(body.get("top_logprobs") or 0)
        n = body.get("n", 1)
        n = min(n, self.max_n) if self.max_n else n
        choices, completion_tokens = [], 0
        for i in range(n):
            g = generate(prompt, body.get("seed"), i, body.get("max_tokens", 16), max(k, 1), body.get("stop") or ())
            completion_tokens += len(g["tokens"])
            content = []
            for t, lp, top in zip(g["tokens"], g["logprobs"], g["tops"]):
                content.append({"token": wire_token(t, self.byte_tokens), "logprob": lp, "bytes": self._bytes(t),
                                "top_logprobs": [{"token": wire_token(a, self.byte_tokens), "logprob": v, "bytes": self._bytes(a)}
                                                 for a, v in top[: self._k(k)]]})
            choices.append({"index": i, "finish_reason": g["finish"], "message": {"role": "assistant", "content": g["text"]},
                            "logprobs": {"content": content}})
        return _envelope("chat.completion", choices, len(tokenize(prompt)), completion_tokens)

    def _bytes(self, tok: bytes) -> list[int]:
        return list(tok) if self.byte_tokens == "openai" else list(tok.decode("utf-8", errors="replace").encode())


def _envelope(obj, choices, prompt_tokens, completion_tokens) -> dict:
    return {"id": "cmpl-fake", "object": obj, "created": 0, "model": "fake", "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def main(argv=None):
    ap = argparse.ArgumentParser(description="The loopback OpenAI-compatible server, in asyncio (for the benchmark).")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    ap.add_argument("--fault-every", type=int, default=0, help="fail every Nth request (429 / 500 alternately)")
    ap.add_argument("--faults-at-once", action="store_true", help="answer injected faults at once, without the delay")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    fake = FakeOpenAIServer(delay_s=args.delay, fault_every=args.fault_every)
    fake.faults_at_once = args.faults_at_once

    async def serve():
        server = await asyncio.start_server(lambda r, w: _serve_async(fake, r, w), "127.0.0.1", args.port, backlog=256)
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin

    asyncio.run(serve())


if __name__ == "__main__":
    main()
