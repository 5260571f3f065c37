"""HFTeacher on tiny GPT-2 models built in tmp dirs (real GPT-2 tokenizer, CPU, offline).

Two models: `random_dir`, a 1-layer random GPT-2 (real-looking token soup), and `known_dir`
models whose next-token distribution is the same known vector at every position (ln_f outputs a
constant unit vector; an untied lm_head's first column holds the logits), so log-probabilities,
EOS, stop strings and draws can be checked against exact numbers.
"""

from __future__ import annotations

import codecs
import math
from dataclasses import replace

import pytest
import torch

from harness.errors import UsageError
from harness.teacher.base import Completion, SampleRequest, ScoreRequest
from harness.teacher.default_teacher import build_default_teacher, gpt2_tokenizer
from harness.teacher.hf_backend import HFTeacher

EOS = 50256
THE, CAT, Q, COLON, NL = 262, 3797, 48, 25, 198  # " the", " cat", "Q", ":", "\n"
KNOWN = {THE: 3.0, CAT: 2.5, Q: 1.5, COLON: 1.5, NL: 1.0, EOS: 2.0}  # every other token: FLOOR
FLOOR = -10.0
BYTE_TOKENS = {30325: 1.0, 222: 1.0, 10545: 1.0, 245: 1.0, 98: 1.0, 2124: 1.0}  # " \xf0\x9f", "\x98\x80", " \xe6", ...


@pytest.fixture(scope="module")
def tok(data_dir):
    return gpt2_tokenizer()


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory, data_dir):
    return build_default_teacher(tmp_path_factory.mktemp("m") / "random", n_layer=1, n_embd=32, n_head=2, seed=3)


def _known_model(folder, tok, logits: dict[int, float]):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=16, n_layer=1, n_head=2,
                        tie_word_embeddings=False, bos_token_id=EOS, eos_token_id=EOS)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 1.0  # ln_f(h) = e0 whatever h is
        model.lm_head.weight.zero_()
        model.lm_head.weight[:, 0] = FLOOR
        for i, v in logits.items():
            model.lm_head.weight[i, 0] = v
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _true_logprobs(logits: dict[int, float], vocab: int, temperature: float = 1.0) -> torch.Tensor:
    z = torch.full((vocab,), FLOOR, dtype=torch.float64)
    for i, v in logits.items():
        z[i] = v
    return torch.log_softmax(z / temperature, dim=0)


@pytest.fixture(scope="module")
def known_dir(tmp_path_factory, tok):
    return _known_model(tmp_path_factory.mktemp("m") / "known", tok, KNOWN)


