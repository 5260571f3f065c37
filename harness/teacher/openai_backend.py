"""An OpenAI-compatible HTTP teacher (vLLM, SGLang, hosted APIs): sample or score with top-k logprobs.

    teacher = OpenAITeacher(OpenAIConfig.from_env(concurrency=32, tokens_per_minute=900_000))
    print(estimate_cost(teacher.config, 7473 * 2, 2600, 20 * 256, usd_per_1m_prompt=0.5).summary())
    samples = teacher.sample([SampleRequest(prompt, n=20, temperature=0.5, max_tokens=256, top_k=5)])

Transport: the openai package's async HTTP client (an httpx client; aiohttp underneath by
default), driven through httpx's own API: one POST of the body as is per request. The
`openai.AsyncOpenAI` wrapper on top of it added ~0.3 ms of CPU per request (about a quarter of
the client's) for request options this teacher does not use, and has its own retries, which
would stack on ours. One policy applies: at most `concurrency` requests in flight, request and token buckets (per minute), and retries with
exponential backoff and full jitter on 408/409/429/5xx (not 501), timeouts, connection errors
and malformed or truncated bodies. A `Retry-After` (seconds or HTTP date; `retry-after-ms` first)
pauses every request until it has passed. Other 4xx fail at once with the status and the
server's message. Before the first request of a job, one tiny probe request of the same kind
learns what the server supports (server_probe.py); an error answer to it (a 500 included: a
server that cannot run a two-token request will not run the job's) fails at once, in one line.
The API key is read from `$api_key_env` when the client is made and is kept nowhere else: not in
the config, `settings()`, messages or logs.

Token strings spell the text ("".join(tokens) == text; see token_spelling.py for the servers'
conventions for partial UTF-8). Top-k alternatives keep the server's string, partial bytes shown
as U+FFFD. Each position's list holds the k most likely tokens and, where they leave it out, the
position's own token (the one the text continues with) as entry k+1, with its log-probability:
servers send it so (OpenAI's convention, llama-cpp-python, vLLM; the authors' 6-entry steps), and
a target without the text's own token teaches the student nothing about it
(`Completion.top_has_token`).

Scoring (completions only) echoes prompt + text with max_tokens 1, never 0 (llama-cpp-python reads
0 as "no limit"), and keeps the positions that cover the text: the tokens are spelled against
prompt + text and whatever follows (the new token, when the server's log-probabilities include
it; llama-cpp-python's cover the prompt only) is cut. Positions are found from the token
offsets of the respelled tokens, recomputed here because vLLM's text_offset counts its U+FFFD
placeholders and drifts after a split character. A token that straddles the prompt/text boundary
keeps its text part. Anything else that does not fit is a DataError. Anomalies that are kept
(fewer top-k than asked, a straddling token, a server cap on n, an own token added) are counted
in `notes`.

`base_url` and the key are connection settings: where the data comes from, not what it is. The
job's settings (checked on resume) hold the model and the sampling settings, so a server
restarted on another port resumes; the address is recorded with each run in stats.json.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import math
import os
import random
import re
import threading
import time
from dataclasses import asdict, dataclass
from typing import Sequence

from harness.errors import DataError, HarnessError, UsageError, check_choice, check_positive
from harness.teacher import server_probe
from harness.teacher.base import Completion, Progress, SampleRequest, ScoreRequest, UsageCounter
from harness.teacher.server_probe import Capabilities, ServerCapabilityError
from harness.teacher.token_spelling import display_token, legacy_entries, logprob_or_nan, spell

import orjson

_loads, _dumps = orjson.loads, orjson.dumps

APIS = ("completions", "chat")
PROBE_TOKENS_HINT = f"{server_probe.PROBE_MAX_TOKENS} new tokens"
HTTP_CLIENTS = ("aiohttp", "httpx")  # the openai client's transport: aiohttp costs less CPU per request
MAX_RETRY_AFTER_S = 600.0  # a longer Retry-After is clamped to this


@dataclass(frozen=True)
class OpenAIConfig:
    """`base_url` ends in /v1. Rates are per minute (None: unlimited); `timeout_s` is per request
    (read timeout: the longest silence). `max_n`: most samples one request asks for (larger `n`
    is split; a server returning fewer is asked again for the rest). `prompt_logprobs`: also send
    vLLM's `prompt_logprobs` when scoring (some vLLM versions give the echoed prompt's top-k only
    there). `tokenizer`: the teacher's tokenizer spec for alignment (default "hf:<model>").
    `http_client`: the openai client's transport, "aiohttp" (less CPU per request; the
    `openai[aiohttp]` extra) or "httpx". `probe`: send one tiny request first to learn what the
    server supports (server_probe.py) and stop at once if it lacks what the job needs."""

    base_url: str
    model: str
    api: str = "completions"
    concurrency: int = 16
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    timeout_s: float = 120
    max_retries: int = 8
    backoff_base_s: float = 1
    backoff_max_s: float = 60
    api_key_env: str = "OPENAI_API_KEY"
    max_n: int = 128
    prompt_logprobs: bool = False
    tokenizer: str = ""
    http_client: str = "aiohttp"
    probe: bool = True

    def __post_init__(self):
        check_choice("api", self.api, APIS)
        check_choice("http_client", self.http_client, HTTP_CLIENTS)
        if not self.base_url or not self.model:
            raise UsageError("teacher base_url and model are required (or set SPEC_TEACHER_BASE_URL / SPEC_TEACHER_MODEL)")
        if not re.match(r"https?://[^/]", self.base_url):
            raise UsageError(f"teacher base_url: {_strip_userinfo(self.base_url)!r} is not an http:// or https:// URL "
                             "(e.g. http://localhost:8000/v1)")
        if _strip_userinfo(self.base_url) != self.base_url:
            raise UsageError(f"teacher base_url: credentials inside the URL are not used; give "
                             f"{_strip_userinfo(self.base_url)} and put the key in ${self.api_key_env}")
        for name in ("concurrency", "timeout_s", "backoff_max_s", "max_n", "requests_per_minute", "tokens_per_minute"):
            check_positive(name, getattr(self, name))
        check_positive("max_retries", self.max_retries, allow_zero=True)
        check_positive("backoff_base_s", self.backoff_base_s, allow_zero=True)

    @classmethod
    def from_env(cls, **overrides) -> "OpenAIConfig":
        """Base URL and model from SPEC_TEACHER_BASE_URL / SPEC_TEACHER_MODEL unless given."""
        overrides.setdefault("base_url", os.environ.get("SPEC_TEACHER_BASE_URL", ""))
        overrides.setdefault("model", os.environ.get("SPEC_TEACHER_MODEL", ""))
        return cls(**overrides)

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in self.public().items())
        return f"OpenAIConfig({fields})"

    def public(self) -> dict:
        """The settings to show and record with a run: no key, and no credentials inside the URL."""
        return {**asdict(self), "base_url": _strip_userinfo(self.base_url)}


@dataclass(frozen=True)
class CostEstimate:
    requests: int
    prompt_tokens: int
    completion_tokens: int
    dollars: float
    seconds: float
    limited_by: str  # "concurrency" | "requests_per_minute" | "tokens_per_minute"

    def summary(self) -> str:
        return (f"{self.requests:,} requests, {self.prompt_tokens:,} prompt + {self.completion_tokens:,} completion "
                f"tokens: about ${self.dollars:,.2f} and {self.seconds / 3600:.1f} h (limited by {self.limited_by})")


def estimate_cost(config: OpenAIConfig, requests: int, prompt_tokens: int, completion_tokens: int, *,
                  usd_per_1m_prompt: float = 0.0, usd_per_1m_completion: float = 0.0,
                  latency_s: float = 10.0) -> CostEstimate:
    """Dollars and wall time for `requests` requests of `prompt_tokens` in and `completion_tokens`
    out each (all n samples), at the config's concurrency and rate limits. `latency_s`: seconds
    one request takes (time one to know)."""
    total_p, total_c = requests * prompt_tokens, requests * completion_tokens
    times = {"concurrency": requests * latency_s / config.concurrency}
    if config.requests_per_minute:
        times["requests_per_minute"] = requests / config.requests_per_minute * 60
    if config.tokens_per_minute:
        times["tokens_per_minute"] = (total_p + total_c) / config.tokens_per_minute * 60
    bound = max(times, key=times.get)
    dollars = (total_p * usd_per_1m_prompt + total_c * usd_per_1m_completion) / 1e6
    return CostEstimate(requests, total_p, total_c, dollars, times[bound], bound)


class TeacherHTTPError(HarnessError):
    """A request the server refused for good (a 4xx other than 408/409/429)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetryEvent:
    kind: str  # "429", "500", "timeout", "connection", "malformed", ...
    wait_s: float  # how long this request waited before trying again
    retry_after_s: float | None  # what the server asked for, if anything


