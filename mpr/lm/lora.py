"""LoRA adapters (peft) for every trainable model, and merging them for serving.

Training (policy, world model, PRM) wraps a base model with ``add_lora``; serving uses a merged
plain model (``merge_lora``), because vLLM on CPU crashes when LoRA is enabled together with
``prompt_logprobs`` and because a merged model costs nothing extra per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpr.config import require

LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    targets: tuple[str, ...] = LLAMA_TARGETS

    def __post_init__(self) -> None:
        require(self.r >= 1, f"LoRA rank must be >= 1, got {self.r}")
        require(0 <= self.dropout < 1, f"LoRA dropout must be in [0, 1), got {self.dropout}")
        require(len(self.targets) > 0, "LoRA needs at least one target module")


def add_lora(model: Any, config: LoraConfig = LoraConfig(), value_head: bool = False) -> Any:
    """Wrap ``model`` with fresh LoRA adapters; only adapters (and a value head) train."""
    import peft

    task = peft.TaskType.SEQ_CLS if value_head else peft.TaskType.CAUSAL_LM
    return peft.get_peft_model(model, peft.LoraConfig(
        r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=list(config.targets),
        task_type=task,
    ))


def merge_lora(peft_model: Any, out: Path, tokenizer: Any = None) -> Path:
    """Fold the adapters into the base weights and save a plain HF model directory."""
    merged = peft_model.merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out
