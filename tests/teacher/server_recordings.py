"""Real servers' answers to the teacher client, recorded once and replayed in the tests.

A recording is one JSON file under tests/teacher/fixtures/servers/: the server's name and
version, how it was started and on what model, and the exchanges (request body as the client
sent it, status, the `server` header, response body) of a few scenarios, each run by the real
`OpenAITeacher` through `RecordingProxy`. `ReplayServer` answers a request with the recorded
response to the same path and body, so a test replays exactly what the server said; a request
that was never recorded gets a 418 naming it (the client's requests changed: record again with
`python -m tests.teacher.record_servers`).

The scenarios use short texts of our own (no data set text), with a multi-byte character and an
emoji that GPT-2's byte-level BPE splits across tokens.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from harness.teacher.base import SampleRequest, ScoreRequest
from harness.teacher.openai_backend import OpenAIConfig, OpenAITeacher

FIXTURES = Path(__file__).parent / "fixtures" / "servers"
MODEL = "default-teacher"  # the name both servers were started with

SAMPLE = [
    SampleRequest("Question: Ana has 3 boxes of 12 pens and gives away 9 pens. How many pens are left?\n"
                  "Let's think step by step", n=2, temperature=0.5, max_tokens=16, top_k=5, seed=11),
    SampleRequest("Question: A café sells 4 cakes at 2 € each. What does it earn?\nLet's think step by step",
                  n=3, temperature=1.0, max_tokens=12, top_k=5, seed=12),
]
SCORE_PROMPT = "Question: Ana has 3 boxes of 12 pens and gives away 9 pens. How many pens are left?\nAnswer:"
SCORE = [
    ScoreRequest(SCORE_PROMPT, " 3 x 12 = 36 pens, and 36 - 9 = 27.\nThe answer is 27", top_k=5),
    ScoreRequest(SCORE_PROMPT, " She keeps 36 − 9 = 27 pens — déjà vu 😀.\nThe answer is 27", top_k=5),
]
TOO_LONG = SampleRequest("pens " * 600, n=1, temperature=0.5, max_tokens=4, top_k=5, seed=1)  # > the 512 positions recorded with


def teacher(base_url: str, api: str = "completions") -> OpenAITeacher:
    return OpenAITeacher(OpenAIConfig(base_url, MODEL, api=api, timeout_s=60, max_retries=2, backoff_base_s=0.01,
                                      backoff_max_s=0.05, concurrency=2, api_key_env="SPEC_TEST_NO_KEY"))


# name: (api, what the teacher is asked)
SCENARIOS = {
    "sample-completions": ("completions", lambda t: t.sample(SAMPLE)),
    "sample-chat": ("chat", lambda t: t.sample(SAMPLE)),
    "score": ("completions", lambda t: t.score(SCORE)),
    "prompt-too-long": ("completions", lambda t: t.sample([TOO_LONG])),
}


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def exchanges(recording: dict, scenario: str) -> list[dict]:
    return [e for e in recording["exchanges"] if e["scenario"] == scenario]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, headers, payload = self.server.owner.answer(self.path, json.loads(body or b"{}"))
        head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(payload)}", *(f"{k}: {v}" for k, v in headers.items())]
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)


class _Loopback:
    """A threaded HTTP server on 127.0.0.1 whose `answer(path, body)` gives (status, headers, bytes)."""

    def __enter__(self):
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"


class ReplayServer(_Loopback):
    """Answers each request with the recorded response to the same path and body (in recorded
    order when one request was recorded several times); `log` lists the requests it got."""

    def __init__(self, recording: dict):
        self.recording, self.log, self._lock, self._used = recording, [], threading.Lock(), {}

    def answer(self, path: str, body: dict):
        key = (path, json.dumps(body, sort_keys=True))
        with self._lock:
            self.log.append((path, body))
            matches = [e for e in self.recording["exchanges"]
                       if (e["path"], json.dumps(e["request"], sort_keys=True)) == key and "response_summary" not in e]
            if not matches:
                message = f"replay: no recorded answer for POST {path} {json.dumps(body, sort_keys=True)[:300]}"
                return 418, {"Content-Type": "application/json"}, json.dumps({"error": {"message": message}}).encode()
            used = self._used.get(key, 0)
            self._used[key] = used + 1
            e = matches[min(used, len(matches) - 1)]
        headers = {"Content-Type": e.get("content_type") or "application/json", **({"server": e["server"]} if e.get("server") else {})}
        payload = json.dumps(e["response"]).encode() if "response" in e else e["response_text"].encode()
        return e["status"], headers, payload


class RecordingProxy(_Loopback):
    """Forwards each request to `target` (a real server's base URL) and keeps the exchange."""

    def __init__(self, target: str):
        self.target, self.scenario, self.exchanges, self._lock = target.rstrip("/"), None, [], threading.Lock()

    def answer(self, path: str, body: dict):
        exchange = forward(self.target, path, body)
        with self._lock:
            self.exchanges.append({"scenario": self.scenario, **exchange})
        headers = {"Content-Type": exchange["content_type"], **({"server": exchange["server"]} if exchange["server"] else {})}
        payload = json.dumps(exchange["response"]).encode() if "response" in exchange else exchange["response_text"].encode()
        return exchange["status"], headers, payload


def forward(base_url: str, path: str, body: dict, timeout: float = 600) -> dict:
    """POST `body` to base_url's server at `path` (a /v1/... path); the exchange as recorded."""
    url = base_url.rstrip("/").removesuffix("/v1") + path
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, headers, data = response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        status, headers, data = err.code, err.headers, err.read()
    exchange = {"path": path, "request": body, "status": status, "server": headers.get("server"),
                "content_type": headers.get("content-type")}
    try:
        exchange["response"] = json.loads(data)
    except ValueError:
        exchange["response_text"] = data.decode("utf-8", errors="replace")
    return exchange
