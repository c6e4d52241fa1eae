"""LoRA: adapters change the model, and the merged model scores exactly like the adapted one."""

import pytest
import torch

from mpr.errors import ConfigError
from mpr.lm.engine import EngineConfig
from mpr.lm.hf_engine import HFEngine
from mpr.lm.lora import LoraConfig, add_lora, merge_lora

PROMPTS = ["Your task is to: put a mug in desk.\n> go to", "You are in the middle of a room."]
CANDS = [[" desk 1", " shelf 2"], [" look", " go to desk 1"]]


def test_merged_adapters_score_like_the_adapted_model(tiny_model_dir, tmp_path):
    engine = HFEngine(EngineConfig(model=str(tiny_model_dir), dtype="fp32", threads=1))
    base = [s.logprob for r in engine.score(PROMPTS, CANDS) for s in r]
    adapted = add_lora(engine.lm, LoraConfig(r=4))
    trainable = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    torch.manual_seed(0)
    with torch.no_grad():  # stand-in for training: move the adapters away from their zero init
        for n, p in adapted.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    engine._lm = adapted
    with_lora = [s.logprob for r in engine.score(PROMPTS, CANDS) for s in r]
    assert max(abs(a - b) for a, b in zip(base, with_lora)) > 1e-3
    out = merge_lora(adapted, tmp_path / "merged", engine.tokenizer)
    merged = HFEngine(EngineConfig(model=str(out), dtype="fp32", threads=1))
    assert [s.logprob for r in merged.score(PROMPTS, CANDS) for s in r] == pytest.approx(with_lora, abs=1e-4)


def test_lora_config_is_validated():
    with pytest.raises(ConfigError):
        LoraConfig(r=0)
