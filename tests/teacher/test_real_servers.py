"""The teacher client against real servers: their recorded answers replayed
(tests/teacher/server_recordings.py, fixtures/servers/*.json), and a live llama-cpp-python
server when the package is installed (CI does not install it)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from harness.teacher.base import ScoreRequest
from harness.teacher.openai_backend import TeacherHTTPError
from harness.teacher.server_probe import PROBE_MAX_TOKENS, ServerCapabilityError
from harness.teacher.token_spelling import display_token
from tests.teacher.server_recordings import SAMPLE, SCENARIOS, SCORE, ReplayServer, exchanges, load, teacher

LLAMA = load("llama-cpp-python-0.3.36")  # the default teacher as converted: no BOS token
LLAMA_BOS = load("llama-cpp-python-0.3.36-bos")  # the same weights, BOS added to every prompt
TRANSFORMERS = load("transformers-serve-5.23.0")
K = 5


def test_recordings_name_their_server_version_and_model():
    for rec, server in ((LLAMA, "llama-cpp-python"), (LLAMA_BOS, "llama-cpp-python"), (TRANSFORMERS, "transformers serve")):
        assert rec["server"] == server and rec["version"] in rec["launch"]
        assert rec["model"] and rec["recorded"] and rec["exchanges"] and rec["weights_sha256"]


def _own_and_top(api: str, position: dict, wire: str | None = None, top: dict | None = None):
    """(the position's own token as the client names it, the server's top list as (name, logprob) pairs)."""
    if api == "chat":
        return (display_token(position["token"], position.get("bytes")),
                [(display_token(t["token"], t.get("bytes")), t["logprob"]) for t in position["top_logprobs"]])
    return display_token(wire), [(display_token(t), v) for t, v in top.items()]


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_llama_cpp_sampling_keeps_the_sampled_token_at_every_position(api):
    scenario = f"sample-{api}"
    with ReplayServer(LLAMA) as server:
        t = teacher(server.base_url, api)
        out = t.sample(SAMPLE)
    caps = t.capabilities
    assert caps.logprobs and caps.top_width == K + 1 and caps.adds_token and (caps.n_asked, caps.n_returned) == (2, 1)
    # n is ignored: after the probe, one request per sample, each with its own seed
    job = [body for _, body in server.log if body["max_tokens"] != PROBE_MAX_TOKENS]
    assert sorted(b["seed"] for b in job) == sorted(r.seed + j for r in SAMPLE for j in range(r.n)) and all(b["n"] == 1 for b in job)
    answers = {json.dumps(e["request"], sort_keys=True): e["response"] for e in exchanges(LLAMA, scenario)}
    outside = positions = 0
    for req, completions in zip(SAMPLE, out):
        assert len(completions) == req.n
        for j, comp in enumerate(completions):
            body = next(b for b in job if b["seed"] == req.seed + j and b["max_tokens"] == req.max_tokens)
            choice = answers[json.dumps(body, sort_keys=True)]["choices"][0]
            text = choice["message"]["content"] if api == "chat" else choice["text"]
            assert comp.text == text and "".join(comp.tokens) == text and comp.top_has_token is True
            steps = choice["logprobs"]["content"] if api == "chat" else list(zip(
                choice["logprobs"]["tokens"], choice["logprobs"]["top_logprobs"], choice["logprobs"]["token_logprobs"]))
            assert len(steps) == len(comp.tokens)
            for i, step in enumerate(steps):
                own, server_top = _own_and_top(api, step) if api == "chat" else _own_and_top(api, None, step[0], step[1])
                own_lp = step["logprob"] if api == "chat" else step[2]
                assert (own, own_lp) in server_top  # the server sent the position's own token ...
                names = comp.top_tokens[i]
                assert own in names and comp.top_logprobs[i][names.index(own)] == own_lp  # ... and it is stored
                best = sorted(server_top, key=lambda e: -e[1])[:K]
                assert list(zip(names, comp.top_logprobs[i]))[:K] == best and len(names) == K + (own not in dict(best))
                outside += own not in dict(best)
                positions += 1
    # the recorded case is the issue's: the token the text continues with is mostly outside the top-5
    assert positions >= 40 and outside > positions / 2
    assert t.notes["own_token_added_positions"] == outside


def test_llama_cpp_scoring_is_refused_when_the_echo_is_one_position_late():
    with ReplayServer(LLAMA) as server:
        t = teacher(server.base_url)
        started = time.monotonic()
        with pytest.raises(ServerCapabilityError, match="one position late") as err:
            t.score(SCORE)
    assert len(str(err.value).splitlines()) == 1 and time.monotonic() - started < 5
    assert [b.get("echo", False) for _, b in server.log] == [True, False] and t.usage.retries == 0
    assert all(b["max_tokens"] == 1 for _, b in server.log)  # never 0: llama-cpp-python reads it as "no limit"
    (unlimited,) = exchanges(LLAMA, "max-tokens-0")  # what 0 does there, recorded
    assert unlimited["response"]["usage"]["total_tokens"] == 512  # it generated until the context was full


def test_llama_cpp_scoring_with_bos_spells_the_text_and_keeps_the_echo_values():
    with ReplayServer(LLAMA_BOS) as server:
        t = teacher(server.base_url)
        out = t.score(SCORE)
    caps = t.capabilities
    assert caps.echo and caps.echo_aligned is True and caps.echo_has_generated is True
    echo = [e for e in exchanges(LLAMA_BOS, "score") if e["request"].get("echo")]
    for req, comp in zip(SCORE, out):
        assert "".join(comp.tokens) == req.text and comp.text == req.text and comp.top_has_token is True
        (answer,) = [e["response"] for e in echo if e["request"]["prompt"] == req.prompt + req.text]
        lp = answer["choices"][0]["logprobs"]
        assert answer["choices"][0]["text"].startswith(req.prompt + req.text)  # + the new token, cut
        start = lp["text_offset"].index(len(req.prompt))  # the text starts on a token boundary here
        n = len(comp.tokens)
        assert comp.token_logprobs == lp["token_logprobs"][start : start + n]
        for i, (own, top) in enumerate(zip(lp["tokens"][start : start + n], lp["top_logprobs"][start : start + n])):
            assert display_token(own) in comp.top_tokens[i] and set(comp.top_tokens[i]) <= set(map(display_token, top))
        lost = [w for w in lp["tokens"][start : start + n] if w == ""]
        assert bool(lost) == ("😀" in req.text)  # the emoji's bytes are split over two tokens, which the server spells " ", ""
    assert t.notes["respelled_lost_bytes"] == 1


def test_llama_cpp_scores_match_the_default_teacher(tmp_path, data_dir):
    """The recorded llama.cpp scores (BOS model) equal the HF default teacher's on <|endoftext|> + prompt."""
    from harness.teacher.default_teacher import TOKENIZER_SPEC, build_default_teacher
    from harness.teacher.hf_backend import HFTeacher

    folder = build_default_teacher(tmp_path / "teacher")
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    if digest != LLAMA_BOS["source_weights_sha256"]:
        pytest.skip("the default teacher built here has other weights than the recorded one (its seeded init depends on the torch version)")
    with ReplayServer(LLAMA_BOS) as server:
        served = teacher(server.base_url).score(SCORE)
    local = HFTeacher(str(folder), tokenizer_spec=TOKENIZER_SPEC).score(
        [ScoreRequest("<|endoftext|>" + r.prompt, r.text, r.top_k) for r in SCORE])
    for a, b in zip(served, local):
        assert a.tokens == b.tokens
        assert max(abs(x - y) for x, y in zip(a.token_logprobs, b.token_logprobs)) < 1e-3
        for names, values, ref_names, ref_values in zip(a.top_tokens, a.top_logprobs, b.top_tokens, b.top_logprobs):
            mine = dict(zip(names, values))
            for name, value in zip(ref_names, ref_values):
                if name in mine and name != "":  # partial-byte tokens all spell "" on the server
                    assert abs(mine[name] - value) < 1e-3


