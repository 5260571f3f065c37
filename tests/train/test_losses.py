"""The objective against the authors' dense formula, cross-entropy, the answer-only rule, the fused
head and the causal path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.train.data import IGNORE, Collator, load_formats
from harness.train.losses import DistillationObjective
from kernels.reference import authors_dense_kl


@pytest.fixture(scope="module")
def t5(tiny_t5):
    from transformers import AutoModelForSeq2SeqLM

    torch.manual_seed(0)
    return AutoModelForSeq2SeqLM.from_pretrained(tiny_t5).eval()


def _batch(formats_dir, tokenizer, fmt, distribution, seq2seq=True, n=4):
    records = load_formats(formats_dir, [fmt])[fmt]
    return Collator(tokenizer, seq2seq=seq2seq)(records, list(range(n)), distribution)


def _tensors(batch):
    names = ("input_ids", "attention_mask", "labels", "decoder_input_ids", "position_ids", "topk_ids", "topk_probs")
    out = {k: getattr(batch, k) for k in names if getattr(batch, k) is not None}
    out["prompt_width"] = batch.prompt_width
    return out


def _dense_target(batch, vocab, eos):
    """The authors' [B, T, V] target: pad one-hot, per_step_probs at the ids, EOS one-hot after the CoT."""
    b, t, _ = batch.topk_ids.shape
    target = torch.zeros(b, t, vocab)
    target[..., 0] = 1.0  # one-hot on pad everywhere first
    for i in range(b):
        n = int((batch.labels[i] != IGNORE).sum()) - 1
        for j in range(n):
            target[i, j, 0] = 0.0
            for k in range(batch.topk_ids.shape[-1]):
                idx = int(batch.topk_ids[i, j, k])
                if idx != IGNORE:
                    target[i, j, idx] += float(batch.topk_probs[i, j, k])
        target[i, n, 0], target[i, n, eos] = 0.0, 1.0
    return target


def test_faithful_distribution_loss_equals_the_authors_dense_formula(formats_dir, t5_tokenizer, t5):
    batch = _batch(formats_dir, t5_tokenizer, "in_context_cot", distribution=True)
    obj = DistillationObjective(t5, seq2seq=True, variant="faithful", fused=False)
    loss_sum, rows = obj(**_tensors(batch))
    logits = t5(input_ids=batch.input_ids, attention_mask=batch.attention_mask, decoder_input_ids=batch.decoder_input_ids).logits
    mask = batch.labels != IGNORE
    dense = authors_dense_kl(logits.reshape(-1, logits.shape[-1]), _dense_target(batch, logits.shape[-1], 1).reshape(-1, logits.shape[-1]), mask.reshape(-1))
    assert int(rows) == int(mask.sum())
    torch.testing.assert_close(loss_sum / rows, dense, rtol=1e-5, atol=1e-6)


def test_sample_matching_is_token_cross_entropy(formats_dir, t5_tokenizer, t5):
    batch = _batch(formats_dir, t5_tokenizer, "zero_shot_cot", distribution=False)
    assert batch.topk_ids is None
    loss_sum, rows = DistillationObjective(t5, seq2seq=True, variant="faithful", fused=False)(**_tensors(batch))
    logits = t5(input_ids=batch.input_ids, attention_mask=batch.attention_mask, decoder_input_ids=batch.decoder_input_ids).logits
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.labels.reshape(-1), ignore_index=IGNORE)
    torch.testing.assert_close(loss_sum / rows, ce, rtol=1e-5, atol=1e-6)


def test_answer_only_records_use_cross_entropy_under_distribution_matching(formats_dir, t5_tokenizer):
    for fmt in ("zero_shot_answer_only", "in_context_answer_only"):
        batch = _batch(formats_dir, t5_tokenizer, fmt, distribution=True)
        assert batch.topk_ids is None and batch.topk_probs is None
    cot = _batch(formats_dir, t5_tokenizer, "zero_shot_cot", distribution=True)
    # EOS row: one-hot on </s>; target rows carry the aligned top-k with the target token first
    n = int((cot.labels[0] != IGNORE).sum()) - 1
    assert cot.topk_ids[0, n, 0] == 1 and cot.topk_probs[0, n, 0] == 1.0 and (cot.topk_ids[0, n, 1:] == IGNORE).all()
    assert torch.equal(cot.topk_ids[0, :n, 0], cot.labels[0, :n])


