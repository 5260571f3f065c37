"""The training objective of one micro-batch, computed inside the module accelerate wraps.

Sample matching and distribution matching go through the same kernel (`kernels.sparse_topk_kl`,
Triton on CUDA, its fast PyTorch path on CPU): sample matching is the one-hot case, where the
`corrected` KL is exactly the token cross-entropy -log q(y). Distribution matching puts the aligned
teacher top-k on the CoT target tokens and a one-hot EOS after them, as the authors' dense target
did; answer-only micro-batches always use cross-entropy (their rule). The `faithful` variant also
drops teacher mass aligned onto `<pad>`, as their target builder did (it writes each top-k entry
at its id, then sets the pad column to 0); `corrected` keeps it as mass like any other.

The loss is computed in `forward` (not after it) so that DDP, FSDP and ZeRO see every parameter
use, the lm-head included, inside the wrapped call; with `head="fused"` the [B, T, V] logits are
never built (the fused linear + KL kernel chunks them). Causal students take the same targets: the
rows are the hidden states (fused) or logits of the columns predicting the target tokens and the
end token, prompt_width-1 … prompt_width+T-2, so the prompt is context and never scored; on the
logits path the model computes only those rows' logits (`logits_to_keep`).
"""

from __future__ import annotations

import inspect

import torch

from kernels.functional import sparse_topk_kl
from kernels.fused_linear_sparse_kl import fused_linear_sparse_topk_kl

from harness.train.data import IGNORE


def one_hot_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return labels.unsqueeze(-1), torch.ones(labels.shape + (1,), dtype=torch.float32, device=labels.device)


class DistillationObjective(torch.nn.Module):
    """Wraps the student; `forward(**batch tensors)` returns (loss summed over target rows, rows)."""

    def __init__(self, student: torch.nn.Module, *, seq2seq: bool, variant: str, fused: bool, pad_id: int | None = None,
                 backend: str = "auto"):
        super().__init__()
        self.student = student
        self.seq2seq = seq2seq
        self.variant = variant
        self.fused = fused
        self.pad_id = pad_id  # faithful: teacher entries on this id carry no mass (None: nothing dropped)
        self.backend = backend  # the kernels' dispatch (auto: Triton on CUDA, PyTorch on CPU)
        # causal logits path: ask the model for the target rows' logits only (HF `logits_to_keep`)
        self.keep_logits = not seq2seq and "logits_to_keep" in inspect.signature(student.forward).parameters

    def _rows(self, input_ids, attention_mask, decoder_input_ids, position_ids, prompt_width, width):
        """[B, T, V] logits, or [B, T, H] hidden states plus the head weight (fused)."""
        m = self.student
        if self.seq2seq:
            if not self.fused:
                out = m(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids, use_cache=False)
                return out.logits, None
            enc = m.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
            dec = m.get_decoder()(input_ids=decoder_input_ids, encoder_hidden_states=enc.last_hidden_state,
                                  encoder_attention_mask=attention_mask, use_cache=False)
            rows = dec.last_hidden_state
            if getattr(m.config, "scale_decoder_outputs", getattr(m.config, "tie_word_embeddings", False)):
                rows = rows * (m.config.d_model ** -0.5)  # T5 with tied embeddings rescales before its head
            return rows, m.get_output_embeddings().weight
        # Targets start at column prompt_width of the left-padded input, which ends with the last
        # target token but one: the rows predicting them are its last `width` columns.
        cols = slice(prompt_width - 1, prompt_width - 1 + width)
        if input_ids.shape[1] != prompt_width + width - 1:
            raise ValueError(f"causal batch: {input_ids.shape[1]} input columns, expected prompt_width + targets - 1 = {prompt_width + width - 1}")
        if not self.fused:
            if self.keep_logits:  # never the [B, L, V] logits of the prompt
                out = m(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False, logits_to_keep=width)
                return out.logits, None
            out = m(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
            return out.logits[:, cols], None
        out = m.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        return out.last_hidden_state[:, cols], m.get_output_embeddings().weight

    def forward(self, input_ids, attention_mask, labels, decoder_input_ids=None, position_ids=None, prompt_width=0,
                topk_ids=None, topk_probs=None):
        rows, head = self._rows(input_ids, attention_mask, decoder_input_ids, position_ids, prompt_width, labels.shape[1])
        mask = labels != IGNORE
        if topk_ids is None:
            ids, probs = one_hot_targets(labels.clamp(min=0))
            variant = "corrected"  # one-hot: exactly cross-entropy
        else:
            ids, probs, variant = topk_ids, topk_probs, self.variant
            if variant == "faithful" and self.pad_id is not None:
                # their process_batch: target[..., pad] = 0 on every teacher row. Padding entries of the
                # top-k are IGNORE here, so only real entries on <pad> lose their mass. The EOS row is
                # built after, one-hot on </s>, and is left alone (pad != EOS, checked by the trainer).
                probs = probs.masked_fill(ids == self.pad_id, 0.0)
        kw = dict(ignore_index=IGNORE, reduction="sum", variant=variant, backend=self.backend)
        if head is None:
            loss = sparse_topk_kl(rows.reshape(-1, rows.shape[-1]), ids.reshape(-1, ids.shape[-1]),
                                  probs.reshape(-1, probs.shape[-1]), mask.reshape(-1), **kw)
        else:
            loss = fused_linear_sparse_topk_kl(rows.reshape(-1, rows.shape[-1]), head, ids.reshape(-1, ids.shape[-1]),
                                               probs.reshape(-1, probs.shape[-1]), mask.reshape(-1), **kw)
        return loss, mask.sum()