def test_llama_cpp_prompt_too_long_fails_at_once_in_one_line():
    api, run = SCENARIOS["prompt-too-long"]
    with ReplayServer(LLAMA) as server:
        t = teacher(server.base_url, api)
        with pytest.raises(TeacherHTTPError) as err:
            run(t)
    assert err.value.status == 400 and "maximum context length is 512" in str(err.value)
    assert len(str(err.value).splitlines()) == 1 and t.usage.retries == 0 and len(server.log) == 2  # probe + the request


@pytest.mark.parametrize("scenario, error, match", [
    ("sample-completions", ServerCapabilityError, "returned no log-probabilities"),
    ("score", ServerCapabilityError, "did not echo the prompt"),
    ("sample-chat", TeacherHTTPError, "HTTP 500 to the capability probe.*not retried.*chat template"),
])
def test_transformers_serve_fails_at_once_in_one_line(scenario, error, match):
    api, run = SCENARIOS[scenario]
    with ReplayServer(TRANSFORMERS) as server:
        t = teacher(server.base_url, api)
        started = time.monotonic()
        with pytest.raises(error, match=match) as err:
            run(t)
    assert len(str(err.value).splitlines()) == 1 and time.monotonic() - started < 5
    assert len(server.log) == 1 and t.usage.retries == 0  # the probe only; no retry loop
    (old,) = exchanges(TRANSFORMERS, "max-tokens-0-echo")  # what the client used to send to score: a 500 every time
    assert old["status"] == 500


