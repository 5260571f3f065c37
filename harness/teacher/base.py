"""One interface for every teacher: what a backend returns and what the store keeps.

A backend turns prompts into `Completion`s (sampling) or scores a given text (`score`): the
teacher's top-k at every position. Every backend returns the same shape, so the sampling job,
the store and the alignment stage never know which teacher made the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence


@dataclass(frozen=True)
class Completion:
    """One generated (or scored) text with the teacher's per-position distribution.

    `tokens` spell `text` exactly ("".join(tokens) == text). `top_tokens[i]` / `top_logprobs[i]`
    hold the teacher's top-k at position i, most likely first (fewer than k when the server
    returned fewer). With sampled targets (`targets == "sampled"`), they hold M tokens drawn from
    the teacher's distribution and `top_logprobs` the log of each draw's importance weight.
    `top_has_token`: True when every position's list holds that position's own token (the one the
    text continues with; the OpenAI backend adds it as entry k+1 where the top-k left it out, as
    the servers' own k+1 convention does), False when it may be missing (a plain top-k), None
    when the backend does not say.
    """

    text: str
    tokens: list[str]
    token_logprobs: list[float]
    top_tokens: list[list[str]]
    top_logprobs: list[list[float]]
    finish_reason: str | None = None
    token_ids: list[int] | None = None  # teacher vocabulary ids, when the backend knows them
    top_ids: list[list[int]] | None = None
    targets: str = "topk"  # "topk" | "sampled"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    top_has_token: bool | None = None

    def __post_init__(self):
        n = len(self.tokens)
        if not (len(self.token_logprobs) == len(self.top_tokens) == len(self.top_logprobs) == n):
            raise ValueError(
                f"Completion: {n} tokens but {len(self.token_logprobs)} token_logprobs, "
                f"{len(self.top_tokens)} top_tokens, {len(self.top_logprobs)} top_logprobs"
            )


# progress(done_requests, retries_so_far, tokens_so_far); called from the job's thread.
Progress = Callable[[int, int, int], None]


@dataclass(frozen=True)
class SampleRequest:
    """One prompt to sample `n` completions from."""

    prompt: str
    n: int
    temperature: float
    max_tokens: int
    top_k: int  # log-probabilities kept per position
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class ScoreRequest:
    """One text to score after a prompt: top-k at every position of `text` (no sampling)."""

    prompt: str
    text: str
    top_k: int


class Teacher(Protocol):
    """What every backend implements. `model` and `tokenizer` are recorded with the data;
    `tokenizer` is a spec `harness.tokenizers.load_tokenizer` understands
    (e.g. "tiktoken:p50k_base", "hf:/path/to/model")."""

    model: str
    tokenizer: str

    def sample(self, requests: Sequence[SampleRequest], progress: Progress | None = None) -> list[list[Completion]]:
        """One list of `request.n` completions per request, in request order."""
        ...

    def score(self, requests: Sequence[ScoreRequest], progress: Progress | None = None) -> list[Completion]:
        """One completion per request whose tokens spell `request.text`."""
        ...


@dataclass
class UsageCounter:
    """Requests, retries and tokens so far, for progress bars and cost reports."""

    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: dict[str, int] = field(default_factory=dict)
