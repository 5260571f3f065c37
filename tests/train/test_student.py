"""Gradient checkpointing on the student: the blocks are recomputed, dropout stays as chosen."""

from __future__ import annotations

import pytest
import torch

from harness.train.student import enable_gradient_checkpointing, load_student


@pytest.mark.parametrize("dropout", [False, True])
def test_checkpointing_recomputes_the_blocks_and_leaves_dropout_as_chosen(tiny_t5, dropout):
    plain, ckpt = (load_student(str(tiny_t5), dropout=dropout, seed=0) for _ in range(2))
    blocks = enable_gradient_checkpointing(ckpt.model)
    assert blocks == len(ckpt.model.encoder.block) + len(ckpt.model.decoder.block)
    calls = []
    for module in ckpt.model.modules():  # count the recomputed block calls
        func = getattr(module, "_gradient_checkpointing_func", None)
        if func is not None and getattr(module, "gradient_checkpointing", False):
            module._gradient_checkpointing_func = lambda *a, _f=func, **k: calls.append(1) or _f(*a, **k)
    dropouts = [m for m in ckpt.model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.training == dropout for m in dropouts)
    ids = torch.tensor([[13, 8, 3, 1], [9, 21, 1, 0]])
    dec = torch.tensor([[0, 5, 7], [0, 6, 2]])
    outs = []
    for student in (plain, ckpt):
        torch.manual_seed(1)  # the same dropout masks when dropout is on
        logits = student.model(input_ids=ids, attention_mask=(ids > 0).long(), decoder_input_ids=dec, use_cache=False).logits
        logits.float().pow(2).mean().backward()
        outs.append((logits.detach(), student.model.shared.weight.grad.clone(), torch.rand(4)))
    assert len(calls) == blocks  # every block went through the checkpoint function
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=0)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-5, atol=1e-7)
    assert torch.equal(outs[0][2], outs[1][2])  # the recompute leaves the RNG where the plain run left it