# ---- live: a llama-cpp-python server on the default teacher, when the packages are installed

LIVE_MISSING = [name for name in ("llama_cpp", "gguf") if importlib.util.find_spec(name) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _llama_server(gguf_path, log_path):
    port = _free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path), "--n_ctx", "512", "--port", str(port),
               "--host", "127.0.0.1", "--model_alias", "default-teacher"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llama-cpp-python server did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.skipif(bool(LIVE_MISSING), reason=f"live llama-cpp-python test: {', '.join(LIVE_MISSING)} not installed "
                    "(optional; pip install llama-cpp-python[server] gguf)")
def test_live_llama_cpp_server(tmp_path, data_dir):
    from harness.teacher.default_teacher import TOKENIZER_SPEC, build_default_teacher
    from harness.teacher.hf_backend import HFTeacher
    from tests.teacher.gguf_default_teacher import write_gguf

    folder = build_default_teacher(tmp_path / "teacher")
    for add_bos in (False, True):
        gguf_path = write_gguf(folder, tmp_path / f"teacher-bos{int(add_bos)}.gguf", add_bos=add_bos)
        with _llama_server(gguf_path, tmp_path / f"server-bos{int(add_bos)}.log") as url:
            for api in ("completions", "chat"):
                out = teacher(url, api).sample(SAMPLE)
                comps = [c for cs in out for c in cs]
                assert len(comps) == sum(r.n for r in SAMPLE)
                assert all("".join(c.tokens) == c.text and c.top_has_token for c in comps)
            if not add_bos:
                with pytest.raises(ServerCapabilityError, match="one position late"):
                    teacher(url).score(SCORE)
                continue
            served = teacher(url).score(SCORE)
    local = HFTeacher(str(folder), tokenizer_spec=TOKENIZER_SPEC).score(
        [ScoreRequest("<|endoftext|>" + r.prompt, r.text, r.top_k) for r in SCORE])
    for a, b in zip(served, local):
        assert a.tokens == b.tokens and "".join(a.tokens) == a.text
        assert max(abs(x - y) for x, y in zip(a.token_logprobs, b.token_logprobs)) < 1e-3
        assert all(math.isfinite(v) for v in a.token_logprobs)
