"""What an OpenAI-compatible server does with the teacher's requests, learned before a job starts.

Servers take the same JSON and do different things with it (each seen on a real server; see
docs/teacher-servers.md): `transformers serve` drops `logprobs`, `top_logprobs`, `echo` and `n`
without a word; llama-cpp-python ignores `n`, reads max_tokens=0 as "no limit", and echoes the
prompt's log-probabilities without the generated token; a chat endpoint whose model has no chat
template answers 500 to every request; and llama-cpp-python, for a model that adds no BOS token
(GPT-2, and by its code any such GGUF), gives each echoed prompt position the distribution
*after* its token instead of before it, so scores come out one position late. So before its
first real request the teacher sends one tiny request of the job's own kind (the job's
parameters, a short prompt, 2 new tokens, n=2) through the job's own parsing and looks at the raw
answer. Scoring sends two: a short text echoed with 1 new token, and the prompt alone with 1 new
token, whose distribution must be the one the echo gives the text's first token. A capability
the job needs and the server lacks stops the job there, in one line (`ServerCapabilityError`);
the rest is a one-line summary the job prints and records in stats.json.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from harness.errors import HarnessError
from harness.teacher.token_spelling import display_token, legacy_entries, spell

# Short, but with the cases that break spelling: a multi-byte character and an emoji that
# byte-level vocabularies split across tokens.
PROBE_PROMPT = "Question: Ana has 3 apples and buys 2 more. How many apples does she have?\nAnswer:"
PROBE_TEXT = " 3 + 2 = 5, café 😀. The answer is 5."
PROBE_MAX_TOKENS = 2
PROBE_N = 2


class ServerCapabilityError(HarnessError):
    """The server lacks something the job needs (log-probabilities, top-k, echo)."""


@dataclass(frozen=True)
class Capabilities:
    """What the probe saw. Widths count entries per position of the server's top list."""

    base_url: str
    api: str  # completions | chat
    mode: str  # sample | score
    model: str | None  # the model the server says answered
    server: str | None  # the HTTP `server` header (uvicorn, …), if any
    logprobs: bool  # per-token log-probabilities came back
    top_k: int  # asked
    top_width: int  # most entries at one position
    adds_token: bool  # some position held k+1 entries, the extra one its own token (OpenAI's convention)
    n_asked: int | None = None  # sampling only
    n_returned: int | None = None
    echo: bool | None = None  # scoring: the prompt came back with its log-probabilities
    echo_has_generated: bool | None = None  # scoring: the echoed log-probabilities include the new token
    echo_aligned: bool | None = None  # scoring: the echo's distributions are at the right positions (None: not told)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"log-probabilities {'yes' if self.logprobs else 'NO'}",
                 f"top-{self.top_k} asked, up to {self.top_width} per position"
                 + (" (the token itself added as entry k+1)" if self.adds_token else "")]
        if self.n_asked is not None:
            parts.append(f"n={self.n_asked} gave {self.n_returned}" +
                         (" (n ignored: one request per sample)" if (self.n_returned or 0) < self.n_asked else ""))
        if self.echo is not None:
            parts.append("echo with log-probabilities " + ("yes" if self.echo else "NO")
                         + ("" if not self.echo else " (covers the new token; it is cut)" if self.echo_has_generated
                            else " (prompt only; the new token is cut from the text)"))
            if self.echo:
                parts.append({True: "echo positions checked against a plain completion: aligned",
                              False: "echo positions ONE LATE", None: "echo positions not checked (no common top-k)"}[self.echo_aligned])
        who = ", ".join(x for x in (self.model and f"model {self.model}", self.server and f"server {self.server}") if x)
        return f"teacher server {self.base_url} /{self.api} ({who or 'unnamed'}): " + "; ".join(parts)