def test_seq2seq_decoder_inputs_are_the_shifted_labels(formats_dir, t5_tokenizer):
    batch = _batch(formats_dir, t5_tokenizer, "zero_shot_cot", distribution=False)
    for i in range(batch.labels.shape[0]):
        n = int((batch.labels[i] != IGNORE).sum())
        assert batch.decoder_input_ids[i, 0] == 0
        assert torch.equal(batch.decoder_input_ids[i, 1:n], batch.labels[i, : n - 1])
        # beyond the target (masked rows): the shifted EOS, then pad, as HF's _shift_right gives
        assert (batch.decoder_input_ids[i, n + 1 :] == 0).all()
        assert batch.labels[i, n - 1] == 1  # EOS ends every target


@pytest.mark.parametrize("variant", ["faithful", "corrected"])
def test_fused_head_matches_the_logits_path(formats_dir, t5_tokenizer, tiny_t5, variant):
    from transformers import AutoModelForSeq2SeqLM

    batch = _batch(formats_dir, t5_tokenizer, "zero_shot_cot", distribution=True)
    results = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5).eval()
        loss, _ = DistillationObjective(model, seq2seq=True, variant=variant, fused=fused)(**_tensors(batch))
        loss.backward()
        results.append((loss.detach(), model.lm_head.weight.grad.clone(), model.shared.weight.grad.clone()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_causal_student_scores_only_the_target_tokens(formats_dir, t5_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=32128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, eos_token_id=1)).eval()
    records = load_formats(formats_dir, ["in_context_cot"])["in_context_cot"]
    collate = Collator(t5_tokenizer, seq2seq=False, prompt_separator="\n")
    batch = collate(records, [0, 1, 2], distribution=False)  # prompts of different lengths: left padding
    for fused in (False, True):
        loss_sum, rows = DistillationObjective(model, seq2seq=False, variant="corrected", fused=fused)(**_tensors(batch))
        # reference: each example alone, no padding, cross-entropy on its target tokens (+ EOS) only
        total, count = 0.0, 0
        for i in range(3):
            src = collate.source_ids([records.table.column("encoder_input")[i].as_py()])[0]
            tgt = collate.target_ids([records.table.column("decoder_target")[i].as_py()])[0] + [1]
            ids = torch.tensor([src + tgt])
            logits = model(input_ids=ids).logits[0, len(src) - 1 : len(src) + len(tgt) - 1]
            total += F.cross_entropy(logits, torch.tensor(tgt), reduction="sum")
            count += len(tgt)
        assert int(rows) == count
        torch.testing.assert_close(loss_sum, total, rtol=1e-4, atol=1e-4)


def _authors_target(batch, vocab, eos, pad=0):
    """Their process_batch, step by step: one-hot pad everywhere; on each CoT position every top-k
    entry written at its id, then the pad column set to 0; one-hot </s> after the CoT."""
    b, t, k = batch.topk_ids.shape
    target = torch.zeros(b, t, vocab)
    target[..., pad] = 1.0
    for i in range(b):
        n = int((batch.labels[i] != IGNORE).sum()) - 1
        for j in range(n):
            for e in range(k):
                idx = int(batch.topk_ids[i, j, e])
                if idx != IGNORE:
                    target[i, j, idx] = float(batch.topk_probs[i, j, e])
            target[i, j, pad] = 0.0
        target[i, n, pad], target[i, n, eos] = 0.0, 1.0
    return target


def _with_pad_entries(batch):
    """Put a real (unmasked) entry on <pad> (id 0) at every third CoT position: its last entry."""
    ids, probs = batch.topk_ids.clone(), batch.topk_probs.clone()
    changed = 0
    for i in range(ids.shape[0]):
        n = int((batch.labels[i] != IGNORE).sum()) - 1
        for j in range(0, n, 3):
            ids[i, j, -1], probs[i, j, -1] = 0, 0.05 + 0.01 * j
            changed += 1
    batch.topk_ids, batch.topk_probs = ids, probs
    return batch, changed


@pytest.mark.parametrize("fused", [False, True])
def test_faithful_drops_teacher_mass_on_pad_as_the_authors_did(formats_dir, t5_tokenizer, t5, fused):
    batch, changed = _with_pad_entries(_batch(formats_dir, t5_tokenizer, "in_context_cot", distribution=True))
    assert changed > 0 and ((batch.topk_ids == 0) & (batch.topk_probs > 0)).sum() == changed
    for i in range(batch.topk_ids.shape[0]):  # no duplicate ids in a row: their "set" and a sum agree elsewhere
        for row in batch.topk_ids[i]:
            real = row[row != IGNORE].tolist()
            assert len(real) == len(set(real))
    logits = t5(input_ids=batch.input_ids, attention_mask=batch.attention_mask, decoder_input_ids=batch.decoder_input_ids).logits
    v = logits.shape[-1]
    mask = (batch.labels != IGNORE).reshape(-1)
    theirs = authors_dense_kl(logits.reshape(-1, v), _authors_target(batch, v, 1).reshape(-1, v), mask)
    kept = authors_dense_kl(logits.reshape(-1, v), _dense_target(batch, v, 1).reshape(-1, v), mask)  # pad mass kept
    obj = DistillationObjective(t5, seq2seq=True, variant="faithful", fused=fused, pad_id=0)
    loss_sum, rows = obj(**_tensors(batch))
    torch.testing.assert_close(loss_sum / rows, theirs, rtol=1e-5, atol=1e-6)
    assert abs(float((theirs - kept).detach())) > 1e-4  # the pad entries matter: the test would see them kept
    # without a pad id nothing is dropped: the same loss as the dense target that keeps it
    loss_kept, _ = DistillationObjective(t5, seq2seq=True, variant="faithful", fused=fused)(**_tensors(batch))
    torch.testing.assert_close(loss_kept / rows, kept, rtol=1e-5, atol=1e-6)


def test_corrected_keeps_teacher_mass_on_pad(formats_dir, t5_tokenizer, t5):
    from kernels.reference import sparse_topk_kl_reference

    batch, _ = _with_pad_entries(_batch(formats_dir, t5_tokenizer, "in_context_cot", distribution=True))
    logits = t5(input_ids=batch.input_ids, attention_mask=batch.attention_mask, decoder_input_ids=batch.decoder_input_ids).logits
    v, k = logits.shape[-1], batch.topk_ids.shape[-1]
    mask = (batch.labels != IGNORE).reshape(-1)
    args = (logits.reshape(-1, v), batch.topk_ids.reshape(-1, k))
    keep = sparse_topk_kl_reference(*args, batch.topk_probs.reshape(-1, k), mask, ignore_index=IGNORE, reduction="sum", variant="corrected")
    drop = sparse_topk_kl_reference(*args, batch.topk_probs.masked_fill(batch.topk_ids == 0, 0.0).reshape(-1, k), mask,
                                    ignore_index=IGNORE, reduction="sum", variant="corrected")
    loss_sum, _ = DistillationObjective(t5, seq2seq=True, variant="corrected", fused=False, pad_id=0)(**_tensors(batch))
    torch.testing.assert_close(loss_sum, keep, rtol=1e-5, atol=1e-5)
    assert abs(float((keep - drop).detach())) > 1e-3


# --- decoder-only students: distribution matching on the target tokens ---------------------------


@pytest.fixture(scope="module")
def gpt2_batch(gpt2_formats_dir, gpt2_tokenizer):
    records = load_formats(gpt2_formats_dir, ["in_context_cot"])["in_context_cot"]
    collate = Collator(gpt2_tokenizer, seq2seq=False, prompt_separator="\n")
    indices = [0, 3, 5]  # prompts and targets of different lengths: left padding, padded target rows
    return records, collate, indices, collate(records, indices, distribution=True)


def _gpt2(tiny_gpt2):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()


def _dense_causal_loss(model, records, collate, indices, variant):
    """By hand, one example at a time, no padding: the full softmax over the vocabulary at the rows
    that predict the target tokens and the end token, against a dense teacher built from the stored
    record (the top-k scattered at their ids, mask respected; one-hot EOS after the target)."""
    total = 0.0
    for i in indices:
        row = records.table.slice(i, 1).to_pylist()[0]
        src = collate.source_ids([row["encoder_input"]])[0]
        tgt = collate.target_ids([row["decoder_target"]])[0] + [collate.eos]
        logits = model(input_ids=torch.tensor([src + tgt[:-1]])).logits[0, len(src) - 1 :]
        assert logits.shape[0] == len(tgt)
        target = torch.zeros(logits.shape)
        for j, (ids, probs, keep) in enumerate(zip(row["topk_ids"], row["topk_probs"], row["topk_mask"])):
            for idx, p, m in zip(ids, probs, keep):
                if m:
                    target[j, idx] += p
        target[len(tgt) - 1, collate.eos] = 1.0
        q = torch.softmax(logits.float(), -1)
        if variant == "corrected":
            t = target / target.sum(-1, keepdim=True)
            total = total + torch.where(t > 0, t * (torch.log(t.clamp_min(1e-30)) - torch.log(q)), 0.0).sum()
        else:  # the authors' formula on their dense target
            total = total + (target * torch.log(target / (q + 1e-10) + 1e-10)).sum()
    return total


def _grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("variant", ["faithful", "corrected"])
def test_causal_distribution_loss_equals_a_dense_reference(tiny_gpt2, gpt2_batch, variant, fused):
    records, collate, indices, batch = gpt2_batch
    assert batch.topk_ids is not None and batch.prompt_width > 0
    model = _gpt2(tiny_gpt2)
    ref = _dense_causal_loss(model, records, collate, indices, variant)
    ref.backward()
    want = _grads(model)
    model.zero_grad(set_to_none=True)
    loss_sum, rows = DistillationObjective(model, seq2seq=False, variant=variant, fused=fused)(**_tensors(batch))
    loss_sum.backward()
    got = _grads(model)
    assert int(rows) == int((batch.labels != IGNORE).sum())
    torch.testing.assert_close(loss_sum, ref, rtol=1e-4, atol=1e-4)
    assert want.keys() == got.keys() and "transformer.wte.weight" in got
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-3, atol=1e-5, msg=name)


