"""OpenAITeacher against a real HTTP server on 127.0.0.1 (tests/teacher/fake_openai_server.py):
results in order and exact, retries as injected, Retry-After honoured, clean errors, no key leaks."""

from __future__ import annotations

import asyncio
import email.utils
import faulthandler
import json
import logging
import math
import time

import pytest

from harness.errors import DataError, HarnessError, UsageError
from harness.teacher.base import SampleRequest, ScoreRequest
from harness.teacher.openai_backend import (
    OpenAIConfig,
    OpenAITeacher,
    TeacherHTTPError,
    _Bucket,
    _retry_after,
    estimate_cost,
)
from tests.teacher.fake_openai_server import FakeOpenAIServer, expected_sample, expected_score

FIELDS = ("text", "tokens", "token_logprobs", "top_tokens", "top_logprobs", "finish_reason")
KEY = "sk-test-SENTINEL-0123456789abcdef"


@pytest.fixture(autouse=True)
def _bounded():
    """No test here may hang: dump the stacks and exit after 60 s."""
    faulthandler.dump_traceback_later(60, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def serve():
    started = []

    def start(**kw) -> FakeOpenAIServer:
        started.append(FakeOpenAIServer(**kw).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


def teacher_for(server, **kw) -> OpenAITeacher:
    kw = {"timeout_s": 5, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "concurrency": 4, "probe": False, **kw}
    return OpenAITeacher(OpenAIConfig(server.base_url, "fake", **kw))


def requests_(count=12, n=2, max_tokens=12, top_k=5, stop=("Question",)):
    return [SampleRequest(f"Question {i}: how many clips?", n, 0.5, max_tokens, top_k, stop, seed=100 * i) for i in range(count)]


def check_samples(out, reqs, topk_cap=None):
    assert len(out) == len(reqs)
    for req, comps in zip(reqs, out):
        assert len(comps) == req.n
        for j, comp in enumerate(comps):
            want = expected_sample(req.prompt, req.seed, j, req.max_tokens, req.top_k, req.stop, topk_cap)
            assert {f: getattr(comp, f) for f in FIELDS} == want
            assert "".join(comp.tokens) == comp.text


@pytest.mark.parametrize("byte_tokens", ["openai", "vllm"])
@pytest.mark.parametrize("api", ["completions", "chat"])
def test_sample_exact_and_in_order(serve, api, byte_tokens):
    server = serve(byte_tokens=byte_tokens)
    teacher = teacher_for(server, api=api)
    reqs = requests_()
    seen = []
    out = teacher.sample(reqs, progress=lambda done, retries, tokens: seen.append((done, retries, tokens)))
    check_samples(out, reqs)
    assert teacher.usage.requests == len(reqs) and teacher.usage.retries == 0
    assert [d for d, _, _ in seen] == list(range(1, len(reqs) + 1))
    assert seen[-1][2] == teacher.usage.prompt_tokens + teacher.usage.completion_tokens > 0
    body = server.log[0]["body"]
    if api == "chat":
        assert body["logprobs"] is True and body["top_logprobs"] == 5 and body["messages"][0]["content"].startswith("Question")
    else:
        assert body["logprobs"] == 5 and body["stop"] == ["Question"] and "echo" not in body
    assert any(any(t == "" for t in c.tokens) for comps in out for c in comps)  # partial UTF-8 was met


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
def test_faults_are_retried_exactly_once_each(serve, http_client):
    plan = [{"kind": "429", "retry_after": "1"}, {"kind": "500"}, {"kind": "503"}, {"kind": "408"},
            {"kind": "timeout", "sleep_s": 1.5}, {"kind": "malformed"}, {"kind": "truncated"}, {"kind": "reset"}]
    server = serve(plan=list(plan))
    teacher = teacher_for(server, timeout_s=0.5, http_client=http_client)
    reqs = requests_()
    t0 = time.monotonic()
    out = teacher.sample(reqs)
    check_samples(out, reqs)  # none lost, none duplicated, in order
    assert time.monotonic() - t0 >= 1.0  # the Retry-After: 1
    assert teacher.usage.retries == len(plan)
    assert teacher.usage.errors == {"429": 1, "500": 1, "503": 1, "408": 1, "timeout": 1, "malformed": 1, "connection": 2}
    assert teacher.usage.requests == len(reqs)
    assert sum(1 for e in server.log if e["fault"] is None) == len(reqs)  # one good answer per request
    waits = {e.kind: e for e in teacher.retry_log}
    assert waits["429"].retry_after_s == 1 and waits["429"].wait_s >= 1


@pytest.mark.parametrize("header", ["retry_after_ms", "date"])
def test_retry_after_ms_and_http_date(serve, header):
    fault = {"kind": "429", "retry_after_ms": "400"} if header == "retry_after_ms" else \
        {"kind": "503", "retry_after": email.utils.formatdate(time.time() + 2, usegmt=True)}
    server = serve(plan=[fault])
    teacher = teacher_for(server)
    t0 = time.monotonic()
    check_samples(teacher.sample(requests_(count=2)), requests_(count=2))
    (event,) = teacher.retry_log
    floor = 0.4 if header == "retry_after_ms" else 0.9  # an HTTP date has whole seconds
    assert event.retry_after_s >= floor and event.wait_s >= floor and time.monotonic() - t0 >= floor


def test_retry_after_pauses_everyone(serve):
    """After a 429 with Retry-After, no new request starts until it has passed, bar those racing
    it: the other c - 1 sent with it, and c - 1 more if their answers are read before the 429."""
    server = serve(plan=[{"kind": "429", "retry_after_ms": "600"}], delay_s=0.02)
    teacher = teacher_for(server, concurrency=4)
    stamps = []
    original = server.record
    server.record = lambda *a: (stamps.append(time.monotonic()), original(*a))
    teacher.sample(requests_(count=16, n=1))
    t429 = stamps[0]
    assert sum(1 for t in stamps[1:] if t < t429 + 0.55) <= 2 * 3
    assert sum(1 for t in stamps if t >= t429 + 0.55) >= 16 + 1 - 2 * 3 - 1


def test_parse_retry_after():
    assert _retry_after({"retry-after": "2"}) == 2.0
    assert _retry_after({"retry-after": "1.5", "retry-after-ms": "250"}) == 0.25
    assert 29 <= _retry_after({"retry-after": email.utils.formatdate(time.time() + 30, usegmt=True)}) <= 31
    assert _retry_after({}) is None and _retry_after({"retry-after": "soon"}) is None


def test_bad_request_fails_at_once_with_the_server_message(serve):
    server = serve(plan=[{"kind": "400", "message": "The model `nope` does not exist"}])
    teacher = teacher_for(server, concurrency=1)
    with pytest.raises(TeacherHTTPError) as err:
        teacher.sample(requests_(count=3))
    assert err.value.status == 400 and isinstance(err.value, HarnessError)
    assert "HTTP 400" in str(err.value) and "The model `nope` does not exist" in str(err.value)
    assert teacher.usage.retries == 0 and len(str(err.value).splitlines()) == 1


def test_a_validation_error_without_message_shows_its_detail(serve):
    server = serve(plan=[{"kind": "422", "message": "Input should be less than or equal to 20"}])
    with pytest.raises(TeacherHTTPError) as err:
        teacher_for(server, concurrency=1).sample(requests_(count=1))
    assert err.value.status == 422 and "Input should be less than or equal to 20" in str(err.value)


def test_gives_up_after_max_retries(serve):
    server = serve(plan=[{"kind": "500"}] * 3)
    teacher = teacher_for(server, concurrency=1, max_retries=2)
    with pytest.raises(HarnessError, match="failed 3 times in a row; last: 500"):
        teacher.sample(requests_(count=1))
    assert teacher.usage.retries == 2


def test_fewer_topk_than_asked_is_kept_and_counted(serve):
    server = serve(topk_cap=3)
    teacher = teacher_for(server)
    reqs = requests_(count=3, top_k=5)
    out = teacher.sample(reqs)
    check_samples(out, reqs, topk_cap=3)
    assert teacher.notes["short_topk_positions"] == sum(len(c.tokens) for cs in out for c in cs)


@pytest.mark.parametrize("client_cap, server_cap", [(4, None), (128, 3)])
def test_large_n_is_split(serve, client_cap, server_cap):
    server = serve(max_n=server_cap)
    teacher = teacher_for(server, max_n=client_cap)
    reqs = requests_(count=3, n=10)
    check_samples(teacher.sample(reqs), reqs)  # seed + offset per split: same draws as one request
    sent = [e["body"]["n"] for e in server.log]
    assert sum(min(n, server_cap or n) for n in sent) == 30 and max(sent) <= client_cap
    assert bool(teacher.notes["n_capped_by_server"]) == bool(server_cap)


SCORES = [ScoreRequest("Let's think step", "s by step: café, it’s 😀 done", 5),  # boundary inside "steps"
          ScoreRequest("Q: Natalia sold clips.\nA:", " déjà vu 42", 3)]


@pytest.mark.parametrize("byte_tokens", ["openai", "vllm"])
def test_score(serve, byte_tokens):
    server = serve(byte_tokens=byte_tokens, reject_max_tokens_0=True)
    teacher = teacher_for(server)
    out = teacher.score(SCORES * 3)
    for req, comp in zip(SCORES * 3, out):
        assert {f: getattr(comp, f) for f in FIELDS[:-1]} == expected_score(req.prompt, req.text, req.top_k)
        assert "".join(comp.tokens) == req.text
        assert comp.top_has_token is True
    assert teacher.notes["score_boundary_inside_token"] == 3
    assert teacher.notes["score_new_token_cut"] == len(out)  # this server's echo covers the new token
    bodies = [e["body"] for e in server.log]
    # never max_tokens=0: llama-cpp-python reads it as "no limit"
    assert all(b["echo"] is True and b["logprobs"] in (3, 5) and b["max_tokens"] == 1 for b in bodies)


def test_score_with_vllm_prompt_logprobs(serve):
    server = serve(byte_tokens="vllm", prompt_topk_in="prompt_logprobs")
    with pytest.raises(DataError, match="prompt_logprobs=True"):
        teacher_for(server).score(SCORES[:1])
    teacher = teacher_for(server, prompt_logprobs=True)
    out = teacher.score(SCORES)
    for req, comp in zip(SCORES, out):
        assert {f: getattr(comp, f) for f in FIELDS[:-1]} == expected_score(req.prompt, req.text, req.top_k)
    assert server.log[-1]["body"]["prompt_logprobs"] in (3, 5)


def test_chat_cannot_score(serve):
    with pytest.raises(UsageError, match="cannot score"):
        OpenAITeacher(OpenAIConfig("http://127.0.0.1:9/v1", "fake", api="chat")).score(SCORES)


def test_api_key_never_leaks(serve, monkeypatch, caplog, capsys, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx2", "httpcore2", "aiohttp", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    texts = []
    for client in ("aiohttp", "httpx"):
        server = serve(plan=[{"kind": "429", "retry_after_ms": "10"}, {"kind": "timeout", "sleep_s": 0.5}, {"kind": "401_echo"}])
        teacher = teacher_for(server, concurrency=1, timeout_s=0.3, http_client=client)
        with pytest.raises(TeacherHTTPError) as err:
            teacher.sample(requests_(count=2))
        assert server.log[0]["auth"] == f"Bearer {KEY}"  # the key was used ...
        assert err.value.status == 401 and "$OPENAI_API_KEY" in str(err.value) and "***" in str(err.value)
        chain, exc = [], err.value
        while exc is not None:
            chain += [str(exc), repr(exc), repr(vars(exc))]
            exc = exc.__cause__ or exc.__context__
        texts += chain + [repr(teacher), repr(teacher.config), json.dumps(teacher.settings()), repr(teacher.retry_log)]
    from harness.teacher import http_bench

    args = ["--delay", "0.005", "--concurrency", "4", "--requests", "40", "--repeats", "1", "--allow-load", "--out", str(tmp_path)]
    assert http_bench.main(args) == 0  # --allow-load: the report is written whatever this machine's load
    texts += [p.read_text() for p in tmp_path.iterdir()]
    assert len(texts) >= 2
    out = capsys.readouterr()
    texts += [out.out, out.err, caplog.text] + [r.getMessage() for r in caplog.records]
    assert caplog.records, "expected the clients' debug logs to be captured"
    leaks = [t for t in texts if KEY in t or KEY[8:] in t]
    assert not leaks, leaks[0][:500]


def test_rate_limits_pace_requests(serve):
    server = serve()
    teacher = teacher_for(server, requests_per_minute=1200, concurrency=8)  # 20/s, a burst of 20
    t0 = time.monotonic()
    teacher.sample(requests_(count=30, n=1, max_tokens=2))
    assert time.monotonic() - t0 >= 0.45  # 10 beyond the burst at 20/s


def test_token_bucket_waits_and_runs_into_debt():
    async def go():
        bucket = _Bucket(6000)  # 100 per second, holds 100
        t0 = time.monotonic()
        await bucket.take(100)
        await bucket.take(120)  # larger than the bucket: waits for a full one, leaves a debt of 20
        t1 = time.monotonic()
        await bucket.take(1)  # pays the debt first
        return t1 - t0, time.monotonic() - t1

    first, second = asyncio.run(go())
    assert first >= 0.95 and second >= 0.2


def test_config_env_validation_and_cost(monkeypatch):
    monkeypatch.setenv("SPEC_TEACHER_BASE_URL", "http://user:secret@127.0.0.1:8000/v1")
    monkeypatch.setenv("SPEC_TEACHER_MODEL", "m")
    with pytest.raises(UsageError, match=r"credentials inside the URL.*http://127.0.0.1:8000/v1.*\$OPENAI_API_KEY") as err:
        OpenAIConfig.from_env()
    assert "secret" not in str(err.value)
    for bad in ("127.0.0.1:8000/v1", "ftp://host/v1", "http://"):
        with pytest.raises(UsageError, match="not an http:// or https:// URL"):
            OpenAIConfig(bad, "m")
    monkeypatch.setenv("SPEC_TEACHER_BASE_URL", "http://127.0.0.1:8000/v1/")
    config = OpenAIConfig.from_env(concurrency=10, tokens_per_minute=1_000_000)
    assert config.model == "m" and config.public()["base_url"] == "http://127.0.0.1:8000/v1/"
    for text in (repr(config), repr(OpenAITeacher(config)), json.dumps(OpenAITeacher(config).settings())):
        assert "127.0.0.1:8000" in text
    with pytest.raises(UsageError, match="api"):
        OpenAIConfig("http://127.0.0.1/v1", "m", api="responses")
    with pytest.raises(UsageError, match="concurrency"):
        OpenAIConfig("http://127.0.0.1/v1", "m", concurrency=0)
    monkeypatch.delenv("SPEC_TEACHER_MODEL")
    with pytest.raises(UsageError, match="SPEC_TEACHER_MODEL"):
        OpenAIConfig.from_env()
    # 1,000 requests x (2,000 + 8,000) tokens = 10M tokens: 600 s at 1M tokens/min; 10 in flight
    # at 10 s each take 1,000 s (concurrency binds), at 1 s each 100 s (the token rate binds).
    est = estimate_cost(config, 1000, 2000, 8000, usd_per_1m_prompt=1.0, usd_per_1m_completion=4.0)
    assert math.isclose(est.dollars, 2.0 + 32.0) and est.seconds == 1000 and est.limited_by == "concurrency"
    est = estimate_cost(config, 1000, 2000, 8000, latency_s=1.0)
    assert est.seconds == 600 and est.limited_by == "tokens_per_minute" and "$0.00" in est.summary()


def test_callable_from_inside_an_event_loop(serve):
    """sample() runs its own loop; called from async code (a notebook), it uses a worker thread."""
    server = serve()
    teacher = teacher_for(server)
    reqs = requests_(count=2)

    async def caller():
        return teacher.sample(reqs)

    check_samples(asyncio.run(caller()), reqs)
    assert teacher.sample([]) == []


@pytest.mark.parametrize("at_once", [False, True])
def test_benchmark_server_times_answers_from_arrival(at_once):
    """The asyncio server of the HTTP benchmark: an answer leaves d after its request arrived;
    with --faults-at-once an injected fault leaves at once (as a rate limiter's 429 does)."""
    import http.client
    import subprocess
    import sys

    from harness.teacher.http_bench import SERVER

    delay = 1.0
    command = [sys.executable, str(SERVER), "--delay", str(delay), "--fault-every", "2"] + (["--faults-at-once"] if at_once else [])
    server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline().split()[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        seen = []
        for i in range(2):  # the 2nd request is the injected fault
            body = json.dumps({"model": "fake", "prompt": f"q{i}", "max_tokens": 2, "logprobs": 1, "seed": i})
            start = time.monotonic()
            conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            seen.append((response.status, time.monotonic() - start))
        conn.close()
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    (ok, ok_s), (fault, fault_s) = seen
    assert ok == 200 and ok_s >= delay
    assert fault in (429, 500)
    assert (fault_s < delay) if at_once else (fault_s >= delay)


def test_the_probe_comes_first_and_learns_the_n_cap(serve):
    server = serve(max_n=1)
    teacher = teacher_for(server, probe=True)
    reqs = requests_(count=2, n=3)
    check_samples(teacher.sample(reqs), reqs)
    caps = teacher.capabilities
    assert (caps.mode, caps.logprobs, caps.top_width, caps.n_asked, caps.n_returned) == ("sample", True, 5, 2, 1)
    bodies = [e["body"] for e in server.log]
    assert bodies[0]["max_tokens"] == 2 and bodies[0]["stop"] == ["Question"] and bodies[0]["logprobs"] == 5
    assert all(b["n"] == 1 for b in bodies[1:]) and len(bodies) == 1 + 2 * 3  # capped from the start: no wasted n=3 asks
    assert "n=2 gave 1 (n ignored" in caps.summary() and teacher.usage.requests == len(bodies)
    teacher.sample(reqs)
    assert len(server.log) == len(bodies) + 6  # probed once per teacher and mode


@pytest.mark.parametrize("status, retried", [("500", False), ("503", True)])
def test_a_server_error_to_the_probe_is_final_unless_it_says_busy(serve, status, retried):
    server = serve(plan=[{"kind": status}])
    teacher = teacher_for(server, probe=True)
    if retried:  # 503: a server still loading, or a proxy: the usual retries
        check_samples(teacher.sample(requests_(count=1)), requests_(count=1))
        assert teacher.usage.retries == 1
        return
    with pytest.raises(TeacherHTTPError, match="HTTP 500 to the capability probe .*not retried") as err:
        teacher.sample(requests_(count=1))
    assert len(server.log) == 1 and teacher.usage.retries == 0 and len(str(err.value).splitlines()) == 1


def test_sampling_adds_the_own_token_where_the_top_k_leaves_it_out(serve):
    server = serve(topk_cap=2)  # a server sending only 2: the own token is often outside them
    teacher = teacher_for(server)
    out = teacher.sample(requests_(count=3, top_k=5))
    comps = [c for cs in out for c in cs]
    assert all(c.top_has_token for c in comps)
    widths = [len(t) for c in comps for t in c.top_tokens]
    assert set(widths) == {2, 3} and teacher.notes["own_token_added_positions"] == widths.count(3)
