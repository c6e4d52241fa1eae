"""The default π₀: how it is trained (autocast, demonstration samples) and how it ships and is found."""

import json
import re

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


def test_planners_of_the_default_agent_use_the_shipped_prm_and_world_model(tmp_path, monkeypatch):
    from mpr.lm import weights
    from mpr.run.evaluation import EvalConfig

    monkeypatch.setattr(weights, "SHIPPED_DIR", tmp_path)
    beam = PlannerConfig(name="beam")
    assert (EvalConfig(agent=None, planner=beam).prm, EvalConfig(agent=None, planner=beam).world) == (None, None)
    for kind in ("policy", "prm", "world"):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "mpr-checkpoint.json").write_text(json.dumps({"kind": kind}))
    c = EvalConfig(agent=None, planner=beam)
    assert (c.prm, c.world) == (str(tmp_path / "prm"), str(tmp_path / "world"))
    assert EvalConfig(agent=None, planner=beam, prm="/my/prm").prm == "/my/prm"  # a flag wins
    assert EvalConfig(agent=None, planner=PlannerConfig(name="best-of-n")).world is None  # BoN never simulates
    assert EvalConfig(agent=None).prm is None  # greedy scores nothing
    assert EvalConfig(agent="llm", planner=beam).prm is None  # the base model keeps its zero-shot judge


@pytest.mark.models
def test_a_shipped_checkpoint_is_fp16_keeps_its_metadata_and_scores_like_the_trained_one(tiny_chain, tmp_path):
    from safetensors import safe_open

    from mpr.compose import ranking_policy
    from mpr.lm.checkpoints import load_checkpoint, ship_checkpoint
    from mpr.training.rollout import load_rollouts, transitions

    trained = load_checkpoint(tiny_chain / "PI", "policy")
    shipped = ship_checkpoint(tiny_chain / "PI", tmp_path / "policy", command="mpr train policy ...")
    assert shipped.kind == "policy" and shipped.meta["header"] == trained.meta["header"]
    assert shipped.meta["shipped"]["command"] == "mpr train policy ..." and shipped.meta["shipped"]["dtype"] == "fp16"
    with safe_open(str(shipped.path / "model.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.float16"}
    assert not (shipped.path / "train-state.pt").exists()  # weights and metadata only
    config = TrainConfig(threads=1, dtype="fp32", batch_size=8)
    states = [t.state for ep in load_rollouts(tiny_chain / "R") for t in transitions(ep)][:6]
    a = ranking_policy(str(trained.path), config).rank(states)
    b = ranking_policy(str(shipped.path), config).rank(states)
    for ra, rb in zip(a, b):
        va, vb = dict(ra), dict(rb)
        # fp16 weights: measured |Δ log-prob| <= 6e-3 (a trained 4.3M transcript policy, 40 states, fp32)
        assert va.keys() == vb.keys() and max(abs(va[k] - vb[k]) for k in va) < 2e-2


def test_prefix_order_decides_the_verb_by_its_mass_then_the_object():
    import math

    from mpr.learned.policy import prefix_order

    # an explorer: "look" is the single most likely action, but going somewhere is 4x likelier
    actions = ["look", "go to shelf 1", "go to shelf 2", "go to desk 1", "go to bed 1",
               "take mug 1 from desk 1", "take mug 2 from desk 1"]
    probs = [0.15, 0.12, 0.11, 0.10, 0.27, 0.13, 0.12]
    logp = [math.log(p) for p in probs]
    order = [actions[i] for i in prefix_order(actions, logp)]
    assert order[0] == "go to bed 1" and order[:4] == ["go to bed 1", "go to shelf 1", "go to shelf 2", "go to desk 1"]
    assert order[4:] == ["take mug 1 from desk 1", "take mug 2 from desk 1", "look"]  # take: 0.25 > look 0.15
    assert prefix_order(["look", "go to bed 1"], [logp[0], logp[4]]) == [1, 0]
    assert prefix_order([], []) == []


def test_transcript_policies_rank_by_prefix_unless_told_otherwise():
    from mpr.errors import MprError
    from mpr.learned.policy import PolicyConfig

    assert PolicyConfig(prompt_format="transcript").ranking == "prefix"
    assert PolicyConfig(prompt_format="chat").ranking == "action"
    assert PolicyConfig(prompt_format="transcript", rank_by="action").ranking == "action"
    with pytest.raises(MprError, match="rank_by must be one of"):
        PolicyConfig(rank_by="word")


PLAN_TASK = "valid_unseen/pick_and_place_simple-Mug-None-Desk-308/trial_T20190908_125200_737896"


@pytest.mark.games
@pytest.mark.models
def test_plan_with_no_flags_plays_the_shipped_default_policy(games_root):
    """What a fresh install does: `mpr plan --task ID` finds the π₀ shipped in the package (fp16
    weights + the metadata of how it was trained) and plays the episode with it."""
    from tests.conftest import mpr

    from mpr.lm.checkpoints import load_checkpoint
    from mpr.lm.weights import shipped_model_dir

    shipped = load_checkpoint(shipped_model_dir("policy"), "policy")
    meta = shipped.meta
    assert meta["shipped"]["dtype"] == "fp16" and "default-policy.sh" in meta["shipped"]["command"]
    assert meta["prompt_format"] == "transcript" and meta["header"]["train"]["lm_weight"] == 1.0
    size = sum(f.stat().st_size for f in shipped.path.iterdir())
    assert size < 40e6  # the shipped models' budget, all of them together
    played = mpr("plan", "--task", PLAN_TASK).stdout  # no flags: the README's first command
    steps = [line.strip() for line in played.splitlines() if re.match(r"\s*\d+\. > ", line)]
    assert steps and steps[0] == "1. > look" and len(steps) <= 30, played[-2000:]
    assert re.search(r"^(won|not won) after \d+ actions", played, re.M), played[-2000:]


def test_best_of_n_draws_its_candidates_unless_told_otherwise():
    from mpr.app.cli import _model_configs
    from mpr.compose import candidate_mode

    assert candidate_mode("best-of-n") == "score-sample"
    assert [candidate_mode(p) for p in ("greedy", "beam", "mcts")] == ["score"] * 3
    assert candidate_mode("best-of-n", "score") == "score"  # an explicit mode wins
    flags = dict(model="default", policy_mode="auto", rank_by="auto", backend="hf", dtype="auto", threads=1,
                 batch_size=4, planner="greedy")
    assert _model_configs("best-of-n", **flags)[1].mode == "score-sample"  # --agent best-of-n
    assert _model_configs(None, **{**flags, "planner": "best-of-n"})[1].mode == "score-sample"
    assert _model_configs(None, **flags)[1].mode == "score"