def test_causal_fused_triton_kernel_equals_the_dense_reference(tiny_gpt2, gpt2_batch):
    """The fused linear + KL Triton kernel (the CUDA path; here under TRITON_INTERPRET=1) on the
    hidden states of the rows predicting the targets."""
    import os

    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        pytest.skip("needs CUDA or TRITON_INTERPRET=1 set before triton is imported (tests/conftest.py sets it on CPU)")
    records, collate, _, _ = gpt2_batch
    indices = [5]  # one short example: the interpreter runs every program in Python
    batch = collate(records, indices, distribution=True)
    model = _gpt2(tiny_gpt2)
    ref = _dense_causal_loss(model, records, collate, indices, "corrected")
    ref.backward()
    want = _grads(model)
    model.zero_grad(set_to_none=True)
    obj = DistillationObjective(model, seq2seq=False, variant="corrected", fused=True, backend="triton")
    loss_sum, _ = obj(**_tensors(batch))
    loss_sum.backward()
    torch.testing.assert_close(loss_sum, ref, rtol=1e-4, atol=1e-4)
    got = _grads(model)
    for name in ("transformer.wte.weight", "transformer.h.0.attn.c_attn.weight", "transformer.ln_f.weight"):
        torch.testing.assert_close(got[name], want[name], rtol=1e-3, atol=1e-5, msg=name)


def test_causal_logits_path_asks_the_model_for_the_target_rows_only(tiny_gpt2, gpt2_batch):
    _, _, _, batch = gpt2_batch
    model = _gpt2(tiny_gpt2)
    seen = []
    model.lm_head.register_forward_hook(lambda mod, args, out: seen.append(out.shape))
    DistillationObjective(model, seq2seq=False, variant="corrected", fused=False)(**_tensors(batch))
    assert seen == [torch.Size([batch.labels.shape[0], batch.labels.shape[1], model.config.vocab_size])]
    assert batch.input_ids.shape[1] > batch.labels.shape[1]  # the prompt's columns were never projected
