"""Causal-LM fine-tuning pieces shared by the world model and the policy: examples are
(prompt ids, target ids) and only target tokens carry loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mpr.training.common import encode, pad_right

IGNORE = -100


def example(tok: Any, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """Token ids of (prompt, target + end-of-turn)."""
    return encode(tok, prompt), encode(tok, target) + [tok.eos_token_id]


def batch(examples: Sequence[tuple[list[int], list[int]]], pad: int, device: Any = None) -> tuple[Any, Any, Any]:
    """ids, attention mask and labels (prompt and padding masked out) for a batch of examples, on ``device``."""
    seqs = [p + t for p, t in examples]
    ids, mask = pad_right(seqs, pad, device=device)
    labels, _ = pad_right([[IGNORE] * len(p) + t for p, t in examples], pad, fill=IGNORE, device=device)
    return ids, mask, labels


def sft_loss(model: Any, examples: Sequence[tuple[list[int], list[int]]], pad: int) -> tuple[Any, int]:
    """Mean token cross-entropy over target tokens; and the batch's token count."""
    ids, mask, labels = batch(examples, pad, model.device)
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    return out.loss, int(mask.sum())


def target_logprobs(model: Any, examples: Sequence[tuple[list[int], list[int]]], pad: int) -> Any:
    """Summed log-probability of each example's target given its prompt: a [B] tensor
    (differentiable unless called under no_grad)."""
    import torch

    ids, mask, labels = batch(examples, pad, model.device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    tgt = labels[:, 1:]
    keep = tgt != IGNORE
    logp = torch.log_softmax(logits, dim=-1).gather(2, tgt.clamp(min=0)[..., None]).squeeze(2)
    return (logp * keep).sum(dim=1)
