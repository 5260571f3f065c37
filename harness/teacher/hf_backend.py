"""A local Hugging Face causal LM as the teacher: sample or score with top-k (or sampled) targets.

    teacher = HFTeacher("/models/llama-3-8b", batch_size=16, seed=0)
    [[c]] = teacher.sample([SampleRequest(prompt, n=1, temperature=0.7, max_tokens=256, top_k=5)])
    [s] = teacher.score([ScoreRequest(prompt, text, top_k=5)])

Log-probabilities. With `logprobs="model"` (the default) every log-probability, the sampled
token's and the top-k, is the model's own distribution, log_softmax(logits) at temperature 1,
whatever temperature the token was drawn at. That is what `score` gives (it has no temperature),
what the OpenAI backend stores (completions logprobs do not change with `temperature`; they are not
one-hot at temperature 0) and what vLLM returns by default, so sampled and scored data mean the
same thing and the student learns the teacher's distribution, not a sharpened one.
`logprobs="sampling"` stores log_softmax(logits / T), the distribution the token was drawn from
(not defined at T = 0: refused).

Sampling. `generate` runs with do_sample=False and one logits processor that draws each row's
token itself and returns a one-hot row, so generate's argmax takes it: generate still does the KV
cache, left padding, positions and EOS, but its global-RNG multinomial is never used. Each sample
(request, j) has its own CPU `torch.Generator`, seeded from (request.seed, j), or from
(teacher seed, prompt, j) when request.seed is None, and draws by inverse CDF in float64. So a
sample does not depend on `batch_size`, on the other requests in its batch, on the order of the
requests, on `targets` (sampled targets use a second generator) or on stop strings, and the same
seed and prompt give the same samples (change `seed` for new ones). Not reproducible: across
devices, dtypes and library versions (logits differ in their last bits), and, on one machine,
padding changes logits by float rounding, which changes a draw only when its uniform lands within
that rounding of a CDF boundary. Rows are samples: a request with n=20 is 20 rows, `batch_size`
rows per generate call (num_return_sequences would tie the n samples to one call). The processor
keeps only the top-k (or the draws) per step, never full-vocabulary scores (output_scores over 256
steps x 160 rows x 50k tokens would be gigabytes).

Token strings spell the text exactly. Byte-level BPE vocabularies (GPT-2, Llama 3, Qwen): each
token's exact bytes, decoded incrementally, so a character split across tokens belongs to the
token holding its last byte and the tokens before it spell "" (the OpenAI backend's and the
`tiktoken:` tokenizers' convention); a text cut inside a character ends in U+FFFD. Other
vocabularies (SentencePiece): incremental decoding with the same convention. Top-k alternatives
are each token decoded alone (partial bytes as U+FFFD, special tokens as their content). EOS is
not a token of the text. A stop string ends the text before its first occurrence (OpenAI's rule);
the token holding its start is cut to the text (its id and log-prob kept) and later ones dropped,
as the OpenAI backend does with vLLM. finish_reason: "stop" (EOS or stop string) or "length".

Prompts are encoded as the tokenizer does by default (its BOS added, special-token strings
recognised, so a rendered chat template works); an empty prompt starts from BOS (GPT-2:
<|endoftext|>). Scoring: the text is tokenized on its own, after the prompt, as the teacher would
have generated it (special-token strings in it are plain text, as tiktoken encodes them); one
forward pass over prompt + text, positions cover the text only. A tokenizer that cannot give the
text back (SentencePiece adds a leading space to a text encoded alone) is a DataError.

Sampled targets (beyond the paper; RS-KD, Anshumann et al., ACL 2025: cached top-k targets are
biased): with targets="sampled", each position stores `draws` tokens drawn with replacement from
the same distribution the log-probabilities describe, merged into unique tokens with importance
weight count/draws (an unbiased estimate of the distribution); top_logprobs hold log(weight),
heaviest first (ties by id), and `top_k` is not used.
"""

from __future__ import annotations

import codecs
import hashlib
import math
import threading
from collections import Counter
from pathlib import Path
from typing import Sequence