@pytest.fixture(scope="module")
def random_teacher(random_dir):
    return HFTeacher(str(random_dir), device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def known_teacher(known_dir):
    return HFTeacher(str(known_dir), device="cpu", batch_size=8)


def _forward_logprobs(teacher: HFTeacher, ids: list[int]) -> torch.Tensor:
    """log_softmax of one unpadded forward pass: row i predicts ids[i + 1]."""
    with torch.no_grad():
        return torch.log_softmax(teacher.net(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)


def _byte_spelling(ids: list[int]) -> list[str]:
    """Reference spelling from tiktoken's gpt2 bytes: a character goes to the token completing it."""
    from harness.config import setup_offline_tokenizers

    setup_offline_tokenizers()
    import tiktoken

    enc, dec = tiktoken.get_encoding("gpt2"), codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = [dec.decode(enc.decode_single_token_bytes(i)) for i in ids]
    if out:
        out[-1] += dec.decode(b"", final=True)
    return out


# ---------------------------------------------------------------------------------------- sample


def test_sample_shape_order_and_spelling(random_teacher, tok):
    reqs = [SampleRequest("Q: Natalia sold clips.\nA:", n=3, temperature=1.0, max_tokens=6, top_k=4),
            SampleRequest("Hi", n=2, temperature=0.7, max_tokens=4, top_k=2, seed=5)]
    seen = []
    out = random_teacher.sample(reqs, progress=lambda done, retries, tokens: seen.append((done, retries, tokens)))
    assert [len(c) for c in out] == [3, 2]
    for req, comps in zip(reqs, out):
        for c in comps:
            assert isinstance(c, Completion) and c.targets == "topk"
            assert "".join(c.tokens) == c.text and c.tokens == _byte_spelling(c.token_ids)
            assert c.prompt_tokens == len(tok(req.prompt)["input_ids"])
            assert c.finish_reason == "length" and len(c.tokens) == c.completion_tokens == req.max_tokens
            for ids, names, lps in zip(c.top_ids, c.top_tokens, c.top_logprobs):
                assert len(ids) == len(names) == len(lps) == req.top_k
                assert lps == sorted(lps, reverse=True)
                assert names == [tok.decode([i]) for i in ids]
    assert [d for d, _, _ in seen] == [1, 2] and seen[-1][2] == sum(c.prompt_tokens + c.completion_tokens for cs in out for c in cs)


def test_sample_logprobs_are_the_models_own_distribution(random_teacher, tok):
    req = SampleRequest("The answer is", n=2, temperature=1.5, max_tokens=5, top_k=5)
    for c in random_teacher.sample([req])[0]:
        prompt = tok(req.prompt)["input_ids"]
        lp = _forward_logprobs(random_teacher, prompt + c.token_ids)[len(prompt) - 1 : -1]
        for t, (tid, tlp, ids, lps) in enumerate(zip(c.token_ids, c.token_logprobs, c.top_ids, c.top_logprobs)):
            assert tlp == pytest.approx(float(lp[t, tid]), abs=1e-4)  # temperature 1, not 1.5
            values, indices = lp[t].topk(5)
            assert ids == indices.tolist() and lps == pytest.approx(values.tolist(), abs=1e-4)
            assert tlp <= lps[0] + 1e-6


def test_known_distribution_logprobs_in_both_modes(known_dir, tok):
    for mode, temperature in (("model", 1.0), ("sampling", 0.5)):
        teacher = HFTeacher(str(known_dir), device="cpu", logprobs=mode)
        truth = _true_logprobs(KNOWN, len(tok), temperature if mode == "sampling" else 1.0)
        [comps] = teacher.sample([SampleRequest("x", n=4, temperature=temperature, max_tokens=8, top_k=3, seed=4)])
        expected_top = truth.topk(3)
        for c in comps:  # float32 log_softmax over 50,257 logits is within ~2e-5 of float64
            assert c.token_logprobs == pytest.approx([float(truth[i]) for i in c.token_ids], abs=5e-5)
            for ids, lps in zip(c.top_ids, c.top_logprobs):
                assert ids == expected_top.indices.tolist()
                assert lps == pytest.approx(expected_top.values.tolist(), abs=5e-5)


def test_eos_ends_with_stop_and_is_not_a_token(known_teacher):
    [comps] = known_teacher.sample([SampleRequest("x", n=12, temperature=1.0, max_tokens=12, top_k=2, seed=1)])
    reasons = {c.finish_reason for c in comps}
    assert reasons == {"stop", "length"}  # p(EOS) ~ 0.15 a step: both happen in 12 seeded samples
    for c in comps:
        assert EOS not in c.token_ids and "".join(c.tokens) == c.text
        if c.finish_reason == "stop":
            assert c.completion_tokens == len(c.tokens) + 1 < 13
        else:
            assert c.completion_tokens == len(c.tokens) == 12


def test_stop_strings_cut_before_the_first_occurrence(known_teacher):
    base = SampleRequest("x", n=16, temperature=1.0, max_tokens=30, top_k=2, seed=7)
    free = known_teacher.sample([base])[0]
    stopped = known_teacher.sample([replace(base, stop=("at t", "Q:"))])[0]
    cut = 0
    for f, s in zip(free, stopped):
        assert "".join(s.tokens) == s.text and "at t" not in s.text and "Q:" not in s.text
        assert f.text.startswith(s.text) and s.token_ids == f.token_ids[: len(s.token_ids)]
        rest = f.text[len(s.text):]
        if rest.startswith(("at t", "Q:")):
            cut += 1
            assert s.finish_reason == "stop"
            if rest.startswith("at t"):  # the stop starts inside " cat": that token is cut to " c"
                assert s.tokens[-1] == " c" and s.token_ids[-1] == CAT
        else:
            assert s.text == f.text and s.finish_reason == f.finish_reason
    assert cut >= 3


def test_seeded_runs_are_identical_and_independent_of_batching(random_dir):
    a = SampleRequest("Janet has 3 apples.", n=3, temperature=1.0, max_tokens=6, top_k=3)
    other = SampleRequest("A much longer prompt, so that the batch is padded on the left.", n=2,
                          temperature=0.8, max_tokens=8, top_k=3, seed=11)
    alone = HFTeacher(str(random_dir), device="cpu", batch_size=1).sample([a])[0]
    mixed = HFTeacher(str(random_dir), device="cpu", batch_size=8).sample([other, a])[1]
    again = HFTeacher(str(random_dir), device="cpu", batch_size=8).sample([other, a])[1]
    assert [c.token_ids for c in alone] == [c.token_ids for c in mixed] == [c.token_ids for c in again]
    assert mixed == again
    for x, y in zip(alone, mixed):
        assert x.token_logprobs == pytest.approx(y.token_logprobs, abs=1e-4)
    reseeded = HFTeacher(str(random_dir), device="cpu", seed=1).sample([a])[0]
    assert [c.token_ids for c in reseeded] != [c.token_ids for c in alone]
    assert len({tuple(c.token_ids) for c in alone}) == 3  # the n samples differ


def test_temperature_zero_is_greedy(known_teacher):
    [comps] = known_teacher.sample([SampleRequest("x", n=2, temperature=0.0, max_tokens=3, top_k=1)])
    assert [c.token_ids for c in comps] == [[THE] * 3] * 2


def test_partial_utf8_tokens_spell_the_text(tmp_path, tok):
    teacher = HFTeacher(str(_known_model(tmp_path / "bytes", tok, BYTE_TOKENS)), device="cpu")
    [comps] = teacher.sample([SampleRequest("x", n=6, temperature=1.0, max_tokens=10, top_k=6, seed=2)])
    joined = "".join(c.text for c in comps)
    assert "😀" in joined or any(ord(ch) > 0x3000 for ch in joined)  # whole characters were put together
    for c in comps:
        assert "".join(c.tokens) == c.text and c.tokens == _byte_spelling(c.token_ids)
        assert sorted(c.top_ids[0]) == sorted(BYTE_TOKENS) and "\ufffd" in "".join(c.top_tokens[0])  # decoded alone


# ----------------------------------------------------------------------------------------- score


def test_score_matches_a_manual_forward_pass(random_teacher, tok):
    reqs = [ScoreRequest("Question: how many?\nAnswer:", " She sold 72 clips.", 5),
            ScoreRequest("Q:", " naïve — 日本語 😀 <|endoftext|> x", 3),
            ScoreRequest("", "Hello there", 2)]
    out = random_teacher.score(reqs)
    for req, c in zip(reqs, out):
        text_ids = tok(req.text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        prompt = tok(req.prompt)["input_ids"] or [EOS]  # an empty prompt starts from BOS (<|endoftext|>)
        assert c.text == req.text and "".join(c.tokens) == req.text and c.token_ids == text_ids
        assert len(c.tokens) == len(text_ids) == c.completion_tokens and c.prompt_tokens == len(prompt)
        lp = _forward_logprobs(random_teacher, prompt + text_ids)[len(prompt) - 1 : -1]
        assert c.token_logprobs == pytest.approx([float(lp[t, i]) for t, i in enumerate(text_ids)], abs=1e-5)
        for t, (ids, lps) in enumerate(zip(c.top_ids, c.top_logprobs)):
            values, indices = lp[t].topk(req.top_k)
            assert ids == indices.tolist() and lps == pytest.approx(values.tolist(), abs=1e-5)
            assert lps[0] >= c.token_logprobs[t] - 1e-6
        assert c.finish_reason is None and c.targets == "topk"


def test_score_tokens_follow_the_byte_convention(random_teacher):
    [c] = random_teacher.score([ScoreRequest("Q:", " 😀 — 日本", 1)])
    assert c.tokens == _byte_spelling(c.token_ids) == [" ", "😀", " —", " ", "", "日", "", "本"]


# ------------------------------------------------------------------------------- sampled targets


def test_sampled_targets_are_weights_of_m_draws(random_dir):
    teacher = HFTeacher(str(random_dir), device="cpu", targets="sampled", draws=16)
    req = SampleRequest("Tom has 5 pens.", n=2, temperature=1.0, max_tokens=4, top_k=0)
    comps = teacher.sample([req])[0]
    topk = HFTeacher(str(random_dir), device="cpu").sample([replace(req, top_k=2)])[0]
    assert [c.token_ids for c in comps] == [c.token_ids for c in topk]  # draws do not move the samples
    scored = teacher.score([ScoreRequest("Q:", " 12 pens", 0)])
    for c in comps + scored:
        assert c.targets == "sampled"
        for ids, names, lps in zip(c.top_ids, c.top_tokens, c.top_logprobs):
            weights = [math.exp(v) for v in lps]
            assert sum(weights) == pytest.approx(1.0) and len(set(ids)) == len(ids) == len(names)
            assert sum(round(w * 16) for w in weights) == 16 and all(abs(w * 16 - round(w * 16)) < 1e-9 for w in weights)
            assert weights == sorted(weights, reverse=True)
    assert teacher.score([ScoreRequest("Q:", " 12 pens", 0)]) == scored  # seeded


def test_sampled_targets_converge_to_the_known_distribution(known_dir, tok):
    m = 20000
    teacher = HFTeacher(str(known_dir), device="cpu", targets="sampled", draws=m)
    truth = _true_logprobs(KNOWN, len(tok)).exp()
    [scored] = teacher.score([ScoreRequest("x", " the cat", 0)])
    [[sampled]] = teacher.sample([SampleRequest("x", n=1, temperature=2.0, max_tokens=2, top_k=0, seed=3)])
    for c in (scored, sampled):  # sampled at T=2, but draws follow the model's distribution (logprobs="model")
        for ids, lps in zip(c.top_ids, c.top_logprobs):
            weight = dict(zip(ids, (math.exp(v) for v in lps)))
            for i in KNOWN:
                p = float(truth[i])
                assert abs(weight.get(i, 0.0) - p) <= 5 * math.sqrt(p * (1 - p) / m) + 1 / m, (i, p, weight.get(i))
            tail_true = 1 - sum(float(truth[i]) for i in KNOWN)
            tail = sum(w for i, w in weight.items() if i not in KNOWN)
            assert abs(tail - tail_true) <= 5 * math.sqrt(tail_true * (1 - tail_true) / m) + 1 / m


# --------------------------------------------------------------------------------------- options


@pytest.mark.parametrize("kwargs, option", [({"targets": "soft"}, "targets"), ({"draws": 0}, "draws"),
                                            ({"batch_size": 0}, "batch_size"), ({"logprobs": "raw"}, "logprobs"),
                                            ({"dtype": "int8"}, "dtype")])
def test_bad_teacher_options_are_usage_errors(random_dir, kwargs, option):
    with pytest.raises(UsageError, match=f"^{option}:"):
        HFTeacher(str(random_dir), **kwargs)


@pytest.mark.parametrize("field, value", [("top_k", 0), ("n", 0), ("max_tokens", 0), ("temperature", -1.0)])
def test_bad_request_options_are_usage_errors(random_teacher, field, value):
    req = {"prompt": "x", "n": 1, "temperature": 1.0, "max_tokens": 2, "top_k": 2, field: value}
    with pytest.raises(UsageError, match=f"^{field}:"):
        random_teacher.sample([SampleRequest(**req)])


def test_bad_score_options_are_usage_errors(random_teacher, known_dir):
    with pytest.raises(UsageError, match="^top_k:"):
        random_teacher.score([ScoreRequest("x", "y", 0)])
    with pytest.raises(UsageError, match="empty"):
        random_teacher.score([ScoreRequest("x", "", 2)])
    with pytest.raises(UsageError, match="^temperature:"):
        HFTeacher(str(known_dir), logprobs="sampling").sample([SampleRequest("x", 1, 0.0, 2, 2)])
    with pytest.raises(UsageError, match="positions"):
        random_teacher.score([ScoreRequest("x", " y" * 5000, 2)])  # past N_POSITIONS (4096)