def sample_facts(data: dict, api: str, k: int) -> dict:
    """Capabilities seen in a sampling answer: log-probabilities, top-list widths, the k+1 convention."""
    logprobs, width, adds = False, 0, False
    for choice in data.get("choices") or []:
        if api == "chat":
            content = (choice.get("logprobs") or {}).get("content") or []
            steps = [(display_token(e.get("token", ""), e.get("bytes")),
                      [display_token(t.get("token", ""), t.get("bytes")) for t in e.get("top_logprobs") or []]) for e in content]
            logprobs = logprobs or bool(content)
        else:
            lp = choice.get("logprobs") or {}
            steps = [(display_token(w), [display_token(t) for t in top or {}])
                     for w, top in zip(lp.get("tokens") or [], lp.get("top_logprobs") or [])]
            logprobs = logprobs or bool(lp.get("tokens"))
        for own, top in steps:
            width = max(width, len(top))
            adds = adds or (len(top) == k + 1 and own in top)
    return {"logprobs": logprobs, "top_width": width, "adds_token": adds, "n_returned": len(data.get("choices") or [])}


def score_facts(data: dict, full: str, k: int) -> dict:
    """Capabilities seen in an echo answer: the prompt echoed, its top-k, whether the new token is in it."""
    choice = (data.get("choices") or [{}])[0]
    lp = choice.get("logprobs") or {}
    text, tokens = choice.get("text") or "", lp.get("tokens") or []
    tops = [top for top in lp.get("top_logprobs") or [] if top]
    vllm = [e for e in choice.get("prompt_logprobs") or [] if e]
    width = max([len(t) for t in tops] + [len([x for x in e.values() if x.get("rank", 1) <= k]) for e in vllm] + [0])
    spelled = "".join(display_token(t) for t in tokens)
    return {"logprobs": bool(tokens), "top_width": width,
            "adds_token": any(len(t) == k + 1 for t in tops),
            "echo": bool(tokens) and text.startswith(full),
            "echo_has_generated": len(spelled) > len(full) if tokens else None}


def echo_aligned(echo: dict, after_prompt: dict, prompt: str, full: str) -> bool | None:
    """Whether the echo gives the text's first token the distribution a plain completion of the
    prompt gives its first new token (True), gives it to the prompt's last token instead (False:
    one position late), or neither can be told (None: no top-k entries in common, or the text
    starts inside a token)."""
    lp = (echo.get("choices") or [{}])[0].get("logprobs") or {}
    wire, tops = lp.get("tokens") or [], lp.get("top_logprobs") or []
    plain = ((after_prompt.get("choices") or [{}])[0].get("logprobs") or {}).get("top_logprobs") or [None]
    if not wire or not plain[0]:
        return None
    target = dict(legacy_entries(plain[0]))
    offsets, pos = [], 0
    for t in spell(wire, None, full, allow_prefix=True):
        offsets.append(pos)
        pos += len(t)
    if len(prompt) not in offsets:
        return None
    j = offsets.index(len(prompt))

    def agreement(i: int) -> int:  # top-k entries the two distributions share, to 0.01 nats (bf16 servers)
        if not 0 <= i < len(tops) or not tops[i]:
            return 0
        return sum(1 for t, v in legacy_entries(tops[i]) if t in target and abs(v - target[t]) < 1e-2)

    here, before = agreement(j), agreement(j - 1)
    return None if here == before == 0 else here >= before


def missing(facts: dict, mode: str, api: str, base_url: str, prompt_logprobs: bool) -> str | None:
    """The one-line reason the job cannot run on this server, or None."""
    where = f"teacher server {base_url} (/{api})"
    if mode == "score" and not facts.get("echo"):
        return (f"{where} did not echo the prompt with log-probabilities (echo=True ignored or unsupported): it cannot score "
                "texts; use a server with echo (vLLM, SGLang, llama-cpp-python) or sampling.mode sample")
    if not facts["logprobs"]:
        asked = "logprobs=true, top_logprobs" if api == "chat" else "logprobs"
        return (f"{where} returned no log-probabilities ({asked} ignored): it cannot be a teacher here "
                "(transformers serve drops them; vLLM, SGLang and llama-cpp-python return them)")
    if not facts["top_width"]:
        hint = "" if prompt_logprobs or mode != "score" else "; vLLM: set prompt_logprobs=True"
        return f"{where} returned log-probabilities but no top-k alternatives (the top-k request was ignored){hint}"
    if mode == "score" and facts.get("echo_aligned") is False:
        return (f"{where} echoes each prompt position with the distribution after its token, one position late "
                "(llama-cpp-python does so for models that add no BOS token), so scores would be wrong; use a model "
                "that adds BOS (GGUF tokenizer.ggml.add_bos_token) or another server (vLLM, SGLang)")
    return None