from harness.model_marker import read_marker
from harness.errors import DataError, HarnessError, UsageError, check_choice, check_positive
from harness.teacher.base import Completion, Progress, SampleRequest, ScoreRequest

TARGETS = ("topk", "sampled")
LOGPROBS = ("model", "sampling")
DTYPES = ("auto", "float32", "bfloat16", "float16")
CONTEXT_TOKENS = 4  # prompt tokens decoded before the text's (SentencePiece decoding needs its left context)


def derive_seed(*parts) -> int:
    """A 63-bit seed from any reprs (stable across processes, unlike hash())."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") & (2**63 - 1)


class HFTeacher:
    """The Teacher protocol over `AutoModelForCausalLM`; see the module docstring for semantics."""

    def __init__(self, model_name_or_path: str, tokenizer_spec: str | None = None, device: str | None = None,
                 dtype: str | None = None, batch_size: int = 8, seed: int = 0, *,
                 targets: str = "topk", draws: int = 64, logprobs: str = "model"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        check_positive("batch_size", batch_size)
        check_choice("targets", targets, TARGETS)
        check_positive("draws", draws)
        check_choice("logprobs", logprobs, LOGPROBS)
        if dtype is not None:
            check_choice("dtype", dtype, DTYPES)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = dtype or ("float32" if self.device == "cpu" else "auto")
        self.batch_size, self.seed, self.targets, self.draws, self.logprobs = batch_size, seed, targets, draws, logprobs
        path = Path(model_name_or_path).expanduser()
        self.model = str(path.resolve()) if path.is_dir() else str(model_name_or_path)
        self.tokenizer = tokenizer_spec or f"hf:{self.model}"
        try:
            self.tok = AutoTokenizer.from_pretrained(self.model)
            self.net = AutoModelForCausalLM.from_pretrained(
                self.model, dtype=self.dtype if self.dtype == "auto" else getattr(torch, self.dtype))
        except OSError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise HarnessError(f"teacher model {model_name_or_path!r} could not be loaded: {first}") from None
        self.net.to(self.device).eval()
        gc = self.net.generation_config
        eos = gc.eos_token_id if gc.eos_token_id is not None else self.tok.eos_token_id
        self.eos_ids = frozenset([eos] if isinstance(eos, int) else eos or [])
        self.bos_id = self.tok.bos_token_id if self.tok.bos_token_id is not None else gc.bos_token_id
        if self.bos_id is None and self.eos_ids:
            self.bos_id = min(self.eos_ids)  # GPT-2 style: <|endoftext|> separates documents
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else (min(self.eos_ids) if self.eos_ids else 0)
        # A clean generation config: a checkpoint's sampling defaults (top_p, repetition_penalty, ...)
        # would otherwise be merged into every call and change the logits our processor sees.
        self.net.generation_config = GenerationConfig(eos_token_id=sorted(self.eos_ids) or None,
                                                      pad_token_id=self.pad_id, bos_token_id=self.bos_id)
        cfg = self.net.config
        self.max_positions = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
        self.vocab_size = self.net.get_output_embeddings().weight.shape[0]
        self._bytes = _byte_table(self.tok, self.vocab_size)  # None: not a byte-level vocabulary
        self._display: list[str] | None = None
        self._one_job = threading.Lock()

    def __repr__(self):
        return f"HFTeacher(model={self.model!r}, device={self.device!r}, targets={self.targets!r})"

    def settings(self) -> dict:
        return {"backend": "hf", "model": self.model, "tokenizer": self.tokenizer, "device": self.device,
                "dtype": self.dtype, "batch_size": self.batch_size, "seed": self.seed, "targets": self.targets,
                "draws": self.draws if self.targets == "sampled" else None, "logprobs": self.logprobs}

    def marker(self) -> dict | None:
        """The harness's marker of a model folder it built (random or barely trained weights), if any."""
        return read_marker(self.model) if Path(self.model).is_dir() else None

    def describe(self) -> str:
        text = (f"{self.model} (transformers, {self.device}, {self.dtype}); tokenizer {self.tokenizer}; "
                f"logprobs={self.logprobs}; targets={self.targets}" + (f" ({self.draws} draws)" if self.targets == "sampled" else ""))
        mark = self.marker()
        if mark and mark.get("pipeline_check", True):
            text += f". PIPELINE CHECK, not a result: {mark.get('description') or mark.get('kind', 'built by the harness')}"
        return text

    # ---- public
    def sample(self, requests: Sequence[SampleRequest], progress: Progress | None = None) -> list[list[Completion]]:
        requests = list(requests)
        for r in requests:
            check_positive("n", r.n)
            check_positive("max_tokens", r.max_tokens)
            check_positive("temperature", r.temperature, allow_zero=True)
            if self.targets == "topk":
                check_positive("top_k", r.top_k)
            if self.logprobs == "sampling" and r.temperature == 0:
                raise UsageError("temperature: 0 is not allowed with logprobs='sampling' (the distribution is "
                                 "one-hot); use temperature > 0 or logprobs='model'")
        rows = [(i, j) for i, r in enumerate(requests) for j in range(r.n)]
        out: list[list] = [[None] * r.n for r in requests]
        left = [r.n for r in requests]
        done = tokens = 0
        with self._one_job:
            for start in range(0, len(rows), self.batch_size):
                batch = rows[start : start + self.batch_size]
                for (i, j), comp in zip(batch, self._sample_batch([requests[i] for i, _ in batch], [j for _, j in batch])):
                    out[i][j] = comp
                    tokens += comp.prompt_tokens + comp.completion_tokens
                    left[i] -= 1
                    done += left[i] == 0
                if progress is not None:
                    progress(done, 0, tokens)
        return out

    def score(self, requests: Sequence[ScoreRequest], progress: Progress | None = None) -> list[Completion]:
        requests = list(requests)
        for r in requests:
            if self.targets == "topk":
                check_positive("top_k", r.top_k)
            if not r.text:
                raise UsageError("score: the text to score is empty")
        out: list[Completion] = []
        with self._one_job:
            for start in range(0, len(requests), self.batch_size):
                out.extend(self._score_batch(requests[start : start + self.batch_size]))
                if progress is not None:
                    progress(len(out), 0, sum(c.prompt_tokens + c.completion_tokens for c in out))
        return out

    # ---- sampling
    def _sample_batch(self, reqs: list[SampleRequest], js: list[int]) -> list[Completion]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        prompts = [self._prompt_ids(r.prompt) for r in reqs]
        width, limits = max(map(len, prompts)), [r.max_tokens for r in reqs]
        self._check_length(width + max(limits), "prompt + max_tokens")
        ids = torch.full((len(reqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, p in enumerate(prompts):  # left padding
            ids[b, width - len(p):] = torch.tensor(p)
            mask[b, width - len(p):] = 1
        bases = [("request", r.seed) if r.seed is not None else ("teacher", self.seed, r.prompt) for r in reqs]
        drawer = _StepDrawer(
            self, temps=[r.temperature for r in reqs], k=max(1, max(r.top_k for r in reqs)),
            gens=[_generator(derive_seed("sample", b, j)) for b, j in zip(bases, js)],
            draw_gens=[_generator(derive_seed("draws", b, j)) for b, j in zip(bases, js)] if self.targets == "sampled" else None)
        stopper = _Stopper(self, width, limits, [r.stop for r in reqs])
        with torch.no_grad():
            seqs = self.net.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                     max_new_tokens=max(limits), do_sample=False,
                                     logits_processor=LogitsProcessorList([drawer]),
                                     stopping_criteria=StoppingCriteriaList([stopper]))
        steps = drawer.stacked()
        comps = []
        for b, (req, row) in enumerate(zip(reqs, seqs[:, width:].tolist())):
            gen = row[: stopper.length[b]] if stopper.length[b] is not None else row
            eos_at = next((t for t, i in enumerate(gen) if i in self.eos_ids), None)
            gen = gen if eos_at is None else gen[: eos_at + 1]  # generate pads a row after its EOS
            if [int(t) for t in steps["chosen"][: len(gen), b]] != gen:
                raise RuntimeError("HFTeacher: generated ids and the drawn tokens disagree (a bug)")
            comps.append(self._completion(req, prompts[b], gen, steps, b))
        return comps

    def _completion(self, req: SampleRequest, prompt: list[int], gen: list[int], steps: dict, b: int) -> Completion:
        finish, used = "length", len(gen)
        eos_at = next((t for t, i in enumerate(gen) if i in self.eos_ids), None)
        if eos_at is not None:
            gen, finish, used = gen[:eos_at], "stop", eos_at + 1
        strings = self._spell(gen, prompt[-CONTEXT_TOKENS:])
        text = "".join(strings)
        cut = min((c for c in (text.find(s) for s in req.stop if s) if c >= 0), default=None)
        if cut is not None:
            strings, text, finish = _cut(strings, cut), text[:cut], "stop"
        m = len(strings)
        top_ids, top_lps = self._targets_at(steps, b, m, req.top_k)
        return Completion(text, strings, [float(x) for x in steps["lp"][:m, b]], self._names(top_ids), top_lps, finish,
                          token_ids=gen[:m], top_ids=top_ids, targets=self.targets,
                          prompt_tokens=len(prompt), completion_tokens=used)

    def _targets_at(self, steps: dict, b: int, m: int, k: int) -> tuple[list[list[int]], list[list[float]]]:
        if self.targets == "sampled":
            pairs = [_aggregate(row, self.draws) for row in steps["draws"][:m, b].tolist()]
            return [p[0] for p in pairs], [p[1] for p in pairs]
        k = min(k, self.vocab_size)
        return steps["top_ids"][:m, b, :k].tolist(), steps["top_lp"][:m, b, :k].tolist()

    # ---- scoring
    def _score_batch(self, reqs: list[ScoreRequest]) -> list[Completion]:
        import torch

        prompts = [self._prompt_ids(r.prompt) for r in reqs]
        texts = [self.tok(r.text, add_special_tokens=False, split_special_tokens=True)["input_ids"] for r in reqs]
        width = max(len(p) + len(t) for p, t in zip(prompts, texts))
        self._check_length(width, "prompt + text")
        ids = torch.full((len(reqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, (p, t) in enumerate(zip(prompts, texts)):  # left padding: every text ends at the last column
            ids[b, width - len(p) - len(t):] = torch.tensor(p + t)
            mask[b, width - len(p) - len(t):] = 1
        keep = max(map(len, texts)) + 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
        with torch.no_grad():
            try:
                logits = self.net(**inputs, logits_to_keep=keep).logits
            except TypeError:  # a model without `logits_to_keep`: all positions
                logits = self.net(**inputs).logits
        logits = logits[:, -keep:-1].float()
        comps = []
        for b, (req, p, t) in enumerate(zip(reqs, prompts, texts)):
            n = len(t)
            lp = torch.log_softmax(logits[b, keep - 1 - n :], dim=-1)  # (n, V): position i predicts t[i]
            token_lp = lp.gather(1, torch.tensor(t, device=lp.device)[:, None])[:, 0].tolist()
            if self.targets == "sampled":
                gen = _generator(derive_seed("score-draws", self.seed, req.prompt, req.text))
                drawn = _draw(lp, torch.rand((n, self.draws), generator=gen, dtype=torch.float64))
                pairs = [_aggregate(row, self.draws) for row in drawn.tolist()]
                top_ids, top_lps = [q[0] for q in pairs], [q[1] for q in pairs]
            else:
                values, indices = lp.topk(min(req.top_k, self.vocab_size), dim=-1)
                top_ids, top_lps = indices.tolist(), values.tolist()
            strings = self._spell(t, p[-CONTEXT_TOKENS:])
            if "".join(strings) != req.text:
                raise DataError(f"score: the teacher's tokenizer does not give the text back (normalisation, or a leading space): "
                                f"{req.text[:40]!r} comes back as {''.join(strings)[:40]!r}")
            comps.append(Completion(req.text, strings, token_lp, self._names(top_ids), top_lps, None, token_ids=list(t),
                                    top_ids=top_ids, targets=self.targets, prompt_tokens=len(p), completion_tokens=n))
        return comps

    # ---- tokens
    def _prompt_ids(self, prompt: str) -> list[int]:
        ids = list(self.tok(prompt, add_special_tokens=True)["input_ids"])
        if not ids:
            if self.bos_id is None:
                raise UsageError("prompt: empty, and the teacher's tokenizer has no BOS token to start from")
            ids = [self.bos_id]
        return ids

    def _check_length(self, length: int, what: str) -> None:
        if self.max_positions and length > self.max_positions:
            raise UsageError(f"{what}: {length} tokens, more than the teacher's {self.max_positions} positions; "
                             "shorten the prompt or lower max_tokens")

    def _text(self, ids: list[int]) -> str:
        """The text of some ids (for stop-string checks; partial characters as U+FFFD)."""
        if self._bytes is not None:
            return b"".join(self._bytes[i] for i in ids).decode("utf-8", errors="replace")
        return self.tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _spell(self, ids: list[int], context: list[int]) -> list[str]:
        """One string per id, spelling their text: a character goes to the token that completes it."""
        if self._bytes is not None:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            out = [decoder.decode(self._bytes[i]) for i in ids]
            if out:
                out[-1] += decoder.decode(b"", final=True)
            return out
        # Incremental detokenization (as vLLM does): emit the new text once it does not end in an
        # unfinished character; `context` gives SentencePiece the left context its spaces depend on.
        seq, out, prefix, read = list(context) + list(ids), [], 0, len(context)
        for k in range(len(context), len(seq)):
            before, after = self._text(seq[prefix:read]), self._text(seq[prefix : k + 1])
            if len(after) > len(before) and not after.endswith("\ufffd"):
                out.append(after[len(before):])
                prefix, read = read, k + 1
            else:
                out.append("")
        if out and read < len(seq):
            out[-1] += self._text(seq[prefix:])[len(self._text(seq[prefix:read])):]
        return out

    def _names(self, top_ids: list[list[int]]) -> list[list[str]]:
        """Top-k alternatives' strings: each token decoded alone."""
        if self._display is None:
            specials = {i: t.content for i, t in self.tok.added_tokens_decoder.items()}
            if self._bytes is not None:
                self._display = [specials.get(i) or b.decode("utf-8", errors="replace") for i, b in enumerate(self._bytes)]
            else:
                self._display = [specials.get(i) or self.tok.decode([i], clean_up_tokenization_spaces=False)
                                 if i < len(self.tok) else "" for i in range(self.vocab_size)]
        return [[self._display[i] for i in row] for row in top_ids]


class _StepDrawer:
    """generate's logits processor: draws each row's token with the row's generator, records the
    sampled token's log-prob and the top-k (or the target draws), returns a one-hot row."""

    def __init__(self, owner: HFTeacher, temps: list[float], k: int, gens: list, draw_gens: list | None):
        import torch

        self.owner, self.k, self.gens, self.draw_gens = owner, min(k, owner.vocab_size), gens, draw_gens
        self.temps = torch.tensor(temps, dtype=torch.float32)
        self.records: list[tuple] = []

    def __call__(self, input_ids, scores):
        import torch

        logits = scores.float()
        temps = self.temps.to(logits.device)[:, None]
        greedy = temps[:, 0] == 0
        tempered = torch.log_softmax(logits / torch.where(temps > 0, temps, 1.0), dim=-1)
        report = tempered if self.owner.logprobs == "sampling" else torch.log_softmax(logits, dim=-1)
        u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in self.gens])
        chosen = torch.where(greedy, logits.argmax(-1), _draw(tempered, u[:, None])[:, 0])
        record = [chosen.cpu(), report.gather(1, chosen[:, None])[:, 0].cpu()]
        if self.draw_gens is not None:
            uu = torch.stack([torch.rand(self.owner.draws, generator=g, dtype=torch.float64) for g in self.draw_gens])
            record.append(_draw(report, uu).cpu())
        else:
            values, indices = report.topk(self.k, dim=-1)
            record += [indices.cpu(), values.cpu()]
        self.records.append(tuple(record))
        out = torch.full_like(scores, -math.inf)
        return out.scatter_(1, chosen[:, None], 0.0)

    def stacked(self) -> dict:
        import torch

        names = ("chosen", "lp", "draws") if self.draw_gens is not None else ("chosen", "lp", "top_ids", "top_lp")
        return {name: torch.stack([r[i] for r in self.records]) for i, name in enumerate(names)}  # (steps, rows, ...)


class _Stopper:
    """generate's stopping criterion: a row stops at its own max_tokens or once one of its stop
    strings appears in the text of its last few tokens (the exact cut is made afterwards)."""

    def __init__(self, owner: HFTeacher, prompt_len: int, limits: list[int], stops: list[tuple[str, ...]]):
        self.owner, self.prompt_len, self.limits, self.stops = owner, prompt_len, limits, stops
        # a stop string of c characters spans at most 4c tokens (>= 1 byte each), plus a broken first character
        self.window = [4 * max(map(len, s)) + 4 if s else 0 for s in stops]
        self.length: list[int | None] = [None] * len(limits)

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        cur = input_ids.shape[1] - self.prompt_len
        tails = input_ids[:, max(self.prompt_len, input_ids.shape[1] - max(self.window + [1])):].tolist()
        for b, tail in enumerate(tails):
            if self.length[b] is None:
                if cur >= self.limits[b]:
                    self.length[b] = cur
                elif self.window[b] and any(s and s in self.owner._text(tail[-self.window[b]:]) for s in self.stops[b]):
                    self.length[b] = cur
        return torch.tensor([n is not None for n in self.length], device=input_ids.device)


def _generator(seed: int):
    import torch

    return torch.Generator().manual_seed(seed)


def _draw(logprobs, uniforms):
    """Inverse-CDF draws: for each row of `logprobs` (rows, V), one token per uniform in
    `uniforms` (rows, m), float64 (a zero-probability token is never drawn)."""
    import torch

    cdf = logprobs.double().exp().cumsum(-1)
    found = torch.searchsorted(cdf, uniforms.to(cdf.device) * cdf[:, -1:], right=True)
    return found.clamp(max=logprobs.shape[-1] - 1)


def _aggregate(drawn: list[int], m: int) -> tuple[list[int], list[float]]:
    """Unique drawn tokens with log(count / m), heaviest first (ties by id)."""
    counts = sorted(Counter(drawn).items(), key=lambda kv: (-kv[1], kv[0]))
    return [i for i, _ in counts], [math.log(c / m) for _, c in counts]


def _cut(strings: list[str], n: int) -> list[str]:
    """The tokens that start before character n, the last cut to end there."""
    out, pos = [], 0
    for s in strings:
        if pos >= n:
            break
        out.append(s[: n - pos])
        pos += len(s)
    return out


def _byte_table(tok, vocab_size: int) -> list[bytes] | None:
    """Each id's exact bytes for a byte-level BPE vocabulary (special tokens: b""), else None."""
    # GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 onwards.
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = dict(zip(keep, keep)), 0
    for b in range(256):
        if b not in chars:
            chars[b], extra = 256 + extra, extra + 1
    byte_of = {chr(c): b for b, c in chars.items()}
    decoder = getattr(getattr(tok, "backend_tokenizer", None), "decoder", None)
    if decoder is not None and "ByteLevel" not in repr(decoder):
        return None
    added = tok.added_tokens_decoder
    table = []
    for i, piece in enumerate(tok.convert_ids_to_tokens(list(range(len(tok))))):
        if i in added:
            table.append(b"" if added[i].special else added[i].content.encode())
        elif piece is None or any(ch not in byte_of for ch in piece):
            return None
        else:
            table.append(bytes(byte_of[ch] for ch in piece))
    return table + [b""] * max(0, vocab_size - len(table))  # padded embedding rows spell nothing