class _Bucket:
    """A token bucket refilled at `per_minute` / 60 per second, holding at most one second's worth
    (at least 1). A request larger than that waits for a full bucket and leaves it in debt."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60
        self.capacity = max(1.0, self.rate)
        self.level, self.t = self.capacity, time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, amount: float):
        async with self.lock:  # FIFO among waiters
            while True:
                now = time.monotonic()
                self.level, self.t = min(self.capacity, self.level + (now - self.t) * self.rate), now
                need = min(amount, self.capacity)
                if self.level >= need:
                    self.level -= amount
                    return
                await asyncio.sleep((need - self.level) / self.rate)

    def adjust(self, delta: float):
        self.level -= delta


class _Retry(Exception):
    def __init__(self, kind: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.kind, self.retry_after = kind, retry_after


class OpenAITeacher:
    """The Teacher protocol over an OpenAI-compatible server. `usage` counts successful HTTP
    requests, retries (with `usage.errors` by kind) and tokens; `retry_log` holds every retry."""

    def __init__(self, config: OpenAIConfig):
        self.config = config
        self.model = config.model
        self.tokenizer = config.tokenizer or f"hf:{config.model}"
        self.usage = UsageCounter()
        self.notes: collections.Counter = collections.Counter()
        self.retry_log: list[RetryEvent] = []
        self.capabilities: Capabilities | None = None  # what the last probe saw
        self._server_header: str | None = None
        self._server_max_n: int | None = None
        self._random = random.Random()  # jitter; independent of the global seed
        self._one_job = threading.Lock()  # the job state below lives on the instance: one job at a time
        # One job's state, set by `_run` for the job and dropped after it (the API key with it).
        self._http = self._url = self._headers = self._sem = self._rpm = self._tpm = None
        self._pause_until = 0.0

    def __repr__(self):
        url = _strip_userinfo(self.config.base_url)
        return f"OpenAITeacher(model={self.model!r}, base_url={url!r}, api={self.config.api!r})"

    def settings(self) -> dict:
        return {"backend": "openai", **self.config.public(), "tokenizer": self.tokenizer}

    def provenance(self) -> dict:
        """Where this run's data came from (stats.json; not a resume setting): the address, what the
        probe saw and the anomalies counted."""
        caps = self.capabilities
        return {"base_url": _strip_userinfo(self.config.base_url), "api": self.config.api,
                "capabilities": caps.as_dict() if caps else None, "summary": caps.summary() if caps else None,
                "notes": dict(self.notes)}

    # ---- public, synchronous
    def sample(self, requests: Sequence[SampleRequest], progress: Progress | None = None) -> list[list[Completion]]:
        for r in requests:
            check_positive("n", r.n)
            check_positive("max_tokens", r.max_tokens)
            check_positive("top_k", r.top_k, allow_zero=True)
        requests = list(requests)
        with self._one_job:
            return _run(self._job(requests, self._sample_one, progress, ("sample", requests[0]) if requests else None))

    def score(self, requests: Sequence[ScoreRequest], progress: Progress | None = None) -> list[Completion]:
        if self.config.api != "completions":
            raise UsageError("api='chat' cannot score a given text (chat completions have no echo of the prompt's "
                             "log-probabilities); use api='completions'")
        for r in requests:
            check_positive("top_k", r.top_k, allow_zero=True)
            if not r.text:
                raise UsageError("score: the text to score is empty")
        requests = list(requests)
        with self._one_job:
            return _run(self._job(requests, self._score_one, progress, ("score", requests[0]) if requests else None))

    def probe(self, like: SampleRequest | ScoreRequest) -> Capabilities:
        """Ask the server what it supports, with a tiny request shaped like `like` (see
        server_probe.py); raises ServerCapabilityError when it lacks what the job needs.
        sample() and score() probe before their first request unless `config.probe` is off."""
        mode = "score" if isinstance(like, ScoreRequest) else "sample"
        if mode == "score" and self.config.api != "completions":
            raise UsageError("api='chat' cannot score a given text (chat completions have no echo of the prompt's "
                             "log-probabilities); use api='completions'")
        with self._one_job:
            return _run(self._job([], None, None, (mode, like), force_probe=True))

    # ---- the job
    async def _job(self, requests, one, progress, probe=None, force_probe=False):
        """Run `one` over `requests` with one HTTP client; first the probe (mode, a request to copy
        the job's parameters from), unless this teacher has probed for that mode already."""
        import httpx2
        import openai

        cfg = self.config
        pool = max(100, cfg.concurrency)
        limits = httpx2.Limits(max_connections=pool, max_keepalive_connections=pool)
        transport = openai.DefaultAioHttpClient if cfg.http_client == "aiohttp" else openai.DefaultAsyncHttpx2Client  # openai[aiohttp] is pinned
        self._http = transport(limits=limits, timeout=cfg.timeout_s)
        self._url = cfg.base_url.rstrip("/")
        self._headers = {  # the key lives here for the job only (dropped in `finally`)
            "Authorization": f"Bearer {os.environ.get(cfg.api_key_env) or 'EMPTY'}",
            "Content-Type": "application/json", "Accept": "application/json",
            "User-Agent": f"spec-harness (openai-compatible teacher; openai {openai.__version__})",
        }
        self._sem = asyncio.Semaphore(cfg.concurrency)
        self._rpm = _Bucket(cfg.requests_per_minute) if cfg.requests_per_minute else None
        self._tpm = _Bucket(cfg.tokens_per_minute) if cfg.tokens_per_minute else None
        self._pause_until = 0.0
        results: list = [None] * len(requests)
        done, queue = 0, iter(enumerate(requests))

        async def worker():  # a fixed pool pulling from one iterator: O(1) work per completion
            nonlocal done
            for i, req in queue:
                results[i] = await one(req)
                done += 1
                if progress is not None:
                    progress(done, self.usage.retries, self.usage.prompt_tokens + self.usage.completion_tokens)

        workers: list = []
        try:
            if probe is not None and (force_probe or (cfg.probe and (self.capabilities is None or self.capabilities.mode != probe[0]))):
                self.capabilities = await self._probe(*probe)
                if force_probe:
                    return self.capabilities
            workers = [asyncio.ensure_future(worker()) for _ in range(min(len(requests), max(64, 4 * cfg.concurrency)))]
            await asyncio.gather(*workers)  # the first failure ends the job
            return results
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self._http.aclose()
            self._http = self._headers = None

    async def _post(self, path: str, body: dict, est_tokens: int, probe: bool = False) -> dict:
        """One HTTP request with the retry policy; returns the decoded JSON body. The body goes
        as is, so vLLM's extra fields (prompt_logprobs, …) are first-class. `probe`: a 500 is
        an answer, not a hiccup (see `_status_error`)."""
        import httpx2

        cfg, failures = self.config, 0
        while True:
            try:
                async with self._sem:
                    while (wait := self._pause_until - time.monotonic()) > 0:  # a Retry-After holds everyone
                        await asyncio.sleep(wait)
                    if self._rpm:
                        await self._rpm.take(1)
                    if self._tpm:
                        await self._tpm.take(est_tokens)
                    try:
                        response = await self._http.post(self._url + path, content=_dumps(body), headers=self._headers)
                    except httpx2.TimeoutException as err:
                        if not _disconnected(err):
                            raise _Retry("timeout", f"no answer within {cfg.timeout_s:g} s") from None
                        raise _Retry("connection", "the server closed the connection") from None
                    except httpx2.DecodingError as err:  # a body its Content-Encoding cannot decode
                        raise _Retry("malformed", f"undecodable body ({err})") from None
                    except httpx2.RequestError as err:  # refused, reset, truncated body, redirect loop
                        raise _Retry("connection", _redact(f"{type(err).__name__}: {err} ({err.__cause__!r})",
                                                           cfg.api_key_env)) from None
                    self._server_header = response.headers.get("server") or self._server_header
                    if response.status_code >= 400:
                        raise self._status_error(response, path if probe else None)
                    try:
                        data = _loads(response.content)
                    except ValueError as err:  # JSON decoding (orjson's error is a ValueError)
                        raise _Retry("malformed", f"undecodable body ({err})") from None
                    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
                        raise _Retry("malformed", "a body without `choices`")
            except _Retry as err:
                failures += 1
                self.usage.errors[err.kind] = self.usage.errors.get(err.kind, 0) + 1
                if failures > cfg.max_retries:
                    raise HarnessError(
                        f"teacher request to {_strip_userinfo(cfg.base_url)} failed {failures} times in a row; last: "
                        f"{err.kind}: {err}. Check the server, or raise max_retries ({cfg.max_retries})") from None
                self.usage.retries += 1
                if err.retry_after is not None:
                    wait = min(max(err.retry_after, 0.0), MAX_RETRY_AFTER_S)
                    self._pause_until = max(self._pause_until, time.monotonic() + wait)  # the whole job waits
                else:
                    wait = self._random.uniform(0, min(cfg.backoff_max_s, cfg.backoff_base_s * 2 ** (failures - 1)))
                self.retry_log.append(RetryEvent(err.kind, wait, err.retry_after))
                await asyncio.sleep(wait)
                continue
            usage = data.get("usage") or {}
            p, c = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            self.usage.requests += 1
            self.usage.prompt_tokens += p
            self.usage.completion_tokens += c
            if self._tpm and (p or c):
                self._tpm.adjust(p + c - est_tokens)
            return data

    def _status_error(self, response, probe_path: str | None = None) -> Exception:
        """A retry for 408/409/429/5xx; a TeacherHTTPError for the rest, for 501 (not implemented)
        and, answering the probe, for 500: servers answer a parameter they cannot handle with 500
        (transformers serve: max_tokens=0, a chat request without a chat template) every time,
        and retrying it cost minutes. 502/503/504 (a proxy, a server still loading) are retried."""
        status = response.status_code
        if status in (408, 409, 429) or (status >= 500 and status != 501 and not (status == 500 and probe_path)):
            return _Retry(str(status), f"HTTP {status}", _retry_after(response.headers))
        raw = response.content.decode("utf-8", errors="replace")
        try:  # OpenAI's {"error": {"message": …}}, vLLM's {"message": …}, FastAPI's {"detail": …}; else the text
            body = _loads(response.content)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            body = body["error"]
        message = (body.get("message") or body.get("detail")) if isinstance(body, dict) else None
        message = message or raw.strip() or response.reason_phrase
        hint = f" (the key is read from ${self.config.api_key_env})" if status in (401, 403) else ""
        url = _strip_userinfo(self.config.base_url)
        what = f" to the capability probe (POST {probe_path}, the job's parameters, {PROBE_TOKENS_HINT})" if probe_path else ""
        if probe_path and status >= 500:
            hint += "; not retried: a server that fails so small a request fails the job's too" + (
                " (a chat request: does the model have a chat template?)" if probe_path.startswith("/chat") else "")
        text = f"teacher server {url} answered HTTP {status}{what}: {' '.join(str(message).split())[:300]}"
        return TeacherHTTPError(_redact(text, self.config.api_key_env) + hint, status)

    # ---- the probe
    async def _probe(self, mode: str, like) -> Capabilities:
        """One tiny request of the job's kind (its parameters, a short prompt) through the job's
        own parsing; a missing capability is a ServerCapabilityError, in one line."""
        cfg, url = self.config, _strip_userinfo(self.config.base_url)
        if mode == "sample":
            req = SampleRequest(server_probe.PROBE_PROMPT, server_probe.PROBE_N, like.temperature,
                                server_probe.PROBE_MAX_TOKENS, like.top_k, like.stop, like.seed)
            path, body, est = self._sample_body(req, 0, req.n)
        else:
            req = ScoreRequest(server_probe.PROBE_PROMPT, server_probe.PROBE_TEXT, like.top_k)
            path, body, est = self._score_body(req)
        data = await self._post(path, body, est, probe=True)
        if mode == "sample":
            facts = server_probe.sample_facts(data, cfg.api, req.top_k)
            facts.update(n_asked=req.n)
        else:
            facts = server_probe.score_facts(data, req.prompt + req.text, req.top_k)
            if facts["echo"] and facts["top_width"]:  # the prompt alone: where its next-token distribution belongs
                plain = {"model": self.model, "prompt": req.prompt, "max_tokens": 1, "logprobs": req.top_k, "temperature": 0}
                after_prompt = await self._post("/completions", plain, est, probe=True)
                facts["echo_aligned"] = server_probe.echo_aligned(data, after_prompt, req.prompt, req.prompt + req.text)
        problem = server_probe.missing(facts, mode, cfg.api, url, cfg.prompt_logprobs)
        if problem:
            raise ServerCapabilityError(problem)
        counted = self.notes.copy()  # the job's own parsing, on the probe's answer (its anomalies are not the job's)
        try:
            if mode == "sample":
                self._sample_parse(data, req, req.n)
            else:
                self._score_parse(data, req)
        except DataError as err:
            raise ServerCapabilityError(f"teacher server {url}: the capability probe's answer cannot be used: {err}") from None
        finally:
            self.notes.clear()
            self.notes.update(counted)
        if mode == "sample" and facts["n_returned"] < req.n:
            self._server_max_n = max(1, facts["n_returned"])
        model = data.get("model") if isinstance(data.get("model"), str) else None
        return Capabilities(base_url=url, api=cfg.api, mode=mode, model=model, server=self._server_header,
                            top_k=req.top_k, **facts)

    # ---- sampling
    async def _sample_one(self, req: SampleRequest) -> list[Completion]:
        slots: list[Completion | None] = [None] * req.n
        todo = [(0, req.n)]
        while todo:
            cap = min(self.config.max_n, self._server_max_n or self.config.max_n)
            chunks = [(off + i, min(cap, size - i)) for off, size in todo for i in range(0, size, cap)]
            got = await asyncio.gather(*(self._sample_http(req, off, size) for off, size in chunks))
            todo = []
            for (off, size), comps in zip(chunks, got):
                if not comps:
                    raise DataError(f"teacher server returned no choices for a request with n={size}")
                slots[off : off + len(comps)] = comps
                if len(comps) < size:  # the server caps n: ask again for the rest
                    self.notes["n_capped_by_server"] += 1
                    self._server_max_n = len(comps)
                    todo.append((off + len(comps), size - len(comps)))
        return slots

    def _sample_body(self, req: SampleRequest, offset: int, n: int) -> tuple[str, dict, int]:
        """(path, JSON body, token estimate) for `n` samples; with a seed, the samples from `offset`
        on use seed + offset, so split requests never repeat the same draws."""
        kw = {"model": self.model, "n": n, "temperature": req.temperature, "max_tokens": req.max_tokens}
        if req.stop:
            kw["stop"] = list(req.stop)
        if req.seed is not None:
            kw["seed"] = req.seed + offset
        est = len(req.prompt) // 4 + 1 + req.max_tokens * n
        if self.config.api == "chat":
            kw.update(messages=[{"role": "user", "content": req.prompt}], logprobs=True, top_logprobs=req.top_k)
            return "/chat/completions", kw, est
        kw.update(prompt=req.prompt, logprobs=req.top_k)
        return "/completions", kw, est

    async def _sample_http(self, req: SampleRequest, offset: int, n: int) -> list[Completion]:
        return self._sample_parse(await self._post(*self._sample_body(req, offset, n)), req, n)

    def _sample_parse(self, data: dict, req: SampleRequest, n: int) -> list[Completion]:
        prompt_tokens = int((data.get("usage") or {}).get("prompt_tokens") or 0)
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        parse = self._chat_choice if self.config.api == "chat" else self._completions_choice
        return [parse(c, req.top_k, prompt_tokens) for c in choices[:n]]

    def _completions_choice(self, choice: dict, k: int, prompt_tokens: int) -> Completion:
        lp, text = choice.get("logprobs"), choice.get("text") or ""
        if not lp or lp.get("tokens") is None:
            raise DataError("teacher server returned no logprobs (does it support `logprobs` on /completions?)")
        wire = lp["tokens"]
        tokens = spell(wire, None, text, allow_prefix=choice.get("finish_reason") == "stop", notes=self.notes)
        m = len(tokens)
        logprobs = [logprob_or_nan(x, self.notes) for x in lp["token_logprobs"][:m]]
        tops = [self._top(legacy_entries(e), k, (display_token(w), v))
                for e, w, v in zip((lp.get("top_logprobs") or [None] * len(wire))[:m], wire, logprobs)]
        return self._completion(text, tokens, logprobs, tops, choice.get("finish_reason"), prompt_tokens, len(wire))

    def _chat_choice(self, choice: dict, k: int, prompt_tokens: int) -> Completion:
        content = (choice.get("logprobs") or {}).get("content")
        text = (choice.get("message") or {}).get("content") or ""
        if content is None:
            raise DataError("teacher server returned no logprobs (does it support `logprobs` on /chat/completions?)")
        tokens = spell([e["token"] for e in content], [e.get("bytes") for e in content], text,
                       allow_prefix=choice.get("finish_reason") == "stop", notes=self.notes)
        m = len(tokens)
        logprobs = [logprob_or_nan(e["logprob"], self.notes) for e in content[:m]]
        tops = [self._top([(display_token(t["token"], t.get("bytes")), t["logprob"]) for t in e.get("top_logprobs") or []], k,
                          (display_token(e["token"], e.get("bytes")), v))
                for e, v in zip(content[:m], logprobs)]
        return self._completion(text, tokens, logprobs, tops, choice.get("finish_reason"), prompt_tokens, len(content))

    def _completion(self, text, tokens, logprobs, tops, finish_reason, prompt_tokens, completion_tokens) -> Completion:
        return Completion(text, tokens, logprobs, [t for t, _, _ in tops], [v for _, v, _ in tops], finish_reason,
                          prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          top_has_token=all(has for _, _, has in tops))

    def _top(self, entries: list[tuple[str, float]], k: int, own: tuple[str, float]) -> tuple[list[str], list[float], bool]:
        """The k most likely entries, most likely first (fewer is kept and counted), then the
        position's own token `own` (its string as the server spells alternatives, its
        log-probability) when they leave it out. Returns (tokens, logprobs, holds the own token)."""
        entries = sorted(entries, key=lambda e: -e[1])[:k]
        if len(entries) < k:
            self.notes["short_topk_positions"] += 1
        tokens, values = [t for t, _ in entries], [float(v) for _, v in entries]
        token, logprob = own
        if token not in tokens:
            if not math.isfinite(logprob):
                return tokens, values, False
            tokens.append(token)
            values.append(float(logprob))
            self.notes["own_token_added_positions"] += 1
        return tokens, values, True

    # ---- scoring
    def _score_body(self, req: ScoreRequest) -> tuple[str, dict, int]:
        """Echo prompt + text with 1 new token: never max_tokens=0, which llama-cpp-python reads as
        "no limit" (and vLLM refuses); the new token is cut in `_score_parse`."""
        full = req.prompt + req.text
        kw = {"model": self.model, "prompt": full, "echo": True, "max_tokens": 1, "logprobs": req.top_k, "temperature": 0}
        if self.config.prompt_logprobs:
            kw["prompt_logprobs"] = req.top_k  # vLLM's extension
        return "/completions", kw, len(full) // 4 + 2

    async def _score_one(self, req: ScoreRequest) -> Completion:
        return self._score_parse(await self._post(*self._score_body(req)), req)

    def _score_parse(self, data: dict, req: ScoreRequest) -> Completion:
        full = req.prompt + req.text
        choice = data["choices"][0]
        lp, echoed = choice.get("logprobs") or {}, choice.get("text") or ""
        if not lp.get("tokens") or not echoed.startswith(full):
            raise DataError("teacher server did not echo the prompt with logprobs (echo=True); it cannot score texts")
        wire = lp["tokens"]
        # Spelled against prompt + text: tokens past it (the new token) are cut; a server whose
        # log-probabilities stop at the prompt (llama-cpp-python) spells it exactly.
        spelled = collections.Counter()
        tokens = spell(wire, None, full, allow_prefix=True, notes=spelled)
        spelled.pop("tokens_cut_after_stop", None)  # counted below, as what it is here
        self.notes.update(spelled)
        self.notes["score_new_token_cut" if len(tokens) < len(wire) else "score_echo_prompt_only"] += 1
        start, end = len(req.prompt), len(full)
        keep, pos = [], 0  # positions whose characters overlap [start, end); pos is the token's text offset
        for i, t in enumerate(tokens):
            if pos < end and pos + len(t) > start:
                keep.append((i, t[max(0, start - pos) : end - pos]))
                if pos < start:
                    self.notes["score_boundary_inside_token"] += 1
            pos += len(t)
        tops_raw = lp.get("top_logprobs") or [None] * len(tokens)
        vllm = choice.get("prompt_logprobs") or []
        tops, logprobs, given = [], [], False
        for i, _ in keep:
            logprobs.append(logprob_or_nan(lp["token_logprobs"][i], self.notes))
            if tops_raw[i] is not None or i >= len(vllm) or vllm[i] is None:
                entries = legacy_entries(tops_raw[i])
            else:  # vLLM: {id: {logprob, rank, decoded_token}}, the prompt's own token added with rank > k
                entries = [(e["decoded_token"], e["logprob"]) for e in vllm[i].values() if e.get("rank", 1) <= req.top_k]
            given = given or bool(entries)
            tops.append(self._top(entries, req.top_k, (display_token(wire[i]), logprobs[-1])))
        if req.top_k and not given:
            raise DataError("teacher server returned no top-k for the echoed prompt"
                            + ("" if self.config.prompt_logprobs else " (vLLM: set prompt_logprobs=True)"))
        return Completion(req.text, [t for _, t in keep], logprobs, [t for t, _, _ in tops], [v for _, v, _ in tops], None,
                          prompt_tokens=keep[0][0], completion_tokens=len(keep), top_has_token=all(h for _, _, h in tops))


# ---- helpers
def _retry_after(headers) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` in seconds or as an HTTP date."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else email.utils.mktime_tz(parsed) - time.time()


def _disconnected(err: BaseException) -> bool:
    """The aiohttp transport reports a dropped connection as a connect timeout: look at the cause."""
    try:
        import aiohttp

        dropped = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionError)
    except ImportError:  # pragma: no cover
        dropped = (ConnectionError,)
    while err is not None:
        if isinstance(err, dropped):
            return True
        err = err.__cause__ or err.__context__
    return False


def _strip_userinfo(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//", url)


def _redact(text: str, key_env: str) -> str:
    """No API key in a message: the configured one, and anything shaped like a key."""
    key = os.environ.get(key_env)
    if key:
        text = text.replace(key, "***")
    return re.sub(r"\b(sk-[A-Za-z0-9_*\-]{3})[A-Za-z0-9_*\-]{4,}", r"\1***", text)


def _run(coro):
    """Run the job's event loop here, or in a worker thread when this thread already runs one."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
