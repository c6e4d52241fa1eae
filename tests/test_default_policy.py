"""The default π₀: how it is trained (autocast, demonstration samples) and how it ships and is found."""

import json

import pytest

from mpr.compose import resolve_policy_ckpt, split_agent
from mpr.errors import ConfigError
from mpr.planners.config import PlannerConfig
from mpr.training.common import is_held_out, sample_games
from mpr.training.trainer import TrainConfig, autocast_context


def test_train_dtype_is_validated_and_fp32_means_no_autocast():
    import torch

    with pytest.raises(ConfigError, match="dtype"):
        TrainConfig(dtype="fp16")
    with autocast_context("fp32")():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with autocast_context("bf16")():  # what "auto" picks on AMX / AVX512-BF16 CPUs
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_game_samples_are_deterministic_nested_and_keep_the_held_out_games():
    items = [(f"train/game-{i}", k) for i in range(200) for k in range(2)]  # two episodes per game
    task = lambda x: x[0]  # noqa: E731
    held = {t for t, _ in items if is_held_out(t, 0.1)}
    small, big = sample_games(items, task, 20, 0.1), sample_games(items, task, 60, 0.1)
    assert {t for t, _ in small} - held <= {t for t, _ in big} - held  # a learning curve's points nest
    assert len({t for t, _ in small} - held) == 20 and held <= {t for t, _ in small}
    assert sample_games(list(reversed(items)), task, 20, 0.1) == list(reversed(small))  # order-free choice
    assert all(sum(1 for x in small if x[0] == t) == 2 for t, _ in small)  # whole games, never halves


def test_no_agent_means_the_policy_and_the_shipped_checkpoint(tmp_path, monkeypatch):
    from mpr.lm import weights

    assert split_agent(None, None, PlannerConfig()) == ("policy", PlannerConfig())
    assert split_agent("beam", None, PlannerConfig())[0] == "policy"
    assert resolve_policy_ckpt("expert", None) is None and resolve_policy_ckpt("policy", "/my/pi") == "/my/pi"
    monkeypatch.setattr(weights, "SHIPPED_DIR", tmp_path)
    with pytest.raises(ConfigError, match="no shipped default policy"):
        resolve_policy_ckpt("policy", None)
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "mpr-checkpoint.json").write_text(json.dumps({"kind": "policy"}))
    assert resolve_policy_ckpt("policy", None) == str(tmp_path / "policy")
